"""Issue 11, build 4: exports carry the origin of every label. A ``source`` column (human, consensus, review, gold,
auto) in CSV; auto labels of confidence routing exported only when asked (``include_auto`` / ``--include-auto``),
kept apart under ``auto/<class>/`` in the class-folder tree, counted when left out; a human label always wins over
an auto label of the same item; in FiftyOne a ``label_origin`` field and an ``auto_label`` Classification, never the
human ``label`` field.

Real parts: a digits project with its SQLite store, human answers through Sessions (an Oracle for 300 of them), a
real retrain and ``session.auto_label()``, a real review, the real CLI entry point, and FiftyOne with its MongoDB."""
from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

# must be in the environment before FiftyOne is imported: this test session's own database folder
os.environ.setdefault("FIFTYONE_DATABASE_DIR", tempfile.mkdtemp(prefix="alwb-fo-db-"))
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

from alworkbench import Answer, Project  # noqa: E402
from alworkbench.cli import main  # noqa: E402
from alworkbench.errors import AlwbError  # noqa: E402
from alworkbench.export import AUTO_COLUMNS, CSV_COLUMNS, export  # noqa: E402
from alworkbench.labels.quality import add_gold  # noqa: E402
from alworkbench.loop.oracle import Oracle  # noqa: E402
from alworkbench.loop.routing import AUTO_LABEL, auto_ids  # noqa: E402


def answer(p, X, annotator, answers: dict):
    with p.session(annotator=annotator, embeddings=X, warm_start=False) as s:
        s.answer_items(answers)


def _other(label: str) -> str:
    return str((int(label) + 1) % 10)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """300 Oracle labels by ana (single answers); cons: ana and ben agree (consensus); rev: ana and ben disagree,
    rita corrects (review); gold: a gold answer only. After a retrain, ``auto_label()`` accepts model labels for the
    pool; then carl answers two auto-labelled items (one with a class other than the model's) and flags a third:
    those three are human items now and their auto labels must never be exported."""
    p = Project.init(tmp_path_factory.mktemp("origin") / "p", "digits", query={"batch_size": 10},
                     routing={"target_precision": 0.98, "min_support": 20, "review_sample": 0.0})
    X = p.source.pixels.reshape(len(p.items), -1).astype("float32") / 16
    truth = p.source.ground_truth()
    s = p.session(annotator="ana", embeddings=X, warm_start=False)
    pool = [p.items[int(i)].id for i in s.pool_indices()]
    human = pool[:300]
    Oracle(s).label_batch(s.enqueue(human))
    cons, rev, gold = human[0], human[1], pool[300]
    t = {sid: str(truth[p.index_of(sid)]) for sid in (cons, rev, gold)}
    answer(p, X, "ben", {cons: Answer.of_label(t[cons]), rev: Answer.of_label(_other(t[rev]))})
    add_gold(p.store, [(gold, t[gold])], multilabel=False, source="test")
    reviewer = p.session(annotator="rita", embeddings=X, warm_start=False)
    reviewer.review().correct(rev, Answer.of_label(t[rev]), "the reviewer decides")
    reviewer.close()
    s.retrain()
    res = s.auto_label()
    assert res["n_auto"] >= 50, res["n_auto"]
    autos = auto_ids(p.store)
    assert set(autos) == set(res["item_ids"]) and not set(autos) & {*human, gold}
    auto_list = res["item_ids"]
    relabel, agree, flagged = auto_list[0], auto_list[1], auto_list[2]
    carl = {relabel: _other(autos[relabel]["label"]), agree: autos[agree]["label"]}
    answer(p, X, "carl", {relabel: Answer.of_label(carl[relabel]), agree: Answer.of_label(carl[agree]),
                          flagged: Answer.flag("two digits")})
    s.close()
    only_auto = [sid for sid in auto_list if sid not in (relabel, agree, flagged)]
    yield {"p": p, "X": X, "human": human, "cons": cons, "rev": rev, "gold": gold, "t": t, "autos": autos,
           "only_auto": only_auto, "relabel": relabel, "agree": agree, "flagged": flagged, "carl": carl,
           "model_version": res["model_version"]}
    p.close()


def _rows(path) -> tuple[list, dict]:
    with open(path, encoding="utf-8", newline="") as f:
        r = list(csv.reader(f))
    header = r[0]
    return header, {row[0]: dict(zip(header, row)) for row in r[1:]}


def _expected_sources(w) -> dict:
    out = {sid: "human" for sid in w["human"]}
    out.update({w["cons"]: "consensus", w["rev"]: "review", w["gold"]: "gold", w["relabel"]: "human",
                w["agree"]: "human"})
    return out


