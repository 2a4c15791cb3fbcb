"""Issue 8: the loop a person gets is the loop that is measured — one model timeline, fresh selections, honest
confidences, a converged head, an adaptive default, reopen without refit. Real digits source, SQLite store,
torch head."""
import threading

import numpy as np
import pytest

from alworkbench import Answer, Project
from alworkbench.loop.calibration import apply_temperature, calibrate, fit_temperature, top1_ece
from alworkbench.loop.oracle import Oracle
from alworkbench.query import select
from alworkbench.query.strategies import cold_start_indices


class _GatedFactory:
    """A head factory whose heads wait for ``gate`` before fitting when ``hold`` is set (to order fits by hand)."""

    def __init__(self, base):
        self.base = base
        self.hold = False
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __call__(self):
        head = self.base()
        if self.hold:
            fit, gate, entered = head.fit, self.gate, self.entered

            def slow_fit(X, y):
                entered.set()
                assert gate.wait(60)
                return fit(X, y)

            head.fit = slow_fit
        return head


def _answer_all(s, o):
    for bi in list(s.pending()):
        s.mark_shown(bi.item.id)
        s.submit(bi.item.id, o.answer_for(bi.item))


def test_older_fit_that_finishes_last_is_discarded(proj, X):
    s0 = proj.session(embeddings=X)
    factory = _GatedFactory(s0._head_factory)
    s0.close()
    s = proj.session(embeddings=X, head_factory=factory)
    o = Oracle(s)
    s.next_batch()
    _answer_all(s, o)  # 10 labels
    factory.hold = True
    old = {}
    t = threading.Thread(target=lambda: old.setdefault("r", s._retrain(1)))  # an old fit, outside the worker
    t.start()
    assert factory.entered.wait(30)  # it has read its snapshot (10 labels) and is fitting
    factory.hold = False
    s.next_batch()
    _answer_all(s, o)  # 20 labels
    new = s.retrain()  # the worker's fit on 20 labels lands first
    assert new.n_labels == 20 and new.model_version == 1
    factory.gate.set()
    t.join(60)
    # the older fit finished last: it was not swapped in and got no version
    assert s.model_version == 1 and s.model_info["n_labels"] == 20
    assert [m["version"] for m in proj.store.models()] == [1]
    assert old["r"].model_version == 1 and old["r"].n_labels == 20
    s.close()


def test_blocking_retrain_waits_behind_the_background_fit_and_versions_grow(proj, X):
    s = proj.session(embeddings=X)
    o = Oracle(s)
    s.next_batch()
    _answer_all(s, o)
    fut = s.retrain_async()
    s.next_batch()
    _answer_all(s, o)
    rep = s.retrain()
    first = fut.result(60)
    assert first.model_version <= rep.model_version
    assert rep.n_labels == 20 and s.model_info["n_labels"] == 20
    versions = [(m["version"], m["n_labels"]) for m in proj.store.models()]
    assert versions == sorted(versions)  # versions grow with the labelled set
    assert all(a[1] <= b[1] for a, b in zip(versions, versions[1:]))
    s.close()


def test_reselection_when_a_model_lands_records_a_batch_and_keeps_answered_items(proj, X):
    s = proj.session(embeddings=X)
    o = Oracle(s)
    s.next_batch()
    _answer_all(s, o)
    fut = s.retrain_async()
    fut.result(60)
    # open a batch with the model, answer 3 of 10, then a newer model lands
    s.next_batch()
    _answer_all(s, o)
    b = s.next_batch()
    assert b.model_version == 1
    answered = []
    for bi in b.items[:3]:
        s.mark_shown(bi.item.id)
        s.submit(bi.item.id, o.answer_for(bi.item))
        answered.append(bi.item.id)
    on_screen = b.items[3].item.id
    s.mark_shown(on_screen)
    rep = s.retrain()
    assert rep.model_version == 2 and rep.reselected == 6
    nb = s.current_batch
    assert nb.batch_id != b.batch_id and nb.round == b.round and nb.model_version == 2
    ids = [bi.item.id for bi in nb.items]
    assert ids[:4] == answered + [on_screen]  # answered and on-screen items stay, in order
    assert len(ids) == len(b.items)
    rec = proj.store.load_batch(nb.batch_id)
    assert rec["model_version"] == 2 and rec.get("supersedes") == b.batch_id
    assert all(sc is not None for sc in rec["scores"][4:]) or rec["strategy"] == "adaptive"
    # the old batch record is still there, unchanged; answered events untouched
    assert proj.store.load_batch(b.batch_id)["item_ids"] == [bi.item.id for bi in b.items]
    assert set(answered) <= set(proj.store.labels())
    assert {x.item.id for x in s.pending()} == set(ids[3:])
    # an item re-selected away may still be answered by a client that shows it
    gone = next(bi for bi in b.items[4:] if bi.item.id not in ids)
    s.submit(gone.item.id, o.answer_for(gone.item))
    assert gone.item.id in proj.store.labels()
    s.close()


