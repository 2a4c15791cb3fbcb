"""Label efficiency on Fashion-MNIST through the real session: every strategy against random, >= 3 seeds.

    .venv/bin/python bench/bench_label_efficiency.py [--budget 1000] [--batch-size 50] [--seeds 0,1,2]

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
    a = ap.parse_args()
    t0 = time.perf_counter()
    res = simulate(a.dataset, strategies=a.strategies.split(","), budget=a.budget, batch_size=a.batch_size,
                   initial=a.initial, seeds=[int(s) for s in a.seeds.split(",")], backbone=a.backbone, limit=a.limit,
                   log=lambda m: print(m, flush=True))
    wall = time.perf_counter() - t0
    table = format_table(res)
    print(table)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "label_efficiency.json").write_text(json.dumps(res, indent=1))
    docs = ROOT / "docs"
    plot_learning_curves(res, docs / "learning_curves.png")
    summ = res["summary"]
    base = summ["baseline_final_accuracy"]
    lines = [f"Fashion-MNIST ({res['n_pool']} pool, {res['n_eval']} held-out test images), backbone "
             f"`{res['backbone']}`, head `{res['head']}`, batches of {a.batch_size} after {a.initial} cold-start "
             f"labels, seeds {a.seeds}; `python bench/bench_label_efficiency.py` ({wall / 60:.1f} min on 2 CPU cores).",
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
