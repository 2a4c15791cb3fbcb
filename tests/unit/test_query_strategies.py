"""select(): contract, cold start, diversity, coreset, class balance, determinism, no ActiveLearner."""
import sys

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from alworkbench.errors import ConfigError, PoolExhaustedError
from alworkbench.query import (DEFAULT_MULTILABEL_STRATEGY, DEFAULT_STRATEGY, STRATEGIES, Selection,
                               available_strategies, select)


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=1200, centers=6, n_features=8, cluster_std=0.6, random_state=0)
    return X.astype(np.float32), y


def _proba_for(n, c, rng):
    return rng.dirichlet(np.ones(c), size=n)


def test_registry_and_defaults():
    single, multi = available_strategies(), available_strategies(multilabel=True)
    assert single[0] == multi[0] == "default"
    assert {"random", "least_confidence", "margin", "entropy", "diverse_margin", "coreset", "cold_start",
            "class_balanced"} <= set(single)
    assert {"ml_min_confidence", "ml_avg_confidence", "ml_max_score", "ml_avg_score", "ml_diverse"} <= set(multi)
    assert "margin" not in multi and "ml_min_confidence" not in single
    assert DEFAULT_STRATEGY in single and DEFAULT_MULTILABEL_STRATEGY in multi
    assert set(STRATEGIES) == (set(single) | set(multi)) - {"default"}


def test_unknown_or_wrong_kind_strategy_is_a_config_error():
    with pytest.raises(ConfigError, match="'marginn' is not available for a single-label project; allowed: default"):
        select("marginn", 1, proba=np.ones((3, 2)) / 2)
    with pytest.raises(ConfigError, match="multi-label"):
        select("margin", 1, proba=np.ones((3, 2)) / 2, multilabel=True)


def test_pool_exhausted_names_both_numbers():
    p = np.full((7, 3), 1 / 3)
    with pytest.raises(PoolExhaustedError, match="7 unlabelled item\\(s\\) available, 9 requested") as e:
        select("margin", 9, proba=p)
    assert (e.value.n_available, e.value.n_requested) == (7, 9)
    sel = select("margin", 7, proba=p)  # exactly the pool: fine, ties by index
    assert list(sel.indices) == list(range(7))
    assert len(select("random", 0, proba=p)) == 0
    with pytest.raises(ValueError, match="n must be >= 0, got -1"):
        select("random", -1, proba=p)


def test_shape_mismatches_are_refused():
    with pytest.raises(ValueError, match="proba has 3 rows but X_pool has 4"):
        select("margin", 1, X_pool=np.zeros((4, 2)), proba=np.ones((3, 2)) / 2)
    with pytest.raises(ValueError, match="needs X_pool .embeddings. or proba"):
        select("random", 1)
    with pytest.raises(ValueError, match="needs X_pool"):
        select("coreset", 1, proba=np.ones((3, 2)) / 2)


def test_uncertainty_strategies_pick_the_known_answer():
    p = np.array([[0.98, 0.01, 0.01],
                  [0.50, 0.49, 0.01],   # smallest margin
                  [0.34, 0.33, 0.33],   # highest entropy / least confidence
                  [0.70, 0.20, 0.10],
                  [0.45, 0.45, 0.10]])  # margin 0: the most uncertain by margin
    assert select("margin", 2, proba=p).indices.tolist() == [4, 1]
    assert select("least_confidence", 1, proba=p).indices.tolist() == [2]
    assert select("entropy", 1, proba=p).indices.tolist() == [2]
    sel = select("margin", 5, proba=p)
    assert sel.strategy == "margin" and np.all(np.diff(sel.scores) <= 0)  # best first, scores aligned
    np.testing.assert_allclose(sel.scores[0], 1.0)


def test_model_is_only_asked_for_predict_proba(blobs):
    X, y = blobs

    class OnlyProba:
        calls = 0

        def predict_proba(self, Xq):
            OnlyProba.calls += 1
            return _proba_for(len(Xq), 3, np.random.default_rng(0))

    m = OnlyProba()
    a = select("margin", 5, X_pool=X, model=m)
    b = select("margin", 5, X_pool=X, proba=_proba_for(len(X), 3, np.random.default_rng(0)))
    assert a.indices.tolist() == b.indices.tolist() and OnlyProba.calls == 1


