"""Confidence routing on Fashion-MNIST (issue 11): from 1,000 human labels, how much of the rest is auto-accepted at
target precision 0.98, and how precise is it really?

Per seed, one real :class:`~alworkbench.loop.session.Session` on a project with the 60,000 Fashion-MNIST training
images as its pool (the 10,000 test images are held out and never routed): the Oracle answers ``--labels`` (1,000)
images chosen at random (``--strategy random``, one batch; ``--strategy default`` labels them in batches of 100 with
the project's default strategy, retraining after each), the linear head is retrained (temperature-calibrated on
out-of-fold predictions of those labels, 5 stable folds), and ``session.auto_label()`` writes an ``auto_label``
record for every pool image whose calibrated top prediction reaches its class threshold (thresholds chosen on the
out-of-fold predictions, :mod:`alworkbench.loop.routing`: ``routing.target_precision`` 0.98, ``min_support`` 30).
Measured against the true labels: the share of the other ~59,000 pool images auto-accepted and their realised
precision (overall and per class), beside the baseline a user would write without calibration: accept the raw head
probability's top class when it is >= 0.9 (one fixed threshold). Also kept: the ``routing.review_sample`` (5%)
share sampled into review and the precision a perfect reviewer would measure on it, with its Wilson interval.

Features: the project's offline default backbone (randconv) embeddings (``fmnist.embedded()``'s cache), reduced by
PCA to ``--dim`` (default 64) fitted on the pool without labels, as bench_quality.py does.

    .venv/bin/python bench/bench_routing.py --json bench/results/routing.json     # 3 seeds, 1,000 labels
    .venv/bin/python bench/bench_routing.py --seeds 0                               # a quick look

Goal (issue 11): realised precision >= target - 0.5 points.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BASELINE_THRESHOLD = 0.9


def load_features(dim: int = 64, seed: int = 0):
    """(base project, PCA-``dim`` features of the default backbone's Fashion-MNIST embeddings, float32)."""
    from alworkbench.loop.simulation import DEFAULT_WORKDIR, _base_project

    base = _base_project("fashion-mnist", None, DEFAULT_WORKDIR, None, None)
    X = base.embeddings(progress=False)
    if dim and dim < X.shape[1]:
        from sklearn.decomposition import PCA

        pool = np.flatnonzero(~base.eval_mask())
        X = PCA(n_components=dim, random_state=seed, svd_solver="randomized").fit(X[pool]).transform(X)
    return base, np.ascontiguousarray(X, dtype=np.float32)


def _precision(ok: np.ndarray) -> dict:
    from alworkbench.labels.quality import wilson

    n, k = int(len(ok)), int(np.sum(ok))
    lo, hi = wilson(k, n)
    return {"n": n, "correct": k, "precision": (k / n) if n else None, "ci_low": lo, "ci_high": hi}


def run_seed(base, X, seed: int, *, labels: int, strategy: str, target: float, min_support: int,
             review_sample: float, log=print) -> dict:
    from alworkbench import Project
    from alworkbench.loop.oracle import Oracle
    from alworkbench.loop.routing import AUTO_LABEL

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="alwb-routing-") as tmp:
        cfg = copy.deepcopy(base.config)
        cfg.query.strategy = strategy
        cfg.query.batch_size = labels if strategy == "random" else 100
        cfg.ui.calibrate = True
        cfg.routing.target_precision = float(target)
        cfg.routing.min_support = int(min_support)
        cfg.routing.review_sample = float(review_sample)
        proj = Project(Path(tmp), cfg)
        proj._source = base.source
        proj._embeddings = X
        s = proj.session(annotator="ana", embeddings=X, seed=seed, warm_start=False)
        oracle = Oracle(s, seed=seed)
        while len(s.labels()) < labels:
            oracle.label_batch(s.next_batch(min(cfg.query.batch_size, labels - len(s.labels()))))
            if strategy != "random":
                s.retrain()
        report = s.retrain()
        t_train = time.perf_counter() - t0
        truth = np.array(proj.source.ground_truth(), dtype=object)
        pool_before = s.pool_indices()
        t1 = time.perf_counter()
        res = s.auto_label()
        t_route = time.perf_counter() - t1
        recs = proj.store.records(AUTO_LABEL)
        idx = np.array([s.index_of(r["item_id"]) for r in recs], dtype=np.int64)
        lab = np.array([r["label"] for r in recs], dtype=object)
        ok = lab == truth[idx] if len(idx) else np.zeros(0, bool)
        sampled = np.array([bool(r["sampled"]) for r in recs], dtype=bool)
        per_class = {}
        for c in cfg.classes:
            m = lab == c
            per_class[c] = {"threshold": res["thresholds"]["thresholds"][c], "auto": int(m.sum()),
                            "precision": float(ok[m].mean()) if m.any() else None,
                            "oof": res["thresholds"]["stats"][c]}
        # the baseline: the raw (uncalibrated) head probabilities, one fixed threshold
        raw, classes = s._full_proba(s.model)
        rp = raw[pool_before]
        base_acc = rp.max(axis=1) >= BASELINE_THRESHOLD
        base_ok = np.array(classes, dtype=object)[rp.argmax(axis=1)] == truth[pool_before]
        out = {"seed": seed, "labels": len(s.labels()), "cv_accuracy": report.cv_accuracy,
               "temperature": report.temperature, "held_out_accuracy": report.accuracy,
               "n_pool": int(len(pool_before)),
               "routed": {"auto": int(len(recs)), "share": len(recs) / len(pool_before), **_precision(ok),
                          "classes_with_threshold": sum(t is not None for t in res["thresholds"]["thresholds"].values())},
               "review_sample": {"n": int(sampled.sum()), **_precision(ok[sampled])},
               "baseline_fixed_0.9": {"auto": int(base_acc.sum()), "share": float(base_acc.mean()),
                                      **_precision(base_ok[base_acc])},
               "per_class": per_class, "train_s": t_train, "route_s": t_route,
               "wall_s": time.perf_counter() - t0}
        s.close()
        proj.close()
    r, b = out["routed"], out["baseline_fixed_0.9"]
    log(f"  seed {seed}: calibrated routing {r['share']:.1%} auto-accepted at precision {r['precision']:.4f} "
        f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}] | fixed 0.9 (raw) {b['share']:.1%} at {b['precision']:.4f} | "
        f"T {out['temperature']:.2f}, cv acc {out['cv_accuracy']:.3f} | {out['wall_s']:.0f} s")
    return out


