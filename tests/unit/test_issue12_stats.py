"""Issue 12: the labeller's details and stats, computed in the core from the store: the annotator's pace (images per
minute, median seconds per image), progress toward ``label_budget`` with a time estimate, a file name that never
names the ground-truth folder, and the answer's confirmation."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from alworkbench import Answer
from alworkbench.loop.stats import budget_progress, display_name, item_details, pace, stats_text
from alworkbench.types import Item


def test_pace_is_measured_over_the_latest_answers():
    assert pace([]) == {"n": 0, "per_minute": None, "median_s": None, "mean_s": None}
    p = pace([2.0, 4.0, 6.0, 100.0], window=3)      # newest first: the 100 s answer is outside the window
    assert p["n"] == 3 and p["median_s"] == 4.0 and p["mean_s"] == 4.0 and p["per_minute"] == 15.0


def test_budget_progress_and_estimate():
    assert budget_progress(10, None, 3.0) is None
    b = budget_progress(85, 300, 6.0)
    assert b == {"budget": 300, "labelled": 85, "fraction": 85 / 300, "remaining": 215, "eta_s": 1290.0}
    assert budget_progress(310, 300, 6.0)["remaining"] == 0 and budget_progress(310, 300, 6.0)["fraction"] == 1.0
    assert stats_text(pace([6.0, 6.4]), b) == ("9.7 images/min \u00b7 median 6.2 s per image \u00b7 85 of 300 labels "
                                               "(28%) \u00b7 about 22 min left at this pace")
    assert stats_text(pace([]), budget_progress(0, 50, None)) == "pace: after your first answer \u00b7 0 of 50 labels (0%)"


def test_the_file_name_never_names_the_class_folder():
    it = Item(id="cat/IMG_0042.jpg", uri="/data/pets/cat/IMG_0042.jpg", sha256="x", label="cat")
    assert display_name(it) == "IMG_0042.jpg"
    assert display_name(Item(id="digits/train/17", uri="builtin://digits/train/17", sha256="x")) == "digits #17"
    d = item_details(it, (4000, 3000), strategy="undo:margin", score=0.1234567, model_version=3)
    assert d["text"] == "IMG_0042.jpg \u00b7 4000\u00d73000 px \u00b7 chosen by margin (score 0.123) with model v3"
    assert "cat" not in d["text"]
    assert item_details(it, (8, 8), strategy="random", score=None, model_version=0)["text"].endswith(
        "chosen by random before the first model")


@pytest.fixture
def folder_project(tmp_path):
    from alworkbench.project import Project

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "img" / cls).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(
                tmp_path / "img" / cls / f"{cls}{i}x.png")
    p = Project.init(tmp_path / "proj", str(tmp_path / "img"), query={"batch_size": 4}, label_budget=10)
    X = rng.normal(size=(len(p.items), 4)).astype("float32")
    yield p, X
    p.close()


def test_the_widget_shows_details_stats_and_a_confirmation_never_the_class_folder(folder_project):
    from alworkbench.ui.workbench import Workbench

    p, X = folder_project
    w = Workbench(p.session(annotator="ann", embeddings=X), retrain=False)
    first = w.item["item_id"]
    d = w.item["details"]
    assert (d["width"], d["height"]) == (40, 30) and d["name"].endswith("x.png")
    assert "/" not in d["name"] and "/" not in d["text"] and d["strategy"]
    st = w.progress["stats"]
    assert st["n"] == 0 and st["budget"]["budget"] == 10 and st["budget"]["labelled"] == 0
    seq = 0
    for label, spent in (("cat", 3.0), ("dog", 5.0), ("cat", 4.0)):
        seq += 1
        w._on_msg(w, {"type": "answer", "item_id": w.item["item_id"], "view": "t", "client_seq": seq,
                      "time_spent_s": spent, "answer": {"kind": "label", "label": label}}, [])
        assert w.ack["ok"] and w.ack["info"] == f"recorded: {label} \u2014 z to undo"
    st = w.progress["stats"]
    assert (st["n"], st["median_s"], st["per_minute"]) == (3, 4.0, 15.0)
    assert st["budget"]["labelled"] == 3 and st["budget"]["remaining"] == 7 and st["budget"]["eta_s"] == 28.0
    assert "15.0 images/min" in st["text"] and "3 of 10 labels (30%)" in st["text"]
    # the store recorded those times (the stats come from it, not from the widget)
    assert p.store.answer_times("ann") == [4.0, 5.0, 3.0]
    seq += 1
    w._on_msg(w, {"type": "undo", "view": "t", "client_seq": seq}, [])
    assert w.ack["info"] == "undone: cat \u2014 answer this image again (y redoes)"
    seq += 1
    w._on_msg(w, {"type": "answer", "item_id": w.item["item_id"], "view": "t", "client_seq": seq,
                  "answer": {"kind": "flag", "note": "two animals"}}, [])
    assert w.ack["info"] == "recorded: flagged for review: \u201ctwo animals\u201d \u2014 z to undo"
    assert first in p.store.active_answers()
    w.close()
