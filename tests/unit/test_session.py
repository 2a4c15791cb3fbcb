"""The headless loop against real parts: digits source, SQLite store, torch head, modAL-backed strategies."""
import threading

import numpy as np
import pytest

from alworkbench import Answer, Project
from alworkbench.errors import AnswerError, DuplicateAnswerError, NotFittedError, PoolExhaustedError, UnknownItemError
from alworkbench.loop.oracle import Oracle
from alworkbench.loop.session import GuidelineChangedError


def test_rounds_improve_and_report(proj, X):
    s = proj.session(embeddings=X)
    o = Oracle(s)
    first = s.next_batch()
    assert first.round == 1 and first.strategy == "cold_start" and len(first) == 10
    assert all(bi.prediction is None for bi in first.items)  # no model yet
    reps = o.run(6)
    assert [r.n_labels for r in reps] == [10, 20, 30, 40, 50, 60]
    assert [r.model_version for r in reps] == [1, 2, 3, 4, 5, 6]
    assert reps[-1].accuracy > 0.75, reps[-1]  # 60 labels of 8x8 digits with a linear head
    assert reps[-1].accuracy > reps[0].accuracy
    assert sum(reps[-1].labels_per_class.values()) == 60
    assert reps[-1].n_eval == int(proj.eval_mask().sum()) > 0
    assert reps[1].stability is not None and 0 <= reps[1].stability <= 1
    b = s.next_batch()
    assert b.strategy not in ("cold_start", "random")
    assert all(bi.prediction is not None and bi.prediction.model_version == 6 for bi in b.items)
    # adaptive: the uncertainty share carries its margin score, the coverage (random) share none
    assert any(bi.score is not None for bi in b.items)
    # held-out items are never queried
    ev_ids = {it.id for it, m in zip(proj.items, proj.eval_mask()) if m}
    asked = {e["sample_id"] for e in proj.store.events()}
    assert not (asked & ev_ids)
    s.close()


def test_answers_are_stored_with_provenance(proj, X):
    s = proj.session(annotator="ann", embeddings=X)
    b = s.next_batch()
    bi = b.items[0]
    s.mark_shown(bi.item.id)
    eid = s.submit(bi.item.id, Answer.flag(note="2 or 7?"))
    ev = proj.store.events()[-1]
    assert ev["id"] == eid and ev["kind"] == "flag" and ev["note"] == "2 or 7?"
    assert ev["annotator"] == "ann" and ev["round"] == b.round and ev["batch_id"] == b.batch_id
    assert ev["strategy"] == "cold_start" and ev["time_spent_s"] is not None
    assert bi.item.id not in {x.item.id for x in s.pending()}
    s.close()


def test_duplicate_unknown_and_invalid_answers_refused(proj, X):
    s = proj.session(embeddings=X)
    b = s.next_batch()
    a = b.items[0].item.id
    s.submit(a, Answer.of_label("3"))
    with pytest.raises(DuplicateAnswerError):
        s.submit(a, Answer.of_label("4"))
    with pytest.raises(UnknownItemError):
        s.submit("digits/train/does-not-exist", Answer.of_label("4"))
    with pytest.raises(AnswerError, match="allowed"):
        s.submit(b.items[1].item.id, Answer.of_label("eleven"))
    assert proj.store.labels() == {a: "3"}  # exactly one answer counted
    s.close()


def test_multi_step_undo_reopens_items(proj, X):
    s = proj.session(embeddings=X)
    b = s.next_batch()
    ids = [bi.item.id for bi in b.items[:3]]
    for i in ids:
        s.submit(i, Answer.of_label("1"))
    assert len(s.pending()) == 7
    assert s.undo()["sample_id"] == ids[2]
    assert s.undo()["sample_id"] == ids[1]
    assert [x.item.id for x in s.pending()][:2] == ids[1:3]
    assert set(proj.store.labels()) == {ids[0]}
    s.submit(ids[1], Answer.of_label("7"))  # answering again after undo is allowed
    assert proj.store.labels()[ids[1]] == "7"
    s.close()


