"""Label-efficiency check used to pick alworkbench.query.DEFAULT_STRATEGY.

Real Fashion-MNIST: the 60k train images are the pool (PCA-50 of the pixels as the embedding), the 10k test images
the evaluation set. Every strategy starts from the same round-0 batch (cold start, typical) except `random`, which
is random throughout (the passive baseline). A multinomial logistic regression is refitted on all labels each
round, the pool is scored, `batch` items are selected, until `budget` labels. Prints accuracy per label count and
the labels each strategy needs to reach random's accuracy at `budget`. No assertions.

    .venv/bin/python bench/choose_default.py --seeds 0 1 2 --budget 1000 --batch 25
    .venv/bin/python bench/choose_default.py --strategies random margin diverse_margin --batch 100 --first 100
    .venv/bin/python bench/choose_default.py --strategies random margin diverse_margin --dup 4
    .venv/bin/python bench/choose_default.py --strategies random margin diverse_margin --head torch
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fmnist  # noqa: E402

from alworkbench.query import select  # noqa: E402


def make_head(kind: str, seed: int):
    if kind == "torch":
        from alworkbench.head import TorchHead

        return TorchHead(kind="linear", device="cpu", random_state=seed)
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=300, C=1.0)


def run(strategy: str, seed: int, Xp, yp, Xt, yt, budget: int, batch: int, first: int, head: str = "logreg"):
    rng = np.random.default_rng(seed)
    labelled = np.zeros(len(Xp), dtype=bool)
    start = select("random" if strategy == "random" else "cold_start", first, X_pool=Xp, rng=rng)
    labelled[start.indices] = True
    curve = []
    t_sel = 0.0
    while True:
        idx = np.flatnonzero(labelled)
        clf = make_head(head, seed).fit(Xp[idx], yp[idx])
        curve.append((int(idx.size), float((clf.predict(Xt) == yt).mean())))
        if idx.size >= budget:
            break
        pool = np.flatnonzero(~labelled)
        k = min(batch, budget - idx.size)
        t0 = time.perf_counter()
        proba = np.zeros((pool.size, 10), dtype=np.float32)
        proba[:, clf.classes_] = clf.predict_proba(Xp[pool])
        sel = select(strategy, k, X_pool=Xp[pool], proba=proba, X_labelled=Xp[idx], y_labelled=yp[idx], rng=rng)
        t_sel += time.perf_counter() - t0
        labelled[pool[sel.indices]] = True
    return curve, t_sel


def labels_to_reach(curve, target):
    for n, acc in curve:
        if acc >= target:
            return n
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--strategies", nargs="+",
                    default=["random", "margin", "entropy", "least_confidence", "diverse_margin", "class_balanced",
                             "coreset"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--first", type=int, default=20)
    ap.add_argument("--dim", type=int, default=50)
    ap.add_argument("--head", choices=["logreg", "torch"], default="logreg",
                    help="logreg: sklearn multinomial LogisticRegression; torch: alworkbench TorchHead(linear)")
    ap.add_argument("--dup", type=int, default=1,
                    help="near-duplicate stress test: pool = the first 60000/dup images, each repeated dup times "
                         "with small noise (burst photos, re-uploads)")
    args = ap.parse_args()

    Xtr, ytr = fmnist.load("train")
    Xte, yte = fmnist.load("t10k")
    if args.dup > 1:
        keep = len(Xtr) // args.dup
        noise = np.random.default_rng(123).normal(0, 0.02, size=(keep * args.dup, Xtr.shape[1])).astype(np.float32)
        Xtr = np.clip(np.repeat(Xtr[:keep], args.dup, axis=0) + noise, 0, 1)
        ytr = np.repeat(ytr[:keep], args.dup)
    Xp, Xt = fmnist.pca(Xtr, Xte, args.dim)
    mu, sd = Xp.mean(0), Xp.std(0) + 1e-6
    Xp, Xt = (Xp - mu) / sd, (Xt - mu) / sd
    print(f"Fashion-MNIST pool {Xp.shape}, test {Xt.shape}, PCA-{args.dim}, budget {args.budget}, "
          f"batch {args.batch}, round 0 = {args.first}, seeds {args.seeds}, duplicates x{args.dup}, head {args.head}", flush=True)

    curves = {}
    for s in args.strategies:
        per_seed = []
        for seed in args.seeds:
            t0 = time.perf_counter()
            curve, t_sel = run(s, seed, Xp, ytr, Xt, yte, args.budget, args.batch, args.first, args.head)
            per_seed.append(curve)
            print(f"  {s:17s} seed {seed}: acc@{curve[-1][0]} = {curve[-1][1]:.4f}  "
                  f"(select {t_sel:.1f} s, total {time.perf_counter() - t0:.1f} s)", flush=True)
        curves[s] = per_seed

    ns = [n for n, _ in curves[args.strategies[0]][0]]
    mean = {s: np.mean([[a for _, a in c] for c in curves[s]], axis=0) for s in curves}
    step = max(1, len(ns) // 10)
    checkpoints = sorted(set(ns[::step]) | {ns[-1]})
    print("\nmean test accuracy over seeds")
    print("labels  " + "  ".join(f"{s[:14]:>14s}" for s in curves))
    for n in checkpoints:
        i = ns.index(n)
        print(f"{n:6d}  " + "  ".join(f"{mean[s][i]:14.4f}" for s in curves))
    if "random" in mean:
        target = mean["random"][-1]
        print(f"\nlabels needed to reach random@{ns[-1]} = {target:.4f} (mean curve; per seed in brackets)")
        for s in curves:
            per = [labels_to_reach(c, float(np.mean([cc[-1][1] for cc in curves['random']]))) for c in curves[s]]
            reach = labels_to_reach(list(zip(ns, mean[s])), target)
            saved = f"{1 - reach / ns[-1]:.0%} fewer" if reach else "not reached"
            print(f"  {s:17s} {str(reach):>6s} labels ({saved})  {per}")


if __name__ == "__main__":
    main()