def test_no_model_falls_back_to_cold_start_one_per_cluster(blobs):
    X, y = blobs
    for name in ("margin", "entropy", "diverse_margin", "default", "cold_start"):
        sel = select(name, 6, X_pool=X, rng=0)
        assert sel.strategy == "cold_start"
        assert sorted(y[sel.indices].tolist()) == [0, 1, 2, 3, 4, 5], name  # one per blob
        if name != "cold_start":
            assert sel.details["requested"] == (DEFAULT_STRATEGY if name == "default" else name)
        assert np.isnan(sel.scores).all()


def test_cold_start_typical_picks_dense_points(blobs):
    X, y = blobs
    sel = select("cold_start", 6, X_pool=X, rng=1)
    centres = np.stack([X[y == c].mean(0) for c in range(6)])
    d_pick = np.linalg.norm(X[sel.indices] - centres[y[sel.indices]], axis=1)
    d_all = np.linalg.norm(X - centres[y], axis=1)
    assert d_pick.max() < np.quantile(d_all, 0.25)  # typical = near the core of its cluster, not an outlier


def test_cold_start_random_mode_and_centroid_mode(blobs):
    X, y = blobs
    r = select("cold_start", 6, X_pool=X, rng=0, cold_start="random")
    assert r.details["mode"] == "random" and len(set(r.indices.tolist())) == 6
    c = select("cold_start", 6, X_pool=X, rng=0, cold_start="centroid")
    assert sorted(y[c.indices].tolist()) == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ConfigError, match="'densest'"):
        select("cold_start", 2, X_pool=X, cold_start="densest")


def test_diverse_margin_spreads_picks_where_plain_margin_clumps(blobs):
    X, y = blobs
    rng = np.random.default_rng(0)
    # the model is unsure everywhere, slightly more so in blob 0: margin alone takes only blob 0
    p = np.empty((len(X), 2))
    base = np.where(y == 0, 0.51, 0.55) + rng.uniform(0, 0.01, len(X))
    p[:, 0], p[:, 1] = base, 1 - base
    plain = select("margin", 6, X_pool=X, proba=p)
    assert set(y[plain.indices].tolist()) == {0}
    div = select("diverse_margin", 6, X_pool=X, proba=p, rng=0, beta=300)
    assert len(set(y[div.indices].tolist())) >= 5
    # with the default pre-filter (10 n) the candidates are all in blob 0: diversity works inside it
    tight = select("diverse_margin", 6, X_pool=X, proba=p, rng=0)
    assert tight.details["n_candidates"] == 60 and len(set(tight.indices.tolist())) == 6


def test_coreset_covers_clusters_and_avoids_labelled_ones(blobs):
    X, y = blobs
    sel = select("coreset", 6, X_pool=X, rng=0)
    assert len(set(y[sel.indices].tolist())) >= 5
    # label blobs 0-4 already: the first pick must come from blob 5 (farthest from everything labelled)
    lab = np.flatnonzero(y != 5)
    sel2 = select("coreset", 1, X_pool=X, X_labelled=X[lab], rng=0)
    assert y[sel2.indices[0]] == 5 and sel2.scores[0] > 0


def test_coreset_subsamples_large_pools():
    X = np.random.default_rng(0).normal(size=(5000, 4)).astype(np.float32)
    sel = select("coreset", 10, X_pool=X, rng=0, max_pool=500)
    assert sel.details["n_candidates"] == 500 and len(set(sel.indices.tolist())) == 10


def test_coreset_handles_duplicate_points():
    X = np.zeros((10, 3), dtype=np.float32)
    sel = select("coreset", 10, X_pool=X, rng=0)
    assert sorted(sel.indices.tolist()) == list(range(10))


def test_geometric_strategies_survive_identical_embeddings():
    X = np.ones((50, 4), dtype=np.float32)
    p = _proba_for(50, 3, np.random.default_rng(0))
    for name in ("diverse_margin", "cold_start"):
        sel = select(name, 8, X_pool=X, proba=p, rng=0)
        assert len(set(sel.indices.tolist())) == 8, name
    # diverse_margin tops up by score: the picks are exactly the 8 most uncertain
    div = select("diverse_margin", 8, X_pool=X, proba=p, rng=0)
    assert set(div.indices.tolist()) == set(select("margin", 8, proba=p).indices.tolist())


