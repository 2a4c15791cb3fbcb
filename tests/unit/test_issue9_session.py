"""Issue 9 in the Session: batches per annotator (finding 3), pending by round, undo into an earlier batch, guideline
acknowledgements as appended records."""
from __future__ import annotations

import numpy as np
import pytest

from alworkbench import Answer, Project


@pytest.fixture
def proj(tmp_path, project_backend):  # every test runs on SQLite and on PostgreSQL
    p = Project.init(tmp_path / "p", "digits", query={"batch_size": 10, "strategy": "random"},
                     guideline={"version": "1", "text": "be careful"})
    yield p
    p.close()


@pytest.fixture
def X(proj):
    return proj.source.pixels.reshape(len(proj.items), -1).astype("float32") / 16.0


def _session(proj, X, name):
    return proj.session(annotator=name, embeddings=X, warm_start=False)


def test_finding3_two_sessions_get_disjoint_batches_and_rounds(proj, X):
    ana, ben = _session(proj, X, "ana"), _session(proj, X, "ben")
    a = ana.next_batch()
    b = ben.next_batch()
    ids_a, ids_b = {x.item.id for x in a.items}, {x.item.id for x in b.items}
    assert len(ids_a) == len(ids_b) == 10 and not ids_a & ids_b and a.round != b.round
    assert ana.next_batch().batch_id == a.batch_id  # each resumes their own open batch
    assert not ids_a & {proj.items[i].id for i in ben.pool_indices()}
    for x in a.items:  # answering ana's batch never touches ben's
        ana.submit(x.item.id, Answer.of_label("1"))
    assert [x.item.id for x in ben.pending()] == [x.item.id for x in b.items]
    # a session opened later for ben resumes ben's batch, not ana's (which is the newest overall)
    ben2 = _session(proj, X, "ben")
    assert ben2.next_batch().batch_id == b.batch_id
    for s in (ana, ben, ben2):
        s.close()


def _stale_pool_once(monkeypatch, session, stale: np.ndarray):
    """The first pool_indices() call returns ``stale`` (a pool computed before the other annotator's batch was
    handed out), later calls the real one: the race two processes run into."""
    real = type(session).pool_indices
    calls = []

    def pool(self=session):
        calls.append(1)
        return stale if len(calls) == 1 else real(session)

    monkeypatch.setattr(session, "pool_indices", pool)


def test_finding3_batch_taken_meanwhile_is_selected_again(proj, X, monkeypatch):
    ana, ben = _session(proj, X, "ana"), _session(proj, X, "ben")
    a = ana.next_batch()
    taken = np.array([ben.index_of(x.item.id) for x in a.items])
    _stale_pool_once(monkeypatch, ben, taken)  # ben's selection only saw what ana just got
    b = ben.next_batch()
    assert len(b) == 10 and not {x.item.id for x in b.items} & {x.item.id for x in a.items}
    ana.close()
    ben.close()


def test_finding3_batch_partly_taken_meanwhile_is_topped_up_in_the_same_round(proj, X, monkeypatch):
    ana, ben = _session(proj, X, "ana"), _session(proj, X, "ben")
    a = ana.next_batch()
    mine = {x.item.id for x in a.items}
    free = [i for i in ben.pool_indices()][:5]
    stale = np.array([ben.index_of(x.item.id) for x in a.items] + list(free))
    _stale_pool_once(monkeypatch, ben, stale)
    b = ben.next_batch()
    got = [x.item.id for x in b.items]
    assert len(got) == 10 and not set(got) & mine
    survivors = [g for g in got if g in {proj.items[i].id for i in free}]
    assert survivors and got[:len(survivors)] == survivors  # what was still free stays first, the rest is new
    rec = proj.store.open_batch(annotator="ben")
    assert rec["batch_id"] == b.batch_id and rec["supersedes"] is not None and rec["round"] == b.round
    assert proj.store.load_batch(rec["supersedes"])["round"] == b.round
    ana.close()
    ben.close()


def test_undo_into_an_earlier_batch_supersedes_the_open_one_in_its_round(proj, X):
    s = _session(proj, X, "ana")
    first = s.next_batch()
    for x in first.items:
        s.submit(x.item.id, Answer.of_label("2"))
    second = s.next_batch()
    s.submit(second.items[0].item.id, Answer.of_label("3"))
    s.undo()  # second.items[0]: same batch, pending again
    assert s.current_batch.batch_id == second.batch_id and len(s.pending()) == 10
    s.submit(second.items[0].item.id, Answer.of_label("3"))
    s.undo()
    ev = s.undo()  # reaches into the first batch
    assert ev["sample_id"] == first.items[-1].item.id
    b = s.current_batch
    assert b.batch_id != second.batch_id and b.round == second.round
    assert [x.item.id for x in s.pending()][0] == ev["sample_id"]  # the undone item first, then the rest
    assert len(s.pending()) == 11 and len(b) == 11
    s.submit(ev["sample_id"], Answer.of_label("4"))
    assert proj.store.labels()[ev["sample_id"]] == "4"
    assert proj.store.open_batch(annotator="ana")["supersedes"] == second.batch_id
    s.close()


def test_enqueue_skips_items_waiting_for_another_annotator(proj, X):
    ana, ben = _session(proj, X, "ana"), _session(proj, X, "ben")
    a = ana.next_batch()
    for x in a.items[:3]:
        ana.submit(x.item.id, Answer.of_label("1"))
    ids = [x.item.id for x in a.items]
    with pytest.warns(UserWarning, match="7 of 10 item"):
        q = ben.enqueue(ids, reason="review")
    assert [x.item.id for x in q.items] == ids[:3]  # answered items may be reviewed; waiting ones are ana's
    assert sum(1 for e in proj.store.events() if e["kind"] == "enqueue") == 3
    ana.close()
    ben.close()


def test_guideline_acknowledgements_are_appended_records(proj, X):
    s = _session(proj, X, "ana")
    b = s.next_batch()
    assert s.guideline_acknowledged()  # first-time annotator
    s.submit(b.items[0].item.id, Answer.of_label("1"))  # the first answer records the version read
    assert proj.store.acknowledged_guideline("ana") == "1"
    s.acknowledge_guideline()
    acks = proj.store.records("guideline_ack")
    assert [(r["annotator"], r["version"]) for r in acks] == [("ana", "1"), ("ana", "1")]
    assert proj.store.get_meta("guideline_ack:ana") == "1"  # older readers see the latest through get_meta
    s.close()
