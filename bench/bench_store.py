"""Label-store throughput: committed answers per second with synchronous=FULL (the default) vs NORMAL.

Each ``record`` is its own committed transaction (what a person pressing a key causes), so this measures the
real per-answer cost including the fsync. Also prints per-answer latency percentiles and the time to derive
labels / coverage from the event log, which the session does on every retrain. A person answers at most a
few items per second; the store must stay far above that.

    .venv/bin/python bench/bench_store.py --n 2000
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from alworkbench.labels import LabelStore
from alworkbench.types import Answer, Prediction

CLASSES = [str(i) for i in range(10)]


def run(path: Path, n: int, synchronous: str) -> dict:
    lat: list[float] = []
    with LabelStore(path, synchronous=synchronous) as store:
        pred = Prediction(top=(("3", 0.6), ("5", 0.3), ("8", 0.1)), model_version=1)
        t0 = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            store.record(f"item/{i}", Answer.of_label(CLASSES[i % 10], time_spent_s=1.2), round=i // 20,
                         annotator="bench", batch_id=f"b{i // 20}", model_version=1, strategy="margin",
                         score=0.5, prediction=pred)
            lat.append(time.perf_counter() - t)
        total = time.perf_counter() - t0
        t = time.perf_counter()
        labels = store.labels()
        counts = store.counts(CLASSES, multilabel=False)
        derive = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(20):
            store.undo()
        undo = (time.perf_counter() - t) / 20
    assert len(labels) == n and sum(counts.values()) == n
    lat.sort()
    return {"rate": n / total, "p50_ms": 1000 * statistics.median(lat), "p99_ms": 1000 * lat[int(0.99 * (n - 1))],
            "derive_ms": 1000 * derive, "undo_ms": 1000 * undo}


def derive_at_scale(path: Path, n: int) -> dict:
    """Time the derived reads the session uses on a store holding ``n`` answers."""
    with LabelStore(path, synchronous="NORMAL") as store:
        for i in range(n):
            store.record(f"item/{i}", Answer.of_label(CLASSES[i % 10]), round=i // 20, annotator="bench")
        out = {}
        for name, fn in (("labels", store.labels),
                         ("counts", lambda: store.counts(CLASSES, multilabel=False)),
                         ("answered_ids(batch)", lambda: store.answered_ids(batch_id="b1")),
                         ("active_answers", store.active_answers)):
            t = time.perf_counter()
            fn()
            out[name] = 1000 * (time.perf_counter() - t)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="answers to record per mode")
    ap.add_argument("--scale", type=int, default=20000, help="answers in the store for the derive timings")
    ap.add_argument("--dir", default=None, help="folder for the test files (default: a temporary folder)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        res = {mode: run(Path(d) / f"{mode.lower()}.sqlite", args.n, mode) for mode in ("FULL", "NORMAL")}
        scale = derive_at_scale(Path(d) / "scale.sqlite", args.scale)
    print(f"label store, {args.n} answers, one committed transaction each (WAL)")
    print(f"{'synchronous':<12} {'answers/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'derive ms':>10} {'undo ms':>8}")
    for mode, r in res.items():
        print(f"{mode:<12} {r['rate']:>10.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['derive_ms']:>10.1f}"
              f" {r['undo_ms']:>8.2f}")
    ratio = res["NORMAL"]["rate"] / res["FULL"]["rate"]
    print(f"NORMAL/FULL throughput ratio: {ratio:.2f}x; FULL is {res['FULL']['rate'] / 10:.0f}x a fast human "
          f"(10 answers/s)")
    print(f"derived reads on a store with {args.scale} answers: "
          + ", ".join(f"{k} {v:.0f} ms" for k, v in scale.items()))


if __name__ == "__main__":
    main()
