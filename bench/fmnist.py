"""Fashion-MNIST for the benches, read through the project's own built-in source (alworkbench.data)."""
from __future__ import annotations

import numpy as np


def load(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images float32 (n, 784) in [0, 1], labels int64 (n,)) for split 'train' (60k) or 't10k' (10k)."""
    from alworkbench.data import ImageSource

    src = ImageSource.builtin("fashion-mnist")  # a clear error naming the Debian package when missing
    want = "test" if split == "t10k" else split
    idx = np.flatnonzero(np.array([it.split for it in src.items]) == want)
    classes = list(src.classes)
    y = np.array([classes.index(src.items[i].label) for i in idx], dtype=np.int64)
    return src.pixels[idx].reshape(len(idx), -1).astype(np.float32) / 255.0, y


def images() -> np.ndarray:
    """Every image of the built-in source (70,000: train then test, the order of ``embedded()``'s rows) as float32
    (n, 28, 28) in [0, 1]."""
    from alworkbench.data import ImageSource

    src = ImageSource.builtin("fashion-mnist")
    return src.pixels.reshape(len(src.items), 28, 28).astype(np.float32) / 255.0


def pca(X_train: np.ndarray, X_test: np.ndarray, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """PCA fitted on the train pixels (unsupervised, as an embedding would be), whitened-free, float32."""
    from sklearn.decomposition import PCA

    p = PCA(n_components=dim, random_state=seed, svd_solver="randomized").fit(X_train)
    return p.transform(X_train).astype(np.float32), p.transform(X_test).astype(np.float32)


def embedded():
    """(X (70000, d) default-backbone embeddings, y class codes, eval mask (the 10k test split), classes), computed
    once through the project's own cache (the same features the sessions and the simulation use)."""
    from alworkbench.loop.simulation import DEFAULT_WORKDIR, _base_project

    b = _base_project("fashion-mnist", None, DEFAULT_WORKDIR, None, None)
    X = b.embeddings(progress=False)
    classes = list(b.config.classes)
    y = np.array([classes.index(it.label) for it in b.source.items])
    return X, y, b.eval_mask(), classes, b.config.backbone.name
