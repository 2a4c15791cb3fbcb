"""TorchHead timings: fit on 1000 labelled x 512-d rows, predict_proba on 60k and 1M rows.

    .venv/bin/python bench/bench_head.py [--device cpu|cuda] [--kind linear|mlp]
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--kind", default=None, help="linear or mlp (default: both)")
    ap.add_argument("--dim", type=int, default=512)
    args = ap.parse_args()
    from alworkbench.head.torch_head import TorchHead

    rng = np.random.default_rng(0)
    k, d = 10, args.dim
    centers = rng.normal(0, 1, (k, d)).astype(np.float32)
    y = rng.integers(0, k, 1000)
    X = centers[y] + rng.normal(0, 2, (1000, d)).astype(np.float32)
    big = rng.normal(0, 1, (1_000_000, d)).astype(np.float32)
    for kind in ([args.kind] if args.kind else ["linear", "mlp"]):
        head = TorchHead(kind=kind, device=args.device)
        head.fit(X[:50], y[:50])  # warm-up (imports, kernels)
        t = time.perf_counter()
        head.fit(X, y)
        fit = time.perf_counter() - t
        t = time.perf_counter()
        p60 = head.predict_proba(big[:60_000])
        t60 = time.perf_counter() - t
        t = time.perf_counter()
        p1m = head.predict_proba(big)
        t1m = time.perf_counter() - t
        assert p60.shape == (60_000, k) and p1m.shape == (1_000_000, k)
        print(f"TorchHead(kind={kind}, device={args.device}) d={d}: fit 1000 rows {fit:.3f}s "
              f"({head.n_iter_} steps), predict_proba 60k {t60:.3f}s, 1M {t1m:.2f}s")


if __name__ == "__main__":
    main()
