"""Time score + select for every query strategy on a large synthetic pool (no assertions; prints numbers).

Default: 1,000,000 x 512 float32 embeddings (2 GB) with 10-class probabilities, batch 100; goal <= 5 s per call
for the uncertainty strategies and diverse_margin. coreset subsamples pools above 20k items; cold_start fits
k-means on a 20k subsample. Every number comes from this run.

    .venv/bin/python bench/bench_query.py [--n 1000000] [--dim 512] [--batch 100] [--repeat 2]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from alworkbench.query import available_strategies, select


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--goal", type=float, default=5.0)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    t = time.perf_counter()
    # clustered embeddings (k-means has structure to find), float32 like the embedding cache
    centers = rng.normal(size=(50, args.dim)).astype(np.float32) * 3
    X = rng.standard_normal(size=(args.n, args.dim), dtype=np.float32)
    X += centers[rng.integers(0, 50, size=args.n)]
    logits = rng.standard_normal(size=(args.n, args.classes), dtype=np.float32) * 2
    proba = np.exp(logits - logits.max(1, keepdims=True))
    proba /= proba.sum(1, keepdims=True)
    X_lab = X[:1000].copy()
    y_lab = rng.integers(0, args.classes, size=1000)
    ml_proba = 1 / (1 + np.exp(-logits))
    print(f"pool {X.shape} {X.dtype}, proba {proba.shape}, batch {args.batch}, made in {time.perf_counter() - t:.1f} s")

    select("margin", 1, proba=proba[:10])  # first call imports modAL (which imports torch): not the strategy's cost
    rows = []
    for ml in (False, True):
        for name in available_strategies(multilabel=ml):
            if ml and name in ("random", "coreset", "cold_start"):
                continue  # same code as single-label
            p = ml_proba if ml else proba
            times = []
            for r in range(args.repeat):
                t = time.perf_counter()
                sel = select(name, args.batch, X_pool=X, proba=p, X_labelled=X_lab, y_labelled=y_lab,
                             multilabel=ml, rng=r)
                times.append(time.perf_counter() - t)
            best = min(times)
            rows.append((name + (" (ml)" if ml and name == "default" else ""), sel.strategy, best))
            print(f"  {rows[-1][0]:20s} -> {sel.strategy:17s} best {best:6.2f} s  (runs: "
                  f"{', '.join(f'{x:.2f}' for x in times)})  {best / args.goal:.2f}x of the {args.goal:g} s goal",
                  flush=True)
    t = time.perf_counter()
    select("margin", args.batch, X_pool=X, rng=0)  # no model: falls back to cold start
    print(f"  {'margin without model':20s} -> cold_start        {time.perf_counter() - t:6.2f} s")
    worst = max(b for _, _, b in rows)
    print(f"slowest: {worst:.2f} s = {worst / args.goal:.2f}x the goal of {args.goal:g} s")


if __name__ == "__main__":
    main()
