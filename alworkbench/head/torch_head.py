"""A small PyTorch classifier head over fixed embeddings, as a scikit-learn estimator.

``TorchHead`` trains a linear layer (softmax regression) or a one-hidden-layer MLP on standardised features.
The linear head is fitted full-batch to convergence with L-BFGS (strong-Wolfe line search) on the L2-regularised
objective of scikit-learn's ``LogisticRegression`` (``mean loss + ||W||^2 / (2 C n)``), optionally warm-started from
a previous fit (``warm_start_from``): in an active-learning loop the next round's solution is close to the last one.
The MLP trains with AdamW and a cosine learning-rate decay. Single-label targets may be any hashable labels; multi-label
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

from . import DEFAULT_EPOCHS

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def _validate_data(est, X, y="no_validation", reset=True, **kw):
        return est._validate_data(X, y, reset=reset, **kw)

_PREDICT_CHUNK = 65536
_MIN_STEPS = 300  # at least this many optimiser steps, whatever ``epochs`` says


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
    solver : "auto" (L-BFGS for the linear head, AdamW for the MLP), "lbfgs" (linear only) or "adamw"
    C : inverse L2 strength of the L-BFGS objective, as in scikit-learn's LogisticRegression; 0.1 was chosen on a
        validation split of the Fashion-MNIST pool (bench/choose_head.py), never on the test split
    max_iter : L-BFGS iteration cap; ``tol`` its gradient tolerance (max abs gradient)
    warm_start_from : a fitted TorchHead of the same kind and classes to start L-BFGS from (ignored otherwise)
    cpu_fit : where the linear head's CPU L-BFGS runs: "process" (a helper process with one BLAS thread, shared by
        the kernel; falls back to the calling thread with a warning if it cannot start) or "thread" (the caller's
        thread, with the kernel's BLAS threads). ``fit_where_`` says which ran.
    epochs : AdamW passes over the data (raised so that training takes at least 300 optimiser steps)
    lr : peak AdamW learning rate (cosine-decayed to 0 over training)
    weight_decay : AdamW weight decay (L2-like regularisation; keeps probabilities from saturating)
    batch_size : AdamW minibatch size; the whole set is one batch when it is smaller
    class_weight : "balanced" (inverse class frequency; ``pos_weight`` = neg/pos per tag), None, or a dict
        ``{class: weight}`` (multi-label: ``{tag index: pos_weight}``)
    device : "auto" (cuda when available), "cpu", "cuda", ...
    random_state : seed of the private generator (init + shuffling)
    standardize : standardise features with the training mean/std before the layer
    """

    def __init__(self, kind: str = "linear", hidden: int = 256, multilabel: bool = False, epochs: int = DEFAULT_EPOCHS,
                 lr: float = 0.01, weight_decay: float = 1e-4, batch_size: int = 256,
                 class_weight: Optional[str] = "balanced", device: str = "auto", random_state: int = 0,
                 standardize: bool = True, solver: str = "auto", C: float = 0.1, max_iter: int = 500,
                 tol: float = 1e-4, warm_start_from=None, cpu_fit: str = "process"):
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
        self.solver = solver
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.warm_start_from = warm_start_from
        self.cpu_fit = cpu_fit

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
        if self.solver not in ("auto", "lbfgs", "adamw"):
            raise ValueError(f"TorchHead.solver must be 'auto', 'lbfgs' or 'adamw', got {self.solver!r}")
        if self.solver == "lbfgs" and self.kind != "linear":
            raise ValueError("TorchHead.solver='lbfgs' needs kind='linear' (the MLP trains with AdamW)")
        if self.cpu_fit not in ("process", "thread"):
            raise ValueError(f"TorchHead.cpu_fit must be 'process' or 'thread', got {self.cpu_fit!r}")
        if not (self.C > 0):
            raise ValueError(f"TorchHead.C must be > 0, got {self.C!r}")
        if not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1:
            raise ValueError(f"TorchHead.max_iter must be a positive integer, got {self.max_iter!r}")
        if not (self.tol > 0):
            raise ValueError(f"TorchHead.tol must be > 0, got {self.tol!r}")

    def _use_lbfgs(self) -> bool:
        return self.solver == "lbfgs" or (self.solver == "auto" and self.kind == "linear")

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
        Xs = ((X - self.mean_) / self.scale_).astype(np.float32)
        if self._use_lbfgs():
            self.weights_ = self._train_lbfgs(Xs, target, k)
        else:
            self.weights_ = self._train(Xs, target, k)
        return self

    # -- L-BFGS (linear head) ----------------------------------------------------------------------
    def _loss_fn(self, target: np.ndarray, n: int, k: int, dev):
        """The training loss (both torch solvers): cross-entropy with class weights, or BCE with per-tag pos_weight;
        the weights come from :meth:`_class_weights_np`, the one place their rule lives."""
        torch = _torch()
        w = None if self.class_weight is None else \
            torch.from_numpy(self._class_weights_np(target, n, k).astype(np.float32)).to(dev)
        return torch.nn.BCEWithLogitsLoss(pos_weight=w) if self.multilabel else torch.nn.CrossEntropyLoss(weight=w)

    def _warm_weights(self, d: int, k: int):
        prev = self.warm_start_from
        if prev is None or not isinstance(prev, TorchHead) or not getattr(prev, "weights_", None):
            return None
        if prev.kind != "linear" or bool(prev.multilabel) != bool(self.multilabel):
            return None
        if len(prev.weights_) != 2 or prev.weights_[0].shape != (k, d):
            return None
        if not self.multilabel and not np.array_equal(np.asarray(prev.classes_), np.asarray(self.classes_)):
            return None
        # the previous weights act on the previous standardisation: re-express them for this one
        w = prev.weights_[0] / prev.scale_ * self.scale_
        b = prev.weights_[1] - (prev.weights_[0] / prev.scale_) @ prev.mean_ + w / self.scale_ @ self.mean_
        return w.astype(np.float32), b.astype(np.float32)

    def _class_weights_np(self, target: np.ndarray, n: int, k: int) -> np.ndarray:
        """Per-class weights (single-label) or per-tag pos_weight (multi-label), as the torch losses use them."""
        if self.multilabel:
            if self.class_weight == "balanced":
                pos = target.sum(axis=0)
                return np.where(pos > 0, (n - pos) / np.maximum(pos, 1), 1.0).clip(1e-3, 1e3)
            if isinstance(self.class_weight, dict):
                return np.array([float(self.class_weight.get(j, 1.0)) for j in range(k)])
            return np.ones(k)
        if self.class_weight == "balanced":
            return n / (k * np.maximum(np.bincount(target, minlength=k), 1))
        if isinstance(self.class_weight, dict):
            return np.array([float(self.class_weight.get(c, 1.0)) for c in self.classes_.tolist()])
        return np.ones(k)

    def _train_lbfgs_cpu(self, Xs: np.ndarray, target: np.ndarray, k: int) -> list:
        """The same objective with SciPy's L-BFGS-B over NumPy float32 products (what scikit-learn does), by default in
        a helper process with one BLAS thread (``cpu_fit="process"``, see :mod:`alworkbench.head.cpu_fit`): on the CPU
        this beats torch's per-op overhead, and neither torch's OpenMP threads nor OpenBLAS's threads spin-wait on a
        busy machine (they made a 0.5 s fit take 4-50 s, measured here). No thread setting of the kernel is touched."""
        from . import cpu_fit

        n, d = Xs.shape
        warm = self._warm_weights(d, k)
        w0 = np.zeros(k * d + k) if warm is None else np.concatenate([warm[0].ravel(), warm[1]]).astype(np.float64)
        res, self.fit_where_ = cpu_fit.fit(
            Xs, target, k, in_process=self.cpu_fit == "process", multilabel=bool(self.multilabel),
            class_weights=self._class_weights_np(target, n, k), C=float(self.C), w0=w0,
            max_iter=int(self.max_iter), tol=float(self.tol))
        self.n_iter_ = res["nit"]
        self.warm_started_ = warm is not None
        self.final_loss_ = res["fun"]
        return [res["W"], res["b"]]

    def _train_lbfgs(self, Xs: np.ndarray, target: np.ndarray, k: int) -> list:
        if _resolve_device(self.device).type == "cpu":
            return self._train_lbfgs_cpu(Xs, target, k)
        return self._train_lbfgs_torch(Xs, target, k)

    def _train_lbfgs_torch(self, Xs: np.ndarray, target: np.ndarray, k: int) -> list:
        """torch.optim.LBFGS (strong-Wolfe line search) on the device: the GPU path."""
        torch = _torch()
        dev = _resolve_device(self.device)
        n, d = Xs.shape
        warm = self._warm_weights(d, k)
        W = torch.zeros(k, d, device=dev) if warm is None else torch.from_numpy(warm[0]).to(dev)
        b = torch.zeros(k, device=dev) if warm is None else torch.from_numpy(warm[1]).to(dev)
        W.requires_grad_()
        b.requires_grad_()
        X_t = torch.from_numpy(Xs).to(dev)
        T = torch.from_numpy(target).to(dev)
        loss_fn = self._loss_fn(target, n, k, dev)
        l2 = 1.0 / (float(self.C) * n)
        opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=int(self.max_iter), tolerance_grad=float(self.tol),
                                tolerance_change=1e-10, history_size=20, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(torch.nn.functional.linear(X_t, W, b), T) + 0.5 * l2 * (W * W).sum()
            loss.backward()
            return loss

        loss = opt.step(closure)
        state = opt.state[opt._params[0]]
        self.n_iter_ = int(state.get("n_iter", 0))
        self.warm_started_ = warm is not None
        self.final_loss_ = float(loss.detach().cpu())
        return [W.detach().cpu().numpy().astype(np.float32), b.detach().cpu().numpy().astype(np.float32)]

    # -- state (for saving a fitted head without pickle) -------------------------------------------
    def get_state(self) -> dict:
        """The fitted arrays and parameters as plain numpy/JSON values (``numpy.savez``-able)."""
        check_is_fitted(self, "weights_")
        params = {k: v for k, v in self.get_params(deep=False).items() if k != "warm_start_from"}
        state = {"params": params, "classes": np.asarray(self.classes_), "mean": self.mean_, "scale": self.scale_,
                 "n_features": int(self.n_features_in_)}
        for i, w in enumerate(self.weights_):
            state[f"w{i}"] = w
        state["n_weights"] = len(self.weights_)
        return state

    @classmethod
    def from_state(cls, state: dict) -> "TorchHead":
        head = cls(**state["params"])
        head.classes_ = np.asarray(state["classes"])
        head.mean_ = np.asarray(state["mean"], dtype=np.float32)
        head.scale_ = np.asarray(state["scale"], dtype=np.float32)
        head.n_features_in_ = int(state["n_features"])
        head.weights_ = [np.asarray(state[f"w{i}"], dtype=np.float32) for i in range(int(state["n_weights"]))]
        head.n_iter_ = 0
        return head

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
        T = torch.from_numpy(target).to(dev)
        loss_fn = self._loss_fn(target, n, k, dev)
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
