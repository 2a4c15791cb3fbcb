"""Issue 8, the widget's kernel side: the header and the round summary name the same model (version, labels it was
trained on, cross-validated accuracy), round and store label count; suggestions carry the model's cross-validated
accuracy; ``ui.show_suggestions: false`` shows no prediction and refuses the accept key; a model that lands while
an image is shown re-selects the rest of the batch but keeps that image and its place ("item i of n")."""
from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

pytest.importorskip("anywidget")

from alworkbench.project import Project  # noqa: E402
from alworkbench.ui import Workbench  # noqa: E402
from alworkbench.ui.render import model_line  # noqa: E402


@pytest.fixture(scope="module")
def pixels(tmp_path_factory):
    d = tmp_path_factory.mktemp("base") / "p"
    p = Project.init(d, "digits", source={"limit": 200})
    return np.stack([np.asarray(p.source.load(it).convert("L"), dtype=np.float32).ravel() / 255
                     for it in p.source.items])


def make(tmp_path, pixels, batch_size=8, **kw):
    p = Project.init(tmp_path / "proj", "digits", source={"limit": 200}, query={"batch_size": batch_size}, **kw)
    s = p.session(annotator="ann", embeddings=pixels, head_factory=lambda: LogisticRegression(max_iter=300))
    return p, s


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

    def answer(self, label, via=None):
        extra = {"via": via} if via else {}
        return self.send("answer", item_id=self.w.item["item_id"], answer={"kind": "label", "label": label},
                         time_spent_s=0.5, **extra)


def label_batch(w, v, truth):
    r = w.item["round"]
    while w.item.get("round") == r and w.item.get("item_id"):
        assert v.answer(truth[w.item["item_id"]])["ok"]


def text(html_: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html_)).strip()


def test_header_and_round_summary_name_the_same_model_round_and_label_count(tmp_path, pixels):
    p, s = make(tmp_path, pixels, batch_size=30)
    w = Workbench(s)
    v = View(w)
    truth = {it.id: it.label for it in s.items}
    assert w.progress["model"] is None and w.report_html == ""
    label_batch(w, v, truth)
    w.wait(120)
    info = s.model_info
    rep = s.reports[-1]
    assert info["version"] == rep.model_version >= 1 and info["n_labels"] == rep.n_labels == 30
    m = w.progress["model"]
    assert m == {"version": info["version"], "n_labels": 30, "cv_accuracy": info["cv_accuracy"], "cv_metric": "accuracy",
                 "random_accuracy": None, "n_random": 0, "round": rep.round}  # cold-start picks are not random
    assert info["cv_accuracy"] is not None  # 30 labels: enough for cross-validation
    # the store's figures: the open round and the label count, in the header and in the summary
    open_round = s.current_batch.round
    assert open_round == rep.round + 1 == w.progress["round"] == w.item["round"]
    n_store = len(p.store.labels())
    assert w.progress["labelled"] == n_store == 30
    summary = text(w.report_html)
    line = model_line(info["version"], 30, info["cv_accuracy"])
    assert line in summary and f"cross-validated accuracy {100 * info['cv_accuracy']:.0f}%" in line
    assert f"Round {rep.round} \u2192 {line}" in summary
    assert f"now: round {open_round} open \u00b7 {n_store} labels in the store" in summary
    # the suggestions carry the model that made them, with its cross-validated accuracy
    assert len(w.item["prediction"]) == 3 and w.item["suggestions"] is True
    assert w.item["model"]["version"] == info["version"] and w.item["model"]["cv_accuracy"] == info["cv_accuracy"]
    # one more answer: the header and the summary both say 31 labels in the store, the model still 30
    assert v.answer(w.item["prediction"][0][0], via="accept")["ok"]  # what the accept key sends
    assert w.progress["labelled"] == len(p.store.labels()) == 31
    assert "31 labels in the store" in text(w.report_html) and line in text(w.report_html)
    s.close()


