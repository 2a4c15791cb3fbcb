"""The quality loop on Fashion-MNIST (issue 10): does gold + review routing + consensus recover noise-free accuracy?

Two simulated annotators, ``ana`` (2% of answers replaced by a uniformly random other class) and ``ben`` (20%),
take turns (alternate batches) through two real :class:`~alworkbench.loop.session.Session` objects on one project
(one SQLite store, the default query strategy, the project's linear head retrained synchronously with
``session.retrain()`` after every batch). Each arm stops when the session's training labels (``session.labels()``:
reviewed > consensus > single answer > gold) reach ``--labels`` (default 1,000); the measured number is the held-out
accuracy of the model retrained at that point, on the 10,000 Fashion-MNIST test images (never queried).

Arms, per seed (same gold set, same oracle seeds, same strategy):

* ``noise_free``: both annotators answer from ground truth (noise 0); quality loop off.
* ``raw``: ana 2% / ben 20%; quality loop off: every raw answer trains, no hidden gold, no review, no overlap.
* ``quality``: ana 2% / ben 20% with the quality loop on: hidden gold at ``quality.gold_rate`` 0.05, overlap
  (``overlap_share`` 0.2, ``overlap_k`` 2; majority consensus, a 1-1 tie waits for review), the default tiers
  (trusted >= 98%: no review sampling; standard >= 90%: 10% sampled; probation: every answer queued; a tier applies
  after ``min_known`` 10 known answers, rolling window 50), and a simulated perfect reviewer (``rev``, a
  :class:`~alworkbench.loop.review.ReviewSession`) who, after every batch, works through the review queue in its
  order (flags, disagreements and ties, then sampled answers; oldest first) up to ``--review-budget`` items
  (default 30 per batch): accept when the answers are right, else correct to the ground truth with a reason.

In every arm the team has the same gold set (``--gold`` items drawn from the pool with their true class, as if
imported from an expert's CSV with ``alwb gold import``): gold items never enter the query pool and train with their
gold label, so they are part of the ``--labels`` in every arm; only the quality arm also hides them in batches.
No qualification test (that would keep ben's answers out of training altogether; notebook 05 shows it).

Features: the project's offline default backbone (randconv) embeddings of Fashion-MNIST (``fmnist.embedded()``, the
features of bench_label_efficiency.py), reduced by PCA to ``--dim`` (default 64) fitted on the pool without labels,
so one linear-head fit takes a fraction of a second; the shown confidences are not temperature-calibrated
(``ui.calibrate: false``: it does not change the predicted class; the cross-validation behind the default strategy's
skill signal still runs, so the default strategy is the one a user gets). Per arm and seed the JSON keeps: accuracy,
training labels, the share of training labels that are wrong, answers given (ordinary, hidden gold, overlap second
answers), reviews spent (accepted / corrected), the queue left unreviewed, each annotator's measured accuracy and
tier at the end and when ben's tier first became probation, and wall time.

    .venv/bin/python bench/bench_quality.py --json bench/results/quality.json          # 3 seeds, 1,000 labels
    .venv/bin/python bench/bench_quality.py --seeds 0 --labels 300 --review-budget 20    # a quick look

Goal (issue 10): the quality arm within 1 point of noise-free.
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

ARMS = ("noise_free", "raw", "quality")
NOISE = {"ana": 0.02, "ben": 0.20}
QUALITY = {"gold_rate": 0.05, "overlap_share": 0.2, "overlap_k": 2, "review_sample": 0.10, "min_known": 10,
           "window": 50, "pass_mark": 0.95, "qualification_items": 0}


def load_features(dataset: str = "fashion-mnist", dim: int = 64, seed: int = 0, workdir=None):
    """(base project, features (n_items, d) float32). Fashion-MNIST: the default backbone's embeddings from the
    simulate cache (the same as ``fmnist.embedded()``) reduced by PCA fitted on the pool (no labels); ``digits``
    (for quick checks and the tests): its 8x8 pixels, scaled to [0, 1]."""
    from alworkbench.loop.simulation import DEFAULT_WORKDIR, _base_project

    wd = Path(workdir) if workdir is not None else DEFAULT_WORKDIR
    base = _base_project(dataset, None, wd, None, None)
    if dataset == "digits":
        X = base.source.pixels.reshape(len(base.source.items), -1).astype(np.float32) / 16.0
        return base, np.ascontiguousarray(X)
    X = base.embeddings(progress=False)
    if dim and dim < X.shape[1]:
        from sklearn.decomposition import PCA

        pool = np.flatnonzero(~base.eval_mask())
        pca = PCA(n_components=dim, random_state=seed, svd_solver="randomized").fit(X[pool])
        X = pca.transform(X)
    return base, np.ascontiguousarray(X, dtype=np.float32)


def _project(base, X, tmp: Path, *, quality: dict, batch_size: int):
    from alworkbench import Project

    cfg = copy.deepcopy(base.config)
    cfg.query.batch_size = int(batch_size)
    cfg.ui.calibrate = False
    for k, v in quality.items():
        setattr(cfg.quality, k, v)
    proj = Project(tmp, cfg)
    proj._source = base.source
    proj._embeddings = X
    return proj


def _gold_rows(session, truth, n_gold: int, seed: int) -> list[tuple[str, str]]:
    """``n_gold`` pool items with their true class (what an expert's gold CSV would hold)."""
    rng = np.random.default_rng([seed, 0x901D])
    pool = np.flatnonzero(~session.eval_mask & session.ok_mask)
    pick = rng.choice(pool, size=n_gold, replace=False)
    return [(session.items[int(i)].id, str(truth[int(i)])) for i in sorted(pick)]


def review_round(reviewer, truth_of, budget: int) -> dict:
    """A perfect reviewer works through the queue in its order, at most ``budget`` items: accept right answers,
    correct the rest to the ground truth (with a reason). Returns counts."""
    from alworkbench.loop.review import ReviewError

    out = {"accepted": 0, "corrected": 0, "left": 0}
    queue = reviewer.view().review_queue(reviewer.reviewer)
    for entry in queue[:max(0, int(budget))]:
        sid = entry["item_id"]
        truth = truth_of(sid)
        values = {a["value"] for a in entry["answers"] if a["value"] is not None}
        try:
            if values == {truth}:
                reviewer.accept(sid, reason="checked against the image")
                out["accepted"] += 1
            else:
                wrong = ", ".join(f"{a['annotator']}: {a['value']}" for a in entry["answers"] if a["value"] != truth)
                reviewer.correct(sid, truth, reason=f"the image shows a {truth} ({wrong})")
                out["corrected"] += 1
        except ReviewError:  # reviewed meanwhile by someone else: not the case here, but never fatal
            continue
    out["left"] = max(0, len(queue) - out["accepted"] - out["corrected"])
    return out


def run_arm(base, X, arm: str, seed: int, *, labels: int, batch_size: int, n_gold: int, review_budget: int,
            log=print) -> dict:
    """One arm of one seed through real sessions; returns its measurements."""
    from alworkbench.labels.quality import QualityView, add_gold
    from alworkbench.loop.oracle import Oracle
    from alworkbench.loop.session import Session

    if arm not in ARMS:
        raise ValueError(f"arm must be one of {ARMS}, got {arm!r}")
    quality = dict(QUALITY) if arm == "quality" else {"gold_rate": 0.0, "overlap_share": 0.0, "review_sample": 0.0,
                                                       "qualification_items": 0}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"alwb-quality-{arm}-") as tmp:
        proj = _project(base, X, Path(tmp), quality=quality, batch_size=batch_size)
        names = ("ana", "ben")
        sessions = {w: Session(proj, annotator=w, embeddings=X, seed=seed * 101 + k, warm_start=False)
                    for k, w in enumerate(names)}
        s0 = sessions["ana"]
        gt = proj.source.ground_truth()
        truth_of = lambda sid: str(gt[s0.index_of(sid)])  # noqa: E731
        gold = _gold_rows(s0, gt, n_gold, seed)
        add_gold(proj.store, gold, multilabel=False, source="expert.csv", known_ids=[it.id for it in s0.items])
        oracles = {w: Oracle(sessions[w], noise=0.0 if arm == "noise_free" else NOISE[w], seed=seed * 1000 + k + 1,
                             name=w) for k, w in enumerate(names)}
        reviewer = None
        if arm == "quality":
            reviewer = Session(proj, annotator="rev", embeddings=X, seed=seed, warm_start=False).review()
        reviews = {"accepted": 0, "corrected": 0}
        turn, report, probation_at = 0, None, None
        answers = {w: 0 for w in names}
        while True:
            have = len(s0.labels())
            if have >= labels:
                break
            w = names[turn % 2]
            turn += 1
            s = sessions[w]
            batch = s.next_batch(min(batch_size, labels - have))
            answers[w] += oracles[w].label_batch(batch)
            if reviewer is not None:
                r = review_round(reviewer, truth_of, review_budget)
                reviews["accepted"] += r["accepted"]
                reviews["corrected"] += r["corrected"]
                if probation_at is None:
                    t = QualityView(proj.store, proj.config).tier("ben")
                    if t["measured"] and t["name"] == "probation":
                        probation_at = {"ben_answers": answers["ben"], "batch": turn,
                                        "rolling_accuracy": t["rolling_accuracy"], "n_known": t["n_known"]}
            report = s.retrain()  # the last one is fitted on every label at the stopping point
            if turn > 10 * (labels // max(1, batch_size)) + 50:
                raise RuntimeError(f"{arm} seed {seed}: {have} labels after {turn} batches; the loop is stuck")
        view = QualityView(proj.store, proj.config)
        final = s0.labels()
        wrong = sum(1 for sid, v in final.items() if v != truth_of(sid))
        evs = view.answer_events
        out = {"arm": arm, "seed": seed, "accuracy": float(report.accuracy), "n_eval": int(report.n_eval),
               "labels_used": int(report.n_labels), "labels_final": len(final), "wrong_labels": wrong,
               "wrong_share": wrong / len(final), "batches": turn,
               "answers": len(evs), "answers_by": {w: sum(e["annotator"] == w for e in evs) for w in names},
               "gold_answers": len(view.gold_events), "gold_items": len(view.gold),
               "overlap_items": len(view.ratings()),
               "reviews": reviews["accepted"] + reviews["corrected"], "reviews_accepted": reviews["accepted"],
               "reviews_corrected": reviews["corrected"],
               "review_queue_left": len(view.review_queue("rev")) if reviewer is not None else 0,
               "annotators": {}, "ben_probation_at": probation_at,
               "wall_s": time.perf_counter() - t0}
        for w in names:
            rep = view.annotator_report(w)
            out["annotators"][w] = {k: rep[k] for k in ("accuracy", "accuracy_ci", "known_answers", "gold_answers",
                                                        "gold_accuracy", "tier", "review_sample", "reviewed",
                                                        "review_acceptance")}
            out["annotators"][w]["true_error"] = _true_error(view, w, truth_of)
        if arm == "quality":
            ag = view.agreement()
            out["agreement"] = {k: ag.get(k) for k in ("cohen_kappa", "krippendorff_alpha", "n_items")}
        for s in sessions.values():
            s.close()
        if reviewer is not None:
            reviewer.session.close()
        proj.close()
    log(f"  {arm:10s} seed {seed}: acc {out['accuracy']:.4f} | {out['labels_used']} labels "
        f"({out['wrong_share']:.1%} wrong) | {out['answers']} answers + {out['gold_answers']} on gold | "
        f"{out['reviews']} reviews | {out['wall_s']:.0f} s")
    return out


def _true_error(view, who: str, truth_of) -> float | None:
    """The annotator's real error rate on their ordinary answers (what the gold estimate should find)."""
    mine = [e for e in view.answer_events if e["annotator"] == who and e["kind"] == "label"]
    return (sum(e["value"] != truth_of(e["sample_id"]) for e in mine) / len(mine)) if mine else None


def _ms(xs):
    xs = [float(x) for x in xs]
    return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0, "values": xs}


