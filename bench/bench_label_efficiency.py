"""Label efficiency on Fashion-MNIST through the real session, as a person gets it: the asynchronous loop (the model
retrains in the background while the simulated annotator answers one image every --pace seconds; stale batches are
re-selected when a model lands). Every strategy against random, >= 3 seeds; --compare-sync adds the synchronous loop.

    .venv/bin/python bench/bench_label_efficiency.py --strategies random,default --batch-size 50 --initial 50 \
        --pace 0.05 --json bench/results/label_efficiency_fmnist.json

Prints the table, writes bench/out/label_efficiency.json, docs/learning_curves.png and docs/label_efficiency.md.
Goal: the default strategy reaches random's 1,000-label accuracy with <= 400 labels, and no round of it falls more
than 1 point below random.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alworkbench.loop.simulation import format_table, simulate  # noqa: E402
from alworkbench.plots import plot_learning_curves  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--strategies", default="random,default,margin,entropy,least_confidence,diverse_margin,coreset")
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--initial", type=int, default=50)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--backbone", default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out"))
    ap.add_argument("--pace", type=float, default=0.05, help="seconds per simulated answer")
    ap.add_argument("--mode", default="async", choices=["async", "sync"])
    ap.add_argument("--clock", default="real", choices=["real", "virtual"],
                    help="virtual: the asynchronous loop on a virtual clock (fits cost their measured time, nothing "
                         "sleeps), so a person's pace (--pace 1) runs in the time the fits take")
    ap.add_argument("--compare-sync", action="store_true")
    ap.add_argument("--json", default=None, help="also write the raw results here (e.g. bench/results/...)")
    a = ap.parse_args()
    t0 = time.perf_counter()
    res = simulate(a.dataset, strategies=a.strategies.split(","), budget=a.budget, batch_size=a.batch_size,
                   initial=a.initial, seeds=[int(s) for s in a.seeds.split(",")], backbone=a.backbone, limit=a.limit,
                   log=lambda m: print(m, flush=True), mode=a.mode, pace=a.pace, compare_sync=a.compare_sync,
                   clock=a.clock)
    res["command"] = "python bench/bench_label_efficiency.py " + " ".join(sys.argv[1:])
    wall = time.perf_counter() - t0
    table = format_table(res)
    print(table)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "label_efficiency.json").write_text(json.dumps(res, indent=1))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1))
    docs = ROOT / "docs"
    plot_learning_curves(res, docs / "learning_curves.png")
    summ = res["summary"]
    base = summ["baseline_final_accuracy"]
    fits = [c[-1].get("mean_fit_seconds") for by in res["results"].values() for c in by.values()]
    fits = [f for f in fits if f]
    lines = [f"Fashion-MNIST ({res['n_pool']} pool, {res['n_eval']} held-out test images), backbone "
             f"`{res['backbone']}`, head `{res['head']}`, batches of {a.batch_size} after {a.initial} cold-start "
             f"labels, seeds {a.seeds}, {a.mode} loop (one answer every {a.pace} s, {a.clock} clock; mean retrain "
             f"{(sum(fits) / len(fits)) if fits else float('nan'):.2f} s); `{res['command']}` "
             f"({wall / 60:.1f} min on 2 CPU cores).",
             "", f"random's accuracy at {a.budget} labels: **{base:.4f}**", "",
             "| strategy | accuracy @ 200 | @ 400 | @ 1000 | labels to reach random@1000 | worst round vs random |",
             "|---|---|---|---|---|---|"]
    for s, e in summ["strategies"].items():
        curve = {r["n_labels"]: r["accuracy"] for r in e["mean_curve"]}
        at = lambda n: f"{curve[n]:.4f}" if n in curve else "-"  # noqa: E731
        reach = e.get("labels_to_reach_baseline_final")
        gap = e.get("worst_gap_vs_baseline")
        lines.append(f"| {s} | {at(200)} | {at(400)} | {at(a.budget)} | {reach if reach else '-'} | "
                     f"{gap * 100:+.2f} pts |" if gap is not None else f"| {s} | | | | | |")
    (docs / "label_efficiency.md").write_text("\n".join(lines) + "\n")
    d = summ["strategies"].get("default", {})
    print(f"\ndefault reaches random@{a.budget} ({base:.4f}) with {d.get('labels_to_reach_baseline_final')} labels "
          f"(goal <= 400); worst round vs random {d.get('worst_gap_vs_baseline', 0) * 100:+.2f} points (goal >= -1)")
    print(f"wall time {wall:.0f} s; wrote {out / 'label_efficiency.json'}, docs/learning_curves.png, docs/label_efficiency.md")


if __name__ == "__main__":
    main()
