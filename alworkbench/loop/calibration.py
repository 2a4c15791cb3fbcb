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
    n_folds: int = 0
    n_used: int = 0
    ece_before: Optional[float] = None  # top-1 expected calibration error of the OOF predictions, T = 1
    ece_after: Optional[float] = None  # ... after temperature scaling
    oof_proba: Optional[np.ndarray] = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {"temperature": self.temperature, "cv_accuracy": self.cv_accuracy, "n_folds": self.n_folds,
                "n_used": self.n_used, "ece_before": self.ece_before, "ece_after": self.ece_after}


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


def out_of_fold(head_factory: Callable[[], object], X: np.ndarray, y, multilabel: bool, n_classes: int,
                seed: int = 0, warm_from=None) -> tuple[Optional[np.ndarray], np.ndarray, int]:
    """Out-of-fold probabilities ``(n, n_classes)`` for the labelled set (stratified k-fold, k <= 5).

    Returns (oof_proba or None when too few labels, mask of rows whose OOF prediction is usable, n_folds). A row is
    unusable (single-label) when its class has a single example: no head that did not see it knows its class.
    ``warm_from``: a head fitted on all labels; each fold head starts from it when the head supports warm starts.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(X)
    if n < MIN_LABELS:
        return None, np.zeros(n, bool), 0
    if multilabel:
        Y = np.asarray(y)
        k = min(MAX_FOLDS, n // 2)
        splitter = KFold(n_splits=k, shuffle=True, random_state=seed)
        splits = splitter.split(X)
        usable = np.ones(n, bool)
    else:
        codes = np.asarray(y, dtype=np.int64)
        counts = np.bincount(codes, minlength=n_classes)
        usable = counts[codes] >= 2
        k = int(min(MAX_FOLDS, max(2, counts[counts >= 2].min() if (counts >= 2).any() else 2)))
        if usable.sum() < MIN_LABELS:
            return None, usable, 0
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "least populated class has only m members": expected at tiny n
            splits = list(splitter.split(X, codes))
    oof = np.zeros((n, n_classes), dtype=np.float64)
    for tr, te in splits:
        head = head_factory()
        if warm_from is not None and "warm_start_from" in getattr(head, "get_params", lambda: {})():
            head.set_params(warm_start_from=warm_from)
        if multilabel:
            head.fit(X[tr], Y[tr])
            oof[te] = head.predict_proba(X[te])
        else:
            head.fit(X[tr], codes[tr])
            p = np.asarray(head.predict_proba(X[te]))
            cols = np.asarray(head.classes_, dtype=np.int64)
            oof[np.ix_(te, cols)] = p
    return oof, usable, k


def calibrate(head_factory: Callable[[], object], X: np.ndarray, y, multilabel: bool, n_classes: int,
              seed: int = 0, warm_from=None) -> Calibration:
    """Fit a temperature and measure cross-validated accuracy from out-of-fold predictions of the labelled set."""
    oof, usable, k = out_of_fold(head_factory, X, y, multilabel, n_classes, seed=seed, warm_from=warm_from)
    if oof is None:
        return Calibration()
    if multilabel:
        from sklearn.metrics import f1_score

        Y = np.asarray(y)
        T = fit_temperature(oof, Y, multilabel=True)
        acc = float(f1_score(Y, (oof >= 0.5).astype(int), average="micro", zero_division=0))
        return Calibration(temperature=T, cv_accuracy=acc, n_folds=k, n_used=len(Y), oof_proba=oof)
    codes = np.asarray(y, dtype=np.int64)
    o, c = oof[usable], codes[usable]
    # rows of a fold whose head missed some class have zeros there: renormalise (they sum to < 1 only by rounding)
    o = o / np.clip(o.sum(axis=1, keepdims=True), EPS, None)
    T = fit_temperature(o, c)
    acc = float((o.argmax(axis=1) == c).mean())
    return Calibration(temperature=T, cv_accuracy=acc, n_folds=k, n_used=int(usable.sum()),
                       ece_before=top1_ece(o, c), ece_after=top1_ece(apply_temperature(o, T), c),
                       oof_proba=oof)