def test_resume_open_batch_after_restart(tmp_path, X):
    p = Project.init(tmp_path / "q", "digits", query={"batch_size": 10})
    s = p.session(embeddings=X)
    b = s.next_batch()
    for bi in b.items[:4]:
        s.submit(bi.item.id, Answer.of_label("0"))
    s.close()
    p.close()
    p2 = Project.open(tmp_path / "q")
    s2 = p2.session(embeddings=X)
    b2 = s2.next_batch()
    # closing released the batch; nobody took its items, so reopening renews it: same round, same items, a new
    # record that supersedes the released one (so other annotators see it held again)
    assert b2.round == b.round and [x.item.id for x in b2.items] == [x.item.id for x in b.items]
    assert b2.batch_id == b.batch_id or p2.store.load_batch(b2.batch_id)["supersedes"] == b.batch_id
    assert p2.store.batch_holds(b2.batch_id)
    assert [x.item.id for x in s2.pending()] == [x.item.id for x in b.items[4:]]
    s2.wait()  # warm start retrains on the 4 stored labels in the background
    assert s2.model_version == 1 and s2.reports[-1].n_labels == 4
    s2.close()


def test_retrain_in_background_while_answering(proj, X):
    # the fit is provably in progress (the head has entered fit() and waits on a gate) while the next batch is
    # fetched and answered in another thread: that work finishes before the gate opens, so it never waited
    entered, gate = threading.Event(), threading.Event()
    s = proj.session(embeddings=X, head_factory=lambda: _GatedHead(gate, entered))
    o = Oracle(s)
    o.label_batch(s.next_batch())
    assert s.predict_proba_all() is None  # no model before the first retrain
    reported = threading.Event()
    s.on_report(lambda r: reported.set())
    fut = s.retrain_async()
    assert entered.wait(timeout=60), "the fit never started"

    def answer_next_batch():
        b = s.next_batch()
        for bi in b.items:
            s.submit(bi.item.id, o.answer_for(bi.item))

    worker = threading.Thread(target=answer_next_batch)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "next_batch/submit waited for the fit"
    assert not fut.done() and s.is_training and not gate.is_set()  # the fit was still running throughout
    assert len(proj.store.labels()) == 20
    gate.set()
    rep = fut.result(timeout=60)
    assert reported.wait(timeout=60) and rep.model_version >= 1
    assert s.retrain().n_labels == 20
    assert not s.is_training
    s.close()


def test_retrain_without_labels_is_a_clear_error(proj, X):
    s = proj.session(embeddings=X)
    with pytest.raises(NotFittedError, match="no labels yet"):
        s.retrain()
    s.close()


def test_enqueue_view_for_relabel(proj, X):
    s = proj.session(embeddings=X)
    o = Oracle(s)
    o.run(2)
    done = list(proj.store.labels())[:3]
    b = s.enqueue(done, reason="relabel")
    assert b.strategy == "queue:relabel" and [x.item.id for x in b.items] == done
    assert s.next_batch().batch_id == b.batch_id
    s.submit(done[0], Answer.of_label("5"))
    assert proj.store.labels()[done[0]] == "5"
    assert sum(1 for e in proj.store.events() if e["kind"] == "enqueue") == 3
    s.close()


def test_guideline_change_must_be_acknowledged(tmp_path, X):
    p = Project.init(tmp_path / "q", "digits", guideline={"version": "1", "text": "be careful"})
    s = p.session(annotator="ann", embeddings=X)
    b = s.next_batch()
    s.submit(b.items[0].item.id, Answer.of_label("1"))
    text = p.config_path.read_text().replace("version: '1'", "version: '2'").replace("be careful", "flag 1 vs 7")
    p.config_path.write_text(text)
    assert s.reload_guideline() is True
    assert not s.guideline_acknowledged()
    with pytest.raises(GuidelineChangedError, match="version 2"):
        s.submit(b.items[1].item.id, Answer.of_label("1"))
    s.acknowledge_guideline()
    s.submit(b.items[1].item.id, Answer.of_label("1"))
    s.close()


def test_pool_exhaustion(tmp_path):
    p = Project.init(tmp_path / "p", "digits", source={"limit": 40}, query={"batch_size": 100})
    X = p.source.pixels.reshape(len(p.items), -1).astype("float32")
    s = p.session(embeddings=X)
    o = Oracle(s)
    o.label_batch(s.next_batch())
    assert len(s.pool_indices()) == 0
    with pytest.raises(PoolExhaustedError, match="0 unlabelled"):
        s.next_batch()
    s.close()


