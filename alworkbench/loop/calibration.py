"""Honest confidences: temperature scaling fitted on out-of-fold predictions of the human labels.

A head fitted on a few dozen labels is overconfident (a linear model on separable data pushes its logits apart
without bound). Temperature scaling (Guo et al., 2017) divides the log-probabilities by one scalar ``T`` fitted to
minimise the negative log-likelihood of held-out predictions; it keeps the ranking of classes, so it never changes
the predicted class. Here the held-out predictions are out-of-fold: each labelled item is predicted by a head that
did not see it (stratified k-fold from scikit-learn). The same folds give the model's cross-validated accuracy, which
the widget shows next to its suggestions and the adaptive query strategy reads as its signal.

numpy + scikit-learn + scipy only (no torch): the core stays importable without the heavy parts.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

EPS = 1e-12
MIN_LABELS = 6  # below this, no folds: the model is reported as uncalibrated (T = 1, no CV accuracy)
MAX_FOLDS = 5


@dataclass
class Calibration:
    """Result of :func:`calibrate`: the temperature, the cross-validated accuracy and how they were measured."""

    temperature: float = 1.0
    cv_accuracy: Optional[float] = None  # single-label accuracy / multi-label micro-F1, out of fold
    # out-of-fold accuracy on the labels chosen uniformly at random (the random strategy, the random share of an
    # adaptive batch): a sample of the pool, where cv_accuracy is biased low by the hard items uncertainty sampling
    # asks for. The adaptive strategy's skill signal (see Session, SKILL_SOURCE)
    skill_accuracy: Optional[float] = None
    n_skill: int = 0
    n_folds: int = 0
    n_used: int = 0
    ece_before: Optional[float] = None  # top-1 expected calibration error of the OOF predictions, T = 1
    ece_after: Optional[float] = None  # ... after temperature scaling
    oof_proba: Optional[np.ndarray] = field(default=None, repr=False)
    fold_heads: dict = field(default_factory=dict, repr=False)  # {fold: head}, to warm-start the next round's folds
    usable: Optional[np.ndarray] = field(default=None, repr=False)  # rows of oof_proba that are out-of-fold predictions

    def to_dict(self) -> dict:
        return {"temperature": self.temperature, "cv_accuracy": self.cv_accuracy, "n_folds": self.n_folds,
                "n_used": self.n_used, "ece_before": self.ece_before, "ece_after": self.ece_after,
                "skill_accuracy": self.skill_accuracy, "n_skill": self.n_skill}


def chance_corrected(accuracy: Optional[float], n_classes: int, multilabel: bool = False) -> Optional[float]:
    """Cohen-style chance correction of an accuracy, ``(acc - 1/k) / (1 - 1/k)``: 0 for guessing, 1 for perfect
    (micro-F1 of a multi-label model is returned as is). The ``adaptive`` strategy's ``model_skill`` signal."""
    if accuracy is None:
        return None
    if multilabel:
        return float(accuracy)
    chance = 1.0 / max(int(n_classes), 2)
    return float((accuracy - chance) / (1.0 - chance))


def apply_temperature(proba: np.ndarray, T: float, multilabel: bool = False) -> np.ndarray:
    """Rescale probabilities by temperature ``T`` (softmax of log p / T; sigmoid of logit(p) / T per tag)."""
    p = np.asarray(proba, dtype=np.float64)
    if T == 1.0 or p.size == 0:
        return p.astype(np.float32)
    if multilabel:
        q = np.clip(p, EPS, 1 - EPS)
        z = np.log(q) - np.log1p(-q)
        return (1.0 / (1.0 + np.exp(-z / T))).astype(np.float32)
    z = np.log(np.clip(p, EPS, 1.0)) / T
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z.astype(np.float32)


def _nll(proba: np.ndarray, y, multilabel: bool) -> float:
    if multilabel:
        q = np.clip(proba, EPS, 1 - EPS)
        return float(-(y * np.log(q) + (1 - y) * np.log1p(-q)).mean())
    return float(-np.log(np.clip(proba[np.arange(len(y)), y], EPS, 1.0)).mean())


def fit_temperature(proba: np.ndarray, y, multilabel: bool = False) -> float:
    """The temperature in [0.05, 100] minimising the NLL of ``proba`` against ``y`` (class codes or 0/1 matrix)."""
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(lambda lt: _nll(apply_temperature(proba, float(np.exp(lt)), multilabel), y, multilabel),
                          bounds=(np.log(0.05), np.log(100.0)), method="bounded", options={"xatol": 1e-3})
    return float(np.exp(res.x))


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """Top-1 ECE: sum over equal-width confidence bins of |accuracy - mean confidence| weighted by bin size."""
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    if conf.size == 0:
        return float("nan")
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            ece += m.mean() * abs(ok[m].mean() - conf[m].mean())
    return float(ece)