def test_csv_has_a_source_per_row_and_leaves_auto_labels_out_unless_asked(world, tmp_path):
    w = world
    res = export(w["p"], tmp_path / "labels.csv", "csv")
    header, rows = _rows(tmp_path / "labels.csv")
    assert header == list(CSV_COLUMNS) and header[-1] == "source" and "label_source" in header
    expected = _expected_sources(w)
    assert {sid: r["source"] for sid, r in rows.items()} == expected  # no auto label among them
    assert {rows[w[k]]["label_source"] for k in ("cons", "rev", "gold")} == {"consensus", "review", "gold"}
    assert rows[w["human"][5]]["label_source"] == "single"
    # human labels win over the auto label of the same item: carl's answer, not the model's
    assert rows[w["relabel"]]["label"] == w["carl"][w["relabel"]] != w["autos"][w["relabel"]]["label"]
    assert rows[w["rev"]]["label"] == w["t"][w["rev"]]
    assert w["flagged"] not in rows  # a person flagged it: its auto label is not exported either
    assert res["n_exported"] == len(expected) and res["n_auto"] == 0
    assert res["n_auto_left_out"] == len(w["only_auto"]) and res["n_auto_overridden"] == 3
    assert res["by_origin"] == {"human": 300, "consensus": 1, "review": 1, "gold": 1, "auto": 0}
    assert res["by_source"] == {"review": 1, "consensus": 1, "single": 300, "gold": 1}


def test_csv_with_include_auto_adds_auto_rows_with_confidence_and_model_version(world, tmp_path):
    w = world
    res = export(w["p"], tmp_path / "out", "csv", include_auto=True)
    assert res["path"] == str(tmp_path / "out" / "labels.csv")
    header, rows = _rows(res["path"])
    assert header == [*CSV_COLUMNS, *AUTO_COLUMNS] == [*CSV_COLUMNS, "confidence", "model_version"]
    expected = {**_expected_sources(w), **{sid: "auto" for sid in w["only_auto"]}}
    assert {sid: r["source"] for sid, r in rows.items()} == expected
    for sid in w["only_auto"]:
        r, a = rows[sid], w["autos"][sid]
        assert (r["label"], r["label_source"], r["annotator"], r["annotators"]) == (a["label"], "auto", "", "")
        assert float(r["confidence"]) == pytest.approx(a["confidence"]) and r["confidence"] != ""
        assert int(r["model_version"]) == a["model_version"] == w["model_version"]
    for sid in _expected_sources(w):
        assert rows[sid]["confidence"] == "" and rows[sid]["model_version"] == ""
    assert rows[w["relabel"]]["source"] == "human" and rows[w["relabel"]]["label"] == w["carl"][w["relabel"]]
    assert w["flagged"] not in rows
    assert res["n_auto"] == len(w["only_auto"]) and res["n_auto_left_out"] == 0
    assert res["n_exported"] == len(rows) == len(_expected_sources(w)) + len(w["only_auto"])
    assert res["by_origin"]["auto"] == len(w["only_auto"]) and res["by_origin"]["human"] == 300


def _tree(d: Path) -> dict:
    """relative folder -> item ids of its files (an id's '/' is '__' in a file name)."""
    out: dict = {}
    for f in d.rglob("*.png"):
        out.setdefault(str(f.parent.relative_to(d)), set()).add(f.stem.replace("__", "/"))
    return out


def test_class_folders_keep_auto_labels_apart_under_their_own_top_folder(world, tmp_path):
    w = world
    plain = export(w["p"], tmp_path / "plain", "folders")
    tree = _tree(tmp_path / "plain")
    assert "auto" not in {Path(k).parts[0] for k in tree} and plain["auto_folder"] is None
    assert plain["n_auto_left_out"] == len(w["only_auto"])
    assert sorted(s for v in tree.values() for s in v) == sorted(_expected_sources(w))

    res = export(w["p"], tmp_path / "with", "folders", include_auto=True)
    assert res["auto_folder"] == "auto" and res["n_auto"] == len(w["only_auto"])
    tree = _tree(tmp_path / "with")
    human = {k: v for k, v in tree.items() if Path(k).parts[0] != "auto"}
    auto = {k: v for k, v in tree.items() if Path(k).parts[0] == "auto"}
    assert all(len(Path(k).parts) == 1 for k in human) and all(len(Path(k).parts) == 2 for k in auto)
    assert sorted(s for v in human.values() for s in v) == sorted(_expected_sources(w))
    assert sorted(s for v in auto.values() for s in v) == sorted(w["only_auto"])
    for k, ids in auto.items():  # auto/<class>/ holds the model's class
        assert {w["autos"][sid]["label"] for sid in ids} == {Path(k).parts[1]}
    assert w["relabel"] in human[w["carl"][w["relabel"]]]  # the human label, in the human tree
    assert not any(w[k] in ids for ids in auto.values() for k in ("relabel", "agree", "flagged"))


