"""Is Fashion-MNIST's goal (the default reaches random's 1,000-label accuracy with <= 400 labels) within reach of any
query strategy on the features we can compute offline? A ceiling check, not a measurement of the loop a person gets.

For each feature set, the best case of each strategy: the synchronous loop (a fresh model chooses every batch), the
project's linear head (TorchHead, L-BFGS, C=0.1), 50 random labels then batches of 50 up to --budget, on a
VALIDATION split (20% of the 60k training pool held back; the test split is never read). Prints, per strategy, the
labels needed to reach random's final accuracy and the accuracy at 400 labels.

Feature sets:
  randconv  the project's offline default backbone (alworkbench.embed), from the project's cache;
  kmeans    single-layer k-means patch features (Coates, Lee & Ng 2011): 6x6 patches, contrast-normalised and
            ZCA-whitened, K centroids learned on the pool without labels, triangle activation, 2x2 sum pooling
            (4K dimensions). The strongest shallow unsupervised features for small images in that paper.

    .venv/bin/python bench/fmnist_feature_ceiling.py --json bench/results/fmnist_feature_ceiling.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def kmeans_patch_features(images: np.ndarray, k: int = 200, patch: int = 6, seed: int = 0) -> np.ndarray:
    """Coates-Lee-Ng features of (n, h, w) images in [0, 1]: (n, 4k) float32, learned on the images themselves."""
    from numpy.lib.stride_tricks import sliding_window_view
    from sklearn.cluster import MiniBatchKMeans

    n, h, w = images.shape
    gh, gw = h - patch + 1, w - patch + 1
    rng = np.random.default_rng(seed)

    def patches(batch):
        return sliding_window_view(batch, (patch, patch), axis=(1, 2)).reshape(len(batch), gh * gw, patch * patch)

    def normalise(p):
        p = p - p.mean(-1, keepdims=True)
        return p / np.sqrt(p.var(-1, keepdims=True) + 0.01)

    sample = patches(images[rng.choice(n, min(n, 4000), replace=False)]).reshape(-1, patch * patch)
    sample = normalise(sample[rng.choice(len(sample), min(len(sample), 200_000), replace=False)])
    mu = sample.mean(0)
    ev, V = np.linalg.eigh(np.cov(sample - mu, rowvar=False))
    zca = (V / np.sqrt(ev + 0.1)) @ V.T
    cent = MiniBatchKMeans(k, random_state=seed, batch_size=4096, n_init=3).fit(
        (sample - mu) @ zca).cluster_centers_.astype(np.float32)
    cc = (cent ** 2).sum(1)
    out = np.empty((n, 4 * k), np.float32)
    hh, hw = gh // 2, gw // 2
    for s in range(0, n, 1000):
        P = ((normalise(patches(images[s:s + 1000])) - mu) @ zca).astype(np.float32)
        d = np.sqrt(np.maximum((P ** 2).sum(-1, keepdims=True) - 2 * P @ cent.T + cc, 0))
        f = np.maximum(d.mean(-1, keepdims=True) - d, 0).reshape(-1, gh, gw, k)
        out[s:s + 1000] = np.concatenate([f[:, :hh, :hw].sum((1, 2)), f[:, :hh, hw:].sum((1, 2)),
                                          f[:, hh:, :hw].sum((1, 2)), f[:, hh:, hw:].sum((1, 2))], 1)
    return out


def run(X, y, pool, val, strategy: str, seed: int, budget: int, batch: int, initial: int) -> dict[int, float]:
    from alworkbench.head.torch_head import TorchHead
    from alworkbench.query.strategies import select

    rng = np.random.default_rng(seed)
    lab = list(rng.choice(pool, initial, replace=False))
    curve = {}
    while True:
        h = TorchHead(random_state=seed).fit(X[lab], y[lab])
        curve[len(lab)] = float((h.predict(X[val]) == y[val]).mean())
        if len(lab) >= budget:
            return curve
        free = np.setdiff1d(pool, lab)
        if strategy == "random":
            pick = rng.choice(free.size, batch, replace=False)
        else:
            pick = select(strategy, batch, X_pool=X[free], proba=h.predict_proba(X[free]), rng=rng).indices
        lab += [int(i) for i in free[pick]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", default="randconv,kmeans")
    ap.add_argument("--strategies", default="random,margin,diverse_margin")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--initial", type=int, default=50)
    ap.add_argument("--kmeans-k", type=int, default=200)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    import fmnist

    X0, y, eval_mask, _classes, backbone = fmnist.embedded()
    train = np.flatnonzero(~eval_mask)  # the test split (eval_mask) is never used
    rng = np.random.default_rng(12345)
    held = rng.permutation(train)
    val, pool = np.sort(held[: len(train) // 5]), np.sort(held[len(train) // 5:])
    seeds = [int(s) for s in a.seeds.split(",")]
    res = {"command": "python bench/fmnist_feature_ceiling.py " + " ".join(sys.argv[1:]), "loop": "sync",
           "split": "validation (20% of the training pool)", "features": {}}
    for feat in a.features.split(","):
        t0 = time.perf_counter()
        if feat == "randconv":
            X, dim_note = X0, f"{backbone} (project default backbone)"
        elif feat == "kmeans":
            from alworkbench.data import ImageSource

            src = ImageSource.builtin("fashion-mnist")
            X = kmeans_patch_features(src.pixels.reshape(len(src.items), 28, 28).astype(np.float32) / 255.0,
                                      k=a.kmeans_k)
            dim_note = f"k-means patch features, K={a.kmeans_k}"
        else:
            raise SystemExit(f"unknown feature set {feat!r}: randconv or kmeans")
        t_feat = time.perf_counter() - t0
        curves = {s: [run(X, y, pool, val, s, seed, a.budget, a.batch_size, a.initial) for seed in seeds]
                  for s in a.strategies.split(",")}
        mean = {s: {n: float(np.mean([c[n] for c in cs])) for n in cs[0]} for s, cs in curves.items()}
        target = mean["random"][max(mean["random"])] if "random" in mean else None
        entry = {"note": dim_note, "dim": int(X.shape[1]), "feature_seconds": round(t_feat, 1), "strategies": {}}
        for s, m in mean.items():
            reach = next((n for n in sorted(m) if target is not None and m[n] >= target), None)
            entry["strategies"][s] = {"mean_curve": {str(n): round(v, 4) for n, v in m.items()},
                                      "labels_to_reach_random_final": reach, "accuracy_at_400": round(m.get(400, float("nan")), 4)}
            print(f"{feat:9s} {s:15s} random@{a.budget}={target:.4f} reached with {reach} labels; "
                  f"at 400: {m.get(400, float('nan')):.4f}; at {a.budget}: {m[max(m)]:.4f}", flush=True)
        res["features"][feat] = entry
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
