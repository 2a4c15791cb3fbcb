"""Taxonomies (issue 11): config validation, stored ancestors, tree-consistent predictions, per-level metrics.

Real parts: the digits source, the SQLite label store, scikit-learn heads, the real Session."""
from __future__ import annotations

import csv
import json
import sqlite3

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from alworkbench import Answer, Project
from alworkbench.config import config_from_dict, load_config
from alworkbench.errors import AnswerError, ConfigError
from alworkbench.labels import LabelStore
from alworkbench.labels.taxonomy import Taxonomy

#: three levels over the ten digits; "1" is a shallow leaf (level 1 group "straight" > "1")
DIGIT_TREE = {"round": {"loops": ["0", "6", "8", "9"], "open": ["2", "3", "5"]},
              "straight": {"1": None, "angled": ["4", "7"]}}
FASHION_TREE = {"clothing": {"top": ["T-shirt/top", "Shirt"], "bottom": ["Trouser"]},
                "footwear": ["Sandal", "Sneaker"], "Bag": None}


def _cfg(**kw):
    return config_from_dict({"source": "digits", **kw})


# ------------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize("tree, message", [
    ({"a": ["x", "y"], "b": ["x", "z"]}, "name 'x' appears twice (under a and under b)"),
    ({"a": {"b": ["c", "d"]}, "e": ["b"]}, "name 'b' appears twice (under a and under e)"),
    ({"a": [], "b": ["c", "d"]}, "group 'a' is empty"),
    ({"a": {"b": {}}, "c": ["d", "e"]}, "group 'a > b' is empty"),
    ({"a": ["x", ["y", "z"]]}, "a holds a list inside a list"),
    ({"a": ["x"]}, "needs at least 2 leaves (classes), got 1"),
    ({"a": ["x", None]}, "contains an empty (null) name"),
    ({"a": ["x", " y"]}, "name ' y' has leading or trailing spaces"),
    ({"a": "x"}, "group 'a' must hold a mapping or a list of names, got 'x'"),
    ("a, b", "must be a mapping of groups"),
    ({}, "config key 'taxonomy' is empty"),
])
def test_bad_taxonomies_are_one_line_errors_naming_the_node(tree, message):
    with pytest.raises(ConfigError) as e:
        _cfg(taxonomy=tree)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_taxonomy_and_a_conflicting_classes_list_or_tags_are_refused():
    with pytest.raises(ConfigError, match="classes lists '5', which is not a leaf of the taxonomy"):
        _cfg(taxonomy={"a": ["1", "2"], "b": ["3"]}, classes=["1", "2", "3", "5"])
    with pytest.raises(ConfigError, match="the taxonomy leaf '3' is missing from classes"):
        _cfg(taxonomy={"a": ["1", "2"], "b": ["3"]}, classes=["1", "2"])
    with pytest.raises(ConfigError, match="'taxonomy' and 'tags' are exclusive"):
        _cfg(taxonomy={"a": ["1", "2"]}, tags=["x"])
    same = _cfg(taxonomy={"a": ["1", "2"], "b": ["3"]}, classes=["3", "2", "1"])  # same leaves, any order
    assert same.classes == ["1", "2", "3"]


def test_config_with_taxonomy_round_trips_and_flat_configs_are_unchanged(tmp_path):
    cfg = _cfg(taxonomy=DIGIT_TREE)
    assert cfg.classes == ["0", "6", "8", "9", "2", "3", "5", "1", "4", "7"]
    assert cfg.tree.depth == 3 and cfg.tree.path("7") == ("straight", "angled", "7")
    cfg.save(tmp_path / "alwb.yaml")
    text = (tmp_path / "alwb.yaml").read_text()
    assert "taxonomy:" in text and "classes:" not in text  # the leaves are written once, in the tree
    again = load_config(tmp_path / "alwb.yaml")
    assert again.taxonomy == cfg.taxonomy and again.classes == cfg.classes
    flat = _cfg(classes=["a", "b"])
    assert flat.taxonomy is None and flat.tree is None and "taxonomy" not in flat.to_dict()


def test_shipped_fashion_mnist_taxonomy_has_the_ten_classes_at_three_levels():
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "fmnist-taxonomy.yaml")
    flat = load_config(Path(__file__).resolve().parents[2] / "configs" / "fashion-mnist.yaml")
    assert sorted(cfg.tree.leaves) == sorted(flat.classes) and cfg.tree.depth == 3
    assert cfg.tree.path("Shirt") == ("clothing", "top", "Shirt")
    assert cfg.tree.path("Ankle boot") == ("footwear", "closed", "Ankle boot")


