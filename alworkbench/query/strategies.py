"""Query strategies: which unlabelled items to show the person next.

One entry point, :func:`select`. Strategies are pure: they read embeddings and probabilities, never train a model
(a ``model`` passed in is only asked for ``predict_proba``), never touch widgets or files, and draw randomness only
from the ``rng`` they are given (a ``numpy.random.Generator`` or a seed; never the global RNG).

Pool size contract: ``n`` must not exceed the pool. ``select`` raises :class:`~alworkbench.errors.PoolExhaustedError`
(with both numbers) rather than silently returning fewer items; callers that want "as many as there are" ask for
``min(n, len(pool))``. ``n == 0`` returns an empty selection.

Every :class:`Selection` score follows one convention: higher = chosen first (see :mod:`alworkbench.query.scores`).
Strategies that do not rank by a score (``random``, ``cold_start``) return NaN scores.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..config import COLD_STARTS
from ..errors import ConfigError, PoolExhaustedError
from . import scores as S

__all__ = [
    "Selection", "select", "STRATEGIES", "available_strategies", "DEFAULT_STRATEGY", "DEFAULT_MULTILABEL_STRATEGY",
    "cold_start_indices", "k_center_greedy",
]

# adaptive (issue 8): the previous default, diverse_margin, lost to random at small budgets on a real colour set when
# the model was weak; adaptive uses uncertainty only as far as the model's cross-validated accuracy supports it.
# Measured (README, bench/results/, test splits, 20 seeds on the small sets): at a person's pace (virtual clock) above
# random in every round on Fashion-MNIST (3 seeds), the photo-patch set and digits at 120-200 labels, and the
# Fashion-MNIST taxonomy subset; with an annotator who never waits (pace 0) it can fall below random (taxonomy subset:
# -1.32 points in its worst round), see SKILL_LOW below.
# Round 0 (no model) uses cold_start automatically.
# Multi-label: the analogue of margin (the tag nearest its 0.5 threshold decides); not measured.
DEFAULT_STRATEGY = "adaptive"
DEFAULT_MULTILABEL_STRATEGY = "ml_min_confidence"

# Pools larger than these are subsampled (with the caller's rng) for the geometric strategies.
COLD_START_MAX_FIT = 10_000
TYPI_MAX_CLUSTERS = 300
# adaptive: the share of a batch chosen by uncertainty ramps from 0 to 1 as the model's chance-corrected
# cross-validated accuracy (kappa = (acc - 1/k) / (1 - 1/k)) goes from SKILL_LOW to SKILL_HIGH; below it the batch is
# chosen for coverage (random by default, see ADAPTIVE_WEAK). Chosen on VALIDATION splits by bench/choose_default.py
# --grid at a person's pace (one answer a second on the virtual clock; photo crops with crop seed 1, digits, a 12k
# Fashion-MNIST subset and the full pool; bench/results/choose_thresholds_person_pace*.json, two runs): the pair whose
# worst set had the best mean gap over the curve against random, then the best worst round: 0.2:0.5 in both runs
# (+2.84 / +1.02 and +2.80 / +1.02 pts; 0.5:0.8, the previous pair, +2.79 / -0.92). The previous choice (0.5:0.8) was
# made with an annotator that never waited (pace 0), where every batch was chosen by a model one or two batches old
# and an early switch to uncertainty hurt; at a person's pace the model is rarely more than one answer old.
SKILL_LOW = 0.2
SKILL_HIGH = 0.5
# what the weak-model share of an adaptive batch is: "random" (measured: typicality seeded with the labelled set lost
# to random after ~3 items per class on the real colour set, see bench/bench_small_sets.py) or "typical"
ADAPTIVE_WEAK = "random"
# adaptive with labelled items but no model yet (the batch opened while the first model trains, as the widget and the
# asynchronous loop do): "cold_start" = TypiClust seeded with the labelled set, "weak" = the weak-model choice above.
# Chosen on validation splits (bench/choose_adaptive.py --knob no_model, bench/results/choose_no_model.json, async,
# 5 seeds; mean gap over the curve / worst round vs random): photo crops (crop seed 1) cold_start +0.84 / -3.06 pts,
# weak +0.04 / -2.65 (an earlier run of the same command: +3.90 / -0.41 vs +0.39 / -4.90); digits +4.53 / +1.77 vs
# +4.82 / +2.52. Cold start is better on the colour set; on digits the two are within 0.3 points.
ADAPTIVE_NO_MODEL = "cold_start"
CORESET_MAX_POOL = 20_000
CORESET_MAX_LABELLED = 20_000
DIVERSE_BETA = 10
TYPICALITY_K = 20


@dataclass
class Selection:
    """The items a strategy chose: ``indices`` into ``X_pool`` (best first), aligned ``scores``, the strategy that
    actually ran (``cold_start`` when an uncertainty strategy had no model), and ``details`` for the record."""

    indices: np.ndarray
    scores: np.ndarray
    strategy: str
    details: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.indices.shape[0])


@dataclass
class _Ctx:
    X_pool: Optional[np.ndarray]
    proba: Optional[np.ndarray]
    model: Any
    X_labelled: Optional[np.ndarray]
    y_labelled: Optional[np.ndarray]
    multilabel: bool
    classes: Optional[Sequence[str]]
    rng: np.random.Generator
    n_pool: int
    options: dict

    def features(self, strategy: str) -> np.ndarray:
        if self.X_pool is None:
            raise ValueError(f"strategy '{strategy}' needs X_pool (the pool's embeddings)")
        X = np.asarray(self.X_pool)
        if X.ndim != 2:
            raise ValueError(f"X_pool must be 2-D (n_items, dim), got shape {X.shape}")
        return X

    def has_model(self) -> bool:
        return self.proba is not None or self.model is not None

    def get_proba(self, strategy: str) -> np.ndarray:
        if self.proba is None:
            if self.model is None:
                raise ValueError(f"strategy '{strategy}' needs proba or a model")
            self.proba = self.model.predict_proba(self.features(strategy))
        p = S.check_proba(self.proba, multilabel=self.multilabel)
        if p.shape[0] != self.n_pool:
            raise ValueError(f"proba has {p.shape[0]} rows but the pool has {self.n_pool} items")
        self.proba = p
        return p


def _as_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}")


def _seed_from(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def _sq_dists(A: np.ndarray, B: np.ndarray, B_sq: Optional[np.ndarray] = None) -> np.ndarray:
    """Squared euclidean distances (len(A), len(B)), clipped at 0 (float rounding)."""
    A_sq = np.einsum("ij,ij->i", A, A)
    if B_sq is None:
        B_sq = np.einsum("ij,ij->i", B, B)
    d = A_sq[:, None] - 2.0 * (A @ B.T) + B_sq[None, :]
    np.maximum(d, 0, out=d)
    return d


def _min_sq_dist_to(X: np.ndarray, centers: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """For each row of X the squared distance to its nearest row of ``centers``, computed in chunks."""
    out = np.full(X.shape[0], np.inf, dtype=np.float64)
    c_sq = np.einsum("ij,ij->i", centers, centers)
    for start in range(0, X.shape[0], chunk):
        block = X[start:start + chunk]
        for cstart in range(0, centers.shape[0], chunk):
            d = _sq_dists(block, centers[cstart:cstart + chunk], c_sq[cstart:cstart + chunk]).min(axis=1)
            np.minimum(out[start:start + chunk], d, out=out[start:start + chunk])
    return out


def _subsample(n_total: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    if n_total <= cap:
        return np.arange(n_total)
    return np.sort(rng.choice(n_total, size=cap, replace=False))


# ---------------------------------------------------------------- geometric building blocks

def _fit_kmeans(km, X: np.ndarray) -> np.ndarray:
    """fit_predict, without the ConvergenceWarning for duplicate points: callers top up missing clusters."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return km.fit_predict(X)


