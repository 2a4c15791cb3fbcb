"""Issue 11, part 3: incremental ingest. `project.ingest()` / `alwb ingest DIR [--watch SECONDS]` find new, changed
and removed files, embed only what the content-keyed cache lacks (counted from the cache), report unreadable files
with a reason, and never touch the label store: a removed file's labels stay and are reported as missing."""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from alworkbench import Answer, Project
from alworkbench.embed.backbones import get_backbone
from alworkbench.embed.cache import EmbeddingCache

REPO = Path(__file__).resolve().parents[2]
CLASSES = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}
ENV = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), TQDM_DISABLE="1")


def _png(path: Path, rgb, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = np.clip(np.array(rgb) + rng.integers(-25, 25, (12, 12, 3)), 0, 255).astype(np.uint8)
    tmp = path.with_name("." + path.name + ".part")  # hidden while written: a scan never sees half a file
    Image.fromarray(a).save(tmp, format="PNG")
    os.replace(tmp, path)


def make_folder(root: Path, per_class: int = 12) -> Path:
    for c, (name, rgb) in enumerate(CLASSES.items()):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            _png(root / name / f"{name}{i}.png", rgb, seed=100 * c + i)
    return root


def _features(p: Project) -> np.ndarray:
    """Cheap pixel features for the labelling session (the ingest itself uses the project's real backbone)."""
    return np.stack([np.asarray(p.source.load(it).convert("RGB").resize((4, 4)), np.float32).ravel() / 255
                     for it in p.items])


def _cache_count(p: Project) -> int:
    b = p.config.backbone
    return EmbeddingCache(p.dir / "cache").count(get_backbone(b.name, weights=b.weights, device=b.device).key)


def _alwb(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "alworkbench.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def _labelled_project(tmp_path):
    images = make_folder(tmp_path / "images")
    p = Project.init(tmp_path / "proj", str(images), query={"batch_size": 6, "strategy": "random"},
                     evaluation={"holdout": 0.0})
    assert p.config.backbone.name == "randconv"  # the offline default: a real backbone and its real cache
    first = p.ingest()
    assert first.embedded == 36 and len(first.new) == 36 and _cache_count(p) == 36
    s = p.session(annotator="ana", embeddings=_features(p), warm_start=False)
    batch = s.next_batch()
    for bi in batch.items:
        s.submit(bi.item.id, Answer.of_label(bi.item.id.split("/")[0]))
    s.close()
    return images, p, [bi.item.id for bi in batch.items]


def test_ingest_embeds_only_new_and_changed_reports_skips_and_missing_labels_and_keeps_the_store(tmp_path):
    images, p, labelled = _labelled_project(tmp_path)
    events_before = p.store.events()
    labels_before = p.store.labels()
    assert set(labels_before) == set(labelled)
    p.close()

    n_new = 7
    new_ids = [f"green/new{i}.png" for i in range(n_new)]
    for i, rel in enumerate(new_ids):
        _png(images / rel, CLASSES["green"], seed=5000 + i)
    changed_id = next(it for it in sorted(images.glob("blue/*.png")) if f"blue/{it.name}" not in labelled)
    changed_id = f"blue/{changed_id.name}"
    _png(images / changed_id, (0, 0, 0), seed=9999)  # same name, new content
    gone = labelled[0]
    (images / gone).unlink()  # a labelled image disappears
    (images / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a corrupt file

    p2 = Project.open(tmp_path / "proj")
    before = _cache_count(p2)
    rep = p2.ingest()
    after = _cache_count(p2)
    # exactly the new images and the changed one were embedded: counted in the cache, and by the report
    assert after - before == n_new + 1 and rep.embedded == n_new + 1 and rep.computed == n_new + 1
    assert (rep.cache_before, rep.cache_after) == (before, after)
    assert sorted(rep.new) == sorted(new_ids) and rep.changed == [changed_id] and rep.removed == [gone]
    assert rep.unchanged == 36 - 2 and rep.n_items == 36 - 1 + n_new
    assert rep.baseline == "previous ingest"
    broken = [(path, why) for path, why in rep.skipped if path == "red/broken.png"]
    assert len(broken) == 1 and broken[0][1], rep.skipped  # reported with a reason
    assert rep.labelled_missing == [gone] and rep.changed_labelled == []
    text = "\n".join(rep.lines())
    assert "labelled but missing" in text and gone in text and "skipped red/broken.png: " in text

    # the store is untouched: the same events and labels, the removed image's label included
    assert p2.store.events() == events_before and p2.store.labels() == labels_before
    assert gone in p2.store.labels()

    # a new session pools the new items; the removed one is not an item any more
    s = p2.session(annotator="bo", embeddings=_features(p2), warm_start=False)
    pool_ids = {s.items[int(i)].id for i in s.pool_indices()}
    assert set(new_ids) <= pool_ids and changed_id in pool_ids and gone not in {it.id for it in s.items}
    assert not set(labelled) & pool_ids
    s.close()
    # the project's embeddings are the ingested ones (rows aligned with the new items)
    assert p2.embeddings(progress=False).shape[0] == 36 - 1 + n_new
    p2.close()

    # nothing changed since: nothing new, nothing embedded
    p3 = Project.open(tmp_path / "proj")
    again = p3.ingest()
    assert (again.new, again.changed, again.removed, again.embedded) == ([], [], [], 0)
    assert again.unchanged == 36 - 1 + n_new and again.labelled_missing == [gone]
    assert p3.store.events() == events_before
    from alworkbench.cli import status_dict

    st = status_dict(p3)  # `alwb status` names the labelled item whose file is gone
    assert st["labelled_missing"] == [gone] and st["auto_labels"] == 0
    p3.close()


def test_alwb_ingest_cli_prints_the_report_and_exits_0(tmp_path):
    images, p, labelled = _labelled_project(tmp_path)
    events_before = p.store.events()
    p.close()
    for i in range(3):
        _png(images / "red" / f"late{i}.png", CLASSES["red"], seed=7000 + i)
    (images / labelled[1]).unlink()
    (images / "blue" / "empty.png").write_bytes(b"")
    r = _alwb("ingest", tmp_path / "proj", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    head = r.stdout.splitlines()[0]
    assert "3 new, 0 changed, 1 removed" in head and "3 embedded (cache 36 -> 39 images)" in head, r.stdout
    assert "skipped blue/empty.png: empty file" in r.stdout
    assert f"labelled but missing (labels kept in the store) (1): {labelled[1]}" in r.stdout
    assert "red/late0.png" in r.stdout

    r = _alwb("ingest", tmp_path / "proj", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["new"] == [] and rep["embedded"] == 0 and rep["labelled_missing"] == [labelled[1]]
    assert {"path": "blue/empty.png", "reason": rep["skipped"][0]["reason"]} in rep["skipped"]
    p = Project.open(tmp_path / "proj")
    assert p.store.events() == events_before
    p.close()


def test_ingest_of_a_csv_manifest_finds_new_rows(tmp_path):
    images = make_folder(tmp_path / "images", per_class=3)
    manifest = tmp_path / "images" / "m.csv"
    rows = [f"{name}/{name}{i}.png,{name}" for name in CLASSES for i in range(3)]
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")
    p = Project.init(tmp_path / "proj", str(manifest))
    assert p.ingest().embedded == 9
    _png(images / "red" / "extra.png", CLASSES["red"], seed=42)
    manifest.write_text("path,label\n" + "\n".join(rows[1:] + ["red/extra.png,red"]) + "\n")
    rep = p.ingest()
    assert rep.kind == "csv" and rep.new == ["red/extra.png"] and rep.removed == ["red/red0.png"]
    assert rep.embedded == 1 and rep.unchanged == 8
    p.close()


def test_builtin_dataset_ingest_says_it_does_not_change(tmp_path):
    p = Project.init(tmp_path / "proj", "digits", source={"limit": 50})
    rep = p.ingest()
    assert rep.builtin and rep.embedded == 0 and rep.new == [] and rep.unchanged == 50
    p.close()
    r = _alwb("ingest", tmp_path / "proj")
    assert r.returncode == 0 and "built-in dataset 'digits' does not change: nothing to ingest" in r.stdout


def test_alwb_ingest_watch_reports_a_dropped_file_and_exits_cleanly_on_ctrl_c(tmp_path):
    images = make_folder(tmp_path / "images", per_class=4)
    Project.init(tmp_path / "proj", str(images)).close()
    proc = subprocess.Popen([sys.executable, "-m", "alworkbench.cli", "ingest", str(tmp_path / "proj"), "--watch",
                             "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    lines: queue.Queue = queue.Queue()
    def read() -> None:
        for ln in proc.stdout:
            lines.put(ln)
        lines.put(None)  # end of output

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seen: list[str] = []

    def wait_for(pred, timeout=240.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ln = lines.get(timeout=0.5)
            except queue.Empty:
                assert proc.poll() is None, f"alwb ingest --watch exited early: {seen} {proc.stderr.read()}"
                continue
            assert ln is not None, f"alwb ingest --watch ended early: {seen}"
            seen.append(ln)
            if pred(ln):
                return ln
        raise AssertionError(f"no matching line before the deadline; output so far: {seen}")

    try:
        wait_for(lambda ln: ln.startswith("watching "))
        _png(images / "blue" / "dropped.png", CLASSES["blue"], seed=31337)
        line = wait_for(lambda ln: "blue/dropped.png" in ln)
        assert line.strip() == "new (1): blue/dropped.png"
        assert any("1 new, 0 changed, 0 removed" in ln and "1 embedded" in ln for ln in seen), seen
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
        reader.join(timeout=60)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    while not lines.empty():
        ln = lines.get()
        if ln is not None:
            seen.append(ln)
    rest = "".join(seen)
    summary = [ln for ln in rest.splitlines() if ln.startswith("watch stopped after ")]
    assert len(summary) == 1 and "1 new, 0 changed, 0 removed, 1 embedded" in summary[0], rest
    assert "Traceback" not in err