def summarize(runs: list[dict]) -> dict:
    """Per arm: mean ± std (sample std over seeds) of accuracy and the spend; the gaps in points."""
    by = {a: [r for r in runs if r["arm"] == a] for a in ARMS}
    summ = {}
    for a, rs in by.items():
        if not rs:
            continue
        summ[a] = {"accuracy": _ms(r["accuracy"] for r in rs), "labels_used": _ms(r["labels_used"] for r in rs),
                   "wrong_share": _ms(r["wrong_share"] for r in rs), "answers": _ms(r["answers"] for r in rs),
                   "gold_answers": _ms(r["gold_answers"] for r in rs), "reviews": _ms(r["reviews"] for r in rs),
                   "wall_s": _ms(r["wall_s"] for r in rs), "seeds": [r["seed"] for r in rs]}

    def gap(a, b):
        pairs = {r["seed"]: r["accuracy"] for r in by[b]}
        d = [100 * (r["accuracy"] - pairs[r["seed"]]) for r in by[a] if r["seed"] in pairs]
        return _ms(d) if d else None

    summ["gap_points"] = {"quality_vs_noise_free": gap("quality", "noise_free"),
                          "raw_vs_noise_free": gap("raw", "noise_free"), "quality_vs_raw": gap("quality", "raw")}
    g = summ["gap_points"]["quality_vs_noise_free"]
    summ["goal"] = {"within_points": 1.0, "met": None if g is None else bool(g["mean"] >= -1.0)}
    return summ


