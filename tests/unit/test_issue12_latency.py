"""Issue 12, key press to next image: the kernel's message thread never waits for images further ahead.

The answer is stored and acknowledged together with the next image (already encoded ahead); the image after that
is encoded in the background and handed to the browser to decode when it is ready. Before, the handler waited for
those encodes while it held the widget, so a key pressed meanwhile (a fast labeller) waited for a 12 MP decode."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

LIVENESS_S = 120   # a bound on "it finished", never a measurement


@pytest.fixture
def gated(tmp_path, monkeypatch):
    """A widget whose image encoding can be held back: ``gate.clear()`` makes every encode started afterwards wait
    until ``gate.set()``."""
    from alworkbench.project import Project
    from alworkbench.ui.workbench import Workbench

    gate = threading.Event()
    gate.set()
    real = Workbench._encode_item

    def encode(self, item):
        assert gate.wait(LIVENESS_S), "the test never released the encoder"
        return real(self, item)

    monkeypatch.setattr(Workbench, "_encode_item", encode)
    p = Project.init(tmp_path / "proj", "digits", source={"limit": 120}, query={"batch_size": 6})
    X = np.random.default_rng(0).normal(size=(len(p.items), 6)).astype("float32")
    w = Workbench(p.session(annotator="ann", embeddings=X), retrain=False)
    yield p, w, gate
    gate.set()
    w.close()
    p.close()


def answer(w, seq, label="0"):
    w._on_msg(w, {"type": "answer", "item_id": w.item["item_id"], "view": "t", "client_seq": seq,
                  "answer": {"kind": "label", "label": label}}, [])


def wait_until(pred, what):
    end = time.monotonic() + LIVENESS_S
    while not pred():
        assert time.monotonic() < end, f"never happened: {what}"
        time.sleep(0.01)


def test_the_images_ahead_are_encoded_from_the_moment_the_widget_opens(gated):
    p, w, gate = gated
    pending = [bi.item.id for bi in w.session.pending() if bi.item.id != w.item["item_id"]]
    wait_until(lambda: all(i in w._encoded and w._encoded[i].done() for i in pending[:2]), "prefetch at open")
    wait_until(lambda: w.prefetch == [w._encoded[pending[0]].result()["src"]], "the next image sent ahead")


def test_an_answer_is_acknowledged_while_the_image_after_next_is_still_encoding(gated):
    p, w, gate = gated
    ids = [bi.item.id for bi in w.session.pending()]
    wait_until(lambda: all(i in w._encoded and w._encoded[i].done() for i in ids[1:3]), "prefetch at open")
    gate.clear()   # from now on nothing new can be encoded: only what was prepared ahead can be shown
    done = threading.Event()

    def press():
        answer(w, 1)
        done.set()

    t = threading.Thread(target=press, daemon=True)
    t.start()
    # the handler returns although the image two ahead (ids[3]) is held back in the encoder
    assert done.wait(LIVENESS_S), "the answer waited for an image two answers ahead"
    assert w.ack["ok"] and w.ack["client_seq"] == 1
    assert w.item["item_id"] == ids[1]
    assert [e["sample_id"] for e in p.store.active_events()] == [ids[0]]
    assert not w._encoded[ids[3]].done()
    # the next press shows ids[2] (ready) at once; the browser's copy of ids[3] follows when it is encoded
    answer(w, 2)
    assert w.ack["ok"] and w.item["item_id"] == ids[2]
    stale = list(w.prefetch)
    gate.set()
    src3 = w._encoded[ids[3]].result(timeout=LIVENESS_S)["src"]
    assert stale != [src3]
    wait_until(lambda: w.prefetch == [src3], "the image after next handed to the browser once encoded")


def test_a_prefetch_that_lands_after_the_widget_closed_is_dropped(gated):
    p, w, gate = gated
    ids = [bi.item.id for bi in w.session.pending()]
    wait_until(lambda: all(i in w._encoded and w._encoded[i].done() for i in ids[1:3]), "prefetch at open")
    gate.clear()
    answer(w, 1)
    fut = w._encoded[ids[3]]
    w.close()
    gate.set()
    assert fut.result(timeout=LIVENESS_S)["src"]
    w._pusher.shutdown(wait=True)   # anything it had queued has run: nothing raised, nothing was sent
