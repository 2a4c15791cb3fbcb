"""Render the README's benchmark tables from the raw JSON the bench scripts keep under bench/results/.

The README quotes these blocks verbatim; tests/unit/test_issue9_bench_honesty.py renders them again from the JSON
and checks that each one appears in README.md, so a figure in the README is always one that a kept run produced
(and the command that produced it is printed beside it).

    .venv/bin/python bench/readme_tables.py            # prints every block
    .venv/bin/python bench/readme_tables.py --write    # rewrites the blocks between <!-- bench:NAME --> markers
"""
from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def _at(curve: list, n: int) -> str:
    for r in curve:
        if r["n_labels"] == n:
            return f"{r['accuracy']:.4f}"
    return "-"


def _fit_line(res: dict) -> str:
    """Mean seconds per background retrain and models trained per run: how stale the async batches were."""
    fits, models = [], []
    for by_seed in res["results"].values():
        for curve in by_seed.values():
            if curve and curve[-1].get("mean_fit_seconds") is not None:
                fits.append(curve[-1]["mean_fit_seconds"])
                models.append(curve[-1].get("n_models", 0))
    if not fits:
        return "retrain time not recorded"
    span = lambda lo, hi, f: f.format(lo) if f.format(lo) == f.format(hi) else f.format(lo) + "-" + f.format(hi)  # noqa: E731
    return (f"a background retrain took {span(min(fits), max(fits), '{:.1f}')} s on average per run, "
            f"{span(min(models), max(models), '{}')} models per run")


def _clock(res: dict) -> str:
    """How the answers were paced: real time (the annotator sleeps) or the virtual clock (fits cost their measured
    time, nothing sleeps)."""
    return " on the virtual clock" if res.get("clock") == "virtual" else " in real time"


def label_efficiency_md(res: dict | None = None) -> str:
    res = res or _load("label_efficiency_fmnist.json")
    summ = res["summary"]
    budget = res["budget"]
    lines = [f"`{res['command']}` — {res['dataset']}, {res['n_pool']} pool, {res['n_eval']} held-out test images, "
             f"backbone `{res['backbone']}`, batches of {res['batch_size']} after {res['initial']}, seeds "
             f"{','.join(map(str, res['seeds']))}, {res['mode']} loop (one answer every "
             f"{res['pace_seconds_per_answer']} s{_clock(res)}; {_fit_line(res)}). random's accuracy at {budget} labels: "
             f"**{summ['baseline_final_accuracy']:.4f}**.", "",
             f"| strategy | @ 200 | @ 400 | @ {budget} | labels to reach random@{budget} | worst round vs random "
             f"| mean over the curve |",
             "|---|---|---|---|---|---|---|"]
    for s, e in summ["strategies"].items():
        c = e["mean_curve"]
        reach = e.get("labels_to_reach_baseline_final")
        lines.append(f"| {s} | {_at(c, 200)} | {_at(c, 400)} | {_at(c, budget)} | {reach if reach else 'never'} | "
                     f"{e['worst_gap_vs_baseline'] * 100:+.2f} pts | {e['mean_accuracy_over_curve']:.4f} |")
    return "\n".join(lines)