def run(seeds=(0, 1, 2), *, labels: int = 1000, batch_size: int = 50, n_gold: int = 50, review_budget: int = 30,
        dim: int = 64, arms=ARMS, dataset: str = "fashion-mnist", workdir=None, log=print) -> dict:
    """Every arm for every seed; the raw runs and their summary."""
    t0 = time.perf_counter()
    base, X = load_features(dataset, dim, workdir=workdir)
    t_feat = time.perf_counter() - t0
    runs = []
    for seed in seeds:
        for arm in arms:
            runs.append(run_arm(base, X, arm, int(seed), labels=labels, batch_size=batch_size, n_gold=n_gold,
                                review_budget=review_budget, log=log))
    features = "pixels" if dataset == "digits" else \
        (f"PCA-{X.shape[1]}" if dim and X.shape[1] == dim else f"all {X.shape[1]} dimensions")
    return {"dataset": dataset, "backbone": base.config.backbone.name, "features": features,
            "head": base.config.head.kind, "strategy": base.config.query.strategy, "labels": labels,
            "batch_size": batch_size, "n_gold": n_gold, "review_budget_per_batch": review_budget,
            "noise": dict(NOISE), "quality": dict(QUALITY), "seeds": [int(s) for s in seeds],
            "n_pool": int((~base.eval_mask()).sum()), "n_eval": int(base.eval_mask().sum()),
            "features_seconds": t_feat, "runs": runs, "summary": summarize(runs),
            "wall_s": time.perf_counter() - t0,
            "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform()}}


def format_summary(res: dict) -> str:
    s = res["summary"]
    feats = res["features"] if res["features"] == "pixels" else f"{res['features']} of {res['backbone']} embeddings"
    lines = [f"{res['dataset']}, {feats}, {res['head']} head, strategy "
             f"{res['strategy']}, batches of {res['batch_size']}, gold set {res['n_gold']}, review budget "
             f"{res['review_budget_per_batch']}/batch, seeds {res['seeds']}; held-out accuracy on {res['n_eval']} "
             f"test images at {res['labels']} training labels",
             f"{'arm':>11s}  {'accuracy':>16s}  {'labels':>6s}  {'wrong':>6s}  {'answers':>7s}  {'gold ans':>8s}  "
             f"{'reviews':>7s}  {'wall s':>6s}"]
    for a in ARMS:
        if a not in s:
            continue
        e = s[a]
        lines.append(f"{a:>11s}  {e['accuracy']['mean']:.4f} ± {e['accuracy']['std']:.4f}  "
                     f"{e['labels_used']['mean']:6.0f}  {e['wrong_share']['mean']:6.1%}  {e['answers']['mean']:7.0f}  "
                     f"{e['gold_answers']['mean']:8.0f}  {e['reviews']['mean']:7.0f}  {e['wall_s']['mean']:6.0f}")
    for k, g in s["gap_points"].items():
        if g is not None:
            lines.append(f"gap {k.replace('_', ' ')}: {g['mean']:+.2f} ± {g['std']:.2f} points")
    if s["goal"]["met"] is not None:
        lines.append(f"goal (quality within {s['goal']['within_points']:.0f} point of noise-free): "
                     f"{'met' if s['goal']['met'] else 'missed'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--labels", type=int, default=1000, help="training labels at which accuracy is measured")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--gold", type=int, default=50, help="gold items (true class) the team starts with")
    ap.add_argument("--review-budget", type=int, default=30, help="reviews the reviewer does after each batch")
    ap.add_argument("--dim", type=int, default=64, help="PCA dimensions of the embeddings (0: all)")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "digits"],
                    help="digits (its pixels as features) for a quick check")
    ap.add_argument("--json", help="write the raw results here (e.g. bench/results/quality.json)")
    a = ap.parse_args(argv)
    seeds = [int(x) for x in a.seeds.split(",") if x.strip()]
    res = run(seeds, labels=a.labels, batch_size=a.batch_size, n_gold=a.gold, review_budget=a.review_budget,
              dim=a.dim, arms=[x for x in a.arms.split(",") if x], dataset=a.dataset)
    res["command"] = "python bench/bench_quality.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(format_summary(res))
    print(f"wall time {res['wall_s']:.0f} s")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1, default=str))
        print("wrote", a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