def typical_with_labelled(X: np.ndarray, n: int, X_labelled: np.ndarray, rng: np.random.Generator,
                          max_fit: int = COLD_START_MAX_FIT, k: int = TYPICALITY_K,
                          max_clusters: int = TYPI_MAX_CLUSTERS) -> tuple[np.ndarray, dict]:
    """TypiClust with a labelled set (Hacohen et al. 2022, their Algorithm 1): k-means on pool + labelled items
    with ``len(labelled) + n`` clusters (capped), then clusters with the fewest labelled members first (largest
    first among equals), and in each the most typical unlabelled item. So a second cold start spreads into what
    the first did not cover instead of landing next to it.
    """
    from sklearn.cluster import KMeans

    n_total = X.shape[0]
    sub = _subsample(n_total, max(max_fit, n), rng)
    Xs = np.asarray(X[sub], dtype=np.float32)
    XL = np.asarray(X_labelled, dtype=np.float32)
    if len(XL) > max_fit:
        XL = XL[_subsample(len(XL), max_fit, rng)]
    n_clusters = int(min(len(Xs), max(n, min(len(XL) + n, max_clusters))))
    km = KMeans(n_clusters=n_clusters, n_init=1, random_state=_seed_from(rng), max_iter=30)
    labels = _fit_kmeans(km, np.concatenate([Xs, XL]).astype(np.float64))
    lab_pool, lab_l = labels[:len(Xs)], labels[len(Xs):]
    covered = np.bincount(lab_l, minlength=n_clusters)
    size = np.bincount(lab_pool, minlength=n_clusters)
    order = np.lexsort((-size, covered))  # fewest labelled first, then largest
    order = order[size[order] > 0]
    ranked: dict[int, list[int]] = {}
    for c in order:
        members = np.flatnonzero(lab_pool == c)
        pts = Xs[members]
        kk = min(k, members.size - 1)
        if kk < 1:
            ranked[int(c)] = members.tolist()
            continue
        d = np.sqrt(_sq_dists(pts, pts))
        mean_knn = np.partition(d, kk, axis=1)[:, 1:kk + 1].mean(axis=1)
        ranked[int(c)] = members[np.argsort(mean_knn, kind="stable")].tolist()
    picked: list[int] = []
    depth = 0
    while len(picked) < n and any(len(v) > depth for v in ranked.values()):
        for c in order:
            lst = ranked[int(c)]
            if depth < len(lst):
                picked.append(int(sub[lst[depth]]))
                if len(picked) == n:
                    break
        depth += 1
    idx = np.asarray(picked, dtype=np.int64)
    if idx.size < n:
        rest = np.setdiff1d(np.arange(n_total), idx)
        idx = np.concatenate([idx, rng.choice(rest, size=n - idx.size, replace=False)])
    return idx, {"mode": "typical", "n_fit": int(sub.size), "n_clusters": n_clusters,
                 "n_labelled_used": int(len(XL)), "uncovered_clusters": int((covered == 0).sum())}