def small_sets_md(res: dict | None = None) -> str:
    res = res or _load("small_sets_20seeds.json")
    lines = [f"`{res['command']}`", "",
             "| set | budget (batch) | seeds | strategy | mean over the curve, async | worst round vs random, async "
             "| mean over the curve, sync | worst round vs random, sync |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in res["sets"].items():
        for s, e in r["summary"]["strategies"].items():
            sy = r.get("summary_sync", {}).get("strategies", {}).get(s)
            sync_cells = (f"{sy['mean_accuracy_over_curve']:.4f} | {sy['worst_gap_vs_baseline'] * 100:+.2f} pts"
                          if sy else "- | -")
            lines.append(f"| {name} ({r['n_pool']} pool, {r['n_eval']} held out) | {r['budget']} ({r['batch_size']}) "
                         f"| {len(r['seeds'])} | {s} | {e['mean_accuracy_over_curve']:.4f} | "
                         f"{e['worst_gap_vs_baseline'] * 100:+.2f} pts | {sync_cells} |")
    return "\n".join(lines)


def turnaround_md(res: dict | None = None) -> str:
    res = res or _load("turnaround.json")
    rs = res["results"]
    ours = rs["ours"]["median_seconds"]
    lines = [f"`{res['command']}` — median seconds per round, 60,000-image pool, 1,000 labels, batch 20, CPU", "",
             "| head | to a fresh selection | whole round | test accuracy | ratio vs ours (to selection / whole round) |",
             "|---|---|---|---|---|"]
    lines.append(f"| ours (warm-started L-BFGS; calibration after landing: {ours['calibrate (after)']:.3f} s) | "
                 f"{ours['total']:.3f} | {ours['incl. calibration']:.3f} | {rs['ours']['test_accuracy']:.4f} | - |")
    for name, r in rs.items():
        if name == "ours":
            continue
        t = r["median_seconds"]["total"]
        lines.append(f"| {name} | {t:.3f} | {t:.3f} | {r['test_accuracy']:.4f} | {r['ratio_vs_ours']:.1f}x / "
                     f"{r['ratio_vs_ours_incl_calibration']:.1f}x |")
    return "\n".join(lines)


def calibration_md(res: dict | None = None) -> str:
    res = res or _load("calibration.json")
    rows = res["rows"]
    lines = [f"`{res['command']}` — top-1 expected calibration error on the 10,000 test images (15 bins)", "",
             "| labels | seeds | test accuracy | mean top-1 confidence shown, before -> after | ECE before | ECE after "
             "| previous head (AdamW, uncalibrated): accuracy, confidence, ECE |",
             "|---|---|---|---|---|---|---|"]
    for n in sorted({r["n_labels"] for r in rows}):
        sel = [r for r in rows if r["n_labels"] == n]
        m = lambda k: sum(r[k] for r in sel) / len(sel)  # noqa: E731
        lines.append(f"| {n} | {len(sel)} | {m('test_accuracy'):.4f} | {m('mean_confidence_before'):.3f} -> "
                     f"{m('mean_confidence_after'):.3f} | {m('ece_before'):.4f} | {m('ece_after'):.4f} | "
                     f"{m('test_accuracy_previous_head'):.4f}, {m('mean_confidence_previous_head'):.3f}, "
                     f"{m('ece_previous_head'):.4f} |")
    return "\n".join(lines)


def quality_md(res: dict | None = None) -> str:
    res = res or _load("quality.json")
    summ = res["summary"]
    noise = ", ".join(f"{k} {v:.0%}" for k, v in res["noise"].items())
    lines = [f"`{res['command']}` — {res['dataset']}, features {res['features']} of `{res['backbone']}`, "
             f"{res['n_eval']} held-out test images, two annotators ({noise} of answers wrong) taking turns, "
             f"batches of {res['batch_size']}, {res['n_gold']} gold items, a perfect reviewer with "
             f"{res['review_budget_per_batch']} reviews per batch, seeds {','.join(map(str, res['seeds']))}", "",
             f"| arm | held-out accuracy at {res['labels']} labels | vs noise-free | wrong training labels "
             "| answers given | hidden-gold answers | reviews |",
             "|---|---|---|---|---|---|---|"]
    gaps = {"raw": summ["gap_points"]["raw_vs_noise_free"], "quality": summ["gap_points"]["quality_vs_noise_free"]}
    for arm in ("noise_free", "raw", "quality"):
        e = summ[arm]
        g = gaps.get(arm)
        gap = "-" if g is None else f"{g['mean']:+.2f} ± {g['std']:.2f} pts"
        lines.append(f"| {arm} | {e['accuracy']['mean']:.4f} ± {e['accuracy']['std']:.4f} | {gap} | "
                     f"{e['wrong_share']['mean']:.1%} | {e['answers']['mean']:.0f} | {e['gold_answers']['mean']:.0f} | "
                     f"{e['reviews']['mean']:.0f} |")
    return "\n".join(lines)


def routing_md(res: dict | None = None) -> str:
    res = res or _load("routing.json")
    summ = res["summary"]
    n_pool = res["runs"][0].get("n_pool", "") if res.get("runs") else ""
    lines = [f"`{res['command']}` — {res['dataset']}, features {res['features']} of `{res['backbone']}`, "
             f"{res['labels']} human labels ({res['strategy']}), target precision {res['target_precision']}, "
             f"seeds {','.join(map(str, res['seeds']))}; every other pool image is routed{f' ({n_pool})' if n_pool else ''}",
             "", "| rule | auto-accepted share of the pool | realised precision (true labels) | worst seed |",
             "|---|---|---|---|"]
    for key, name in (("routed", f"per-class thresholds, calibrated out-of-fold (target {res['target_precision']})"),
                      (f"baseline_fixed_{res['baseline_threshold']}",
                       f"fixed {res['baseline_threshold']} on the raw head probability")):
        e = summ[key]
        lines.append(f"| {name} | {e['share']['mean']:.1%} ± {e['share']['std']:.1%} | "
                     f"{e['precision']['mean']:.4f} ± {e['precision']['std']:.4f} | {min(e['precision']['values']):.4f} |")
    return "\n".join(lines)


INGEST_COMMAND = "python bench/bench_ingest_incremental.py --json bench/results/ingest_incremental.json"


def ingest_md(res: dict | None = None) -> str:
    res = res or _load("ingest_incremental.json")
    return "\n".join([
        f"`{res.get('command', INGEST_COMMAND)}` — {res['n_before']:,} images ({res['image']}), then {res['n_added']:,} added; backbone "
        f"`{res['backbone']}`, {res['cpu_count']} CPU cores", "",
        "| run | images embedded (counted in the cache) | seconds |", "|---|---|---|",
        f"| incremental `alwb ingest` after adding {res['n_added']:,} | {res['embedded_counted_in_cache']:,} | "
        f"{res['incremental_s']:.2f} |",
        f"| full re-embed of all {res['full_embedded']:,} | {res['full_embedded']:,} | {res['full_reembed_s']:.2f} |",
        "", f"Ratio incremental / full: {res['ratio_incremental_to_full']:.3f}; existing store events and labels "
            f"identical before and after: {res['store_events_and_labels_identical']}."])


#: issue 12's second pass: the same command on the code before it and after it (each file one run, in this order)
UI_LATENCY_RUNS = [
    ("before (code at e28b89b), run 1", "ui_latency_issue12_pass2_before.json"),
    ("before (code at e28b89b), run 2", "ui_latency_issue12_pass2_before_run2.json"),
    ("after: no waiting for images ahead, 1/4-scale JPEG decode (629739a)", "ui_latency_issue12_pass2.json"),
    ("after + the fit helper at nice 10 (a6b990c), run 1", "ui_latency_issue12_pass2_run2.json"),
    ("after + the fit helper at nice 10 (a6b990c), run 2", "ui_latency_issue12_pass2_run3.json"),
]


def ui_latency_md(res: dict | None = None) -> str:
    """Key press -> next image painted, per run: back to back and with a 1 s pause, with the models trained
    meanwhile and the machine's load."""
    res = res or _load("ui_latency_issue12_pass2.json")
    args = res["args"]
    lines = [f"`python bench/bench_ui_latency.py --photos {args['photos']} --presses {args['presses']} --scenarios photos "
             f"--think-ms 0,1000 --backbone {args['backbone']} --backbone-weights {args['backbone_weights']} "
             f"--json bench/results/FILE` — {res['machine']['cpu_count']} CPU cores, Chromium headless, a fit "
             "after every answer meanwhile", "",
             "| code | file | back to back: median / p90 (models trained) | 1 s pause: median / p90 (models trained) "
             "| load at start / end | goal met (both) |", "|---|---|---|---|---|---|"]
    for label, name in UI_LATENCY_RUNS:
        if not (RESULTS / name).exists():
            continue
        r = _load(name)
        sc = r["scenarios"]
        cells = []
        met = []
        for key in ("photos", "photos+think1000ms"):
            pm = sc[key]["painted_ms"]
            cells.append(f"{pm['median']:.0f} / {pm['p90']:.0f} ms ({sc[key]['models_trained_during_run']})")
            met.append(bool(sc[key]["goal_met"]) and sc[key]["all_answers_stored"])
        m = r["machine"]
        lines.append(f"| {label} | `{name}` | {cells[0]} | {cells[1]} | {m['loadavg_1min_at_start']:.1f} / "
                     f"{m['loadavg_1min_at_end']:.1f} | {'yes' if all(met) else 'no'} ({'yes' if met[0] else 'no'} / "
                     f"{'yes' if met[1] else 'no'}) |")
    return "\n".join(lines)


BLOCKS = {"label_efficiency_fmnist.json": label_efficiency_md,
          "turnaround.json": turnaround_md, "calibration.json": calibration_md, "quality.json": quality_md,
          "quality_budget10.json": quality_md, "routing.json": routing_md,
          "ingest_incremental.json": ingest_md, "ui_latency_issue12_pass2.json": ui_latency_md,
          "small_sets_20seeds.json": small_sets_md, "small_sets_person_pace.json": small_sets_md,
          "label_efficiency_fmnist_person_pace.json": label_efficiency_md}


def write_readme(readme: Path = RESULTS.parents[1] / "README.md") -> None:
    import re

    text = readme.read_text()
    for name, fn in BLOCKS.items():
        if not (RESULTS / name).exists():
            continue
        tag = name.removesuffix(".json")
        pat = re.compile(rf"(<!-- bench:{re.escape(tag)} -->\n)(?:.*?\n)?(<!-- /bench:{re.escape(tag)} -->)", re.S)
        block = fn(_load(name))
        text, n = pat.subn(lambda m: m.group(1) + block + "\n" + m.group(2), text)
        if n != 1:
            raise SystemExit(f"README.md has {n} <!-- bench:{tag} --> blocks; expected 1")
    readme.write_text(text)


if __name__ == "__main__":
    import sys

    if "--write" in sys.argv:
        write_readme()
    else:
        for name, fn in BLOCKS.items():
            if (RESULTS / name).exists():
                print(f"<!-- {name} -->\n{fn(_load(name))}\n")
