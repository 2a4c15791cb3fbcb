"""TorchHead: the scikit-learn contract, determinism, multi-label, edge cases, and the head factory."""
from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest

pytest.importorskip("torch")

from sklearn.datasets import load_digits  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from alworkbench.errors import ConfigError  # noqa: E402
from alworkbench.head import make_head_factory  # noqa: E402
from alworkbench.head import torch_head  # noqa: E402
from alworkbench.head.torch_head import TorchHead  # noqa: E402


def _blobs(n=300, d=8, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 4, size=(k, d))
    y = rng.integers(0, k, size=n)
    X = centers[y] + rng.normal(size=(n, d))
    return X.astype(np.float32), y


# Checks expected to fail (the MLP only: the linear head passes them since its L-BFGS rewrite), with the reason:
# - check_methods_subset_invariance: predictions run in float32 through torch matmuls whose blocking depends on
#   the batch shape, so a row scored alone and in a batch can differ by ~1e-7 (the check wants exact equality
#   up to 1e-7). Scores are compared by rank, never bit for bit, downstream.
EXPECTED_FAILED = {
    "check_methods_subset_invariance": "float32 torch matmul: ~1e-7 differences between batch shapes",
}


@parametrize_with_checks([TorchHead(epochs=20, device="cpu"), TorchHead(kind="mlp", hidden=16, epochs=20,
                                                                         device="cpu")],
                         expected_failed_checks=lambda est: EXPECTED_FAILED if est.kind == "mlp" else {})
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_learns_digits_and_probabilities_are_sane():
    X, y = load_digits(return_X_y=True)
    head = TorchHead(device="cpu").fit(X[:1000], y[:1000])
    assert (head.predict(X[1000:]) == y[1000:]).mean() > 0.9
    proba = head.predict_proba(X[1000:])
    assert proba.shape == (len(X) - 1000, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    # calibrated enough: confidence is not stuck at 1.0, and confident predictions are mostly right
    conf = proba.max(axis=1)
    assert 0.6 < conf.mean() < 0.999
    correct = head.classes_[proba.argmax(1)] == y[1000:]
    assert correct[conf > 0.9].mean() > 0.95


def test_deterministic_with_same_random_state_and_leaves_global_rng_alone():
    import torch

    X, y = _blobs()
    before = torch.get_rng_state()
    a = TorchHead(kind="mlp", hidden=32, epochs=10, batch_size=64, device="cpu", random_state=3).fit(X, y)
    b = TorchHead(kind="mlp", hidden=32, epochs=10, batch_size=64, device="cpu", random_state=3).fit(X, y)
    c = TorchHead(kind="mlp", hidden=32, epochs=10, batch_size=64, device="cpu", random_state=4).fit(X, y)
    assert torch.equal(before, torch.get_rng_state())
    for wa, wb in zip(a.weights_, b.weights_):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.weights_[0], c.weights_[0])


def test_string_labels_and_single_class():
    X, y = _blobs(k=2)
    labels = np.array(["cat", "dog"])[y]
    head = TorchHead(device="cpu").fit(X, labels)
    assert list(head.classes_) == ["cat", "dog"]
    assert set(head.predict(X)) <= {"cat", "dog"}
    assert (head.predict(X) == labels).mean() > 0.9
    one = TorchHead(device="cpu").fit(X[:5], ["cat"] * 5)
    np.testing.assert_array_equal(one.predict_proba(X), np.ones((len(X), 1)))
    assert list(one.predict(X[:3])) == ["cat"] * 3


def test_multilabel_indicator_with_imbalance():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 6)).astype(np.float32)
    Y = np.stack([X[:, 0] > 0, X[:, 1] > 1.3, X[:, 2] + X[:, 3] > 0], axis=1).astype(int)  # tag 1 is ~10%
    head = TorchHead(multilabel=True, device="cpu", epochs=80).fit(X[:400], Y[:400])
    np.testing.assert_array_equal(head.classes_, [0, 1, 2])
    proba = head.predict_proba(X[400:])
    assert proba.shape == (200, 3) and ((proba >= 0) & (proba <= 1)).all()
    pred = head.predict(X[400:])
    assert set(np.unique(pred)) <= {0, 1}
    recall_rare = (pred[:, 1] & Y[400:, 1]).sum() / Y[400:, 1].sum()
    assert recall_rare > 0.7  # pos_weight keeps the rare tag from being ignored
    assert (pred == Y[400:]).mean() > 0.85
    with pytest.raises(ValueError, match="0/1"):
        TorchHead(multilabel=True).fit(X[:10], Y[:10] * 2)


def test_balanced_class_weight_helps_the_minority_class():
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.normal(0, 1, (380, 2)), rng.normal(1.5, 1, (20, 2))]).astype(np.float32)
    y = np.array([0] * 380 + [1] * 20)
    plain = TorchHead(class_weight=None, device="cpu").fit(X, y)
    balanced = TorchHead(class_weight="balanced", device="cpu").fit(X, y)
    assert (balanced.predict(X)[y == 1] == 1).mean() > (plain.predict(X)[y == 1] == 1).mean()


def test_predict_proba_in_chunks_matches_one_shot(monkeypatch):
    X, y = _blobs(n=500)
    head = TorchHead(device="cpu", epochs=5).fit(X, y)
    full = head.predict_proba(X)
    monkeypatch.setattr(torch_head, "_PREDICT_CHUNK", 77)
    np.testing.assert_allclose(head.predict_proba(X), full, rtol=1e-5, atol=1e-7)


def test_pickle_and_use_from_another_thread():
    X, y = _blobs()
    head = TorchHead(kind="mlp", hidden=16, epochs=5, device="cpu").fit(X, y)
    clone = pickle.loads(pickle.dumps(head))
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("p", clone.predict_proba(X)))
    t.start()
    t.join()
    np.testing.assert_allclose(out["p"], head.predict_proba(X))


def test_bad_params_raise_clear_errors():
    X, y = _blobs(n=20)
    with pytest.raises(ValueError, match="kind"):
        TorchHead(kind="svm").fit(X, y)
    with pytest.raises(ValueError, match="epochs"):
        TorchHead(epochs=0).fit(X, y)


def test_head_factory():
    factory = make_head_factory({"kind": "mlp", "hidden": 32, "epochs": 7, "lr": 0.005, "weight_decay": 0.0,
                                 "class_weight": "balanced", "seed": 5}, multilabel=True)
    a, b = factory(), factory()
    assert a is not b
    assert a.get_params()["multilabel"] is True and a.random_state == 5 and a.hidden == 32 and a.epochs == 7
    assert not hasattr(a, "weights_")
    assert pickle.loads(pickle.dumps(factory))().get_params() == a.get_params()
    with pytest.raises(ConfigError, match="head.dropout"):
        make_head_factory({"dropout": 0.5}, multilabel=False)
    with pytest.raises(ConfigError, match="kind"):
        make_head_factory({"kind": "forest"}, multilabel=False)
    assert make_head_factory({"class_weight": "none"}, multilabel=False)().class_weight is None
