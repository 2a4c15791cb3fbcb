"""How the linear head's default C (inverse L2 strength) was chosen: on a VALIDATION split of the Fashion-MNIST
training pool (10,000 images held out of the 60,000), never on the 10,000 test images the benches report on.

    .venv/bin/python bench/choose_head.py [--sizes 100,1000] [--C 0.03,0.1,0.3,1]

Prints fit time, L-BFGS iterations, validation accuracy and log-loss for each (labelled-set size, C).
"""
from __future__ import annotations

import argparse
import time

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fmnist  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--C", default="0.03,0.1,0.3,1")
    a = ap.parse_args()
    from alworkbench.head import TorchHead

    X, y, ev, _, _ = fmnist.embedded()
    tr = np.flatnonzero(~ev)  # the training pool only
    perm = np.random.default_rng(1).permutation(tr)
    val, rest = perm[:10000], perm[10000:]
    for n in (int(s) for s in a.sizes.split(",")):
        lab = rest[:n]
        for C in (float(c) for c in a.C.split(",")):
            t = time.perf_counter()
            h = TorchHead(C=C, device="cpu").fit(X[lab], y[lab])
            dt = time.perf_counter() - t
            p = h.predict_proba(X[val])
            nll = -np.log(p[np.arange(len(val)), y[val]] + 1e-12).mean()
            print(f"n={n:5d} C={C:<5g} fit {dt:.3f} s, {h.n_iter_:3d} iterations, validation accuracy "
                  f"{(p.argmax(1) == y[val]).mean():.4f}, log-loss {nll:.3f}", flush=True)


if __name__ == "__main__":
    main()
