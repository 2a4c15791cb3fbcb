"""A small PyTorch classifier head over fixed embeddings, as a scikit-learn estimator.

``TorchHead`` trains a linear layer (softmax regression) or a one-hidden-layer MLP with AdamW and a cosine
learning-rate decay, on standardised features. Single-label targets may be any hashable labels; multi-label
targets are a 2-D 0/1 indicator matrix (one sigmoid per column, BCE with ``pos_weight`` for imbalance).

Determinism: parameter init and minibatch order come from a private ``torch.Generator`` seeded with
``random_state``; the global RNG is never touched. Learned state is kept as numpy arrays (attributes ending in
``_``), so a fitted head pickles small and device-independent, and can be used from any thread.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from ..embed.threads import one_thread
from . import DEFAULT_EPOCHS

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def _validate_data(est, X, y="no_validation", reset=True, **kw):
        return est._validate_data(X, y, reset=reset, **kw)

_PREDICT_CHUNK = 65536
_MIN_STEPS = 300  # at least this many optimiser steps, whatever ``epochs`` says
# Below this many multiply-adds per training step, intra-op threads cost more than they give (and on a busy
# machine OpenMP spin-waiting makes a 0.1 s fit take seconds), so training runs on one thread.
_SMALL_STEP_MACS = 1 << 26


def _torch():
    import torch
    return torch


def _resolve_device(device: str):
    torch = _torch()
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class TorchHead(ClassifierMixin, BaseEstimator):
    """Linear / MLP classifier head trained with PyTorch.

    Parameters
    ----------
    kind : "linear" or "mlp"
    hidden : width of the MLP hidden layer (ignored for "linear")
    multilabel : if True, ``y`` is a 2-D 0/1 indicator matrix and each column gets an independent sigmoid
    epochs : passes over the data (raised so that training takes at least 300 optimiser steps)
    lr : peak AdamW learning rate (cosine-decayed to 0 over training)
    weight_decay : AdamW weight decay (L2-like regularisation; keeps probabilities from saturating)
    batch_size : minibatch size; the whole set is one batch when it is smaller
    class_weight : "balanced" (inverse class frequency; ``pos_weight`` = neg/pos per tag), None, or a dict
        ``{class: weight}`` (multi-label: ``{tag index: pos_weight}``)
    device : "auto" (cuda when available), "cpu", "cuda", ...
    random_state : seed of the private generator (init + shuffling)
    standardize : standardise features with the training mean/std before the layer
    """

    def __init__(self, kind: str = "linear", hidden: int = 256, multilabel: bool = False, epochs: int = DEFAULT_EPOCHS,
                 lr: float = 0.01, weight_decay: float = 1e-4, batch_size: int = 256,
                 class_weight: Optional[str] = "balanced", device: str = "auto", random_state: int = 0,
                 standardize: bool = True):
        self.kind = kind
        self.hidden = hidden
        self.multilabel = multilabel
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.class_weight = class_weight
        self.device = device
        self.random_state = random_state
        self.standardize = standardize

    # -- scikit-learn plumbing -------------------------------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = bool(self.multilabel)
        tags.non_deterministic = self.device not in ("cpu",) and _cuda_available()
        return tags

    def _check_params(self) -> None:
        if self.kind not in ("linear", "mlp"):
            raise ValueError(f"TorchHead.kind must be 'linear' or 'mlp', got {self.kind!r}")
        if not (self.class_weight in ("balanced", None) or isinstance(self.class_weight, dict)):
            raise ValueError(f"TorchHead.class_weight must be 'balanced', None or a dict, got {self.class_weight!r}")
        for name in ("epochs", "batch_size", "hidden"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"TorchHead.{name} must be a positive integer, got {v!r}")
        if not (self.lr > 0):
            raise ValueError(f"TorchHead.lr must be > 0, got {self.lr!r}")
        if not (self.weight_decay >= 0):
            raise ValueError(f"TorchHead.weight_decay must be >= 0, got {self.weight_decay!r}")

    # -- fit -------------------------------------------------------------------------------------
    def fit(self, X, y):
        self._check_params()
        if self.multilabel:
            X, Y = _validate_data(self, X, y, dtype=np.float32, multi_output=True, y_numeric=True)
            Y = np.asarray(Y)
            if Y.ndim != 2:
                raise ValueError(f"multilabel TorchHead needs a 2-D 0/1 indicator y, got shape {Y.shape}")
            if not np.isin(Y, (0, 1)).all():
                raise ValueError("multilabel TorchHead needs y with only 0/1 values")
            self.classes_ = np.arange(Y.shape[1])
            target = Y.astype(np.float32)
        else:
            X, y = _validate_data(self, X, y, dtype=np.float32)
            check_classification_targets(y)
            self.classes_, target = np.unique(y, return_inverse=True)
            target = target.astype(np.int64)
        n, d = X.shape
        if self.standardize:
            self.mean_ = X.mean(axis=0, dtype=np.float64).astype(np.float32)
            std = X.std(axis=0, dtype=np.float64)
            self.scale_ = np.where(std > 1e-8, std, 1.0).astype(np.float32)
        else:
            self.mean_ = np.zeros(d, dtype=np.float32)
            self.scale_ = np.ones(d, dtype=np.float32)
        k = len(self.classes_)
        if not self.multilabel and k == 1:
            # one class seen: predict it with certainty; nothing to learn
            self.weights_ = []
            self.n_iter_ = 0
            return self
        width = int(self.hidden) if self.kind == "mlp" else k
        small = _resolve_device(self.device).type == "cpu" and min(int(self.batch_size), n) * d * width < _SMALL_STEP_MACS
        with one_thread(small):
            self.weights_ = self._train(((X - self.mean_) / self.scale_).astype(np.float32), target, k)
        return self

    def _train(self, Xs: np.ndarray, target: np.ndarray, k: int) -> list:
        torch = _torch()
        dev = _resolve_device(self.device)
        gen = torch.Generator().manual_seed(int(self.random_state))
        n, d = Xs.shape
        sizes = [d, int(self.hidden), k] if self.kind == "mlp" else [d, k]
        params = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            w = torch.empty(fan_out, fan_in).uniform_(-bound, bound, generator=gen)
            b = torch.empty(fan_out).uniform_(-bound, bound, generator=gen)
            params += [w.to(dev).requires_grad_(), b.to(dev).requires_grad_()]
        X_t = torch.from_numpy(Xs).to(dev)
        if self.multilabel:
            T = torch.from_numpy(target).to(dev)
            pos_weight = None
            if self.class_weight == "balanced":
                pos = target.sum(axis=0)
                neg = n - pos
                pw = np.where(pos > 0, neg / np.maximum(pos, 1), 1.0).clip(1e-3, 1e3).astype(np.float32)
                pos_weight = torch.from_numpy(pw).to(dev)
            elif isinstance(self.class_weight, dict):  # {tag index: pos_weight}
                pw = np.array([float(self.class_weight.get(j, 1.0)) for j in range(k)], dtype=np.float32)
                pos_weight = torch.from_numpy(pw).to(dev)
            loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        else:
            T = torch.from_numpy(target).to(dev)
            weight = None
            if self.class_weight == "balanced":
                counts = np.bincount(target, minlength=k).astype(np.float64)
                cw = (n / (k * np.maximum(counts, 1))).astype(np.float32)
                weight = torch.from_numpy(cw).to(dev)
            elif isinstance(self.class_weight, dict):  # {class label: weight}, missing classes weigh 1
                cw = np.array([float(self.class_weight.get(c, 1.0)) for c in self.classes_.tolist()],
                              dtype=np.float32)
                weight = torch.from_numpy(cw).to(dev)
            loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
        # weight decay on weight matrices only, not on biases
        opt = torch.optim.AdamW([{"params": params[0::2], "weight_decay": float(self.weight_decay)},
                                 {"params": params[1::2], "weight_decay": 0.0}], lr=float(self.lr))
        bs = min(int(self.batch_size), n)
        steps_per_epoch = math.ceil(n / bs)
        # small labelled sets (the usual case in active learning) would see only a few dozen steps
        epochs = max(int(self.epochs), math.ceil(_MIN_STEPS / steps_per_epoch))
        total = steps_per_epoch * epochs
        step = 0
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen).to(dev) if bs < n else None
            for s in range(0, n, bs):
                idx = order[s:s + bs] if order is not None else slice(None)
                for group in opt.param_groups:
                    group["lr"] = float(self.lr) * 0.5 * (1.0 + math.cos(math.pi * step / total))
                logits = _forward(X_t[idx], params)
                loss = loss_fn(logits, T[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
        self.n_iter_ = step
        self.final_loss_ = float(loss.detach().cpu())
        return [p.detach().cpu().numpy().astype(np.float32) for p in params]

    # -- predict ---------------------------------------------------------------------------------
    def _logits_chunks(self, X):
        torch = _torch()
        dev = _resolve_device(self.device)
        params = [torch.from_numpy(w).to(dev) for w in self.weights_]
        mean = torch.from_numpy(self.mean_).to(dev)
        scale = torch.from_numpy(self.scale_).to(dev)
        with torch.inference_mode():
            # fold the standardisation into the first layer: W(x - m)/s + b = (W/s)x + (b - (W/s)m).
            # Saves two full passes (and two copies) over the pool per prediction.
            w0 = params[0] / scale
            params = [w0, params[1] - w0 @ mean] + params[2:]
            for s in range(0, X.shape[0], _PREDICT_CHUNK):
                xb = torch.from_numpy(np.ascontiguousarray(X[s:s + _PREDICT_CHUNK], dtype=np.float32)).to(dev)
                yield s, _forward(xb, params).double().cpu().numpy()

    def _check_X(self, X):
        check_is_fitted(self, "weights_")
        return _validate_data(self, X, dtype=np.float32, reset=False)

    def decision_function(self, X):
        """Logits ``(n, k)``; for a two-class single-label head, the logit difference ``(n,)``."""
        X = self._check_X(X)
        k = len(self.classes_)
        if not self.weights_:
            return np.zeros(X.shape[0]) if k <= 2 else np.zeros((X.shape[0], k))
        out = np.empty((X.shape[0], k), dtype=np.float64)
        for s, logits in self._logits_chunks(X):
            out[s:s + len(logits)] = logits
        if not self.multilabel and k == 2:
            return out[:, 1] - out[:, 0]
        return out

    def predict_proba(self, X):
        """Softmax probabilities ``(n, n_classes)``, or independent sigmoids ``(n, n_tags)`` if multilabel."""
        X = self._check_X(X)
        k = len(self.classes_)
        out = np.empty((X.shape[0], k), dtype=np.float64)
        if not self.weights_:  # single class seen
            out[:] = 1.0
            return out
        for s, logits in self._logits_chunks(X):
            if self.multilabel:
                p = 1.0 / (1.0 + np.exp(-logits))
            else:
                z = logits - logits.max(axis=1, keepdims=True)
                np.exp(z, out=z)
                p = z / z.sum(axis=1, keepdims=True)
            out[s:s + len(p)] = p
        return out

    def predict(self, X):
        proba = self.predict_proba(X)
        if self.multilabel:
            return (proba >= 0.5).astype(np.int64)
        return self.classes_[np.argmax(proba, axis=1)]


def _forward(x, params):
    torch = _torch()
    h = x
    n_layers = len(params) // 2
    for i in range(n_layers):
        h = torch.nn.functional.linear(h, params[2 * i], params[2 * i + 1])
        if i < n_layers - 1:
            h = torch.relu(h)
    return h


def _cuda_available() -> bool:
    try:
        return _torch().cuda.is_available()
    except ImportError:  # pragma: no cover
        return False