def test_the_suggestions_carry_the_accuracy_on_the_labels_picked_at_random(tmp_path, pixels):
    """Under uncertainty sampling the cross-validated accuracy over every label is biased low (the hard items); the
    widget also shows the out-of-fold accuracy on the labels chosen at random, once there are 10 of them."""
    p, s = make(tmp_path, pixels, batch_size=30)
    s.strategy = "random"
    w = Workbench(s)
    v = View(w)
    truth = {it.id: it.label for it in s.items}
    label_batch(w, v, truth)
    w.wait(120)
    info = s.model_info
    # every label was picked at random; those of a class too rare for out-of-fold prediction are not usable
    assert 10 <= info["n_skill"] <= 30 and info["skill_accuracy"] is not None
    m = w.progress["model"]
    assert m["random_accuracy"] == info["skill_accuracy"] and m["n_random"] == info["n_skill"]
    assert w.item["model"]["random_accuracy"] == info["skill_accuracy"]
    s.close()


def test_show_suggestions_false_hides_predictions_and_refuses_accept(tmp_path, pixels):
    p, s = make(tmp_path, pixels, ui={"show_suggestions": False})
    assert p.config.ui.show_suggestions is False and s.show_suggestions is False
    w = Workbench(s)
    v = View(w)
    truth = {it.id: it.label for it in s.items}
    label_batch(w, v, truth)
    w.wait(120)
    assert s.model_info is not None and w.progress["model"]["version"] == s.model_info["version"]
    # a model exists, but the widget state carries no prediction anywhere
    assert w.item["prediction"] == [] and w.item["model_version"] is None and w.item["model"] is None
    assert w.item["suggestions"] is False and w.progress["show_suggestions"] is False
    # the accept key's message is refused and nothing is stored; choosing a class still works
    shown = w.item["item_id"]
    n0 = len(p.store.events())
    ack = v.answer(truth[shown], via="accept")
    assert not ack["ok"] and "show_suggestions: false" in ack["error"]
    assert w.item["item_id"] == shown and len(p.store.events()) == n0
    assert v.answer(truth[shown])["ok"] and w.item["item_id"] != shown
    assert w.item["prediction"] == []
    s.close()


def test_accept_without_a_suggestion_is_refused(tmp_path, pixels):
    p, s = make(tmp_path, pixels)
    w = Workbench(s, retrain=False)
    v = View(w)
    assert w.item["prediction"] == [] and w.item["suggestions"] is True
    ack = v.answer("3", via="accept")
    assert not ack["ok"] and "no model suggestion" in ack["error"] and not p.store.events()
    s.close()


def test_model_landing_mid_batch_keeps_the_shown_item_and_its_position(tmp_path, pixels):
    p, s = make(tmp_path, pixels, batch_size=8)
    w = Workbench(s, retrain=False)
    v = View(w)
    truth = {it.id: it.label for it in s.items}
    first = [bi.item.id for bi in s.current_batch.items]
    for _ in range(4):  # 4 answered; the 5th is on screen
        assert v.answer(truth[w.item["item_id"]])["ok"]
    shown = w.item["item_id"]
    assert shown == first[4] and w.item["position"] == 5 and w.item["batch_size"] == 8
    seq = w.item["shown_seq"]
    report = s.retrain(120)  # a model lands while item 5 is shown: the unanswered, unseen rest is re-selected
    assert report.reselected > 0
    after = [bi.item.id for bi in s.current_batch.items]
    assert after[:5] == first[:5] and after != first
    # the widget still shows the same image (same shown_seq: not a new showing), now with suggestions, and the
    # position matches the new batch
    assert w.item["item_id"] == shown and w.item["shown_seq"] == seq
    assert w.item["position"] == after.index(shown) + 1 == 5 and w.item["batch_size"] == len(after)
    assert len(w.item["prediction"]) == 3 and w.item["model"]["version"] == s.model_info["version"]
    # the following items come from the new selection, numbered on
    assert v.answer(truth[shown])["ok"]
    assert w.item["item_id"] == after[5] and w.item["position"] == 6 and w.item["batch_size"] == len(after)
    s.close()
