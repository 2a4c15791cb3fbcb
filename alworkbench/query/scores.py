"""Informativeness scores over predicted probabilities.

Every function returns one float per pool item with the same convention: **higher = more worth labelling**.
That convention lets one selector (:func:`top_n`) serve every strategy and lets the label store keep a score whose
meaning does not depend on the strategy's sign.

Single-label scores are computed by modAL (``modAL.uncertainty.classifier_uncertainty / classifier_margin /
classifier_entropy``). modAL asks a classifier for ``predict_proba(X)``; the session already holds the pool's
probabilities, so we hand modAL a :class:`ProbaAdapter` that returns them instead of predicting again. Given a model
and ``X`` instead of ``proba``, the model itself is handed to modAL.

Multi-label scores work on per-tag probabilities of being present (independent sigmoids, rows need not sum to 1).
``ml_min_confidence`` / ``ml_avg_confidence`` follow Esuli & Sebastiani's MinConfidence / AvgConfidence, where a
tag's confidence is its distance from the 0.5 decision threshold, ``|2p - 1|``. (modAL's ``min_confidence`` /
``avg_confidence`` apply the min / mean to the raw probabilities, which ranks "confidently absent" tags as uncertain;
fed per-tag confidences or uncertainties through the adapter they pick exactly what our functions pick, which the
tests check.) ``ml_max_score`` / ``ml_avg_score`` are modAL's ``max_score`` / ``avg_score`` formulas unchanged.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

__all__ = [
    "ProbaAdapter", "check_proba", "least_confidence", "margin", "entropy", "ml_min_confidence",
    "ml_avg_confidence", "ml_max_score", "ml_avg_score", "SINGLE_LABEL_SCORES", "MULTILABEL_SCORES", "top_n",
]


class ProbaAdapter:
    """A stand-in classifier for modAL whose ``predict_proba`` returns probabilities computed earlier.

    ``predict`` returns the argmax class index (single-label) or the 0/1 indicator ``proba >= threshold``
    (multi-label), which is what modAL's multi-label ``max_score`` / ``avg_score`` expect from a
    ``OneVsRestClassifier``.
    """

    def __init__(self, proba: np.ndarray, multilabel: bool = False, threshold: float = 0.5):
        self.proba = proba
        self.multilabel = multilabel
        self.threshold = threshold

    def _check(self, X) -> None:
        n = X.shape[0] if hasattr(X, "shape") else len(X)
        if n != self.proba.shape[0]:
            raise ValueError(f"ProbaAdapter holds {self.proba.shape[0]} rows of probabilities, asked for {n}")

    def predict_proba(self, X, **_kw) -> np.ndarray:
        self._check(X)
        return self.proba

    def predict(self, X, **_kw) -> np.ndarray:
        self._check(X)
        if self.multilabel:
            return (self.proba >= self.threshold).astype(np.int8)
        return np.argmax(self.proba, axis=1)


def _placeholder(n: int) -> np.ndarray:
    """An (n, 0) array: modAL only reads ``X.shape[0]`` when it is handed a :class:`ProbaAdapter`."""
    return np.empty((n, 0), dtype=np.float32)


def check_proba(proba: Any, multilabel: bool = False, name: str = "proba") -> np.ndarray:
    """Validate a probability matrix (n_items, n_classes) and return it as a float array (no copy when possible)."""
    arr = np.asarray(proba)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_items, n_classes), got shape {arr.shape}")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} has {arr.shape[1]} columns; need at least 1 class or tag")
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    if arr.size:
        lo, hi = float(arr.min()), float(arr.max())
        if not (np.isfinite(lo) and np.isfinite(hi)):
            bad = int(np.count_nonzero(~np.isfinite(arr).all(axis=1)))
            raise ValueError(f"{name} has {bad} row(s) with NaN or infinite values")
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(f"{name} values must lie in [0, 1], found range [{lo:.4g}, {hi:.4g}]")
    return arr


def _source(proba, model, X, multilabel: bool = False):
    """(classifier, X) to hand to modAL: the adapter over ``proba``, or the real model with ``X``."""
    if proba is not None:
        p = check_proba(proba, multilabel=multilabel)
        return ProbaAdapter(p, multilabel=multilabel), _placeholder(p.shape[0])
    if model is None or X is None:
        raise ValueError("pass either proba, or both model and X")
    return model, X


def _ml_proba(proba, model, X) -> np.ndarray:
    if proba is None:
        if model is None or X is None:
            raise ValueError("pass either proba, or both model and X")
        proba = model.predict_proba(X)
    return check_proba(proba, multilabel=True)


# ---------------------------------------------------------------- single-label (modAL)

def least_confidence(proba: Optional[np.ndarray] = None, *, model=None, X=None) -> np.ndarray:
    """``1 - max_c p(c|x)`` (modAL ``classifier_uncertainty``). In [0, 1 - 1/C]."""
    from modAL.uncertainty import classifier_uncertainty

    clf, Xs = _source(proba, model, X)
    return np.asarray(classifier_uncertainty(clf, Xs))


def margin(proba: Optional[np.ndarray] = None, *, model=None, X=None) -> np.ndarray:
    """``1 - (p_top1 - p_top2)``: modAL's ``classifier_margin`` turned so that a small margin scores high.

    In [0, 1]; 1 means the two best classes are tied. With a single column the margin is 0 and the score 1.
    """
    from modAL.uncertainty import classifier_margin

    clf, Xs = _source(proba, model, X)
    m = np.asarray(classifier_margin(clf, Xs))
    return 1.0 - m


def entropy(proba: Optional[np.ndarray] = None, *, model=None, X=None) -> np.ndarray:
    """Shannon entropy of the predicted distribution in nats (modAL ``classifier_entropy``). In [0, log C]."""
    from modAL.uncertainty import classifier_entropy

    clf, Xs = _source(proba, model, X)
    return np.asarray(classifier_entropy(clf, Xs))


# ---------------------------------------------------------------- multi-label

def ml_min_confidence(proba: Optional[np.ndarray] = None, *, model=None, X=None) -> np.ndarray:
    """``1 - min_t |2 p_t - 1|``: the least certain tag decides (Esuli & Sebastiani MinConfidence). In [0, 1]."""
    p = _ml_proba(proba, model, X)
    conf = np.abs(2.0 * p - 1.0)
    return 1.0 - conf.min(axis=1)


def ml_avg_confidence(proba: Optional[np.ndarray] = None, *, model=None, X=None) -> np.ndarray:
    """``1 - mean_t |2 p_t - 1|``: uncertain on average over the tags (Esuli & Sebastiani AvgConfidence)."""
    p = _ml_proba(proba, model, X)
    conf = np.abs(2.0 * p - 1.0)
    return 1.0 - conf.mean(axis=1)


def ml_max_score(proba: Optional[np.ndarray] = None, *, model=None, X=None, threshold: float = 0.5) -> np.ndarray:
    """modAL ``multilabel.max_score``: ``max_t p_t * (pred_t - 1/2)`` with ``pred_t = p_t >= threshold``."""
    p = _ml_proba(proba, model, X)
    pred = (p >= threshold).astype(p.dtype)
    return (p * (pred - 0.5)).max(axis=1)


def ml_avg_score(proba: Optional[np.ndarray] = None, *, model=None, X=None, threshold: float = 0.5) -> np.ndarray:
    """modAL ``multilabel.avg_score``: ``mean_t p_t * (pred_t - 1/2)`` with ``pred_t = p_t >= threshold``."""
    p = _ml_proba(proba, model, X)
    pred = (p >= threshold).astype(p.dtype)
    return (p * (pred - 0.5)).mean(axis=1)


SINGLE_LABEL_SCORES = {"least_confidence": least_confidence, "margin": margin, "entropy": entropy}
MULTILABEL_SCORES = {
    "ml_min_confidence": ml_min_confidence, "ml_avg_confidence": ml_avg_confidence,
    "ml_max_score": ml_max_score, "ml_avg_score": ml_avg_score,
}


# ---------------------------------------------------------------- selection

def top_n(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` highest scores, best first, in O(len(scores)).

    Ties are broken deterministically: among equal scores the lower index wins, both at the cut-off and in the
    returned order. NaN scores rank below every number.
    """
    s = np.asarray(scores, dtype=np.float64)
    total = s.shape[0]
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    if n > total:
        raise ValueError(f"asked for the top {n} of {total} scores")
    if np.isnan(s).any():
        s = np.where(np.isnan(s), -np.inf, s)
    if n == total:
        cand = np.arange(total)
    else:
        # the n-th largest value; everything strictly above it is in, then ties at it by index
        kth = np.partition(s, total - n)[total - n]
        above = np.flatnonzero(s > kth)
        ties = np.flatnonzero(s == kth)[: n - above.size]
        cand = np.concatenate([above, ties])
    order = np.lexsort((cand, -s[cand]))
    return cand[order].astype(np.int64)