def test_cold_start_seeded_with_labelled_items_spreads_out(proj, X):
    rng = np.random.default_rng(0)
    first, _ = cold_start_indices(X, 20, np.random.default_rng(1))
    again, _ = cold_start_indices(X, 20, np.random.default_rng(1))
    assert set(first) == set(again)  # without the labelled set a second cold start repeats the first
    rest = np.setdiff1d(np.arange(len(X)), first)
    second, det = cold_start_indices(X[rest], 20, np.random.default_rng(1), X_labelled=X[first])
    second = rest[second]
    assert not set(second) & set(first)

    def mean_min_dist(idx):
        d = ((X[idx][:, None, :] - X[first][None, :, :]) ** 2).sum(-1)
        return np.sqrt(d.min(axis=1)).mean()

    rand = [mean_min_dist(rng.choice(rest, 20, replace=False)) for _ in range(20)]
    assert mean_min_dist(second) > np.mean(rand), (mean_min_dist(second), np.mean(rand))
    assert det["uncovered_clusters"] >= 1


def test_session_second_cold_start_sees_the_first(proj, X):
    s = proj.session(embeddings=X)
    o = Oracle(s)
    b1 = s.next_batch()
    _answer_all(s, o)
    b2 = s.next_batch()  # opened before any model exists (the widget does this while v1 trains)
    assert b2.strategy == "cold_start"
    assert not {bi.item.id for bi in b1.items} & {bi.item.id for bi in b2.items}
    s.close()


def test_the_default_opened_before_the_first_model_can_choose_as_for_a_weak_model(proj, X, monkeypatch):
    """ADAPTIVE_NO_MODEL='weak' (measured worse on validation, kept as an option): the session hands the adaptive
    default the labelled items and it picks as for its weakest model, recorded as adaptive with no scores."""
    from alworkbench.query import strategies as st

    monkeypatch.setattr(st, "ADAPTIVE_NO_MODEL", "weak")
    s = proj.session(embeddings=X)
    o = Oracle(s)
    b1 = s.next_batch()
    assert b1.strategy == "cold_start"  # nothing labelled: cold start
    _answer_all(s, o)
    b2 = s.next_batch()
    rec = [r for r in proj.store.batches() if r["batch_id"] == b2.batch_id][-1]
    if rec["model_version"] == 0:  # opened before v1 landed (nearly always)
        assert b2.strategy == rec["strategy"] == "adaptive" and rec["scores"] == [None] * len(b2)
    assert not {bi.item.id for bi in b1.items} & {bi.item.id for bi in b2.items}
    s.close()


def test_adaptive_without_a_model_cold_starts_only_without_labels(X):
    from alworkbench.errors import ConfigError
    from alworkbench.query import strategies as st

    first = select("adaptive", 10, X_pool=X, rng=0)
    assert first.strategy == "cold_start"
    rest = np.setdiff1d(np.arange(len(X)), first.indices)
    seeded = select("adaptive", 10, X_pool=X[rest], X_labelled=X[first.indices], rng=0)
    assert st.ADAPTIVE_NO_MODEL == "cold_start"
    assert seeded.strategy == "cold_start" and seeded.details["n_labelled_used"] == 10
    sel = select("adaptive", 10, X_pool=X[rest], X_labelled=X[first.indices], rng=0, no_model="weak")
    assert sel.strategy == "adaptive" and sel.details["reason"].startswith("no model yet")
    assert sel.details["model_skill"] is None and sel.details["n_uncertain"] == 0
    assert sel.details["coverage"] == {"mode": st.ADAPTIVE_WEAK} and np.isnan(sel.scores).all()
    assert len(set(sel.indices.tolist())) == 10
    with pytest.raises(ConfigError, match="no_model"):
        select("adaptive", 10, X_pool=X[rest], X_labelled=X[first.indices], no_model="typical")