def cold_start_indices(X: np.ndarray, n: int, rng: np.random.Generator, mode: str = "typical",
                       max_fit: int = COLD_START_MAX_FIT, k: int = TYPICALITY_K,
                       X_labelled: Optional[np.ndarray] = None) -> tuple[np.ndarray, dict]:
    """Representative items for round 0, before any model exists.

    ``typical`` (TypiClust, Hacohen et al. 2022): k-means with ``n`` clusters, then in each cluster the item of
    highest typicality, i.e. the smallest mean distance to its ``k`` nearest neighbours in the cluster; the
    clusters are visited largest first. ``centroid``: the item nearest each cluster centre. ``random``: uniform.
    Pools above ``max_fit`` items are subsampled first (uniformly, with ``rng``). With ``X_labelled`` (items already
    labelled), ``typical`` takes them into account (:func:`typical_with_labelled`).
    """
    n_total = X.shape[0]
    if mode == "random":
        return np.sort(rng.choice(n_total, size=n, replace=False)), {"mode": "random"}
    if mode == "typical" and X_labelled is not None and len(X_labelled):
        return typical_with_labelled(X, n, X_labelled, rng, max_fit=max_fit, k=k)
    if mode not in COLD_STARTS:
        raise ConfigError(f"config key 'query.cold_start' is {mode!r}; allowed: {', '.join(COLD_STARTS)}")
    from sklearn.cluster import KMeans

    sub = _subsample(n_total, max(max_fit, n), rng)
    Xs = np.asarray(X[sub], dtype=np.float32)
    km = KMeans(n_clusters=n, n_init=1, random_state=_seed_from(rng), max_iter=30)
    labels = _fit_kmeans(km, Xs.astype(np.float64))  # float32 k-means++ upcasts in slow chunks
    picked: list[int] = []
    sizes = np.bincount(labels, minlength=n)
    for c in np.argsort(-sizes, kind="stable"):
        members = np.flatnonzero(labels == c)
        if members.size == 0:
            continue
        pts = Xs[members]
        if mode == "centroid" or members.size <= 2:
            d = _sq_dists(pts, km.cluster_centers_[c:c + 1].astype(np.float32))[:, 0]
            best = members[int(np.argmin(d))]
        else:
            kk = min(k, members.size - 1)
            # kNN mean distance within the cluster; clusters are ~len/n items, chunk if a cluster is huge
            mean_knn = np.empty(members.size)
            p_sq = np.einsum("ij,ij->i", pts, pts)
            for s in range(0, members.size, 2048):
                d = np.sqrt(_sq_dists(pts[s:s + 2048], pts, p_sq))
                part = np.partition(d, kk, axis=1)[:, 1:kk + 1]  # column 0 is the point itself
                mean_knn[s:s + 2048] = part.mean(axis=1)
            best = members[int(np.argmin(mean_knn))]
        picked.append(int(sub[best]))
    idx = np.asarray(picked, dtype=np.int64)
    if idx.size < n:  # KMeans found fewer distinct clusters (duplicate points): fill uniformly
        rest = np.setdiff1d(np.arange(n_total), idx)
        idx = np.concatenate([idx, rng.choice(rest, size=n - idx.size, replace=False)])
    return idx, {"mode": mode, "n_fit": int(sub.size), "n_clusters": int(n)}


