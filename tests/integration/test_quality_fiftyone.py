"""Issue 10 in FiftyOne, against the real MongoDB that FiftyOne starts: the review_state field, the final label in
the ``label`` field, the label_source and review_reasons fields, and the saved views review_queue and corrected;
incremental re-syncs after reviews; the FiftyOne exporters export the final labels."""
from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

# must be in the environment before FiftyOne is imported: this test session's own database folder
os.environ.setdefault("FIFTYONE_DATABASE_DIR", tempfile.mkdtemp(prefix="alwb-fo-db-"))
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

pytest.importorskip("fiftyone")
pytestmark = pytest.mark.fiftyone

from alworkbench import Answer, Project  # noqa: E402
from alworkbench.integrations import fiftyone_sync as fs  # noqa: E402
from alworkbench.labels.quality import QualityView, add_gold  # noqa: E402


def answer(p, X, annotator, answers: dict):
    with p.session(annotator=annotator, embeddings=X, warm_start=False) as s:
        s.answer_items(answers)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A digits project: 0 accepted, 1 a tie, 2 single, 3 corrected to 8, 4 flagged, 5 consensus of three,
    10 gold only; then one sync."""
    d = tmp_path_factory.mktemp("foq") / "quality-demo"
    p = Project.init(d, "digits", backbone="pixels", query={"batch_size": 10}, source={"limit": 200},
                     quality={"review_sample": 0.0})
    X = p.source.pixels.reshape(len(p.items), -1).astype(np.float32) / 16.0
    i = [it.id for it in p.items[:11]]
    answer(p, X, "ana", {i[0]: Answer.of_label("0"), i[1]: Answer.of_label("1"), i[2]: Answer.of_label("2"),
                         i[3]: Answer.of_label("3"), i[4]: Answer.flag("two digits"), i[5]: Answer.of_label("5")})
    answer(p, X, "ben", {i[0]: Answer.of_label("0"), i[1]: Answer.of_label("7"), i[3]: Answer.of_label("7"),
                         i[5]: Answer.of_label("5")})
    answer(p, X, "carl", {i[5]: Answer.of_label("6")})
    gold_label = p.items[10].label
    add_gold(p.store, [(i[10], gold_label)], multilabel=False, source="test")
    reviewer = p.session(annotator="rita", embeddings=X, warm_start=False)
    rs = reviewer.review()
    rs.accept(i[0])
    rs.correct(i[3], "8", "a loop at the top: an eight")
    first = fs.sync(p, embeddings=False)
    yield {"project": p, "ids": i, "X": X, "review": rs, "first": first, "gold_label": gold_label,
           "ds": fs.get_dataset(p)}
    reviewer.close()
    fs.delete_dataset(p)
    p.close()


def _field(ds, name):
    return dict(zip(ds.values("alwb_id"), ds.values(name)))


def test_review_fields_and_final_labels(world):
    ds, i, p = world["ds"], world["ids"], world["project"]
    assert world["first"].n_label_updates == 7  # items 0-5 and the gold item; nothing else is touched
    state, label, status = _field(ds, "review_state"), _field(ds, "label.label"), _field(ds, "label_status")
    source, reasons = _field(ds, "label_source"), _field(ds, "review_reasons")
    assert {s: state[s] for s in i[:6] + [i[10]]} == {
        i[0]: "accepted", i[1]: "unreviewed", i[2]: "unreviewed", i[3]: "corrected", i[4]: "unreviewed",
        i[5]: "unreviewed", i[10]: None}
    assert {s: label[s] for s in i[:6] + [i[10]]} == {
        i[0]: "0", i[1]: None, i[2]: "2", i[3]: "8", i[4]: None, i[5]: "5", i[10]: world["gold_label"]}
    assert {s: status[s] for s in i[:6] + [i[10]]} == {
        i[0]: "labelled", i[1]: "tie", i[2]: "labelled", i[3]: "labelled", i[4]: "flagged", i[5]: "labelled",
        i[10]: "labelled"}
    assert {s: source[s] for s in i[:6] + [i[10]]} == {
        i[0]: "review", i[1]: "tie", i[2]: "single", i[3]: "review", i[4]: None, i[5]: "consensus", i[10]: "gold"}
    assert reasons[i[1]] == ["disagreement"] and reasons[i[4]] == ["flag"] and reasons[i[2]] == []
    assert reasons[i[5]] == ["disagreement"]  # a majority, but not unanimous: a reviewer may look
    # every item nobody touched: no review state, no label, unlabelled
    rest = [s for s in ds.values("alwb_id") if s not in i[:6] + [i[10]]]
    assert {state[s] for s in rest} == {None} and {label[s] for s in rest} == {None}
    assert {status[s] for s in rest} == {"unlabelled"}
    # the label field agrees with the store's final labels
    final = QualityView(p.store, p.config).final_labels()
    assert {s: label[s] for s in final} == final
    assert ds.select_by("alwb_id", [i[4]]).first().flag_note == "two digits"
    assert "flagged" in ds.select_by("alwb_id", [i[4]]).first().tags


def test_saved_views_review_queue_and_corrected(world):
    ds, i, p = world["ds"], world["ids"], world["project"]
    assert {"review_queue", "corrected", "to_label", "labelled", "flagged", "skipped"} <= set(ds.list_saved_views())
    queue = [e["item_id"] for e in QualityView(p.store, p.config).review_queue()]
    assert sorted(ds.load_saved_view("review_queue").values("alwb_id")) == sorted(queue) == sorted([i[1], i[4], i[5]])
    assert ds.load_saved_view("corrected").values("alwb_id") == [i[3]]
    assert ds.persistent


def test_a_later_review_updates_only_its_item_and_the_views(world):
    ds, i, p, rs = world["ds"], world["ids"], world["project"], world["review"]
    rs.correct(i[1], "1", "a one with a serif")
    rep = fs.sync(p, embeddings=False)
    assert rep.n_label_updates == 1
    s1 = ds.select_by("alwb_id", [i[1]]).first()
    assert (s1.review_state, s1.label.label, s1.label_status, s1.label_source, s1.review_reasons) == (
        "corrected", "1", "labelled", "review", [])
    assert sorted(ds.load_saved_view("corrected").values("alwb_id")) == sorted([i[1], i[3]])
    assert sorted(ds.load_saved_view("review_queue").values("alwb_id")) == sorted([i[4], i[5]])
    # nothing changed: nothing rewritten, the dataset stays persistent (FiftyOne's "_state" saved-view quirk)
    assert fs.sync(p, embeddings=False).n_label_updates == 0
    assert ds.persistent and fs.get_dataset(p).persistent
    # a new answer reopens a reviewed item: unreviewed again, back in the queue (a disagreement)
    answer(p, world["X"], "dora", {i[0]: Answer.of_label("6")})
    assert fs.sync(p, embeddings=False).n_label_updates == 1
    s0 = ds.select_by("alwb_id", [i[0]]).first()
    assert (s0.review_state, s0.label.label, s0.label_source) == ("unreviewed", "0", "consensus")
    assert "disagreement" in s0.review_reasons
    assert sorted(ds.load_saved_view("review_queue").values("alwb_id")) == sorted([i[0], i[4], i[5]])


def test_fiftyone_folders_export_has_the_final_labels(world, tmp_path):
    from collections import Counter

    p, i = world["project"], world["ids"]
    answer(p, world["X"], "ana", {i[6]: Answer.of_label("6")})  # a fresh tie: left out of the export
    answer(p, world["X"], "ben", {i[6]: Answer.of_label("1")})
    out = tmp_path / "fo-folders"
    res = fs.export(p, out, format="folders")
    view = QualityView(p.store, p.config)
    final = view.final_labels()
    assert res["n_exported"] == len(final) == 6 and i[6] not in final
    open_ties = [s for s in view.answers if view.item_state(s)["tie"] and view.item_state(s)["final"] is None]
    assert res["n_ties"] == len(open_ties) == 1 and open_ties == [i[6]]
    assert Counter(f.parent.name for f in out.rglob("*") if f.is_file()) == Counter(final.values())
