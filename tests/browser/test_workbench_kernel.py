"""The widget's kernel side without a browser: the exact messages the view sends, checked against the store.

(The same code path runs in the browser tests; these are fast and pin down each rule separately.)
"""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

pytest.importorskip("anywidget")

from alworkbench.errors import AlwbError  # noqa: E402
from alworkbench.project import Project  # noqa: E402
from alworkbench.ui import Workbench, encode_image, headless  # noqa: E402
from alworkbench.ui.render import guideline_html, report_html  # noqa: E402


@pytest.fixture(scope="module")
def pixels(tmp_path_factory):
    d = tmp_path_factory.mktemp("base") / "p"
    p = Project.init(d, "digits", source={"limit": 200})
    X = np.stack([np.asarray(p.source.load(it).convert("L"), dtype=np.float32).ravel() / 255
                  for it in p.source.items])
    return X


def make(tmp_path, pixels, batch_size=4, **kw):
    p = Project.init(tmp_path / "proj", "digits", source={"limit": 200}, query={"batch_size": batch_size},
                     guideline={"version": "1", "text": "# Rules\n- the digit you see"}, **kw)
    s = p.session(annotator="ann", embeddings=pixels, head_factory=lambda: LogisticRegression(max_iter=200))
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

    def answer(self, item_id=None, **a):
        return self.send("answer", item_id=item_id or self.w.item["item_id"], answer=a, time_spent_s=0.5)


def active(p):
    return {s: (e["kind"], e["value"], e["note"]) for s, e in p.store.active_answers().items()}


def test_answers_are_tied_to_the_shown_item_and_never_duplicated(tmp_path, pixels):
    p, s = make(tmp_path, pixels)
    w = Workbench(s, retrain=False)
    v = View(w)
    first = w.item["item_id"]
    assert w.item["pixelated"] and w.item["display_w"] == 256 and w.item["src"].startswith("data:image/png;base64,")
    assert v.answer(kind="label", label="3")["ok"]
    second = w.item["item_id"]
    assert second != first and w.item["position"] == 2
    # a late duplicate of the first answer (e.g. a double click) is refused, not recorded for the next image
    ack = v.answer(item_id=first, kind="label", label="3")
    assert not ack["ok"] and "stale" in ack["error"] and first in ack["error"]
    # an empty tag set, a tags answer in a single-label project, an unknown class: refused with a reason
    assert "empty tag set" in v.answer(kind="tags", tags=[])["error"]
    assert not v.answer(kind="label", label="eleven")["ok"]
    assert w.item["item_id"] == second
    assert v.answer(kind="flag", note="smudged")["ok"]
    assert active(p) == {first: ("label", "3", ""), second: ("flag", None, "smudged")}
    assert [e["time_spent_s"] for e in p.store.events()] == [0.5, 0.5]


def test_multi_step_undo_brings_items_back_even_across_batches(tmp_path, pixels):
    p, s = make(tmp_path, pixels, batch_size=2)
    w = Workbench(s, retrain=False)
    v = View(w)
    a = w.item["item_id"]
    v.answer(kind="label", label="1")
    b = w.item["item_id"]
    v.answer(kind="skip")                      # batch of 2 finished -> next batch opens at once
    c = w.item["item_id"]
    assert c not in (a, b) and w.item["round"] == 2
    ack = v.send("undo")
    # what was undone, never the item id (for a folder-tree source it names the class folder: issue 12)
    assert ack["ok"] and ack["info"] == "undone: skipped \u2014 answer this image again (y redoes)" and b not in ack["info"]
    assert w.item["item_id"] == b and w.item["redo"]
    assert v.send("undo")["ok"] and w.item["item_id"] == a
    assert v.answer(kind="label", label="7")["ok"]
    assert w.item["item_id"] == b
    assert v.answer(kind="label", label="2")["ok"]
    assert active(p) == {a: ("label", "7", ""), b: ("label", "2", "")}
    other = Project.open(tmp_path / "proj").session(annotator="nobody", embeddings=pixels,
                                                    head_factory=lambda: LogisticRegression(max_iter=200))
    assert "nothing to undo" in View(Workbench(other, retrain=False)).send("undo")["error"]


def test_reopen_resumes_at_the_first_unanswered_item_of_the_open_batch(tmp_path, pixels):
    p, s = make(tmp_path, pixels, batch_size=5)
    w = Workbench(s, retrain=False)
    v = View(w)
    batch = [bi.item.id for bi in s.current_batch.items]
    v.answer(kind="label", label="0")
    v.answer(kind="label", label="1")
    p.close()
    # a new kernel: a fresh project object and session on the same folder
    s2 = Project.open(tmp_path / "proj").session(annotator="ann", embeddings=pixels,
                                                  head_factory=lambda: LogisticRegression(max_iter=200))
    w2 = Workbench(s2, retrain=False)
    # the model refitted at reopen may re-select the not-yet-seen rest (items 4-5), never the answered ones or the
    # first unanswered one, which is shown again
    assert [bi.item.id for bi in s2.current_batch.items][:3] == batch[:3] and len(s2.current_batch.items) == 5
    assert w2.item["item_id"] == batch[2] and w2.item["position"] == 3
    assert w2.progress["labelled"] == 2