def top1_ece(proba: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """ECE of the shown top-1 confidence of a single-label ``proba`` against class codes ``y``."""
    p = np.asarray(proba)
    return expected_calibration_error(p.max(axis=1), p.argmax(axis=1) == np.asarray(y), n_bins)


def stable_folds(ids, k: int = MAX_FOLDS) -> np.ndarray:
    """Fold of each item from a hash of its id: the same item stays in the same fold from round to round, so each
    fold's head can be warm-started from the previous round's head of that fold."""
    import zlib

    return np.fromiter((zlib.crc32(str(i).encode("utf-8")) % k for i in ids), dtype=np.int64, count=len(ids))


def out_of_fold(head_factory: Callable[[], object], X: np.ndarray, y, multilabel: bool, n_classes: int,
                seed: int = 0, warm_from=None, folds: Optional[np.ndarray] = None,
                warm_fold_heads: Optional[dict] = None) -> tuple[Optional[np.ndarray], np.ndarray, int, dict]:
    """Out-of-fold probabilities ``(n, n_classes)`` for the labelled set.

    ``folds`` (fold index per row, e.g. :func:`stable_folds`) or, by default, stratified k-fold (k <= 5) from
    scikit-learn. Returns (oof_proba or None when too few labels, mask of rows whose OOF prediction is usable,
    number of folds, {fold: fitted head}). A single-label row is unusable when its class was absent from its fold's
    training part (no head that did not see it knows its class). Each fold head is warm-started from
    ``warm_fold_heads[fold]`` (the previous round's) or else from ``warm_from`` (a head fitted on all labels) when
    the head supports warm starts.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(X)
    if n < MIN_LABELS:
        return None, np.zeros(n, bool), 0, {}
    codes = None if multilabel else np.asarray(y, dtype=np.int64)
    if folds is not None:
        folds = np.asarray(folds)
        ks = [f for f in np.unique(folds) if (folds != f).any()]
        splits = [(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in ks]
        keys = [int(f) for f in ks]
    elif multilabel:
        k = min(MAX_FOLDS, n // 2)
        splits = list(KFold(n_splits=k, shuffle=True, random_state=seed).split(X))
        keys = list(range(k))
    else:
        counts = np.bincount(codes, minlength=n_classes)
        k = int(min(MAX_FOLDS, max(2, counts[counts >= 2].min() if (counts >= 2).any() else 2)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "least populated class has only m members": expected at tiny n
            splits = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(X, codes))
        keys = list(range(k))
    if len(splits) < 2:
        return None, np.zeros(n, bool), 0, {}
    oof = np.zeros((n, n_classes), dtype=np.float64)
    usable = np.zeros(n, bool)
    heads: dict = {}
    for key, (tr, te) in zip(keys, splits):
        head = head_factory()
        start = (warm_fold_heads or {}).get(key, warm_from)
        if start is not None and "warm_start_from" in getattr(head, "get_params", lambda: {})():
            head.set_params(warm_start_from=start)
        if multilabel:
            head.fit(X[tr], np.asarray(y)[tr])
            oof[te] = head.predict_proba(X[te])
            usable[te] = True
        else:
            head.fit(X[tr], codes[tr])
            p = np.asarray(head.predict_proba(X[te]))
            cols = np.asarray(head.classes_, dtype=np.int64)
            oof[np.ix_(te, cols)] = p
            usable[te] = np.isin(codes[te], cols)
        heads[key] = head
    return oof, usable, len(splits), heads


def calibrate(head_factory: Callable[[], object], X: np.ndarray, y, multilabel: bool, n_classes: int,
              seed: int = 0, warm_from=None, folds: Optional[np.ndarray] = None,
              warm_fold_heads: Optional[dict] = None) -> Calibration:
    """Fit a temperature and measure cross-validated accuracy from out-of-fold predictions of the labelled set."""
    oof, usable, k, heads = out_of_fold(head_factory, X, y, multilabel, n_classes, seed=seed, warm_from=warm_from,
                                        folds=folds, warm_fold_heads=warm_fold_heads)
    if oof is None or usable.sum() < MIN_LABELS:
        return Calibration()
    if multilabel:
        from sklearn.metrics import f1_score

        Y = np.asarray(y)
        T = fit_temperature(oof, Y, multilabel=True)
        acc = float(f1_score(Y, (oof >= 0.5).astype(int), average="micro", zero_division=0))
        return Calibration(temperature=T, cv_accuracy=acc, n_folds=k, n_used=len(Y), oof_proba=oof, fold_heads=heads)
    codes = np.asarray(y, dtype=np.int64)
    o, c = oof[usable], codes[usable]
    o = o / np.clip(o.sum(axis=1, keepdims=True), EPS, None)
    T = fit_temperature(o, c)
    acc = float((o.argmax(axis=1) == c).mean())
    return Calibration(temperature=T, cv_accuracy=acc, n_folds=k, n_used=int(usable.sum()),
                       ece_before=top1_ece(o, c), ece_after=top1_ece(apply_temperature(o, T), c),
                       oof_proba=oof, fold_heads=heads, usable=usable)