def test_reopen_without_new_labels_restores_the_last_model(proj, X):
    s = proj.session(embeddings=X)
    o = Oracle(s)
    o.run(2)
    v = s.model_version
    n_reports = len(proj.store.reports())
    proba = s.predict_proba_all()[1].copy()
    s.close()
    s2 = proj.session(embeddings=X)
    assert s2.restored and not s2.is_training
    assert s2.model_version == v and len(proj.store.reports()) == n_reports
    assert np.allclose(s2.predict_proba_all()[1], proba, atol=1e-5)
    assert len(proj.store.models()) == v  # no new version
    s2.next_batch()
    s2.close()
    # a new answer since the model -> reopening refits once
    s3 = proj.session(embeddings=X)
    b = s3.next_batch()
    s3.submit(b.items[0].item.id, Oracle(s3).answer_for(b.items[0].item))
    s3.close()
    s4 = proj.session(embeddings=X)
    assert not s4.restored
    s4.wait(60)
    assert s4.model_version == v + 1
    s4.close()


def test_retrain_with_nothing_new_makes_no_new_version(proj, X):
    s = proj.session(embeddings=X)
    o = Oracle(s)
    o.run(1)
    r1 = s.reports[-1]
    r2 = s.retrain()
    assert r2.model_version == r1.model_version and len(proj.store.models()) == 1
    s.close()


def test_shown_confidences_are_calibrated(proj, X):
    s = proj.session(embeddings=X)
    o = Oracle(s)
    o.run(3)
    info = s.model_info
    assert info["cv_accuracy"] is not None and 0 < info["cv_accuracy"] <= 1
    assert info["temperature"] > 0 and info["n_folds"] >= 2
    rep = s.reports[-1]
    assert rep.cv_accuracy == info["cv_accuracy"] and rep.temperature == info["temperature"]
    summ = proj.store.latest_model_summary()  # the model record + its appended calibration record
    assert summ["version"] == info["version"] and summ["calibrated"]
    assert summ["cv_accuracy"] == info["cv_accuracy"] and summ["temperature"] == info["temperature"]
    # the shown top-1 confidence on held-out items is closer to the real accuracy than the raw head's
    ev = np.flatnonzero(s.eval_mask)
    classes = list(s.classes)
    y = np.array([classes.index(proj.items[i].label) for i in ev])
    shown = s.predict_proba_all()[1][ev]
    raw = s._full_proba(s.model)[0][ev]
    assert top1_ece(shown, y) <= top1_ece(raw, y) + 0.01
    s.close()


def _margin_rounds(s, o, n_rounds):
    b1 = s.next_batch()
    _answer_all(s, o)
    s.retrain()
    for _ in range(n_rounds):  # margin batches: every item carries a score
        b = s.next_batch()
        assert b.strategy == "margin"
        _answer_all(s, o)
    s.retrain()
    return b1


def test_the_skill_signal_is_measured_on_the_labels_chosen_at_random(tmp_path, monkeypatch):
    """Out-of-fold accuracy on every label is biased low once margin sampling adds the hard items (and cold-start
    picks are the easy, typical ones); the adaptive default's skill is measured on the uniform random picks, and the
    stored calibration carries it across a reopen."""
    from alworkbench.loop import session as session_mod
    from alworkbench.loop.calibration import chance_corrected

    monkeypatch.setattr(session_mod, "SKILL_SOURCE", "representative")
    proj = Project.init(tmp_path / "p", "digits", query={"batch_size": 30, "cold_start": "random"})
    X = proj.source.pixels.reshape(len(proj.items), -1).astype("float32") / 16.0
    s = proj.session(embeddings=X, strategy="margin")
    o = Oracle(s)
    b1 = _margin_rounds(s, o, 3)
    assert b1.strategy == "random"
    m = s._model
    cal = m.calibration
    first = {bi.item.id for bi in b1.items}
    ids = [proj.items[i].id for i in m.train_idx]
    rep = np.array([i in first for i in ids]) & cal.usable
    assert len(ids) == 120 and cal.n_skill == int(rep.sum()) >= session_mod.MIN_SKILL_LABELS
    codes = np.array([s.classes.index(proj.items[i].label) for i in m.train_idx])
    expect = float((cal.oof_proba[rep].argmax(axis=1) == codes[rep]).mean())
    assert cal.skill_accuracy == pytest.approx(expect) and cal.skill_accuracy != cal.cv_accuracy
    assert m.skill == pytest.approx(chance_corrected(expect, len(s.classes)))
    assert s.model_info["skill"] == m.skill and s.model_info["n_skill"] == cal.n_skill
    monkeypatch.setattr(session_mod, "SKILL_SOURCE", "all")
    assert m.skill == pytest.approx(chance_corrected(cal.cv_accuracy, len(s.classes)))
    monkeypatch.setattr(session_mod, "SKILL_SOURCE", "representative")
    version = s.model_version
    s.close()
    s2 = proj.session(embeddings=X, strategy="margin")  # reopened: the stored calibration carries the signal
    assert s2.restored and s2.model_version == version
    assert s2._model.calibration.skill_accuracy == pytest.approx(expect) and s2._model.skill == pytest.approx(m.skill)
    s2.close()
    proj.close()