def test_batch_end_retrains_in_background_and_pushes_report_and_suggestions(tmp_path, pixels):
    p, s = make(tmp_path, pixels, batch_size=4)
    w = Workbench(s)
    v = View(w)
    truth = {it.id: it.label for it in s.items}
    for _ in range(4):
        v.answer(kind="label", label=truth[w.item["item_id"]])
    assert w.item["round"] == 2          # the next batch is shown without waiting for the model
    s.wait(60)
    # the report reached the widget from the training thread, without any message from the view
    assert "alwb-report-box" in w.report_html and "model v1" in w.report_html
    assert len(w.item["prediction"]) == 3 and w.item["model_version"] == 1
    assert w.progress["model_version"] == 1
    ack = v.answer(kind="label", label=w.item["prediction"][0][0])     # what the "a" key sends
    assert ack["ok"]


def test_guideline_change_must_be_acknowledged_before_the_next_answer(tmp_path, pixels):
    p, s = make(tmp_path, pixels)
    w = Workbench(s, retrain=False)
    v = View(w)
    assert v.answer(kind="label", label="4")["ok"]
    assert w.guideline["version"] == "1" and w.guideline["acknowledged"]
    assert "<li>the digit you see</li>" in w.guideline["html"]
    cfg = p.config
    cfg.guideline.version = "2"
    cfg.guideline.text = "# Rules\n- **new**: 7 with a bar is a 7"
    cfg.save(p.config_path)
    shown = w.item["item_id"]
    ack = v.answer(kind="label", label="5")
    assert not ack["ok"] and "version 2" in ack["error"]
    assert w.guideline == {**w.guideline, "version": "2", "acknowledged": False, "previous": "1"}
    assert w.item["item_id"] == shown and len(p.store.active_answers()) == 1
    assert v.send("ack_guideline", version="2")["ok"]
    assert w.guideline["acknowledged"]
    assert v.answer(kind="label", label="5")["ok"]


def test_multilabel_choices_have_keys_and_reject_empty_sets(tmp_path, pixels):
    p, s = make(tmp_path, pixels, tags=["even", "odd", "loop"])
    w = Workbench(s, retrain=False)
    assert w.mode == "multi"
    assert w.choices == [{"name": "even", "key": "1"}, {"name": "odd", "key": "2"}, {"name": "loop", "key": "3"}]
    v = View(w)
    assert not v.answer(kind="tags", tags=[])["ok"]
    assert not v.answer(kind="label", label="even")["ok"]
    assert v.answer(kind="tags", tags=["odd", "loop", "odd"])["ok"]
    assert [list(e["value"]) for e in p.store.active_answers().values()] == [["loop", "odd"]]


def test_key_maps_never_collide_with_action_keys():
    from alworkbench.ui.workbench import SINGLE_KEYS, TAG_KEYS

    assert len(set(TAG_KEYS)) == len(TAG_KEYS) and not set("afsz") & set(TAG_KEYS)
    assert SINGLE_KEYS == list("1234567890")


def test_encode_image_shrinks_large_and_upscales_small_crisply():
    from PIL import Image

    big = encode_image(Image.new("RGB", (4000, 3000), (200, 10, 10)))
    assert (big["w"], big["h"]) == (768, 576) and big["src"].startswith("data:image/jpeg;base64,")
    assert not big["pixelated"] and big["display_w"] is None
    assert len(big["src"]) < 200_000
    small = encode_image(Image.new("L", (28, 28)))
    assert small["pixelated"] and (small["display_w"], small["display_h"]) == (252, 252)
    mid = encode_image(Image.new("RGBA", (100, 50)))
    assert not mid["pixelated"] and mid["display_w"] == 200 and mid["src"].startswith("data:image/png")


def test_headless_detection(monkeypatch):
    monkeypatch.setenv("ALWB_HEADLESS", "1")
    assert headless()
    monkeypatch.setenv("ALWB_HEADLESS", "0")
    assert not headless()
    monkeypatch.delenv("ALWB_HEADLESS")
    monkeypatch.delenv("VSCODE_PID", raising=False)
    monkeypatch.setenv("JPY_SESSION_NAME", "/x/nb.ipynb")
    assert not headless()
    monkeypatch.delenv("JPY_SESSION_NAME")
    assert headless()


def test_guideline_markdown_is_rendered_safely():
    h = guideline_html("# Title\nSome *care* <script>alert(1)</script>\n\n1. one\n2. `two`")
    assert "<script>" not in h and "&lt;script&gt;" in h
    assert "<em>care</em>" in h and "<ol>" in h and "<code>two</code>" in h
    assert guideline_html("") == "" and report_html([]) == ""


def test_open_without_config_or_images_says_what_to_do(tmp_path):
    with pytest.raises(AlwbError, match="images='digits'"):
        Workbench.open(tmp_path / "nothing", annotator="x")


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), RuntimeError("boom")])
def test_finding7_a_failed_store_write_is_acknowledged_as_an_error_never_left_waiting(tmp_path, pixels, exc):
    from alworkbench.errors import StoreError

    p, s = make(tmp_path, pixels)
    w = Workbench(s, retrain=False)
    v = View(w)
    shown = w.item["item_id"]
    real = s.store.record
    for err in (StoreError(f"{p.dir / 'labels.sqlite'}: disk full: free some space"), exc):
        def fail(*a, _err=err, **k):
            raise _err
        s.store.record = fail
        ack = v.answer(kind="label", label="3")
        assert ack["ok"] is False and ack["error"], ack  # the view gets an answer, with the reason
        assert w.item["item_id"] == shown  # still on the same image, nothing recorded
        assert shown not in p.store.active_answers()
    s.store.record = real
    assert v.answer(kind="label", label="3")["ok"]
    assert p.store.active_answers()[shown]["value"] == "3"
