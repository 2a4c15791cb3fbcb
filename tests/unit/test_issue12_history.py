"""Issue 12: the labeller's answer history. Jumping back to an earlier answer and changing it appends a new answer
that supersedes the old one (an undo event plus the new answer, one transaction): the store keeps both, exactly one
is active. Redo after undo gives the undone answer again as a new event."""
from __future__ import annotations

import numpy as np
import pytest

from alworkbench import Answer
from alworkbench.errors import NothingToUndoError


@pytest.fixture
def wb(tmp_path):
    from alworkbench.project import Project
    from alworkbench.ui.workbench import Workbench

    p = Project.init(tmp_path / "proj", "digits", source={"limit": 120}, query={"batch_size": 5})
    X = np.random.default_rng(0).normal(size=(len(p.items), 6)).astype("float32")
    w = Workbench(p.session(annotator="ann", embeddings=X), retrain=False)
    yield p, w
    w.close()
    p.close()


class View:
    def __init__(self, w):
        self.w, self.seq = w, 0

    def send(self, type_, **kw):
        self.seq += 1
        self.w._on_msg(self.w, {"type": type_, "view": "t", "client_seq": self.seq, **kw}, [])
        assert self.w.ack["client_seq"] == self.seq
        return dict(self.w.ack)

    def label(self, value):
        return self.send("answer", item_id=self.w.item["item_id"], answer={"kind": "label", "label": value})


def active_for(p, sid):
    return [e for e in p.store.active_events() if e["sample_id"] == sid]


def test_history_lists_the_latest_answers_and_a_change_supersedes_never_overwrites(wb):
    p, w = wb
    v = View(w)
    ids = []
    for value in ("1", "2", "3"):
        ids.append(w.item["item_id"])
        assert v.label(value)["ok"]
    resume = w.item["item_id"]
    assert w.history.get("open") is not True          # filled only while the panel is open
    assert v.send("history", open=True)["ok"]
    entries = w.history["entries"]
    assert [e["text"] for e in entries] == ["3", "2", "1"] and all(e["annotator"] == "ann" for e in entries)
    assert all(e["thumb"].startswith("data:image/jpeg;base64,") for e in entries)
    assert all(e["name"].startswith("digits #") for e in entries)
    old = entries[-1]["event_id"]                      # the first answer ("1")
    n_events = len(p.store.events())
    ack = v.send("history_open", event_id=old)
    assert ack["ok"] and w.item["item_id"] == ids[0] and w.item["change"]["text"] == "1"
    assert w.history["changing"]["event_id"] == old
    ack = v.label("7")
    assert ack["ok"] and ack["info"].startswith("changed: 1 \u2192 7")
    # the store: the old answer is undone by an appended event, the new one is active; exactly one active answer
    events = p.store.events()
    assert len(events) == n_events + 2
    assert [(e["kind"], e.get("undoes")) for e in events[-2:]] == [("undo", old), ("label", None)]
    assert next(e for e in events if e["id"] == old)["value"] == "1"        # never overwritten
    act = active_for(p, ids[0])
    assert len(act) == 1 and act[0]["value"] == "7" and act[0]["annotator"] == "ann"
    assert p.store.active_answers()[ids[0]]["value"] == "7"
    assert w.item["item_id"] == resume and "change" not in w.item            # back where the batch was
    assert [e["text"] for e in w.history["entries"]] == ["7", "3", "2"]


def test_escape_from_a_change_goes_back_and_changes_nothing(wb):
    p, w = wb
    v = View(w)
    first = w.item["item_id"]
    v.label("4")
    resume = w.item["item_id"]
    v.send("history", open=True)
    n = len(p.store.events())
    v.send("history_open", event_id=w.history["entries"][0]["event_id"])
    assert w.item["item_id"] == first
    assert v.send("history_close")["ok"] and w.item["item_id"] == resume
    assert len(p.store.events()) == n and active_for(p, first)[0]["value"] == "4"


def test_redo_after_undo_and_never_after_a_new_answer(wb):
    p, w = wb
    v = View(w)
    a = w.item["item_id"]
    v.label("5")
    b = w.item["item_id"]
    v.label("6")
    assert "nothing to redo" in v.send("redo")["error"]
    v.send("undo")
    v.send("undo")
    assert w.item["item_id"] == a
    ack = v.send("redo")
    assert ack["ok"] and ack["info"] == "redone: 5 \u2014 z to undo"
    assert w.item["item_id"] == b                      # the next undone answer is next to redo
    assert v.send("redo")["ok"]
    assert {s: e["value"] for s, e in p.store.active_answers().items()} == {a: "5", b: "6"}
    kinds = [e["kind"] for e in p.store.events()]
    assert kinds == ["label", "label", "undo", "undo", "label", "label"]   # appended, never rewritten
    v.send("undo")
    v.label("8")                                        # a new answer: the redo stack is gone
    assert "nothing to redo" in v.send("redo")["error"]


def test_session_change_answer_refuses_an_answer_that_is_not_active(wb):
    p, w = wb
    v = View(w)
    sid = w.item["item_id"]
    v.label("1")
    eid = p.store.active_answers()[sid]["id"]
    new = w.session.change_answer(eid, Answer.of_label("2"))
    with pytest.raises(NothingToUndoError, match="not active any more"):
        w.session.change_answer(eid, Answer.of_label("3"))
    with pytest.raises(NothingToUndoError, match="only they can change it"):
        p.store.supersede(new, Answer.of_label("3"), annotator="someone")
    assert [e["value"] for e in active_for(p, sid)] == ["2"]


def test_a_flag_note_comes_back_with_the_image_after_undo_and_in_a_change(wb):
    p, w = wb
    v = View(w)
    sid = w.item["item_id"]
    assert v.send("answer", item_id=sid, answer={"kind": "flag", "note": "two digits overlap"})["ok"]
    assert "earlier_note" not in w.item or not w.item["earlier_note"]
    v.send("undo")
    assert w.item["item_id"] == sid and w.item["earlier_note"] == "two digits overlap"
    v.send("answer", item_id=sid, answer={"kind": "flag", "note": "two digits overlap, left one cut"})
    v.send("history", open=True)
    assert w.history["entries"][0]["text"] == "flagged for review: \u201ctwo digits overlap, left one cut\u201d"
    v.send("history_open", event_id=w.history["entries"][0]["event_id"])
    assert w.item["item_id"] == sid and w.item["earlier_note"] == "two digits overlap, left one cut"