def _ms(xs):
    xs = [float(x) for x in xs]
    return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0, "values": xs}


def summarize(runs: list[dict], target: float) -> dict:
    summ = {"routed": {"share": _ms(r["routed"]["share"] for r in runs),
                       "precision": _ms(r["routed"]["precision"] for r in runs)},
            "baseline_fixed_0.9": {"share": _ms(r["baseline_fixed_0.9"]["share"] for r in runs),
                                   "precision": _ms(r["baseline_fixed_0.9"]["precision"] for r in runs)},
            "review_sample_precision": _ms(r["review_sample"]["precision"] for r in runs)}
    worst = min(r["routed"]["precision"] for r in runs)
    summ["goal"] = {"target": target, "min_precision": target - 0.005, "worst_seed_precision": worst,
                    "met": bool(worst >= target - 0.005)}
    return summ


def run(seeds=(0, 1, 2), *, labels: int = 1000, strategy: str = "random", target: float = 0.98,
        min_support: int = 30, review_sample: float = 0.05, dim: int = 64, log=print) -> dict:
    t0 = time.perf_counter()
    base, X = load_features(dim)
    t_feat = time.perf_counter() - t0
    runs = [run_seed(base, X, int(s), labels=labels, strategy=strategy, target=target, min_support=min_support,
                     review_sample=review_sample, log=log) for s in seeds]
    return {"dataset": "fashion-mnist", "backbone": base.config.backbone.name, "features": f"PCA-{X.shape[1]}",
            "head": base.config.head.kind, "strategy": strategy, "labels": labels, "target_precision": target,
            "min_support": min_support, "review_sample": review_sample, "baseline_threshold": BASELINE_THRESHOLD,
            "seeds": [int(s) for s in seeds], "n_eval": int(base.eval_mask().sum()), "features_seconds": t_feat,
            "runs": runs, "summary": summarize(runs, target), "wall_s": time.perf_counter() - t0,
            "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform()}}


def format_summary(res: dict) -> str:
    s = res["summary"]
    lines = [f"Fashion-MNIST, {res['features']} of {res['backbone']} embeddings, {res['head']} head, "
             f"{res['labels']} human labels ({res['strategy']}), target precision {res['target_precision']}, "
             f"seeds {res['seeds']}; the other {res['runs'][0]['n_pool']} pool images routed",
             f"{'':>28s}  {'auto-accepted':>16s}  {'realised precision':>18s}",
             f"{'calibrated per-class':>28s}  {s['routed']['share']['mean']:7.1%} ± {s['routed']['share']['std']:.1%}  "
             f"{s['routed']['precision']['mean']:.4f} ± {s['routed']['precision']['std']:.4f}",
             f"{'uncalibrated fixed 0.9':>28s}  {s['baseline_fixed_0.9']['share']['mean']:7.1%} ± "
             f"{s['baseline_fixed_0.9']['share']['std']:.1%}  {s['baseline_fixed_0.9']['precision']['mean']:.4f} ± "
             f"{s['baseline_fixed_0.9']['precision']['std']:.4f}",
             f"review sample ({res['review_sample']:.0%} of auto labels) precision: "
             f"{s['review_sample_precision']['mean']:.4f} (what a perfect reviewer measures)"]
    g = s["goal"]
    lines.append(f"goal (realised precision >= {g['min_precision']:.3f} on every seed): "
                 f"{'met' if g['met'] else 'missed'} (worst seed {g['worst_seed_precision']:.4f})")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--labels", type=int, default=1000)
    ap.add_argument("--strategy", default="random", choices=["random", "default"])
    ap.add_argument("--target", type=float, default=0.98)
    ap.add_argument("--min-support", type=int, default=30)
    ap.add_argument("--review-sample", type=float, default=0.05)
    ap.add_argument("--dim", type=int, default=64, help="PCA dimensions of the embeddings (0: all)")
    ap.add_argument("--json", help="write the raw results here (e.g. bench/results/routing.json)")
    a = ap.parse_args(argv)
    seeds = [int(x) for x in a.seeds.split(",") if x.strip()]
    res = run(seeds, labels=a.labels, strategy=a.strategy, target=a.target, min_support=a.min_support,
              review_sample=a.review_sample, dim=a.dim)
    res["command"] = "python bench/bench_routing.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(format_summary(res))
    print(f"wall time {res['wall_s']:.0f} s")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1, default=str))
        print("wrote", a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