def test_items_kept_by_a_reselection_keep_the_strategy_that_chose_them(proj, X):
    """A re-selection record lists the answered/on-screen items it keeps (with their old scores) under the new
    strategy: a typical cold-start pick kept by an adaptive re-selection is still no random pick."""
    s = proj.session(embeddings=X)
    ids = [it.id for it in proj.items if not s.eval_mask[s._index[it.id]]][:40]
    first = proj.store.create_batch(s.annotator, "cold_start", 0, [(i, None, None) for i in ids[:10]], 10)
    again = proj.store.create_batch(s.annotator, "adaptive", 1, [(i, None, None) for i in ids[10:16]] +
                                    [(i, 0.3, None) for i in ids[16:20]], 10, round=first["round"],
                                    supersedes=first["batch_id"], keep=ids[:4])
    assert again["item_ids"][:4] == ids[:4] and again["strategy"] == "adaptive"
    rnd = proj.store.create_batch(s.annotator, "random", 1, [(i, None, None) for i in ids[20:25]], 5)
    assert rnd["strategy"] == "random"
    got = dict(zip(ids[:25] + ids[30:32], s._chosen_at_random(ids[:25] + ids[30:32]).tolist()))
    assert not any(got[i] for i in ids[:4])  # kept cold-start picks
    assert all(got[i] for i in ids[10:16])  # the re-selection's random share
    assert not any(got[i] for i in ids[16:20])  # its uncertainty picks (scored)
    assert all(got[i] for i in ids[20:25])  # the random strategy
    assert not any(got[i] for i in ids[30:32])  # never handed out
    s.close()


def test_random_pick_origins_are_read_incrementally(proj, X, monkeypatch):
    """The session follows the batch log incrementally: a later call reads only the batches saved since the last
    one, and gives what a full read of the log gives (kept items of a re-selection included)."""
    s = proj.session(embeddings=X)
    ids = [it.id for it in proj.items if not s.eval_mask[s._index[it.id]]][:20]
    proj.store.create_batch(s.annotator, "random", 0, [(i, None, None) for i in ids[:5]], 5)
    calls, real = [], s.store.batch_origins
    monkeypatch.setattr(s.store, "batch_origins", lambda after=0: calls.append(after) or real(after))
    first = s._chosen_at_random(ids)
    assert first[:5].all() and not first[5:].any()
    cold = proj.store.create_batch(s.annotator, "cold_start", 1, [(i, None, None) for i in ids[5:10]], 5)
    proj.store.create_batch(s.annotator, "adaptive", 1, [(i, None, None) for i in ids[10:12]] +
                            [(i, 0.2, None) for i in ids[12:14]], 5, round=cold["round"],
                            supersedes=cold["batch_id"], keep=ids[5:7])
    second = s._chosen_at_random(ids)
    assert calls[0] == 0 and calls[1] > 0  # from where the first call stopped
    assert second[:5].all() and not second[5:10].any() and second[10:12].all() and not second[12:].any()
    s._origins = None  # forget what was followed: a full read of the log gives the same answer
    assert s._chosen_at_random(ids).tolist() == second.tolist() and calls[-1] == 0
    s.close()