# ------------------------------------------------------------------------------------------------ tree
def test_levels_carry_a_shallow_leaf_down():
    t = Taxonomy(FASHION_TREE)
    assert t.depth == 3 and t.leaves == ("T-shirt/top", "Shirt", "Trouser", "Sandal", "Sneaker", "Bag")
    assert t.levels("Sandal") == ("footwear", "Sandal", "Sandal") and t.levels("Bag") == ("Bag", "Bag", "Bag")
    assert t.level_nodes(1) == ("clothing", "footwear", "Bag")
    assert t.level_nodes(2) == ("top", "bottom", "Sandal", "Sneaker", "Bag")
    assert t.children(None) == ("clothing", "footwear", "Bag") and t.children("clothing") == ("top", "bottom")


def test_level_probabilities_are_leaf_probabilities_summed_up_the_tree():
    t = Taxonomy(FASHION_TREE)
    P = np.array([[0.1, 0.2, 0.05, 0.3, 0.25, 0.1]])
    nodes, p1 = t.level_proba(P, t.leaves, 1)
    assert nodes == ("clothing", "footwear", "Bag")
    np.testing.assert_allclose(p1, [[0.35, 0.55, 0.1]])
    nodes, p2 = t.level_proba(P, t.leaves, 2)
    np.testing.assert_allclose(p2, [[0.3, 0.05, 0.3, 0.25, 0.1]])


def test_top_down_prediction_can_differ_from_the_flat_argmax_and_never_contradicts_the_tree():
    t = Taxonomy(FASHION_TREE)
    # flat argmax is Sandal (0.3), but clothing (0.5) beats footwear (0.4): top-down picks clothing > top > Shirt
    P = np.array([[0.2, 0.25, 0.05, 0.3, 0.1, 0.1]])
    assert t.predict_paths(P, t.leaves) == [("clothing", "top", "Shirt")]
    assert t.predict_leaves(P, t.leaves).tolist() == [1]
    # classes in another order than the leaves: columns are looked up by name
    classes = list(reversed(t.leaves))
    assert t.predict_paths(P[:, ::-1], classes) == [("clothing", "top", "Shirt")]
    rng = np.random.default_rng(0)
    Q = rng.dirichlet(np.ones(6) * 0.3, size=2000)
    for path in t.predict_paths(Q, t.leaves):
        assert t.levels(path[-1]) == path  # the predicted leaf's ancestors are the predicted ancestors


def test_per_level_accuracy_matches_a_hand_computation():
    t = Taxonomy(FASHION_TREE)
    truth = ["Shirt", "Shirt", "Sandal", "Bag", None, "not-a-leaf"]
    pred = [("clothing", "top", "Shirt"),        # right at every level
            ("clothing", "top", "T-shirt/top"),  # right at levels 1, 2
            ("footwear", "Sneaker", "Sneaker"),  # right at level 1
            ("clothing", "bottom", "Trouser"),   # wrong everywhere
            ("Bag", "Bag", "Bag"), ("Bag", "Bag", "Bag")]  # no usable truth: left out
    assert t.level_accuracy(truth, pred) == [3 / 4, 2 / 4, 1 / 4]
    assert t.level_accuracy([None], [("Bag",) * 3]) == [None, None, None]
    assert t.level_counts(["Shirt", "Shirt", "Sandal", "Bag", "zzz"]) == [
        {"clothing": 2, "footwear": 1, "Bag": 1},
        {"top": 2, "bottom": 0, "Sandal": 1, "Sneaker": 0, "Bag": 1},
        {"T-shirt/top": 0, "Shirt": 2, "Trouser": 0, "Sandal": 1, "Sneaker": 0, "Bag": 1}]


# ------------------------------------------------------------------------------------------------ store
@pytest.fixture
def tproj(tmp_path):
    p = Project.init(tmp_path / "p", "digits", taxonomy=DIGIT_TREE, query={"batch_size": 30}, backbone="pixels")
    yield p
    p.close()


@pytest.fixture
def tX(tproj):
    return tproj.source.pixels.reshape(len(tproj.items), -1).astype("float32") / 16.0


def _session(p, X):
    return p.session(embeddings=X, warm_start=False, head_factory=lambda: LogisticRegression(max_iter=300))