def test_cli_export_include_auto_flag_and_left_out_count(world, tmp_path, capsys):
    w = world
    d = str(w["p"].dir)
    assert main(["export", d, "--out", str(tmp_path / "a.csv")]) == 0
    out = capsys.readouterr().out
    assert f"exported {len(_expected_sources(w))} labelled images" in out
    assert f"{len(w['only_auto'])} auto label(s) left out" in out and "--include-auto" in out
    assert main(["export", d, "--format", "folders", "--out", str(tmp_path / "f"), "--include-auto", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n_auto"] == len(w["only_auto"]) and res["n_auto_left_out"] == 0 and res["auto_folder"] == "auto"
    assert (tmp_path / "f" / "auto").is_dir()
    assert main(["export", d, "--out", str(tmp_path / "b.csv"), "--include-auto"]) == 0
    assert f"{len(w['only_auto'])} of them are auto labels" in capsys.readouterr().out
    _, rows = _rows(tmp_path / "b.csv")
    assert sum(r["source"] == "auto" for r in rows.values()) == len(w["only_auto"])


def test_auto_top_folder_avoids_a_class_named_auto(tmp_path):
    """A class called "auto": its human folder stays auto/, the auto labels go under _auto/ (records appended the
    way routing writes them)."""
    p = Project.init(tmp_path / "p", "digits", query={"batch_size": 10}, source={"limit": 60},
                     classes=["auto", *map(str, range(1, 10))])
    X = p.source.pixels.reshape(len(p.items), -1).astype("float32") / 16
    ids = [it.id for it in p.items]
    answer(p, X, "ana", {ids[0]: Answer.of_label("auto"), ids[1]: Answer.of_label("3")})
    for sid, label in ((ids[0], "5"), (ids[2], "auto"), (ids[3], "7")):  # ids[0]: the human label wins
        p.store.append_record(AUTO_LABEL, {"item_id": sid, "label": label, "model_version": 4, "threshold": 0.9,
                                           "confidence": 0.99, "target_precision": 0.98, "sampled": False})
    res = export(p, tmp_path / "f", "folders", include_auto=True)
    assert res["auto_folder"] == "_auto" and res["n_auto"] == 2 and res["n_auto_overridden"] == 1
    assert _tree(tmp_path / "f") == {"auto": {ids[0]}, "3": {ids[1]}, "_auto/auto": {ids[2]}, "_auto/7": {ids[3]}}
    p.close()


# ------------------------------------------------------------------------------------------------ FiftyOne
@pytest.fixture(scope="module")
def synced(world):
    from alworkbench.integrations import fiftyone_sync as fs

    first = fs.sync(world["p"], embeddings=False)
    yield fs, first, fs.get_dataset(world["p"])
    fs.delete_dataset(world["p"])


def _field(ds, name):
    return dict(zip(ds.values("alwb_id"), ds.values(name)))


@pytest.mark.fiftyone
def test_fiftyone_label_origin_and_auto_label_fields(world, synced):
    fs, first, ds = synced
    w = world
    origin, label = _field(ds, "label_origin"), _field(ds, "label.label")
    auto_label, auto_conf = _field(ds, "auto_label.label"), _field(ds, "auto_label.confidence")
    status = _field(ds, "label_status")
    expected = {**_expected_sources(w), **{sid: "auto" for sid in w["only_auto"]}}
    assert {sid: o for sid, o in origin.items() if o is not None} == expected
    assert origin[w["flagged"]] is None and status[w["flagged"]] == "flagged"
    for sid in w["only_auto"]:  # the model's label in auto_label, never in the human label field
        a = w["autos"][sid]
        assert label[sid] is None and status[sid] == "auto"
        assert auto_label[sid] == a["label"] and auto_conf[sid] == pytest.approx(a["confidence"])
    # a person labelled it later: the human label in `label`, the model's kept in auto_label
    r = w["relabel"]
    assert (label[r], origin[r], auto_label[r]) == (w["carl"][r], "human", w["autos"][r]["label"])
    assert auto_label[w["flagged"]] == w["autos"][w["flagged"]]["label"]
    human_only = set(_expected_sources(w)) - {w["relabel"], w["agree"]}
    assert all(auto_label[sid] is None for sid in human_only)
    assert label[w["gold"]] == w["t"][w["gold"]] and origin[w["cons"]] == "consensus"
    # the to_label view leaves the auto-labelled items out; auto_labelled holds exactly them
    to_label = set(ds.load_saved_view("to_label").values("alwb_id"))
    assert not to_label & set(w["only_auto"]) and not to_label & set(expected)
    assert sorted(ds.load_saved_view("auto_labelled").values("alwb_id")) == sorted(w["only_auto"])
    # human answers win the status too: carl's answers are labelled, his flag flagged
    assert (status[r], status[w["agree"]]) == ("labelled", "labelled")
    assert first.n_label_updates == len(expected) + 1  # every labelled, auto-labelled or flagged item
    assert fs.sync(w["p"], embeddings=False).n_label_updates == 0  # incremental: nothing changed


@pytest.mark.fiftyone
def test_fiftyone_exports_report_left_out_auto_labels_and_refuse_include_auto(world, synced, tmp_path):
    fs, _, _ = synced
    w = world
    res = fs.export(w["p"], tmp_path / "fo", "fiftyone")
    assert res["n_exported"] == len(_expected_sources(w)) and res["n_auto_left_out"] == len(w["only_auto"])
    with pytest.raises(AlwbError, match="include-auto"):
        fs.export(w["p"], tmp_path / "fo2", "folders", include_auto=True)
    assert not (tmp_path / "fo2").exists()
    res = fs.export(w["p"], tmp_path / "c.csv", "csv", include_auto=True)
    assert res["n_auto"] == len(w["only_auto"]) and res["n_auto_left_out"] == 0
    _, rows = _rows(tmp_path / "c.csv")
    assert {sid for sid, r in rows.items() if r["source"] == "auto"} == set(w["only_auto"])


@pytest.mark.fiftyone
def test_fiftyone_auto_status_leaves_to_label_and_turns_human_when_reviewed_corrected_or_answered(tmp_path):
    """Every auto label sampled for review: in FiftyOne they have label_status "auto" (out of to_label, in
    auto_labelled and review_queue); a reviewer's accept, a reviewer's correction and a person's answer each give the
    item the human status and label, and a re-sync moves it out of auto_labelled."""
    from alworkbench.integrations import fiftyone_sync as fs

    p = Project.init(tmp_path / "p", "digits", query={"batch_size": 10}, quality={"review_sample": 0.0},
                     routing={"target_precision": 0.98, "min_support": 20, "review_sample": 1.0})
    X = p.source.pixels.reshape(len(p.items), -1).astype("float32") / 16
    s = p.session(annotator="ana", embeddings=X, warm_start=False)
    Oracle(s).label_batch(s.enqueue([p.items[int(i)].id for i in s.pool_indices()][:300]))
    s.retrain()
    res = s.auto_label()
    autos = res["item_ids"]
    assert len(autos) >= 50 and res["n_sampled"] == len(autos)
    model = auto_ids(p.store)
    try:
        fs.sync(p, embeddings=False)
        ds = fs.get_dataset(p)
        status = _field(ds, "label_status")
        assert {status[sid] for sid in autos} == {"auto"}
        to_label = set(ds.load_saved_view("to_label").values("alwb_id"))
        n_pool = len(s.pool_indices())  # neither labelled, routed nor held out
        assert len(to_label) == n_pool and not to_label & set(autos)
        assert set(ds.load_saved_view("auto_labelled").values("alwb_id")) == set(autos)
        assert set(autos) <= set(ds.load_saved_view("review_queue").values("alwb_id"))

        accepted, corrected, answered = autos[:3]
        rs = p.session(annotator="rita", embeddings=X, warm_start=False).review()
        rs.accept(accepted)
        rs.correct(corrected, _other(model[corrected]["label"]), reason="checked the image")
        rs.session.close()
        s.answer_items({answered: Answer.of_label(_other(model[answered]["label"]))})
        assert fs.sync(p, embeddings=False).n_label_updates == 3
        status, label = _field(ds, "label_status"), _field(ds, "label.label")
        origin, state = _field(ds, "label_origin"), _field(ds, "review_state")
        assert (status[accepted], label[accepted], origin[accepted], state[accepted]) == \
            ("labelled", model[accepted]["label"], "review", "accepted")
        assert (status[corrected], label[corrected], origin[corrected], state[corrected]) == \
            ("labelled", _other(model[corrected]["label"]), "review", "corrected")
        assert (status[answered], label[answered], origin[answered]) == \
            ("labelled", _other(model[answered]["label"]), "human")
        assert {status[sid] for sid in autos[3:]} == {"auto"}
        ds.reload()
        assert set(ds.load_saved_view("auto_labelled").values("alwb_id")) == set(autos[3:])
        assert not set(ds.load_saved_view("to_label").values("alwb_id")) & set(autos)
        assert set(ds.load_saved_view("labelled").values("alwb_id")) >= {accepted, corrected, answered}
    finally:
        s.close()
        fs.delete_dataset(p)
        p.close()