def test_without_random_picks_the_skill_is_the_accuracy_on_every_label(proj, X):
    """Typical cold-start picks and margin picks are no sample of the pool: no skill_accuracy, the signal falls back
    to the out-of-fold accuracy on every label."""
    from alworkbench.loop.calibration import chance_corrected

    s = proj.session(embeddings=X, strategy="margin", batch_size=30)
    b1 = _margin_rounds(s, Oracle(s), 2)
    assert b1.strategy == "cold_start"
    cal = s._model.calibration
    assert cal.n_skill == 0 and cal.skill_accuracy is None and cal.cv_accuracy is not None
    assert s._model.skill == pytest.approx(chance_corrected(cal.cv_accuracy, len(s.classes)))
    s.close()


def test_temperature_scaling_fixes_an_overconfident_model():
    rng = np.random.default_rng(0)
    n, k = 2000, 5
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.0  # ~50% accurate
    z = logits * 6.0  # overconfident
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    T = fit_temperature(p, y)
    assert 3.0 < T < 12.0
    assert top1_ece(apply_temperature(p, T), y) < 0.05 < top1_ece(p, y)
    assert (apply_temperature(p, T).argmax(1) == p.argmax(1)).all()  # never changes the predicted class


def test_calibrate_is_out_of_fold(proj, X):
    from alworkbench.head import make_head_factory

    f = make_head_factory({"device": "cpu"})
    classes = list(proj.config.classes)
    idx = np.arange(200)
    y = np.array([classes.index(proj.items[i].label) for i in idx])
    cal = calibrate(f, X[idx], y, False, len(classes))
    in_sample = (f().fit(X[idx], y).predict(X[idx]) == y).mean()
    assert cal.n_folds == 5 and cal.oof_proba.shape == (200, 10)
    assert cal.cv_accuracy < in_sample  # measured on items each fold's head did not see
    assert cal.ece_after <= cal.ece_before + 1e-9


def test_calibrate_false_shows_raw_probabilities_but_keeps_the_cross_validation(tmp_path, X):
    """ui.calibrate: false only leaves the temperature at 1: the out-of-fold accuracy (shown beside suggestions) and
    the adaptive default's skill signal are still measured, so the default does not fall back to random for ever."""
    p = Project.init(tmp_path / "nocal", "digits", query={"batch_size": 20, "strategy": "random"},
                     ui={"calibrate": False})
    s = p.session(embeddings=X)
    o = Oracle(s)
    for _ in range(2):
        s.next_batch()
        _answer_all(s, o)
        s.retrain()
    info = s.model_info
    assert info["temperature"] == 1.0 and info["cv_accuracy"] is not None
    assert info["n_skill"] >= 10 and info["skill"] is not None and info["skill"] > 0.2
    m = s._model
    raw, _ = s._full_proba(m.head)
    np.testing.assert_allclose(m.proba, raw, rtol=1e-6)  # the head's own probabilities are shown
    s.close()
    p.close()


def test_hidden_suggestions(tmp_path, X):
    p = Project.init(tmp_path / "h", "digits", query={"batch_size": 10})
    p.config.ui = type("UI", (), {"show_suggestions": False, "calibrate": True})()
    s = p.session(embeddings=X)
    Oracle(s).run(1)
    b = s.next_batch()
    assert all(bi.prediction is None for bi in b.items) and s.predict(b.items[0].item.id) is None
    s.close()
    p.close()


def test_lbfgs_head_converges_to_the_logistic_regression_optimum(proj, X):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from alworkbench.head import TorchHead

    classes = list(proj.config.classes)
    idx = np.arange(400)
    y = np.array([classes.index(proj.items[i].label) for i in idx])
    head = TorchHead(device="cpu", class_weight=None, C=0.1, tol=1e-6, max_iter=2000).fit(X[idx], y)
    sc = StandardScaler().fit(X[idx])
    lr = LogisticRegression(C=0.1, tol=1e-8, max_iter=5000).fit(sc.transform(X[idx]), y)
    p_ours = head.predict_proba(X[400:800])
    p_lr = lr.predict_proba(sc.transform(X[400:800]))
    assert np.abs(p_ours - p_lr).max() < 0.02
    # warm start from the previous round's head reaches the same optimum in fewer iterations
    idx2 = np.arange(420)
    y2 = np.array([classes.index(proj.items[i].label) for i in idx2])
    cold = TorchHead(device="cpu", class_weight=None, C=0.1).fit(X[idx2], y2)
    warm = TorchHead(device="cpu", class_weight=None, C=0.1, warm_start_from=head).fit(X[idx2], y2)
    assert warm.warm_started_ and warm.n_iter_ < cold.n_iter_
    assert np.abs(warm.predict_proba(X[500:600]) - cold.predict_proba(X[500:600])).max() < 0.02