def test_choosing_a_leaf_stores_its_ancestors_explicitly(tproj, tX):
    s = _session(tproj, tX)
    b = s.next_batch()
    a, c, d = (bi.item.id for bi in b.items[:3])
    s.submit(a, Answer.of_label("8"))
    s.submit(c, Answer.of_label("1"))
    s.submit(d, Answer.of_label("7", path=("straight", "angled", "7")))  # a correct path is accepted
    with pytest.raises(AnswerError, match="path 'round > angled > 7' does not lead to '7'"):
        s.submit(b.items[3].item.id, Answer.of_label("7", path=("round", "angled", "7")))
    evs = {e["sample_id"]: e for e in tproj.store.events()}
    assert evs[a]["value"] == "8" and evs[a]["path"] == ("round", "loops", "8")
    assert evs[c]["path"] == ("straight", "1") and evs[d]["path"] == ("straight", "angled", "7")
    assert tproj.store.paths() == {a: ("round", "loops", "8"), c: ("straight", "1"), d: ("straight", "angled", "7")}
    assert tproj.store.labels() == {a: "8", c: "1", d: "7"}  # flat readers see the leaf, as before
    # the raw row: the path is a column of the append-only event, not derived later
    raw = sqlite3.connect(tproj.store.path)
    try:
        assert json.loads(raw.execute("SELECT path_json FROM events WHERE sample_id = ?", (a,)).fetchone()[0]) == \
            ["round", "loops", "8"]
    finally:
        raw.close()
    s.undo()  # the 7 is undone: its path goes with it, the row stays
    assert d not in tproj.store.paths() and len(tproj.store.events()) == 4
    s.close()


def test_a_flat_project_stores_no_path_and_refuses_one(tmp_path):
    p = Project.init(tmp_path / "flat", "digits", query={"batch_size": 5})
    assert p.schema.validate(Answer.of_label("3")).path == ()
    with pytest.raises(AnswerError, match="has no taxonomy"):
        p.schema.validate(Answer.of_label("3", path=("x", "3")))
    p.close()


def test_version_2_store_gains_the_path_column_and_keeps_its_answers(tmp_path):
    path = tmp_path / "labels.sqlite"
    with LabelStore(path) as s:
        s.record("a", Answer.of_label("cat"), round=1, annotator="x")
    raw = sqlite3.connect(path)  # make it look like a version-2 file: no path_json column
    raw.executescript("DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;"
                      "CREATE TABLE ev2 AS SELECT id, kind, sample_id, value_json, note, round, batch_id, annotator,"
                      " created_at, shown_at, time_spent_s, model_version, strategy, score, prediction_json, undoes,"
                      " uid FROM events; DROP TABLE events; ALTER TABLE ev2 RENAME TO events;"
                      # version 2 had no schema_history and no triggers guarding meta's schema_version
                      "DROP TABLE schema_history; DROP TRIGGER meta_schema_version_update;"
                      " DROP TRIGGER meta_schema_version_delete;"
                      "UPDATE meta SET value_json = '2' WHERE key = 'schema_version';")
    raw.commit()
    raw.close()
    with LabelStore(path) as s:
        assert s.get_meta("schema_version") == 4
        assert [(h["from_version"], h["to_version"]) for h in s.schema_history()] == [(2, 4)]
        assert s.labels() == {"a": "cat"} and s.events()[0]["path"] is None and s.paths() == {}
        assert s.get_meta("migrated_v1_to_v2") is None  # the version-1 migration did not run again
        s.record("b", Answer.of_label("dog", path=("animal", "dog")), round=1, annotator="x")
        assert s.paths() == {"b": ("animal", "dog")}
        with pytest.raises(Exception, match="append-only"):
            s._conn().execute("UPDATE events SET path_json = NULL")


def test_store_refuses_a_path_that_does_not_end_in_the_label(tmp_path):
    with LabelStore(tmp_path / "l.sqlite") as s:
        with pytest.raises(AnswerError, match="ending in the label 'dog'"):
            s.record("a", Answer.of_label("dog", path=("animal", "cat")), round=1, annotator="x")
        assert s.events() == []