def test_class_balanced_prefers_rare_predicted_classes():
    p = np.array([[0.5, 0.5, 0.0],   # class 0 vs 1, common classes
                  [0.0, 0.52, 0.48]])  # involves rare class 2, slightly bigger margin
    y_lab = np.array(["a"] * 50 + ["b"] * 50 + ["c"] * 2)
    assert select("margin", 1, proba=p).indices.tolist() == [0]
    sel = select("class_balanced", 1, proba=p, y_labelled=y_lab, classes=["a", "b", "c"])
    assert sel.indices.tolist() == [1]
    # balanced counts: exactly margin sampling
    even = select("class_balanced", 2, proba=p, y_labelled=np.array([0, 1, 2] * 5))
    assert even.indices.tolist() == select("margin", 2, proba=p).indices.tolist()
    with pytest.raises(ValueError, match="1 label\\(s\\) not in classes: z"):
        select("class_balanced", 1, proba=p, y_labelled=np.array(["a", "z"]), classes=["a", "b", "c"])


def test_multilabel_strategies(blobs):
    X, _ = blobs
    p = np.random.default_rng(2).uniform(size=(len(X), 4))
    p[17] = [0.5, 0.99, 0.01, 0.99]
    assert select("ml_min_confidence", 1, X_pool=X, proba=p, multilabel=True).indices[0] == 17
    for name in available_strategies(multilabel=True):
        sel = select(name, 8, X_pool=X, proba=p, multilabel=True, rng=0)
        assert len(set(sel.indices.tolist())) == 8 and sel.indices.max() < len(X), name
    assert select("default", 3, X_pool=X, proba=p, multilabel=True, rng=0).strategy == DEFAULT_MULTILABEL_STRATEGY


@pytest.mark.parametrize("name", available_strategies())
def test_every_strategy_is_deterministic_for_a_seed_and_returns_distinct_in_pool_indices(blobs, name):
    X, y = blobs
    p = _proba_for(len(X), 6, np.random.default_rng(5))
    kw = dict(X_pool=X, proba=p, X_labelled=X[:30], y_labelled=y[:30])
    a = select(name, 12, rng=42, **kw)
    b = select(name, 12, rng=np.random.default_rng(42), **kw)
    assert isinstance(a, Selection) and a.indices.dtype == np.int64
    assert a.indices.tolist() == b.indices.tolist()
    np.testing.assert_array_equal(a.scores, b.scores)
    assert len(set(a.indices.tolist())) == 12 and 0 <= a.indices.min() and a.indices.max() < len(X)
    assert a.scores.shape == a.indices.shape


def test_global_rng_is_untouched(blobs):
    X, _ = blobs
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    for name in ("random", "cold_start", "diverse_margin", "coreset"):
        select(name, 5, X_pool=X, proba=_proba_for(len(X), 3, np.random.default_rng(0)), rng=0)
    assert np.array_equal(np.random.get_state()[1], before)


def test_our_path_never_uses_modal_active_learner(blobs, monkeypatch):
    """modAL's ActiveLearner.teach() calls check_X_y(force_all_finite=...), a TypeError on scikit-learn >= 1.8;
    select() only uses modAL's score functions. Make any ActiveLearner construction fail and run everything."""
    import modAL.models
    import modAL.models.learners

    def boom(*a, **k):
        raise AssertionError("ActiveLearner was used")

    monkeypatch.setattr(modAL.models.learners.ActiveLearner, "__init__", boom)
    X, y = blobs
    p = _proba_for(len(X), 6, np.random.default_rng(5))
    for name in available_strategies():
        select(name, 5, X_pool=X, proba=p, X_labelled=X[:30], y_labelled=y[:30], rng=0)


def test_modal_active_learner_teach_is_broken_on_this_sklearn():
    """Documents why we do not use ActiveLearner: if this starts passing, modAL fixed it (see the report)."""
    import sklearn
    from modAL.models import ActiveLearner
    from sklearn.linear_model import LogisticRegression

    major, minor = (int(v) for v in sklearn.__version__.split(".")[:2])
    if (major, minor) < (1, 8):
        pytest.skip(f"scikit-learn {sklearn.__version__} still accepts force_all_finite")
    X, y = make_blobs(60, centers=2, random_state=0)
    learner = ActiveLearner(estimator=LogisticRegression(), X_training=X[:10], y_training=y[:10])
    with pytest.raises(TypeError, match="force_all_finite"):
        learner.teach(X[10:12], y[10:12])


def test_importing_the_query_package_imports_neither_torch_nor_modal():
    """modAL is imported on the first score (and modAL.utils.data itself tries `import torch`): never at import."""
    import subprocess

    code = "import sys, alworkbench.query; print('torch' in sys.modules, 'modAL' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
