"""Round turnaround: retrain the head + score the pool + select a batch, ours vs modAL's own loop, same run.

Data: the real Fashion-MNIST 60k train images as the pool (784 raw pixels in [0, 1] as features), 1000 labelled
(random, fixed seed), batch 20, the 10k test images to report each head's accuracy (so the speed is not bought
with a worse model).

Ours:      TorchHead(kind="linear").fit(X_lab, y_lab); proba = head.predict_proba(X_pool);
           alworkbench.query.select(DEFAULT_STRATEGY, 20, X_pool=..., proba=...)
Baseline:  modAL as its users write it: ActiveLearner(estimator=LogisticRegression(...), query_strategy=
           margin_sampling, X_training=X_lab, y_training=y_lab) then learner.query(X_pool, n_instances=20).
           ActiveLearner.teach() and .fit() raise TypeError on scikit-learn >= 1.8 (check_X_y(force_all_finite)),
           so each round constructs a new ActiveLearner, whose __init__ fits the estimator (no check_X_y there).
           Two LogisticRegression settings: sklearn's default max_iter=100 (does not converge on raw pixels;
           ConvergenceWarning silenced) and max_iter=1000.
Prints seconds per round (median of --rounds), accuracy, and the ratios. No assertions.

    .venv/bin/python bench/bench_turnaround.py [--rounds 3] [--labelled 1000] [--batch 20] [--device cpu]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fmnist  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--labelled", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--device", default="cpu", help="TorchHead device (cpu, cuda, auto)")
    ap.add_argument("--strategy", default="default")
    args = ap.parse_args()

    from modAL.models import ActiveLearner
    from modAL.uncertainty import margin_sampling
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from alworkbench.head import TorchHead
    from alworkbench.query import DEFAULT_STRATEGY, select

    X, y = fmnist.load("train")
    Xt, yt = fmnist.load("t10k")
    rng = np.random.default_rng(0)
    lab = np.zeros(len(X), dtype=bool)
    lab[rng.choice(len(X), size=args.labelled, replace=False)] = True
    strategy = DEFAULT_STRATEGY if args.strategy == "default" else args.strategy
    print(f"Fashion-MNIST pool {X.shape[0]} x {X.shape[1]} raw pixels, {args.labelled} labelled, batch {args.batch}, "
          f"{args.rounds} rounds; ours = TorchHead(linear, {args.device}) + select('{strategy}')", flush=True)

    def round_ours(labelled):
        t0 = time.perf_counter()
        head = TorchHead(kind="linear", device=args.device, random_state=0).fit(X[labelled], y[labelled])
        t1 = time.perf_counter()
        pool = np.flatnonzero(~labelled)
        Xp = X[pool]
        proba = head.predict_proba(Xp)
        t2 = time.perf_counter()
        sel = select(strategy, args.batch, X_pool=Xp, proba=proba, X_labelled=X[labelled],
                     y_labelled=y[labelled], rng=0)
        t3 = time.perf_counter()
        return pool[sel.indices], {"fit": t1 - t0, "score": t2 - t1, "select": t3 - t2, "total": t3 - t0}, head

    def round_modal(labelled, max_iter):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            learner = ActiveLearner(estimator=LogisticRegression(max_iter=max_iter), query_strategy=margin_sampling,
                                    X_training=X[labelled], y_training=y[labelled])
        t1 = time.perf_counter()
        pool = np.flatnonzero(~labelled)
        idx, _ = learner.query(X[pool], n_instances=args.batch)
        t2 = time.perf_counter()
        return pool[idx], {"fit": t1 - t0, "score+select": t2 - t1, "total": t2 - t0}, learner

    # warm-up (imports, torch init, first-call costs) outside the timings, for both sides
    round_ours(lab)
    round_modal(lab, 100)

    results = {}
    for name, fn in (("ours", round_ours), ("modAL LR max_iter=100", lambda m: round_modal(m, 100)),
                     ("modAL LR max_iter=1000", lambda m: round_modal(m, 1000))):
        labelled = lab.copy()
        timings = []
        for _ in range(args.rounds):
            picked, t, model = fn(labelled)
            timings.append(t)
            labelled[picked] = True  # the oracle answers; next round has batch more labels
        acc = float((model.predict(Xt) == yt).mean())
        med = {k: statistics.median(t[k] for t in timings) for k in timings[0]}
        results[name] = med["total"]
        parts = ", ".join(f"{k} {v:.3f}" for k, v in med.items())
        totals = ", ".join(f"{t['total']:.2f}" for t in timings)
        print(f"  {name:24s} median s/round: {parts}   test acc {acc:.4f}   "
              f"(rounds: {totals})", flush=True)
    for name in results:
        if name != "ours":
            print(f"ratio {name} / ours = {results[name] / results['ours']:.1f}x")


if __name__ == "__main__":
    main()