def test_adaptive_uses_coverage_for_a_weak_model_and_uncertainty_for_a_good_one(X):
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(10), size=len(X))
    weak = select("adaptive", 20, X_pool=X, proba=proba, model_skill=0.1, rng=0)
    good = select("adaptive", 20, X_pool=X, proba=proba, model_skill=0.95, rng=0)
    from alworkbench.query.strategies import SKILL_HIGH, SKILL_LOW
    mid = select("adaptive", 20, X_pool=X, proba=proba, model_skill=(SKILL_LOW + SKILL_HIGH) / 2, rng=0)
    assert weak.details["n_uncertain"] == 0 and np.isnan(weak.scores).all()
    assert good.details["n_uncertain"] == 20 and np.isfinite(good.scores).all()
    assert 0 < mid.details["n_uncertain"] < 20
    assert len(set(mid.indices.tolist())) == 20


def test_simulate_async_drives_the_background_path(tmp_path):
    from alworkbench.loop.simulation import simulate

    res = simulate("digits", strategies=["random", "default"], budget=60, batch_size=10, initial=10, seeds=[0],
                   workdir=tmp_path, progress=False, mode="async", pace=0.01, compare_sync=True,
                   head={"device": "cpu"})
    assert res["mode"] == "async" and "results_sync" in res and "summary_sync" in res
    curve = res["results"]["default"]["0"]
    assert [r["n_labels"] for r in curve] == [10, 20, 30, 40, 50, 60]
    assert all(0 < r["accuracy"] <= 1 for r in curve)
    # in the async loop, batch 2 is opened right after the first fit was submitted: almost always before that
    # model exists, so it is a (labelled-aware) cold start
    assert curve[1]["chosen_by_version"] == 0 or curve[1]["model_labels"] == 10
    if curve[1]["chosen_by_version"] == 0:
        assert curve[1]["strategy"] == "cold_start"
    assert curve[-1]["n_models"] >= 1 and curve[-1]["mean_fit_seconds"] > 0
    sync = res["results_sync"]["default"]["0"]
    assert [r["chosen_by_version"] for r in sync[1:]] == list(range(1, len(sync)))


def test_lbfgs_torch_path_matches_the_cpu_path(proj, X):
    """The GPU path (torch.optim.LBFGS) optimises the same objective as the CPU path (SciPy L-BFGS-B); run on CPU."""
    from alworkbench.head import TorchHead

    classes = list(proj.config.classes)
    idx = np.arange(300)
    y = np.array([classes.index(proj.items[i].label) for i in idx])
    a = TorchHead(device="cpu", tol=1e-6, max_iter=3000).fit(X[idx], y)
    b = TorchHead(device="cpu", tol=1e-6, max_iter=3000)
    b.fit(X[idx][:2], y[:2])  # sets up classes_/mean_/scale_ shapes; then train the torch path on the real data
    b.classes_ = a.classes_
    b.mean_, b.scale_ = a.mean_, a.scale_
    Xs = ((X[idx] - a.mean_) / a.scale_).astype(np.float32)
    b.weights_ = b._train_lbfgs_torch(Xs, np.searchsorted(a.classes_, y), len(a.classes_))
    assert np.abs(a.predict_proba(X[300:500]) - b.predict_proba(X[300:500])).max() < 0.02


def test_simulate_on_a_validation_split_never_touches_the_test_split(tmp_path, monkeypatch):
    from alworkbench.loop import simulation

    seen = {}
    real = simulation._accuracy

    def spy(session, factory, idx):
        seen["eval"] = session.eval_mask.copy()
        seen["asked"] = set(idx.tolist())
        return real(session, factory, idx)

    monkeypatch.setattr(simulation, "_accuracy", spy)
    res = simulation.simulate("digits", strategies=["random"], budget=30, batch_size=10, initial=10, seeds=[0],
                              workdir=tmp_path, progress=False, mode="sync", validation=0.2, head={"device": "cpu"})
    assert res["evaluated_on"] == "validation"
    p = Project.open(next((tmp_path).glob("digits-*")))
    test = p.eval_mask()
    assert not (seen["eval"] & test).any() and seen["eval"].sum() > 0.1 * (~test).sum()
    assert not any(test[i] for i in seen["asked"])  # no test item was labelled either
    p.close()