# ------------------------------------------------------------------------------------------------ loop
def test_round_report_has_per_level_accuracy_and_coverage_computed_by_hand(tproj, tX):
    from alworkbench.loop.oracle import Oracle

    s = _session(tproj, tX)
    o = Oracle(s)
    reps = o.run(2)
    rep = reps[-1]
    tree = tproj.config.tree
    assert [lv["name"] for lv in rep.levels] == ["level_1", "level_2", "level_3"]
    # held out: recompute from the model's probabilities and the ground truth
    m = s._model
    ev = np.flatnonzero(s.eval_mask)
    gt = [tproj.items[i].label for i in ev]
    paths = tree.predict_paths(m.proba[ev], m.classes)
    for k in range(3):
        hand = np.mean([tree.levels(g)[k] == p[k] for g, p in zip(gt, paths)])
        assert rep.levels[k]["accuracy"] == pytest.approx(hand)
        assert rep.levels[k]["n_eval"] == len(ev)
    # the flat accuracy is the leaf level's (the predicted leaf is the top-down one); coarser levels are easier
    assert rep.accuracy == pytest.approx(rep.levels[2]["accuracy"])
    assert rep.levels[0]["accuracy"] >= rep.levels[1]["accuracy"] >= rep.levels[2]["accuracy"]
    # cross-validated per level on the human labels, from the same out-of-fold rows as cv_accuracy
    cal = m.calibration
    rows = np.flatnonzero(cal.usable)
    assert rep.levels[0]["n_cv"] == cal.n_used == len(rows) > 0
    idx, y = s._training_data()
    oof_paths = tree.predict_paths(cal.oof_proba[rows], m.classes)
    for k in range(3):
        hand = np.mean([tree.levels(y[r])[k] == oof_paths[j][k] for j, r in enumerate(rows)])
        assert rep.levels[k]["cv_accuracy"] == pytest.approx(hand)
    assert rep.levels[0]["cv_accuracy"] >= rep.levels[1]["cv_accuracy"] >= rep.levels[2]["cv_accuracy"]
    # coverage per level adds up to the labels
    labels = tproj.store.labels()
    for k in range(3):
        assert sum(rep.levels[k]["coverage"].values()) == len(labels) == 60
    assert rep.levels[0]["coverage"]["straight"] == sum(1 for v in labels.values() if v in "147")
    # stored with the round reports (what alwb status reads)
    assert tproj.store.reports()[-1]["levels"] == rep.levels
    s.close()


def test_status_and_csv_export_show_levels(tproj, tX, tmp_path, capsys):
    from alworkbench.cli import main, status_dict
    from alworkbench.export import export

    s = _session(tproj, tX)
    b = s.next_batch()
    for bi in b.items[:20]:
        s.submit(bi.item.id, Answer.of_label(bi.item.label))
    rep = s.retrain()
    st = status_dict(tproj)
    assert st["taxonomy_depth"] == 3
    assert [lv["name"] for lv in st["levels"]] == ["level_1", "level_2", "level_3"]
    assert [lv["accuracy"] for lv in st["levels"]] == [lv["accuracy"] for lv in rep.levels]
    assert sum(st["levels"][0]["coverage"].values()) == 20
    s.close()
    assert main(["status", str(tproj.dir)]) == 0
    out = capsys.readouterr().out
    assert f"level_1: accuracy {rep.levels[0]['accuracy']:.3f}" in out and "level_3: accuracy" in out
    res = export(tproj, tmp_path / "out.csv")
    rows = list(csv.DictReader(open(res["path"], encoding="utf-8")))
    assert len(rows) == 20
    for r in rows:
        assert (r["level_1"], r["level_2"], r["level_3"]) == tproj.config.tree.levels(r["label"])


def test_round_summary_shows_a_table_per_level_and_the_widget_gets_the_tree(tproj, tX):
    from alworkbench.ui.render import report_html
    from alworkbench.ui.workbench import taxonomy_state

    s = _session(tproj, tX)
    b = s.next_batch()
    for bi in b.items[:20]:
        s.submit(bi.item.id, Answer.of_label(bi.item.label))
    rep = s.retrain()
    out = report_html(s.reports, s.classes)
    assert "alwb-report-levels" in out
    for lv in rep.levels:
        acc = f"{lv['accuracy']:.3f}"
        assert f"<tr data-level='{lv['level']}'><th>{lv['name']}</th><td class='alwb-level-acc'>{acc}</td>" in out
    cov = " · ".join(f"{n} {c}" for n, c in rep.levels[0]["coverage"].items())
    assert f"<td class='alwb-level-cov'>{cov}</td>" in out and sum(rep.levels[0]["coverage"].values()) == 20
    assert "alwb-report-levels" not in report_html([type(rep).from_dict({**rep.to_dict(), "levels": None})], s.classes)
    st = taxonomy_state(tproj.schema)
    assert st["roots"] == ["round", "straight"] and st["paths"]["7"] == ["straight", "angled", "7"]
    assert st["children"]["straight"] == ["1", "angled"] and st["keys"][:3] == ["1", "2", "3"]
    assert taxonomy_state(Project.init(tproj.dir.parent / "flat", "digits").schema) == {}
    # the shown suggestion is the tree-consistent leaf (first), never a leaf the tree prediction contradicts
    m = s._model
    for i in range(0, len(s.items), 37):
        assert s._prediction(m, i).top[0][0] == m.classes[int(m.pred[i])]
        hint = s.predict_tree(s.items[i].id)  # what the tree labeller marks: the same leaf and its ancestors
        assert hint["path"] == list(tproj.config.tree.levels(m.classes[int(m.pred[i])]))
        assert hint["p"]["round"] + hint["p"]["straight"] == pytest.approx(1.0, abs=1e-3)
        assert hint["p"]["angled"] == pytest.approx(hint["p"]["4"] + hint["p"]["7"], abs=1e-3)
    s.show_suggestions = False
    assert s.predict_tree(s.items[0].id) is None
    s.close()