def k_center_greedy(X: np.ndarray, n: int, X_labelled: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center (Sener & Savarese 2018): repeatedly take the item farthest from everything chosen or labelled.

    Returns (indices into X, distance of each pick to its nearest centre at the time it was picked). With nothing
    labelled the first pick is the item nearest the mean (its score is NaN).
    """
    X = np.asarray(X, dtype=np.float32)
    x_sq = np.einsum("ij,ij->i", X, X)
    picks = np.empty(n, dtype=np.int64)
    dists = np.empty(n, dtype=np.float64)
    if X_labelled is not None and len(X_labelled):
        min_d = _min_sq_dist_to(X, np.asarray(X_labelled, dtype=np.float32))
        start = 0
    else:
        mean = X.mean(axis=0, keepdims=True)
        first = int(np.argmin(_sq_dists(X, mean, None)[:, 0]))
        picks[0], dists[0] = first, np.nan
        min_d = _sq_dists(X, X[first:first + 1], x_sq[first:first + 1])[:, 0].astype(np.float64)
        min_d[first] = -1.0
        start = 1
    for i in range(start, n):
        j = int(np.argmax(min_d))
        picks[i], dists[i] = j, float(np.sqrt(min_d[j]))
        d = x_sq - 2.0 * (X @ X[j]) + x_sq[j]
        np.minimum(min_d, np.maximum(d, 0), out=min_d)
        min_d[j] = -1.0  # never again, even when every distance is 0 (duplicates)
    return picks, dists


# ---------------------------------------------------------------- strategies

def _random(ctx: _Ctx, n: int, name: str) -> Selection:
    idx = ctx.rng.choice(ctx.n_pool, size=n, replace=False).astype(np.int64)
    return Selection(idx, np.full(n, np.nan), "random", {})


def _cold_start(ctx: _Ctx, n: int, name: str, requested: Optional[str] = None) -> Selection:
    mode = ctx.options.get("cold_start", "typical")
    if mode == "random" or ctx.X_pool is None:
        idx, det = cold_start_indices(np.empty((ctx.n_pool, 0)), n, ctx.rng, mode="random")
        if mode != "random":
            det["reason"] = "no X_pool to cluster"
    else:
        idx, det = cold_start_indices(ctx.features("cold_start"), n, ctx.rng, mode=mode, X_labelled=ctx.X_labelled)
    if requested is not None:
        det["requested"] = requested
        det["reason"] = det.get("reason", "no model yet")
    return Selection(idx, np.full(n, np.nan), "cold_start", det)


def _uncertainty(score_name: str) -> Callable[[_Ctx, int, str], Selection]:
    fn = {**S.SINGLE_LABEL_SCORES, **S.MULTILABEL_SCORES}[score_name]

    def run(ctx: _Ctx, n: int, name: str) -> Selection:
        if not ctx.has_model():
            return _cold_start(ctx, n, "cold_start", requested=name)
        s = fn(ctx.get_proba(name))
        idx = S.top_n(s, n)
        return Selection(idx, np.asarray(s[idx], dtype=np.float64), name, {"score": score_name})

    run.__doc__ = f"Top-n by the '{score_name}' score."
    return run


def _diverse(score_name: str) -> Callable[[_Ctx, int, str], Selection]:
    fn = {**S.SINGLE_LABEL_SCORES, **S.MULTILABEL_SCORES}[score_name]

    def run(ctx: _Ctx, n: int, name: str) -> Selection:
        """Uncertainty pre-filter (top beta*n) then k-means with n clusters; the most uncertain item per cluster."""
        if not ctx.has_model():
            return _cold_start(ctx, n, "cold_start", requested=name)
        s = fn(ctx.get_proba(name))
        beta = int(ctx.options.get("beta", DIVERSE_BETA))
        if beta < 1:
            raise ValueError(f"beta must be >= 1, got {beta}")
        n_cand = min(ctx.n_pool, beta * n)
        cand = S.top_n(s, n_cand)
        if n_cand == n or n == 1:
            chosen = cand[:n]
        else:
            from sklearn.cluster import KMeans

            Xc = np.asarray(ctx.features(name)[cand], dtype=np.float32)
            km = KMeans(n_clusters=n, n_init=1, random_state=_seed_from(ctx.rng), max_iter=50)
            labels = _fit_kmeans(km, Xc.astype(np.float64))
            # cand is sorted best first, so the first member of each cluster is its most uncertain one
            _, first = np.unique(labels, return_index=True)
            chosen = cand[np.sort(first)]
            if chosen.size < n:  # fewer distinct clusters than n (duplicate embeddings): top up by score
                rest = cand[~np.isin(cand, chosen)]
                chosen = np.concatenate([chosen, rest[: n - chosen.size]])
        order = np.lexsort((chosen, -s[chosen]))
        chosen = chosen[order]
        return Selection(chosen.astype(np.int64), np.asarray(s[chosen], dtype=np.float64), name,
                         {"score": score_name, "beta": beta, "n_candidates": int(n_cand)})

    return run


def _coreset(ctx: _Ctx, n: int, name: str) -> Selection:
    X = ctx.features(name)
    max_pool = int(ctx.options.get("max_pool", CORESET_MAX_POOL))
    sub = _subsample(ctx.n_pool, max(max_pool, n), ctx.rng)
    XL = ctx.X_labelled
    n_lab = 0 if XL is None else len(XL)
    if n_lab > CORESET_MAX_LABELLED:
        XL = np.asarray(XL)[_subsample(n_lab, CORESET_MAX_LABELLED, ctx.rng)]
    picks, dists = k_center_greedy(X[sub], n, XL)
    return Selection(sub[picks].astype(np.int64), dists, name,
                     {"n_candidates": int(sub.size), "n_labelled_used": 0 if XL is None else int(len(XL))})


def _class_weights(ctx: _Ctx, n_classes: int) -> np.ndarray:
    """Per-class weight ``((max_count + 1) / (count + 1)) ** 0.5`` from the labelled counts (1 for the commonest)."""
    if ctx.y_labelled is None or len(ctx.y_labelled) == 0:
        return np.ones(n_classes)
    y = np.asarray(ctx.y_labelled)
    if y.dtype.kind in "iu":
        codes = y.astype(np.int64)
    else:
        if ctx.classes is None:
            raise ValueError("class_balanced needs classes (the proba column names) to map y_labelled")
        pos = {c: i for i, c in enumerate(ctx.classes)}
        unknown = sorted({str(v) for v in y if v not in pos})
        if unknown:
            raise ValueError(f"y_labelled has {len(unknown)} label(s) not in classes: {', '.join(unknown[:5])}")
        codes = np.fromiter((pos[v] for v in y), dtype=np.int64, count=len(y))
    if codes.min() < 0 or codes.max() >= n_classes:
        raise ValueError(f"y_labelled codes must be in [0, {n_classes}), found [{codes.min()}, {codes.max()}]")
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    return np.sqrt((counts.max() + 1.0) / (counts + 1.0))


def _class_balanced(ctx: _Ctx, n: int, name: str) -> Selection:
    """Margin uncertainty times the expected rarity of the item's class: ``score = margin * (proba @ w) / max(w)``.

    With balanced labelled counts every weight is 1 and this is plain margin sampling.
    """
    if not ctx.has_model():
        return _cold_start(ctx, n, "cold_start", requested=name)
    p = ctx.get_proba(name)
    w = _class_weights(ctx, p.shape[1])
    s = S.margin(p) * (p @ (w / w.max()))
    idx = S.top_n(s, n)
    return Selection(idx, np.asarray(s[idx], dtype=np.float64), name,
                     {"score": "margin*rarity", "class_weights": [round(float(v), 4) for v in w]})


def _adaptive(ctx: _Ctx, n: int, name: str) -> Selection:
    """Coverage while the model is weak, uncertainty once it is good, decided by a measured signal.

    The signal is ``model_skill`` (passed by the session): the head's out-of-fold accuracy on the human labels,
    chance-corrected. Low-budget active learning loses to random when a weak model picks by uncertainty (Hacohen et
    al. 2022, TypiClust; Yehuda et al. 2022, ProbCover); typicality/coverage wins there. A share
    ``u = clip((skill - SKILL_LOW) / (SKILL_HIGH - SKILL_LOW), 0, 1)`` of the batch goes to diverse margin, the rest
    to the weak-model choice (:data:`ADAPTIVE_WEAK`: random among the unlabelled items, or TypiClust seeded with the
    labelled set and the uncertainty picks, so the two parts do not overlap). With no model and no labels: cold
    start. With labelled items but no model yet (the batch opened while the first model trains): cold
    start seeded with the labelled set (:data:`ADAPTIVE_NO_MODEL`; ``no_model="weak"`` takes the weak-model choice).
    """
    has_labels = ctx.X_labelled is not None and _n_rows(ctx.X_labelled) > 0
    no_model = ctx.options.get("no_model", ADAPTIVE_NO_MODEL)
    if no_model not in ("weak", "cold_start"):
        raise ConfigError(f"adaptive: no_model must be 'weak' or 'cold_start', got {no_model!r}")
    if not ctx.has_model() and (not has_labels or no_model == "cold_start"):
        return _cold_start(ctx, n, "cold_start", requested=name)
    skill = ctx.options.get("model_skill") if ctx.has_model() else None
    lo = float(ctx.options.get("skill_low", SKILL_LOW))
    hi = float(ctx.options.get("skill_high", SKILL_HIGH))
    u = 0.0 if skill is None else float(np.clip((float(skill) - lo) / max(hi - lo, 1e-9), 0.0, 1.0))
    n_unc = int(round(u * n))
    details = {"model_skill": None if skill is None else round(float(skill), 4), "uncertain_share": round(u, 4),
               "n_uncertain": n_unc, "n_coverage": n - n_unc}
    if not ctx.has_model():
        details["reason"] = "no model yet: labelled items, chosen as for a weak model (no_model=weak)"
    parts_idx, parts_sc = [], []
    if n_unc > 0:
        sel = _diverse("margin")(ctx, n_unc, "diverse_margin")
        parts_idx.append(sel.indices)
        parts_sc.append(sel.scores)
    if n - n_unc > 0 and ctx.options.get("weak", ADAPTIVE_WEAK) == "random":
        taken = np.concatenate(parts_idx) if parts_idx else np.empty(0, dtype=np.int64)
        free = np.setdiff1d(np.arange(ctx.n_pool), taken)
        idx = np.sort(ctx.rng.choice(free.size, size=n - n_unc, replace=False))
        details["coverage"] = {"mode": "random"}
        parts_idx.append(free[idx])
        parts_sc.append(np.full(idx.size, np.nan))
    elif n - n_unc > 0:
        X = ctx.features(name)
        taken = np.concatenate(parts_idx) if parts_idx else np.empty(0, dtype=np.int64)
        free = np.setdiff1d(np.arange(ctx.n_pool), taken)
        XL = ctx.X_labelled
        extra = X[taken] if taken.size else None
        if extra is not None:
            XL = extra if XL is None or not len(XL) else np.concatenate([np.asarray(XL), extra])
        if XL is not None and len(XL):
            idx, det = typical_with_labelled(X[free], n - n_unc, XL, ctx.rng)
        else:
            idx, det = cold_start_indices(X[free], n - n_unc, ctx.rng)
        details["coverage"] = det
        parts_idx.append(free[idx])
        parts_sc.append(np.full(idx.size, np.nan))
    return Selection(np.concatenate(parts_idx).astype(np.int64), np.concatenate(parts_sc), name, details)


# name -> (function, supports single-label, supports multi-label)
STRATEGIES: dict[str, tuple[Callable[..., Selection], bool, bool]] = {
    "random": (_random, True, True),
    "least_confidence": (_uncertainty("least_confidence"), True, False),
    "margin": (_uncertainty("margin"), True, False),
    "entropy": (_uncertainty("entropy"), True, False),
    "diverse_margin": (_diverse("margin"), True, False),
    "adaptive": (_adaptive, True, False),
    "class_balanced": (_class_balanced, True, False),
    "ml_min_confidence": (_uncertainty("ml_min_confidence"), False, True),
    "ml_avg_confidence": (_uncertainty("ml_avg_confidence"), False, True),
    "ml_max_score": (_uncertainty("ml_max_score"), False, True),
    "ml_avg_score": (_uncertainty("ml_avg_score"), False, True),
    "ml_diverse": (_diverse("ml_min_confidence"), False, True),
    "coreset": (_coreset, True, True),
    "cold_start": (_cold_start, True, True),
}


def available_strategies(multilabel: bool = False) -> list[str]:
    """Strategy names valid for a single-label (or multi-label) project, ``"default"`` first."""
    col = 2 if multilabel else 1
    return ["default"] + [name for name, spec in STRATEGIES.items() if spec[col]]


def _n_rows(a) -> int:
    return int(a.shape[0]) if hasattr(a, "shape") else len(a)


def resolve_strategy(strategy: str, multilabel: bool = False) -> str:
    """``"default"`` -> :data:`DEFAULT_STRATEGY` (or :data:`DEFAULT_MULTILABEL_STRATEGY`); any other name as is."""
    if strategy == "default":
        return DEFAULT_MULTILABEL_STRATEGY if multilabel else DEFAULT_STRATEGY
    return strategy


def select(strategy: str, n: int, *, X_pool=None, proba=None, model=None, X_labelled=None, y_labelled=None,
           multilabel: bool = False, classes: Optional[Sequence[str]] = None, rng=None,
           cold_start: str = "typical", **options) -> Selection:
    """Choose ``n`` items of the unlabelled pool to label next.

    Args:
        strategy: a name from :func:`available_strategies` (``"default"`` resolves to :data:`DEFAULT_STRATEGY`,
            or :data:`DEFAULT_MULTILABEL_STRATEGY` when ``multilabel``).
        n: how many; ``0 <= n <= len(pool)`` (more raises :class:`PoolExhaustedError`).
        X_pool: embeddings of the unlabelled pool, (n_pool, dim). Needed by the geometric strategies and by
            cold start; uncertainty strategies work from ``proba`` alone.
        proba: predicted probabilities for the pool, (n_pool, n_classes) rows aligned with ``X_pool``.
        model: anything with ``predict_proba(X_pool)``, used only when ``proba`` is None. With neither, every
            model-based strategy falls back to ``cold_start`` (the Selection says so in ``details``).
        X_labelled, y_labelled: embeddings / labels of the labelled items (coreset, class_balanced).
        classes: class names aligned with the proba columns (to map string ``y_labelled``).
        rng: numpy Generator or int seed. The global RNG is never used.
        cold_start: ``typical`` | ``centroid`` | ``random`` (how round 0 is chosen).
        options: strategy knobs: ``beta`` (diverse pre-filter factor), ``max_pool`` (coreset subsample size).
    """
    strategy = resolve_strategy(strategy, multilabel)
    spec = STRATEGIES.get(strategy)
    kind = "multi-label" if multilabel else "single-label"
    if spec is None or not spec[2 if multilabel else 1]:
        raise ConfigError(f"query strategy {strategy!r} is not available for a {kind} project; "
                          f"allowed: {', '.join(available_strategies(multilabel))}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if X_pool is not None:
        n_pool = _n_rows(X_pool)
        if proba is not None and _n_rows(proba) != n_pool:
            raise ValueError(f"proba has {_n_rows(proba)} rows but X_pool has {n_pool}")
    elif proba is not None:
        n_pool = _n_rows(proba)
    else:
        raise ValueError("select needs X_pool (embeddings) or proba to know the pool")
    if X_labelled is not None and y_labelled is not None and _n_rows(X_labelled) != len(y_labelled):
        raise ValueError(f"X_labelled has {_n_rows(X_labelled)} rows but y_labelled has {len(y_labelled)} labels")
    if n > n_pool:
        raise PoolExhaustedError(n_pool, int(n))
    rng = _as_rng(rng)
    if n == 0:
        return Selection(np.empty(0, dtype=np.int64), np.empty(0), strategy, {"n_pool": n_pool})
    ctx = _Ctx(X_pool=X_pool, proba=proba, model=model, X_labelled=X_labelled, y_labelled=y_labelled,
               multilabel=multilabel, classes=classes, rng=rng, n_pool=n_pool,
               options={"cold_start": cold_start, **options})
    sel = spec[0](ctx, int(n), strategy)
    sel.details.setdefault("n_pool", n_pool)
    return sel
