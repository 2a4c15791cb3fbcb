"""Issue 8 lever: how much of a linear-head fit is OpenBLAS threading? The same 1,000-label fit of the project's
linear head (TorchHead, CPU L-BFGS-B) with OpenBLAS's default threads and with one BLAS thread (threadpoolctl), in
the same run, alternating, with held-out accuracy beside the time (so speed is not bought with a worse model).

Fashion-MNIST with the default backbone's cached features (bench/fmnist.py ``embedded()``), 1,000 training images
drawn at random (seed 0), accuracy on the 10,000 test images. Run it on a quiet machine and on a loaded one (the
spin-waiting of OpenBLAS's threads is what a loaded 2-core machine pays):

    .venv/bin/python bench/bench_blas_threads.py --repeats 3 --json bench/results/blas_threads.json

Not used by the head: limiting the threads from the training worker toggles OpenBLAS's process-wide thread count,
which races with scikit-learn's own ``threadpool_limits`` (KMeans on the main thread) and made OpenBLAS print
"Detect OpenMP Loop and this application may hang"; a fit in its own process with one BLAS thread is the safe form.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fmnist  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--labelled", type=int, default=1000)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    from threadpoolctl import threadpool_info, threadpool_limits

    from alworkbench.head.torch_head import TorchHead

    out = fmnist.embedded()
    X, y, ev = out[0], out[1], np.asarray(out[2], bool)
    rng = np.random.default_rng(0)
    idx = rng.choice(np.flatnonzero(~ev), a.labelled, replace=False)

    def fit(one_thread: bool) -> dict:
        h = TorchHead(kind="linear", device="cpu", random_state=0)
        t = time.perf_counter()
        if one_thread:
            with threadpool_limits(limits=1, user_api="blas"):
                h.fit(X[idx], y[idx])
        else:
            h.fit(X[idx], y[idx])
        s = time.perf_counter() - t
        return {"seconds": s, "iterations": int(h.n_iter_), "accuracy": float((h.predict(X[ev]) == y[ev]).mean())}

    runs = {"default_threads": [], "one_blas_thread": []}
    for _ in range(a.repeats):
        runs["default_threads"].append(fit(False))
        runs["one_blas_thread"].append(fit(True))
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    res = {"command": "python bench/bench_blas_threads.py" + (f" --repeats {a.repeats}" if a.repeats != 3 else "")
                      + (f" --json {a.json}" if a.json else ""),
           "labelled": a.labelled, "dim": int(X.shape[1]), "runs": runs, "median_seconds": med,
           "ratio_default_to_one_thread": med["default_threads"] / med["one_blas_thread"],
           "blas": [{"api": i["internal_api"], "threads": i["num_threads"]} for i in threadpool_info()],
           "load_average": list(os.getloadavg()), "machine": {"cpu_count": os.cpu_count(),
                                                              "python": platform.python_version()}}
    for k, v in runs.items():
        print(f"{k:16s} median {med[k]:.3f} s per fit; runs "
              + ", ".join(f"{r['seconds']:.2f} s ({r['iterations']} it, acc {r['accuracy']:.4f})" for r in v))
    print(f"ratio default / one thread = {res['ratio_default_to_one_thread']:.1f}x "
          f"(load average {res['load_average'][0]:.1f} on {os.cpu_count()} cores)")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