def test_classes_rename_in_a_taxonomy_project_maps_labels_to_the_new_leaf_and_its_path(tproj, tX):
    from alworkbench.classes import rename_class
    from alworkbench.errors import AlwbError

    s = _session(tproj, tX)
    b = s.next_batch()
    eights = [bi.item.id for bi in b.items[:2]]
    for sid in eights:
        s.submit(sid, Answer.of_label("8"))
    s.close()
    with pytest.raises(AlwbError, match="has a taxonomy: rename or move the leaf '8' in its taxonomy: first"):
        rename_class(tproj, "8", "eight")
    # the person moves and renames the leaf in alwb.yaml; the labels then follow with the new path
    text = tproj.config_path.read_text().replace("- '8'", "- eight")
    tproj.config_path.write_text(text)
    tproj.reload_config()
    assert tproj.config.tree.path("eight") == ("round", "loops", "eight")
    res = rename_class(tproj, "8", "eight")
    assert res["n_items"] == 2 and res["config_changed"] is False
    assert {sid: tproj.store.paths()[sid] for sid in eights} == {sid: ("round", "loops", "eight") for sid in eights}
    old = [e for e in tproj.store.events() if e["value"] == "8"]
    assert [e["path"] for e in old] == [("round", "loops", "8")] * 2  # history kept as it was stored


def test_a_leaf_moved_in_the_tree_keeps_its_stored_path_and_status_says_so(tproj, tX, tmp_path, capsys):
    from alworkbench.cli import main, status_dict
    from alworkbench.export import export

    s = _session(tproj, tX)
    b = s.next_batch()
    ids = [bi.item.id for bi in b.items[:3]]
    for sid in ids:
        s.submit(sid, Answer.of_label("7"))
    s.close()
    assert status_dict(tproj)["moved_paths"] == {}
    s_open = _session(tproj, tX)
    # the person moves 7 from straight > angled to round > open in alwb.yaml
    cfg = tproj.config
    cfg.taxonomy = {"round": {"loops": ["0", "6", "8", "9"], "open": ["2", "3", "5", "7"]},
                    "straight": {"1": None, "angled": ["4"]}}
    cfg.save(tproj.config_path)
    tproj.reload_config()
    st = status_dict(tproj)
    assert st["moved_paths"] == {"7": {"n": 3, "stored": ["straight", "angled", "7"], "now": ["round", "open", "7"]}}
    assert main(["status", str(tproj.dir)]) == 0
    assert ("3 label(s) '7' were answered under straight > angled > 7; the taxonomy now puts it under "
            "round > open > 7") in capsys.readouterr().out
    assert st["levels"][0]["coverage"] == {"round": 3, "straight": 0}  # levels follow the taxonomy
    s2 = _session(tproj, tX)  # a new session reads the new tree; an open one follows it when it reloads the config
    assert s2.tree.path("7") == ("round", "open", "7") and s_open.tree.path("7") == ("straight", "angled", "7")
    s_open.reload_guideline()
    assert s_open.tree.path("7") == ("round", "open", "7")
    s2.close()
    s_open.close()
    rows = list(csv.DictReader(open(export(tproj, tmp_path / "o.csv")["path"], encoding="utf-8")))
    assert {(r["level_1"], r["level_2"], r["level_3"]) for r in rows} == {("round", "open", "7")}
    assert set(tproj.store.paths().values()) == {("straight", "angled", "7")}  # the store keeps what was answered
