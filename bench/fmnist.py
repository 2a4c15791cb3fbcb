"""Load the real Fashion-MNIST (Debian package dataset-fashion-mnist) for the benches. numpy only."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images float32 (n, 784) in [0, 1], labels int64 (n,)) for split 'train' (60k) or 't10k' (10k)."""
    img = FMNIST_DIR / f"{split}-images-idx3-ubyte.gz"
    lab = FMNIST_DIR / f"{split}-labels-idx1-ubyte.gz"
    if not img.exists():
        raise SystemExit(f"{img} is missing: apt-get install -y dataset-fashion-mnist")
    X = _idx(img).reshape(-1, 28 * 28).astype(np.float32) / 255.0
    return X, _idx(lab).astype(np.int64)


def pca(X_train: np.ndarray, X_test: np.ndarray, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """PCA fitted on the train pixels (unsupervised, as an embedding would be), whitened-free, float32."""
    from sklearn.decomposition import PCA

    p = PCA(n_components=dim, random_state=seed, svd_solver="randomized").fit(X_train)
    return p.transform(X_train).astype(np.float32), p.transform(X_test).astype(np.float32)