def test_multilabel_session(tmp_path):
    import csv

    from PIL import Image

    root = tmp_path / "imgs"
    root.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(60):
        red, big = i % 2, (i // 2) % 2
        a = np.zeros((16, 16, 3), np.uint8)
        a[..., 0] = 200 * red
        s_ = 12 if big else 4
        a[:s_, :s_, 2] = 255
        a += rng.integers(0, 20, a.shape, dtype=np.uint8)
        Image.fromarray(a).save(root / f"im{i}.png")
        tags = (["red"] if red else []) + (["big"] if big else []) + ["any"]
        rows.append({"path": f"im{i}.png", "tags": "|".join(tags)})
    with open(root / "m.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "tags"])
        w.writeheader()
        w.writerows(rows)
    p = Project.init(tmp_path / "p", str(root / "m.csv"), tags=["red", "big", "any"], query={"batch_size": 8},
                     evaluation={"holdout": 0.3})
    X = np.stack([np.asarray(p.source.load(it).resize((8, 8))).ravel() for it in p.items]).astype("float32") / 255
    s = p.session(embeddings=X)
    with pytest.raises(AnswerError, match="empty"):
        s.submit(s.next_batch().items[0].item.id, Answer.of_tags([]))
    reps = Oracle(s).run(3)
    assert reps[-1].metric == "micro_f1" and reps[-1].accuracy > 0.8
    pred = s.predict(p.items[0].id)
    assert len(pred.top) == 3 and all(0 <= pr <= 1 for _, pr in pred.top)
    assert set(s.coverage()) == {"red", "big", "any"} and s.coverage()["any"] == 24
    s.close()


def test_report_round_is_the_finished_batch_and_listeners_see_idle(proj, X):
    s = proj.session(embeddings=X)
    seen = []
    s.on_report(lambda r: seen.append((r.round, s.is_training)))
    Oracle(s).label_batch(s.next_batch())
    fut = s.retrain_async()
    nxt = s.next_batch()  # opened while training: the report must still say round 1
    rep = fut.result(timeout=60)
    assert nxt.round == 2 and rep.round == 1
    assert seen == [(1, False)]
    s.close()


def test_simulate_runs_rounds_and_learns():
    from alworkbench.loop import simulate

    r = simulate("digits", strategies=("random",), budget=30, batch_size=10, initial=10, seeds=(0,),
                 backbone="pixels", limit=300, progress=False)
    (curve,) = r["results"]["random"].values()
    assert [p["n_labels"] for p in curve] == [10, 20, 30]
    assert all(0.0 <= p["accuracy"] <= 1.0 for p in curve)
    assert curve[-1]["accuracy"] > 0.3  # 10 classes: chance is 0.1


class _GatedHead:
    """A real scikit-learn head whose fit waits on an Event, so the test controls when training ends."""

    def __init__(self, gate, entered=None):
        from sklearn.linear_model import LogisticRegression

        self.gate, self.entered, self.inner = gate, entered, LogisticRegression(max_iter=300)

    def fit(self, X, y):
        if self.entered is not None:
            self.entered.set()
        if not self.gate.wait(timeout=60):
            raise TimeoutError("gate never opened")
        self.inner.fit(X, y)
        self.classes_ = self.inner.classes_
        return self

    def predict_proba(self, X):
        return self.inner.predict_proba(X)


def test_answers_keep_arriving_while_a_fit_is_running(proj, X):
    gate, entered = threading.Event(), threading.Event()
    s = proj.session(embeddings=X, head_factory=lambda: _GatedHead(gate, entered))
    o = Oracle(s)
    o.label_batch(s.next_batch())
    fut = s.retrain_async()
    assert s.is_training and not fut.done()
    assert entered.wait(timeout=60)  # the fit read its 10 labels and is running
    b = s.next_batch()  # the fit is blocked: selection and answers must not wait for it
    for bi in b.items:
        s.submit(bi.item.id, o.answer_for(bi.item))
    assert len(proj.store.labels()) == 20 and s.is_training and not fut.done()
    follow = s.retrain_async()  # requested during the fit: a follow-up that will include all 20 labels
    assert follow is not fut and s.retrain_async() is follow  # coalesced
    gate.set()
    assert fut.result(timeout=60).n_labels == 10
    assert follow.result(timeout=60).n_labels == 20
    s.wait(timeout=60)
    assert not s.is_training and s.model_version == 2
    s.close()


def test_head_is_seeded_per_session(proj, X):
    a = proj.session(embeddings=X, seed=3, warm_start=False)._head_factory()
    b = proj.session(embeddings=X, seed=4, warm_start=False)._head_factory()
    assert a.random_state == 3 and b.random_state == 4
