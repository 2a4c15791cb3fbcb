"""The widget's kernel side of the quality loop, without a browser: the exact messages the views send (the
qualification test, its retry, the accuracy notice, reviewer mode), checked against the real SQLite store.

The browser tests (tests/browser/test_quality_browser.py) drive the same paths from the keyboard."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

pytest.importorskip("anywidget")

from alworkbench import Answer  # noqa: E402
from alworkbench.errors import AlwbError  # noqa: E402
from alworkbench.labels.quality import QUALIFICATION_STRATEGY, QualityView, add_gold  # noqa: E402
from alworkbench.project import Project  # noqa: E402
from alworkbench.ui import Workbench  # noqa: E402

GUIDE = "# Digits\n- answer the digit you **see**\n- a 7 with a bar is still a 7"


def head():
    return LogisticRegression(max_iter=200)


def pixels(p):
    return p.source.pixels.reshape(len(p.items), -1).astype("float32") / 16.0


def digits(tmp_path, *, n_gold=5, limit=100, **quality):
    p = Project.init(tmp_path / "proj", "digits", source={"limit": limit}, query={"batch_size": 4},
                     guideline={"version": "1", "text": GUIDE}, quality=quality)
    truth = {it.id: it.label for it in p.items}
    gold = [it.id for it in p.items[:n_gold]]
    add_gold(p.store, [(sid, truth[sid]) for sid in gold], multilabel=False, source="test",
             known_ids=[it.id for it in p.items])
    return p, truth


class View:
    """Sends messages the way the browser view does and returns the acknowledgement."""

    def __init__(self, w):
        self.w, self.seq = w, 0

    def send(self, type_, **kw):
        self.seq += 1
        self.w._on_msg(self.w, {"type": type_, "view": "test", "client_seq": self.seq, **kw}, [])
        ack = dict(self.w.ack)
        assert ack["client_seq"] == self.seq
        return ack

    def answer(self, label, item_id=None):
        return self.send("answer", item_id=item_id or self.w.item["item_id"],
                         answer={"kind": "label", "label": label}, time_spent_s=0.4)

    def review(self, kind, item_id="current", **kw):
        if item_id == "current":
            item_id = (self.w.review.get("entry") or {}).get("item_id")
        return self.send(kind, item_id=item_id, **kw)


def wrong(label: str) -> str:
    return str((int(label) + 1) % 10)


def test_qualification_fail_guideline_retry_pass_then_ordinary_batches(tmp_path):
    p, truth = digits(tmp_path, qualification_items=3, pass_mark=1.0, min_known=3)
    s = p.session(annotator="qa", embeddings=pixels(p), head_factory=head)
    w = Workbench(s)
    v = View(w)
    # the test: gold items, no suggestions (also not after a model exists), its place in the header
    it = w.item
    assert it["qualification"] is True and it["prediction"] == [] and (it["position"], it["batch_size"]) == (1, 3)
    assert w.quality["result"] is None and not w.quality["blocked"]
    ack = v.send("answer", item_id=it["item_id"], answer={"kind": "label", "label": "1"}, via="accept")
    assert not ack["ok"] and "no model suggestion" in ack["error"]
    first = []
    for i in range(3):
        sid = w.item["item_id"]
        first.append(sid)
        assert v.answer(wrong(truth[sid]) if i == 0 else truth[sid])["ok"]
    # failed: the result, the guideline to read again, no item; answers and undo are refused
    q = w.quality
    assert q["blocked"] and q["result"]["passed"] is False and (q["result"]["correct"], q["result"]["n"]) == (2, 3)
    assert q["result"]["text"] == "Qualification test failed: 2 of 3 correct (67%); the pass mark is 100%."
    assert "a 7 with a bar" in q["guideline_html"]
    assert q["notice"] == ""        # 2 of 3 is below the pass mark, but the failed test already says so
    assert w.item["item_id"] is None and "qualification test failed" in w.item["status"]
    assert not v.answer("3", item_id=first[0])["ok"]
    ack = v.send("undo")
    assert not ack["ok"] and "cannot be undone" in ack["error"]
    # retry: acknowledges the guideline (after the failure) and starts a new test
    ack = v.send("qualification_retry")
    assert ack["ok"] and "new qualification test" in ack["info"], ack
    assert w.item["qualification"] is True and w.item["position"] == 1 and not w.quality["blocked"]
    for _ in range(3):
        sid = w.item["item_id"]
        assert v.answer(truth[sid])["ok"]
    q = w.quality
    assert q["result"]["passed"] is True and q["result"]["text"].startswith("Qualification test passed: 3 of 3")
    assert w.item["qualification"] is False and w.item["item_id"] is not None
    assert s.current_batch.strategy != QUALIFICATION_STRATEGY
    # the notice follows ordinary work only (hidden gold, sampled reviews): the failed test, now passed, does not
    # start the annotator below the pass mark
    assert q["notice"] == "" and s.quality_notice() is None
    ack = v.send("qualification_retry")
    assert not ack["ok"] and "no qualification test to retry" in ack["error"]
    # the first ordinary answer clears the result; it is an ordinary label
    sid = w.item["item_id"]
    assert v.answer(truth[sid])["ok"]
    assert w.quality["result"] is None and s.labels()[sid] == truth[sid]
    quals = p.store.records("qualification")
    assert [r["passed"] for r in quals] == [False, True]
    acks = p.store.records("guideline_ack")
    assert [a for a in acks if quals[0]["id"] < a["id"] < quals[1]["id"]], "no acknowledgement after the failure"
    test_answers = [e for e in p.store.active_events() if e["strategy"] == QUALIFICATION_STRATEGY]
    assert len(test_answers) == 6


def test_a_qualification_error_is_a_message_not_a_traceback(tmp_path):
    p, _ = digits(tmp_path, n_gold=1, qualification_items=3)
    s = p.session(annotator="qb", embeddings=pixels(p), head_factory=head)
    w = Workbench(s)
    assert w.item["item_id"] is None
    assert "needs 3 gold items but this project has 1" in w.quality["error"]
    assert w.quality["result"] is None and not w.quality["blocked"]
    ack = View(w).send("qualification_retry")   # "try again": the same clear message, still nothing to label
    assert ack["ok"] and "needs 3 gold items" in w.quality["error"] and w.item["item_id"] is None
    assert p.store.records("qualification") == [] and p.store.active_events() == []


def test_widget_refuses_unknown_mode(tmp_path):
    p, _ = digits(tmp_path)
    with pytest.raises(AlwbError, match="unknown Workbench mode"):
        Workbench(p.session(annotator="x", embeddings=pixels(p), head_factory=head), mode="audit")


def _two_annotators(tmp_path, **kw):
    """ana flags one item (with a note) and labels two; bob answers one of them differently."""
    p = Project.init(tmp_path / "rev", "digits", source={"limit": 80}, query={"batch_size": 3},
                     quality={"review_sample": 1.0}, **kw)
    X = pixels(p)
    truth = {it.id: it.label for it in p.items}
    ana = p.session(annotator="ana", embeddings=X, head_factory=head)
    ids = [bi.item.id for bi in ana.next_batch().items]
    flagged, disputed, sampled = ids
    ana.submit(flagged, Answer.flag("blurry: 1 or 7?"))
    ana.submit(disputed, Answer.of_label(truth[disputed]))
    ana.submit(sampled, Answer.of_label(truth[sampled]))
    bob = p.session(annotator="bob", embeddings=X, head_factory=head)
    bob.enqueue([disputed])
    bob.submit(disputed, Answer.of_label(wrong(truth[disputed])))
    ana.close()
    bob.close()
    return p, X, truth, (flagged, disputed, sampled)


def test_review_mode_accept_refusals_correction_with_reason_and_skip(tmp_path):
    p, X, truth, (flagged, disputed, sampled) = _two_annotators(tmp_path)
    rita = p.session(annotator="rita", embeddings=X, head_factory=head)
    w = Workbench(rita, mode="review")
    v = View(w)
    assert w.ui_mode == "review" and "alwb-reviewer" in w._dom_classes and w.mode == "single"
    r = w.review
    e = r["entry"]
    assert (r["position"], r["queue_length"], e["item_id"]) == (1, 3, flagged)
    assert e["reasons"] == ["flag"] and e["reasons_text"] == ["flagged by an annotator"]
    assert e["answers"][0]["annotator"] == "ana" and "blurry: 1 or 7?" in e["answers"][0]["text"]
    assert e["src"].startswith("data:image/png;base64,")
    # a flag has no answer to accept: the core's reason, nothing stored, the same entry
    ack = v.review("review_accept")
    assert not ack["ok"] and "flagged" in ack["error"] and w.review["entry"]["item_id"] == flagged
    # skip: the next entry, the disagreement
    ack = v.review("review_skip")
    assert ack["ok"] and w.review["entry"]["item_id"] == disputed and w.review["position"] == 2
    e = w.review["entry"]
    assert "disagreement" in e["reasons"] and e["tie"] is True
    assert {a["annotator"]: a["value"] for a in e["answers"]} == {"ana": truth[disputed], "bob": wrong(truth[disputed])}
    ack = v.review("review_accept")
    assert not ack["ok"] and "disagree" in ack["error"] and w.review["entry"]["item_id"] == disputed
    # a correction needs a reason (the core says so); then it is stored
    ack = v.review("review_correct", answer={"kind": "label", "label": truth[disputed]}, reason="  ")
    assert not ack["ok"] and "needs a reason" in ack["error"]
    assert p.store.records("review") == []
    # stale: a message for another item than the one shown is refused
    assert "stale" in v.review("review_accept", item_id=sampled)["error"]
    ack = v.review("review_correct", answer={"kind": "label", "label": truth[disputed]}, reason="bob misread it")
    assert ack["ok"] and w.review["entry"]["item_id"] == sampled
    assert v.review("review_accept")["ok"]
    # only the skipped flag is left: shown again (every other entry was decided)
    r = w.review
    assert r["entry"]["item_id"] == flagged and r["queue_length"] == 1
    recs = p.store.records("review")
    assert [(x["item_id"], x["action"], x["reviewer"], x.get("label"), x["reason"]) for x in recs] == [
        (disputed, "correct", "rita", truth[disputed], "bob misread it"),
        (sampled, "accept", "rita", truth[sampled], "")]
    view = QualityView(p.store, p.config)
    assert view.item_state(disputed)["review_state"] == "corrected"
    assert view.item_state(disputed)["final"] == truth[disputed]
    assert view.item_state(sampled)["review_state"] == "accepted"
    assert view.item_state(flagged)["review_state"] == "unreviewed"
    # the reviewer's screen stores no answers and undoes nothing
    assert not v.send("answer", item_id=flagged, answer={"kind": "label", "label": "1"})["ok"]
    assert not v.send("undo")["ok"]
    # the flag, corrected: the queue is empty and says so
    assert v.review("review_correct", answer={"kind": "label", "label": "7"}, reason="a bar: a 7")["ok"]
    r = w.review
    assert r["entry"] is None and r["queue_length"] == 0 and "queue is empty" in r["empty"]
    assert v.review("review_skip", item_id=None)["ok"]   # n on the empty queue looks again
    assert len(p.store.records("review")) == 3
    assert [a["action"] for a in w.reviews_log] == ["correct", "accept", "correct"]


def test_review_mode_multilabel_correction_takes_tags(tmp_path):
    tags = ["even", "odd", "round"]
    p = Project.init(tmp_path / "tags", "digits", source={"limit": 60}, query={"batch_size": 2}, tags=tags,
                     quality={"review_sample": 1.0})
    ana = p.session(annotator="ana")
    sid = ana.next_batch().items[0].item.id
    ana.submit(sid, Answer.of_tags(["odd"]))
    ana.close()
    w = Workbench(p.session(annotator="rita"), mode="review")
    v = View(w)
    assert w.mode == "multi" and w.review["entry"]["item_id"] == sid
    assert [c["key"] for c in w.choices] == ["1", "2", "3"]
    assert not v.review("review_correct", answer={"kind": "tags", "tags": []}, reason="x")["ok"]
    assert v.review("review_correct", answer={"kind": "tags", "tags": ["round", "even"]}, reason="an 8")["ok"]
    (rec,) = p.store.records("review")
    assert rec["action"] == "correct" and sorted(rec["tags"]) == ["even", "round"] and rec["reason"] == "an 8"
    # the same screen from the project folder
    w2 = Workbench.open(tmp_path / "tags", annotator="rita", mode="review")
    assert w2.ui_mode == "review" and w2.review["entry"] is None and w2.review["queue_length"] == 0
    assert w2.review["reviewer"] == "rita"
