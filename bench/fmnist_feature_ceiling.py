"""Is Fashion-MNIST's goal (the default reaches random's 1,000-label accuracy with <= 400 labels) within reach of any
query strategy on the features we can compute offline? A ceiling check, not a measurement of the loop a person gets.

For each feature set, the best case of each strategy: the synchronous loop (a fresh model chooses every batch), the
project's linear head (TorchHead, L-BFGS, C=0.1), 50 random labels then batches of 50 up to --budget, on a
VALIDATION split (20% of the 60k training pool held back; the test split is read only as the pretraining set of the
"supervised" stand-in). Prints, per strategy, the labels needed to reach random's final accuracy and the accuracy at
400 labels.

Feature sets:
  randconv  the project's offline default backbone (alworkbench.embed), from the project's cache;
  file:P    any (70000, d) .npy array of features in the built-in source's item order;
  simclr    a small CNN trained with SimCLR on the training pool's images for --simclr-epochs (CPU, ~2 min each);
  kmeans    single-layer k-means patch features (Coates, Lee & Ng 2011): 6x6 patches, contrast-normalised and
            ZCA-whitened, K centroids learned on the pool without labels, triangle activation, 2x2 sum pooling
            (4K dimensions). The strongest shallow unsupervised features for small images in that paper.
  supervised  a stand-in for a pretrained backbone, which cannot be downloaded here: the same small CNN as simclr,
            trained WITH labels on the 10k test split's images of --supervised-classes (all ten: the strongest
            features of the domain; some: a backbone pretrained on related classes). The test split serves only as
            this pretraining set; the curves are on the validation split, as for every feature set.

Head variants (to check whether the head, not the strategy, is what limits the count): --head-options passes
TorchHead keyword arguments (e.g. '{"class_weight": null}'), and --standardize pool standardises the features once
with the training pool's statistics instead of the labelled set's (which active learning skews).

    .venv/bin/python bench/fmnist_feature_ceiling.py --json bench/results/fmnist_feature_ceiling.json
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


FEATURE_SETS = ("randconv", "kmeans", "simclr", "supervised")


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


def simclr_features(images: np.ndarray, embed: np.ndarray, epochs: int = 8, batch: int = 256, temperature: float = 0.2,
                    seed: int = 0) -> np.ndarray:
    """A small CNN (4 conv layers, 256-d global-average-pooled output) trained with SimCLR's contrastive loss (Chen
    et al. 2020) on the (n, h, w) images in [0, 1], without labels; returns the (len(embed), 256) float32 features
    of ``embed`` (images of the same size). Views:
    per-image random zoom/shift, horizontal flip, contrast and brightness jitter (batched affine grids). About two
    minutes an epoch on 60k 28x28 images with 2 CPU threads."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(seed)
    x_all = torch.from_numpy(images[:, None].astype(np.float32))

    def view(x):
        n = x.shape[0]
        s = torch.empty(n).uniform_(0.5, 1.0)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = s * torch.where(torch.rand(n) < 0.5, -1.0, 1.0)
        theta[:, 1, 1] = s
        theta[:, 0, 2] = (1 - s) * torch.empty(n).uniform_(-1, 1)
        theta[:, 1, 2] = (1 - s) * torch.empty(n).uniform_(-1, 1)
        v = F.grid_sample(x, F.affine_grid(theta, x.shape, align_corners=False), align_corners=False)
        return (v - 0.5) * torch.empty(n, 1, 1, 1).uniform_(0.6, 1.4) + 0.5 + torch.empty(n, 1, 1, 1).uniform_(-0.2, 0.2)

    f = small_cnn()
    g = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 128))
    opt = torch.optim.Adam([*f.parameters(), *g.parameters()], 1e-3)
    target = torch.cat([torch.arange(batch, 2 * batch), torch.arange(0, batch)])
    for _ in range(epochs):
        perm = torch.randperm(len(x_all))
        for i in range(0, len(x_all) - batch + 1, batch):
            xb = x_all[perm[i:i + batch]]
            z = F.normalize(g(f(torch.cat([view(xb), view(xb)]))), dim=1)
            sim = (z @ z.T / temperature).fill_diagonal_(-1e9)
            loss = F.cross_entropy(sim, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return _encode(f, embed)


def small_cnn():
    """4 conv layers (32-64-128-256 channels, BatchNorm, ReLU), global average pooling: (n, 1, h, w) -> (n, 256)."""
    import torch.nn as nn

    def block(i, o, stride):
        return [nn.Conv2d(i, o, 3, stride=stride, padding=1), nn.BatchNorm2d(o), nn.ReLU()]

    return nn.Sequential(*block(1, 32, 1), *block(32, 64, 2), *block(64, 128, 2), *block(128, 256, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _encode(f, images: np.ndarray) -> np.ndarray:
    import torch

    f.eval()
    with torch.no_grad():
        e = torch.from_numpy(images[:, None].astype(np.float32))
        return torch.cat([f(e[i:i + 2000]) for i in range(0, len(e), 2000)]).numpy().astype(np.float32)


def supervised_features(images: np.ndarray, labels: np.ndarray, embed: np.ndarray, epochs: int = 6, batch: int = 128,
                        seed: int = 0) -> np.ndarray:
    """:func:`small_cnn` trained with cross-entropy on the (n, h, w) ``images`` in [0, 1] and their integer
    ``labels`` (Adam, lr 1e-3); returns the (len(embed), 256) float32 features of ``embed``. About 4 s an epoch on
    5k 28x28 images with 2 CPU threads."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(seed)
    codes, yt = np.unique(labels, return_inverse=True)
    x, yt = torch.from_numpy(images[:, None].astype(np.float32)), torch.from_numpy(yt.astype(np.int64))
    f, head = small_cnn(), nn.Linear(256, len(codes))
    opt = torch.optim.Adam([*f.parameters(), *head.parameters()], 1e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), batch):
            b = perm[i:i + batch]
            loss = F.cross_entropy(head(f(x[b])), yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return _encode(f, embed)


def run(X, y, pool, val, strategy: str, seed: int, budget: int, batch: int, initial: int,
        head_options: dict | None = None) -> dict[int, float]:
    from alworkbench.head.torch_head import TorchHead
    from alworkbench.query.strategies import select

    rng = np.random.default_rng(seed)
    lab = list(rng.choice(pool, initial, replace=False))
    curve = {}
    while True:
        h = TorchHead(random_state=seed, **(head_options or {})).fit(X[lab], y[lab])
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
    ap.add_argument("--simclr-epochs", type=int, default=8)
    ap.add_argument("--supervised-classes", default="0-9",
                    help="class codes (0-9, '0,3,4' or a range '0-4') whose test-split images train the "
                         "'supervised' stand-in backbone")
    ap.add_argument("--supervised-epochs", type=int, default=6)
    ap.add_argument("--supervised-images", type=int, default=None,
                    help="train the stand-in on a seeded random subset of this many of those test-split images "
                         "(weaker features; default: all of them)")
    ap.add_argument("--head-options", default="{}",
                    help='TorchHead keyword arguments as a JSON object, e.g. \'{"class_weight": null}\'')
    ap.add_argument("--standardize", choices=("labelled", "pool"), default="labelled",
                    help="labelled: the head standardises with its training labels' mean/std (the product's head); "
                         "pool: features standardised once with the training pool's mean/std (no labels), and the "
                         "head's own standardisation off")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    try:
        head_options = json.loads(a.head_options)
    except json.JSONDecodeError as e:
        raise SystemExit(f"--head-options: not JSON ({e})")
    if not isinstance(head_options, dict):
        raise SystemExit(f"--head-options: expected a JSON object, got {a.head_options!r}")
    if "random_state" in head_options:
        raise SystemExit("--head-options: random_state is set from --seeds")
    from alworkbench.head.torch_head import TorchHead

    try:
        TorchHead(**head_options)
    except TypeError as e:
        raise SystemExit(f"--head-options: {e}")
    from choose_default import seed_list

    features = a.features.split(",")
    unknown = [f for f in features if f not in FEATURE_SETS and not f.startswith("file:")]
    if unknown:
        raise SystemExit(f"unknown feature set(s) {', '.join(map(repr, unknown))}: "
                         f"{', '.join(FEATURE_SETS)} or file:PATH.npy")
    try:
        sup_classes = sorted(set(seed_list(a.supervised_classes)))
    except ValueError:
        raise SystemExit(f"--supervised-classes: expected class codes such as 0-9 or 0,3,4, got "
                         f"{a.supervised_classes!r}")
    if "supervised" in features and (len(sup_classes) < 2 or not set(sup_classes) <= set(range(10))):
        raise SystemExit(f"--supervised-classes: at least two of Fashion-MNIST's class codes 0-9, got {sup_classes}")
    if a.supervised_images is not None and a.supervised_images < 2 * len(sup_classes):
        raise SystemExit(f"--supervised-images: at least two per class ({2 * len(sup_classes)}), "
                         f"got {a.supervised_images}")
    if a.supervised_epochs < 1:
        raise SystemExit(f"--supervised-epochs: at least 1, got {a.supervised_epochs}")
    if a.standardize == "pool":
        if "standardize" in head_options:
            raise SystemExit("--head-options: standardize is set by --standardize pool (the head's own "
                             "standardisation is turned off); give one or the other")
        head_options["standardize"] = False
    import fmnist

    from alworkbench.loop.simulation import labels_to_reach

    X0, y, eval_mask, _classes, backbone = fmnist.embedded()
    train = np.flatnonzero(~eval_mask)  # the test split (eval_mask) is never in pool or val
    rng = np.random.default_rng(12345)
    held = rng.permutation(train)
    val, pool = np.sort(held[: len(train) // 5]), np.sort(held[len(train) // 5:])
    seeds = seed_list(a.seeds)
    res = {"command": "python bench/fmnist_feature_ceiling.py " + shlex.join(sys.argv[1:]), "loop": "sync",
           "split": "validation (20% of the training pool)", "head_options": head_options,
           "standardize": a.standardize, "seeds": seeds, "features": {}}
    for feat in features:
        t0 = time.perf_counter()
        if feat == "randconv":
            X, dim_note = X0, f"{backbone} (project default backbone)"
        elif feat == "kmeans":
            X = kmeans_patch_features(fmnist.images(), k=a.kmeans_k)
            dim_note = f"k-means patch features, K={a.kmeans_k}"
        elif feat == "simclr":
            all_px = fmnist.images()
            X = simclr_features(all_px[~eval_mask], all_px, a.simclr_epochs)
            dim_note = f"SimCLR small CNN, {a.simclr_epochs} epochs on the training pool (no labels)"
        elif feat == "supervised":
            all_px = fmnist.images()
            pre = np.flatnonzero(eval_mask & np.isin(y, sup_classes))  # the test split: never in pool or val
            if a.supervised_images is not None:
                if a.supervised_images > len(pre):
                    raise SystemExit(f"--supervised-images: the test split has {len(pre)} images of classes "
                                     f"{sup_classes}, asked for {a.supervised_images}")
                pre = np.sort(np.random.default_rng(0).choice(pre, a.supervised_images, replace=False))
            X = supervised_features(all_px[pre], y[pre], all_px, a.supervised_epochs)
            dim_note = (f"small CNN trained with labels on the test split's {len(pre)} images of classes "
                        f"{sup_classes} for {a.supervised_epochs} epochs (a stand-in for a pretrained backbone)")
        elif feat.startswith("file:"):  # any (70000, d) array in the built-in source's item order (.npy)
            X = np.load(feat[len("file:"):]).astype(np.float32)
            if X.shape[0] != len(y):
                raise SystemExit(f"{feat}: {X.shape[0]} rows, the Fashion-MNIST source has {len(y)}")
            dim_note = f"features from {feat[len('file:'):]}"
        t_feat = time.perf_counter() - t0
        if a.standardize == "pool":  # statistics of the training pool only (no labels; the test split is not read)
            X = ((X - X[train].mean(0)) / (X[train].std(0) + 1e-6)).astype(np.float32)
        curves = {s: [run(X, y, pool, val, s, seed, a.budget, a.batch_size, a.initial, head_options) for seed in seeds]
                  for s in a.strategies.split(",")}
        mean = {s: {n: float(np.mean([c[n] for c in cs])) for n in cs[0]} for s, cs in curves.items()}
        target = mean["random"][max(mean["random"])] if "random" in mean else None
        entry = {"note": dim_note, "dim": int(X.shape[1]), "feature_seconds": round(t_feat, 1), "strategies": {}}
        for s, m in mean.items():
            reach = None if target is None else labels_to_reach(
                [{"n_labels": n, "accuracy": m[n]} for n in sorted(m)], target)
            entry["strategies"][s] = {"mean_curve": {str(n): round(v, 4) for n, v in m.items()},
                                      "labels_to_reach_random_final": reach, "accuracy_at_400": round(m.get(400, float("nan")), 4)}
            print(f"{feat:9s} {s:15s} random@{a.budget}={target:.4f} reached with {reach} labels; "
                  f"at 400: {m.get(400, float('nan')):.4f}; at {a.budget}: {m[max(m)]:.4f}", flush=True)
        res["features"][feat] = entry
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
