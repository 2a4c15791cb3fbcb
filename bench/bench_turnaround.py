"""Round turnaround on the same features: fit + predict the pool + score + select a batch, ours vs scikit-learn heads
as their users write them, each with its held-out accuracy (so speed is not bought with a worse model).

Data: Fashion-MNIST's 60,000 training images as the pool, embedded once with the project's default backbone
(randconv, 1024-d, cached), 1,000 labelled at random (seed 0), batches of 20; accuracy on the 10,000 test images.

ours      the session's round up to a fresh selection: TorchHead (linear, L-BFGS to convergence, warm-started from
          the previous round's head) + predict the pool (previous temperature) + select(default strategy).
          The session then calibrates on the same worker (5 stable folds, each warm-started from the previous
          round's fold head) before the round report; that time is printed beside, and "ours incl. calibration"
          is the whole round.
LR        make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)) (lbfgs, converged; C=1, scikit-learn's
          default) + predict_proba + modAL margin_sampling -- what a modAL user writes (ActiveLearner.teach is broken
          on scikit-learn >= 1.8, so the estimator is fitted directly and modAL's query function is called on it).
SGD       make_pipeline(StandardScaler(), SGDClassifier(loss="log_loss")) + the same.
LR, 1 BLAS thread: the LR round under threadpoolctl's one-BLAS-thread limit (informational: what an expert could do;
          ours gets this by fitting in a helper process with one BLAS thread, which leaves the kernel's settings alone).
Each round adds the chosen batch to the labelled set (true labels), --rounds rounds, median seconds per round. The
methods are interleaved round by round (this is a shared, noisy machine); the ratios come from the same run.

    .venv/bin/python bench/bench_turnaround.py [--rounds 3] --json bench/results/turnaround.json
"""
from __future__ import annotations

import argparse
import json
import os
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
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from modAL.uncertainty import margin_sampling
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from alworkbench.head import make_head_factory
    from alworkbench.loop.calibration import apply_temperature, calibrate, chance_corrected, stable_folds
    from alworkbench.query import DEFAULT_STRATEGY, select

    Xall, yall, ev, classes, backbone = fmnist.embedded()
    X, y, Xt, yt = Xall[~ev], yall[~ev], Xall[ev], yall[ev]
    rng = np.random.default_rng(0)
    lab0 = np.zeros(len(X), dtype=bool)
    lab0[rng.choice(len(X), size=args.labelled, replace=False)] = True
    factory = make_head_factory({"device": args.device})
    print(f"Fashion-MNIST pool {X.shape[0]} x {X.shape[1]} ({backbone} features), {args.labelled} "
          f"labelled, batch {args.batch}, {args.rounds} rounds", flush=True)

    state = {"prev": None, "folds": None, "T": 1.0}

    def round_ours(labelled):
        t0 = time.perf_counter()
        head = factory()
        if state["prev"] is not None:
            head.set_params(warm_start_from=state["prev"])
        head.fit(X[labelled], y[labelled])
        t1 = time.perf_counter()
        pool = np.flatnonzero(~labelled)
        Xp = X[pool]
        proba = apply_temperature(head.predict_proba(Xp), state["T"])
        t2 = time.perf_counter()
        sel = select(DEFAULT_STRATEGY, args.batch, X_pool=Xp, proba=proba, X_labelled=X[labelled],
                     y_labelled=y[labelled], rng=0, model_skill=state.get("skill"))
        t3 = time.perf_counter()
        lab_idx = np.flatnonzero(labelled)
        cal = calibrate(factory, X[lab_idx], y[lab_idx], False, len(classes), warm_from=head,
                        folds=stable_folds([str(i) for i in lab_idx]), warm_fold_heads=state["folds"])
        t4 = time.perf_counter()
        state.update(prev=head, folds=cal.fold_heads, T=cal.temperature,
                     skill=chance_corrected(cal.cv_accuracy, len(classes)))
        return pool[sel.indices], {"fit": t1 - t0, "predict": t2 - t1, "select": t3 - t2, "total": t3 - t0,
                                   "calibrate (after)": t4 - t3, "incl. calibration": t4 - t0}, head

    def round_sklearn(make):
        def run(labelled):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                est = make().fit(X[labelled], y[labelled])
            t1 = time.perf_counter()
            pool = np.flatnonzero(~labelled)
            idx, _ = margin_sampling(est, X[pool], n_instances=args.batch)
            t2 = time.perf_counter()
            return pool[idx], {"fit": t1 - t0, "predict+select": t2 - t1, "total": t2 - t0}, est
        return run

    lr = round_sklearn(lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)))
    sgd = round_sklearn(lambda: make_pipeline(StandardScaler(), SGDClassifier(loss="log_loss", random_state=0)))
    round_ours(lab0)  # warm-up (imports, first-call costs) outside the timings; also gives round 1 a previous head
    lr(lab0)
    sgd(lab0)

    def lr_one_thread(labelled):
        # what an expert scikit-learn user could add: OpenBLAS held to one thread around the round (informational)
        from threadpoolctl import threadpool_limits
        with threadpool_limits(limits=1, user_api="blas"):
            return lr(labelled)

    methods = (("ours", round_ours), ("LogisticRegression (lbfgs, converged)", lr),
               ("SGDClassifier (log_loss)", sgd),
               ("LogisticRegression, one BLAS thread (informational)", lr_one_thread))
    # interleaved: round r of every method runs back to back, so load changes on this shared machine hit all alike
    labelled = {name: lab0.copy() for name, _ in methods}
    timings = {name: [] for name, _ in methods}
    models = {}
    for _ in range(args.rounds):
        for name, fn in methods:
            picked, t, models[name] = fn(labelled[name])
            timings[name].append(t)
            labelled[name][picked] = True
    results = {}
    for name, _ in methods:
        acc = float((models[name].predict(Xt) == yt).mean())
        med = {k: statistics.median(t[k] for t in timings[name]) for k in timings[name][0]}
        results[name] = {"median_seconds": med, "rounds": [t["total"] for t in timings[name]], "test_accuracy": acc}
        parts = ", ".join(f"{k} {v:.3f}" for k, v in med.items())
        print(f"  {name:52s} median s/round: {parts}   test accuracy {acc:.4f}", flush=True)
    ours = results["ours"]
    for name, r in results.items():
        if name != "ours":
            ratio = r["median_seconds"]["total"] / ours["median_seconds"]["total"]
            ratio_all = r["median_seconds"]["total"] / ours["median_seconds"]["incl. calibration"]
            r["ratio_vs_ours"] = ratio
            r["ratio_vs_ours_incl_calibration"] = ratio_all
            print(f"ratio {name} / ours = {ratio:.1f}x to a fresh selection ({ratio_all:.1f}x counting our "
                  f"calibration too); accuracy ours - {name.split()[0]} = "
                  f"{(ours['test_accuracy'] - r['test_accuracy']) * 100:+.2f} points")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"command": "python bench/bench_turnaround.py " + " ".join(sys.argv[1:]),
                                               "results": results, "load_average": list(os.getloadavg()),
                                               "cpu_count": os.cpu_count()}, indent=1))


if __name__ == "__main__":
    main()
