"""UI latency of the labelling widget in a real browser, while the model retrains in the background.

Measures, in JupyterLab 4 + Chromium (headless), the time from a key press (``keydown``, captured in the page) to
the next image being in the DOM, decoded and painted (next animation frame). Meanwhile a thread in the kernel calls
``session.retrain_async()`` after every new answer and waits for the fit, so a model is training during nearly every
press (the widget itself retrains once per batch: this is busier than real use). Until issue 12's second pass that
thread re-requested a fit in a hot loop; with nothing new a request returns at once, so it mostly measured a thread
spinning on the GIL and the store, not training.

Two projects in the same run, same JupyterLab, same browser, one after the other:

  photos   a folder project of ``--photos`` colour JPEGs generated in a temp folder, of realistic sizes
           (640x480 up to 4000x3000 and 3024x4032 portrait; smooth colour fields + shapes + sensor-like noise,
           so they are about as large on disk as camera JPEGs), 5 classes (sub-folders)
  digits   the built-in 8x8 scikit-learn digits (the earlier figure, kept for comparison)

Besides the latency, the per-image preparation the kernel does before it can send an image (``source.load`` of
the file, then ``ui.workbench.encode_image``: downsizing to 768 px and JPEG/PNG encoding) is timed in this
process on the same files, per image size. The widget encodes the next two images ahead of time, so the
latency measures what a labeller sees when each image was prefetched; the first image of a session and any
image reached faster than it can be prepared wait for the whole preparation.

    .venv/bin/python bench/bench_ui_latency.py [--presses 60] [--photos 240] [--scenarios photos,digits]
                          [--think-ms 0,1000] [--batch-size 20] [--backbone pixels] [--json PATH]

Each project is measured with presses back to back (the next key as soon as the widget is ready: the worst
case, faster than anyone labels) and with a 1 s pause before each press (a fast labeller), which gives the
kernel time to prepare the next images ahead.

Prints median / p90 / max per project and writes everything to ``--json``. Goal: median <= 100 ms and
p90 <= 150 ms. Issue 12's run: ``--backbone resnet18 --backbone-weights none`` (a 512-d embedding).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ROOT = ".alwb-labeller .alwb-root"
GOAL_MEDIAN_MS = 100.0
GOAL_P90_MS = 150.0
SEED_LABELS = 10
#: (width, height) of the generated photos, cycled: webcam / old phone / HD / phone portrait / 12 MP camera
PHOTO_SIZES = [(1280, 960), (1920, 1080), (2048, 1536), (1080, 1920), (2592, 1944), (3264, 2448), (3024, 4032),
               (4000, 3000)]   # 1.2 to 12 megapixels
PHOTO_CLASSES = ["beach", "city", "forest", "indoor", "snow"]
_PALETTE = {"beach": ((250, 220, 160), (40, 120, 200)), "city": ((120, 120, 130), (200, 170, 90)),
            "forest": ((30, 90, 40), (120, 160, 60)), "indoor": ((180, 140, 100), (90, 60, 40)),
            "snow": ((235, 240, 250), (140, 160, 190))}

# t0 = keydown (capture phase, before the widget sees it); t1 = the widget shows a new item (data-shown-seq);
# t2 = that <img> decoded + the next animation frame (painted)
ARM_PROBE_JS = """(sel) => {
  const root = document.querySelector(sel);
  const seq0 = root.dataset.shownSeq;
  window.__rt = new Promise((resolve) => {
    setTimeout(() => resolve({timeout: true, status: root.innerText.slice(0, 300)}), 30000);
    let t0 = null;
    document.addEventListener('keydown', () => { t0 = performance.now(); }, {capture: true, once: true});
    const check = async () => {
      if (t0 === null || root.dataset.shownSeq === seq0) return;
      obs.disconnect();
      const t1 = performance.now();
      const img = root.querySelector('img.alwb-image');
      try { await img.decode(); } catch (e) {}
      await new Promise(r => requestAnimationFrame(() => r()));
      resolve({inserted_ms: t1 - t0, painted_ms: performance.now() - t0, item_id: root.dataset.itemId,
               natural_w: img.naturalWidth, natural_h: img.naturalHeight});
    };
    const obs = new MutationObserver(check);
    obs.observe(root, {attributes: true, attributeFilter: ['data-shown-seq']});
  });
}"""


# ------------------------------------------------------------------------------------------------ data
def make_photos(folder: Path, n: int, seed: int = 0, sizes=PHOTO_SIZES, classes=PHOTO_CLASSES,
                quality: int = 90) -> list[dict]:
    """Write ``n`` colour JPEGs under ``folder/<class>/``: a smooth two-colour field (class palette) with random
    low-frequency structure, a few filled shapes, and Gaussian noise (sigma 6) so they compress like photos.
    Sizes cycle through ``sizes``. Returns ``[{path, w, h, bytes, label}]``."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        w, h = sizes[k % len(sizes)]
        label = classes[k % len(classes)]
        pal = _PALETTE.get(label) or (tuple(rng.integers(0, 256, 3)), tuple(rng.integers(0, 256, 3)))
        c0, c1 = (np.array(c, dtype=np.float32) for c in pal)
        # low-frequency structure: a small random field upscaled (bicubic) to the full size
        small = rng.random((6, 8, 1), dtype=np.float32)
        mix = np.asarray(Image.fromarray((small[..., 0] * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC),
                         dtype=np.float32)[..., None] / 255.0
        base = c0 * (1 - mix) + c1 * mix
        im = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
        d = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(3, 9))):
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            x1, y1 = x0 + int(rng.integers(w // 20, w // 3)), y0 + int(rng.integers(h // 20, h // 3))
            col = tuple(int(v) for v in rng.integers(0, 256, 3))
            (d.ellipse if rng.random() < 0.5 else d.rectangle)([x0, y0, x1, y1], fill=col)
        arr = np.asarray(im, dtype=np.int16)
        arr = arr + rng.normal(0, 6, size=arr.shape).astype(np.int16)
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
        p = folder / label / f"photo_{k:04d}_{w}x{h}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        im.save(p, format="JPEG", quality=quality)
        out.append({"path": str(p), "w": w, "h": h, "bytes": p.stat().st_size, "label": label})
    return out


def prepare_project(d: Path, images: str, batch_size: int, backbone: str, seed_labels: int,
                    weights: str = "default") -> None:
    """A project with a few labels and a model, so retraining has something to fit from the start."""
    from alworkbench.loop.oracle import Oracle
    from alworkbench.project import Project

    p = Project.init(d, images, backbone=backbone, query={"batch_size": seed_labels})
    if weights != p.config.backbone.weights:
        p.config.backbone.weights = weights
        p.config.save(p.config_path)
        p.close()
        p = Project.open(d)
    s = p.session(annotator="seed")
    Oracle(s).label_batch(s.next_batch())
    s.retrain()
    s.close()
    cfg = p.config
    cfg.query.batch_size = batch_size
    cfg.save(p.config_path)
    p.close()


def prep_times(project_dir: Path, per_size: int) -> list[dict]:
    """Time what the kernel does before it can send an image, on the project's own files: the full decode
    ``source.load(item)`` then ``encode_image`` (what the widget did before issue 12), and the widget's path now,
    ``prep_max_side_ms``: ``source.load(item, max_side=768)`` (JPEG draft decoding to about the sent size) plus
    ``encode_image``. Up to ``per_size`` images of each size."""
    from PIL import Image

    from alworkbench.project import Project
    from alworkbench.ui.workbench import MAX_SIDE, encode_image

    p = Project.open(project_dir)
    src = p.source
    seen: dict[tuple, int] = {}
    rows = []
    for it in src.items:
        with Image.open(it.uri) as im:
            size = im.size
        if seen.get(size, 0) >= per_size:
            continue
        seen[size] = seen.get(size, 0) + 1
        t = time.perf_counter()
        img = src.load(it)
        t_load = time.perf_counter() - t
        t = time.perf_counter()
        enc = encode_image(img)
        t_enc = time.perf_counter() - t
        t = time.perf_counter()
        encode_image(src.load(it, max_side=MAX_SIDE))
        t_draft = time.perf_counter() - t
        rows.append({"w": size[0], "h": size[1], "load_ms": 1e3 * t_load, "encode_ms": 1e3 * t_enc,
                     "prep_ms": 1e3 * (t_load + t_enc), "prep_max_side_ms": 1e3 * t_draft,
                     "sent_w": enc["w"], "sent_h": enc["h"], "sent_bytes": len(enc["src"])})
    p.close()
    return rows


# ------------------------------------------------------------------------------------------------ numbers
def percentile(xs, q):
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def _stats(xs) -> dict:
    xs = list(xs)
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "median": statistics.median(xs), "p90": percentile(xs, 0.9), "max": max(xs),
            "min": min(xs)}


def summarize_scenario(name: str, presses: list[dict], answers_stored: int, models_trained: int,
                       widget_error_boxes: int, page_errors: list[str], sizes: dict | None = None,
                       prep: list[dict] | None = None, info: dict | None = None) -> dict:
    """One project's record: latency stats over the presses (and by the shown image's original size when
    ``sizes`` maps item ids to (w, h)), the per-image prep stats, and the checks (answers stored, errors)."""
    painted = [r["painted_ms"] for r in presses]
    out = {"scenario": name, "presses": len(presses), "answers_stored": answers_stored,
           "all_answers_stored": answers_stored == len(presses), "models_trained_during_run": models_trained,
           "painted_ms": _stats(painted), "inserted_ms": _stats(r["inserted_ms"] for r in presses),
           "goal_median_ms": GOAL_MEDIAN_MS,
           "goal_p90_ms": GOAL_P90_MS,
           "goal_met": bool(painted) and statistics.median(painted) <= GOAL_MEDIAN_MS
                       and percentile(painted, 0.9) <= GOAL_P90_MS,
           "widget_error_boxes": widget_error_boxes, "page_errors": page_errors,
           "raw_presses": presses, **(info or {})}
    if sizes:
        by: dict[str, list[float]] = {}
        for r in presses:
            wh = sizes.get(r.get("item_id"))
            if wh:
                by.setdefault(f"{wh[0]}x{wh[1]}", []).append(r["painted_ms"])
        out["painted_ms_by_original_size"] = {k: _stats(v) for k, v in sorted(by.items())}
    if prep:
        out["prep_ms"] = {k: _stats(r[k] for r in prep) for k in ("load_ms", "encode_ms", "prep_ms",
                                                                  "prep_max_side_ms")}
        by_size: dict[str, list[dict]] = {}
        for r in prep:
            by_size.setdefault(f"{r['w']}x{r['h']}", []).append(r)
        out["prep_ms_by_size"] = {k: {m: statistics.median(r[m] for r in v) for m in
                                      ("load_ms", "encode_ms", "prep_ms", "prep_max_side_ms")} | {"n": len(v)}
                                  for k, v in sorted(by_size.items(), key=lambda kv: kv[1][0]["w"] * kv[1][0]["h"])}
        out["raw_prep"] = prep
    return out


def run_key(name: str, think_ms: float) -> str:
    """``photos`` for back-to-back presses, ``photos+think1000ms`` with a pause before each press."""
    return name if not think_ms else f"{name}+think{think_ms:.0f}ms"


def assemble(scenarios: dict[str, dict], args: dict, machine: dict, command: str) -> dict:
    """The JSON record of one run: every scenario plus the photos-vs-digits latency ratios (same run), per pause."""
    res = {"command": command, "args": args, "machine": machine, "scenarios": scenarios,
           "photos_vs_digits": {}}
    for key, ph in scenarios.items():
        if ph["scenario"] != "photos":
            continue
        dg = scenarios.get(key.replace("photos", "digits", 1))
        if dg and ph["painted_ms"].get("n") and dg["painted_ms"].get("n"):
            res["photos_vs_digits"][key] = {"vs": key.replace("photos", "digits", 1),
                "median_ratio": ph["painted_ms"]["median"] / dg["painted_ms"]["median"],
                "p90_ratio": ph["painted_ms"]["p90"] / dg["painted_ms"]["p90"]}
    if "photos" in res["photos_vs_digits"]:
        res["photos_vs_digits_median_ratio"] = res["photos_vs_digits"]["photos"]["median_ratio"]
        res["photos_vs_digits_p90_ratio"] = res["photos_vs_digits"]["photos"]["p90_ratio"]
    res["all_answers_stored"] = all(s["all_answers_stored"] for s in scenarios.values())
    res["no_errors"] = all(not s["widget_error_boxes"] and not s["page_errors"] for s in scenarios.values())
    return res


# ------------------------------------------------------------------------------------------------ browser
def _model_version(store) -> int:
    if hasattr(store, "model_version"):   # model versions as appended records
        return int(store.model_version())
    return int(store.get_meta("model_version", 0) or 0)


def run_scenario(ctx, lab, root: Path, name: str, proj: Path, presses: int, keys: str, retrain: bool,
                 think_ms: float = 0.0) -> dict:
    from alworkbench.labels import LabelStore
    from tests.browser.conftest import KERNEL_IDLE_JS, open_and_run, write_notebook

    loop = "" if not retrain else (
        "import threading\n"
        "stop_training = threading.Event()\n"
        "fits = []\n"
        "def _train_loop():\n"
        "    seen = -1\n"
        "    while not stop_training.is_set():\n"
        "        n = len(w.answers_log)\n"
        "        if n == seen:\n"
        "            stop_training.wait(0.02)\n"
        "            continue\n"
        "        seen = n\n"
        "        t = time.perf_counter()\n"
        "        w.session.retrain_async().result()\n"
        "        fits.append(time.perf_counter() - t)\n"
        "threading.Thread(target=_train_loop, daemon=True, name='bench-retrain').start()\n")
    nb = f"bench_{name}_{int(think_ms)}.ipynb"
    write_notebook(root / nb, [
        "import time\nfrom alworkbench.ui import Workbench\n"
        f"w = Workbench.open({str(proj)!r}, annotator='bench')\nw",
        loop + "print('retrain loop started')",
    ])
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        open_and_run(page, lab, nb)
        try:
            page.wait_for_selector(f"{ROOT} img.alwb-image", state="visible", timeout=180_000)
        except Exception:
            outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
            raise RuntimeError(f"{name}: the widget showed no image in 180 s; cell outputs: {outputs}; "
                               f"page errors: {errors}") from None
        page.wait_for_function(KERNEL_IDLE_JS, timeout=180_000)
        page.locator(f"{ROOT} .alwb-position").click()   # focus the widget
        with LabelStore(proj / "labels.sqlite") as st:
            v0 = _model_version(st)
            n0 = len([e for e in st.events() if e["annotator"] == "bench"])
        out = []
        for i in range(presses):
            if think_ms:
                time.sleep(think_ms / 1000.0)   # the labeller looks at the image before answering
            page.evaluate(ARM_PROBE_JS, ROOT)
            page.keyboard.press(keys[i % len(keys)])
            r = page.evaluate("window.__rt")
            if r.get("timeout"):
                raise RuntimeError(f"{name}: press {i + 1} showed no new image in 30 s; widget text: {r['status']!r}")
            out.append(r)
            page.wait_for_function(f"document.querySelector('{ROOT}').dataset.busy === '0'", timeout=60_000)
        with LabelStore(proj / "labels.sqlite") as st:
            v1 = _model_version(st)
            n_answers = len([e for e in st.events() if e["annotator"] == "bench"]) - n0
        errs = page.locator(".jupyter-widgets-error-widget").count()
    finally:
        page.close()
        lab.shutdown_kernels()
    return {"presses": out, "answers_stored": n_answers, "models_trained": v1 - v0, "widget_error_boxes": errs,
            "page_errors": errors}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presses", type=int, default=60)
    ap.add_argument("--photos", type=int, default=240, help="colour JPEGs generated for the photo project")
    ap.add_argument("--scenarios", default="photos,digits", help="comma list of photos, digits")
    ap.add_argument("--think-ms", default="0,1000",
                    help="comma list of pauses before each press: 0 = back to back (worst case), 1000 = a fast "
                         "labeller who looks at each image for a second (prefetching has time to work)")
    ap.add_argument("--prep-per-size", type=int, default=10, help="images of each size timed for the prep figure")
    ap.add_argument("--batch-size", type=int, default=20)
    ap.add_argument("--backbone", default="pixels")
    ap.add_argument("--backbone-weights", default="default",
                    help="backbone.weights; 'none' with resnet18 gives a 512-d embedding without a download")
    ap.add_argument("--keep-temp", action="store_true", help="keep the temp folder (photos, projects, lab home)")
    ap.add_argument("--no-retrain", action="store_true", help="measure without the background retrain loop")
    ap.add_argument("--json", "--out", dest="json", default=str(REPO / "bench" / "out" / "ui_latency.json"))
    args = ap.parse_args(argv)
    command = "python bench/bench_ui_latency.py " + " ".join(sys.argv[1:] if argv is None else argv)
    scen_names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    bad = [s for s in scen_names if s not in ("photos", "digits")]
    if bad:
        ap.error(f"unknown scenario(s) {bad}: use photos, digits")
    thinks = [float(x) for x in args.think_ms.split(",") if x.strip()] or [0.0]
    need = int((SEED_LABELS + args.presses * len(thinks)) / 0.75) + 1   # 20 % of a project is held out
    if "photos" in scen_names and args.photos < need:
        ap.error(f"--photos {args.photos} is too few for {len(thinks)} x {args.presses} presses: use >= {need}")
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROME_ARGS, CHROMIUM, start_lab, stop_lab

    load0 = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="alwb-bench-ui-"))
    home, root = tmp / "home", tmp / "nb"
    home.mkdir()
    root.mkdir()
    projects: dict[str, tuple[Path, str, dict, dict]] = {}
    if "photos" in scen_names:
        t = time.time()
        photos = make_photos(tmp / "photos", args.photos)
        mb = sum(p["bytes"] for p in photos) / 1e6
        info = {"images": len(photos), "sizes": sorted({f"{p['w']}x{p['h']}" for p in photos}),
                "jpeg_mb_total": mb, "jpeg_mb_median": statistics.median(p["bytes"] for p in photos) / 1e6,
                "jpeg_mb_4000x3000": statistics.median([p["bytes"] for p in photos if p["w"] == 4000] or [0]) / 1e6}
        print(f"{len(photos)} photos generated in {time.time() - t:.1f} s ({mb:.0f} MB)")
        t = time.time()
        prepare_project(root / "photos_project", str(tmp / "photos"), args.batch_size, args.backbone, SEED_LABELS,
                        args.backbone_weights)
        info["project_ready_s"] = time.time() - t
        print(f"photo project ready (embedded, 10 seed labels, model) in {info['project_ready_s']:.1f} s")
        sizes = {}
        from alworkbench.project import Project
        p = Project.open(root / "photos_project")
        by_path = {q["path"]: (q["w"], q["h"]) for q in photos}
        for it in p.source.items:
            sizes[it.id] = by_path.get(str(Path(it.uri).resolve()), by_path.get(it.uri))
        p.close()
        projects["photos"] = (root / "photos_project", "12345", sizes, info)
    if "digits" in scen_names:
        t = time.time()
        prepare_project(root / "digits_project", "digits", args.batch_size, args.backbone, SEED_LABELS,
                        args.backbone_weights)
        projects["digits"] = (root / "digits_project", "1234567890", {}, {"images": "sklearn digits 8x8",
                                                                          "project_ready_s": time.time() - t})

    lab = start_lab(home, root)
    raw: dict[str, dict] = {}
    try:
        with sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(str(tmp / "profile"), executable_path=CHROMIUM,
                                                        headless=True, args=CHROME_ARGS,
                                                        viewport={"width": 1400, "height": 1100})
            try:
                for think in thinks:
                    for name in scen_names:
                        proj, keys, _sizes, _info = projects[name]
                        print(f"measuring {name}, {think:.0f} ms pause before each press: {args.presses} presses ...")
                        raw[run_key(name, think)] = run_scenario(ctx, lab, root, name, proj, args.presses, keys,
                                                                 not args.no_retrain, think)
            finally:
                ctx.close()
    finally:
        stop_lab(lab)

    scenarios = {}
    preps = {name: prep_times(projects[name][0], args.prep_per_size) for name in scen_names if name == "photos"}
    for think in thinks:
        for name in scen_names:
            proj, _keys, sizes, info = projects[name]
            r = raw[run_key(name, think)]
            scenarios[run_key(name, think)] = summarize_scenario(
                name, r["presses"], r["answers_stored"], r["models_trained"], r["widget_error_boxes"],
                r["page_errors"], sizes=sizes or None, prep=preps.get(name) if think == thinks[0] else None,
                info={**info, "think_ms": think})
    machine = {"cpu_count": os.cpu_count(), "loadavg_1min_at_start": load0, "loadavg_1min_at_end": os.getloadavg()[0],
               "python": platform.python_version(), "platform": platform.platform(), "browser": CHROMIUM}
    res = assemble(scenarios, {k: v for k, v in vars(args).items() if k != "json"}, machine, command)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    if not args.keep_temp:   # about 250 MB of generated photos
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nkey press -> next image painted, {args.presses} presses each, "
          f"{'with' if not args.no_retrain else 'without'} background retraining:")
    for name, s in scenarios.items():
        pm = s["painted_ms"]
        print(f"  {name:19s} median {pm['median']:6.1f} ms   p90 {pm['p90']:6.1f} ms   max {pm['max']:6.1f} ms   "
              f"(in DOM: median {s['inserted_ms']['median']:.1f} ms; {s['models_trained_during_run']} models trained "
              f"meanwhile; answers stored {s['answers_stored']}/{s['presses']}; goal median <= 100 ms and p90 <= 150 ms: "
              f"{'met' if s['goal_met'] else 'NOT met'})")
        for size, st in (s.get("painted_ms_by_original_size") or {}).items():
            print(f"            shown image {size:>9s}: median {st['median']:6.1f} ms over {st['n']} presses")
        if s.get("prep_ms"):
            print("          per-image prep in the kernel (source.load + encode_image), median per size:")
            for size, st in s["prep_ms_by_size"].items():
                print(f"            {size:>9s}: {st['prep_ms']:6.1f} ms  (load {st['load_ms']:.1f} + encode "
                      f"{st['encode_ms']:.1f}; with load(max_side=768): {st['prep_max_side_ms']:.1f} ms)  n={st['n']}")
    for key, r in res["photos_vs_digits"].items():
        print(f"  {key} / {r['vs']}: median {r['median_ratio']:.2f}x, p90 {r['p90_ratio']:.2f}x (same run)")
    print(f"  raw JSON: {out}")
    return res


if __name__ == "__main__":
    main()
