"""Tag trees (issue 11, multi-label half): ``tags:`` as nested mappings, every node a tag; a chosen tag stores its
ancestors; predictions consistent with the tree; per-level micro-F1 and coverage in the round report, alwb status
and the CSV export.

Real parts: the digits source (each digit's class is its one true tag, closed under the tree), the SQLite label
store, scikit-learn heads, the real Session."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from alworkbench import Answer, Project
from alworkbench.config import config_from_dict
from alworkbench.errors import AnswerError, ConfigError
from alworkbench.labels.taxonomy import Taxonomy

#: the digits as a tag tree: 14 tags (4 groups, 10 digits); "1" is a tag at depth 2
DIGIT_TAGS = {"round": {"loops": ["0", "6", "8", "9"], "open": ["2", "3", "5"]},
              "straight": {"1": None, "angled": ["4", "7"]}}
ANIMALS = {"animal": {"cat": None, "dog": ["puppy"]}, "vehicle": ["car"]}


def _cfg(**kw):
    return config_from_dict({"source": "digits", **kw})


# ------------------------------------------------------------------------------------------------ config
def test_nested_tags_make_a_tag_tree_whose_every_node_is_a_tag_and_round_trip(tmp_path):
    cfg = _cfg(tags=ANIMALS)
    assert cfg.multilabel and cfg.tags == ["animal", "cat", "dog", "puppy", "vehicle", "car"]
    tree = cfg.tree
    assert tree.multilabel and tree.depth == 3 and tree.path("puppy") == ("animal", "dog", "puppy")
    d = cfg.to_dict()
    assert "taxonomy" not in d and d["tags"] == {"animal": {"cat": None, "dog": ["puppy"]}, "vehicle": ["car"]}
    again = config_from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again.tags == cfg.tags and again.taxonomy == cfg.taxonomy and again.classes is None
    # a list holding groups is a tree too; a flat list stays flat tags
    assert _cfg(tags=["vehicle", {"animal": ["cat"]}]).tags == ["vehicle", "animal", "cat"]
    flat = _cfg(tags=["a", "b/c"])
    assert flat.tree is None and flat.tags == ["a", "b/c"]


@pytest.mark.parametrize("raw, message", [
    ({"animal": ["cat"], "pet": ["cat"]}, "name 'cat' appears twice (under animal and under pet)"),
    ({"animal": []}, "group 'animal' is empty"),
    ({"animal": ["cat/kitten"]}, "tag 'cat/kitten' holds '/'"),
    ({"animal": ["cat", ["dog"]]}, "animal holds a list inside a list"),
    ({"animal": ["cat", None]}, "contains an empty (null) name"),
    ({"animal": "cat"}, "group 'animal' must hold a mapping or a list of names, got 'cat'"),
])
def test_bad_tag_trees_are_one_line_errors(raw, message):
    with pytest.raises(ConfigError) as e:
        _cfg(tags=raw)
    assert message in str(e.value) and "\n" not in str(e.value) and "config key 'tags'" in str(e.value)


def test_a_tag_tree_beside_taxonomy_or_flat_tags_beside_taxonomy_are_refused():
    with pytest.raises(ConfigError, match="a nested tags: is already the tag tree; drop taxonomy:"):
        _cfg(tags=ANIMALS, taxonomy={"a": ["1", "2"]})
    with pytest.raises(ConfigError, match=r"for a tag tree write tags: as nested mappings"):
        _cfg(taxonomy={"a": ["1", "2"]}, tags=["x"])


# ------------------------------------------------------------------------------------------------ tree maths
def test_consistent_probabilities_never_exceed_the_parent_and_decisions_are_closed():
    t = Taxonomy(ANIMALS, key="tags", multilabel=True)
    tags = list(t.nodes)
    rng = np.random.default_rng(0)
    raw = rng.random((500, len(tags)))
    p = t.consistent_tag_proba(raw, tags)
    for n in tags:
        par = t.path(n)[:-1]
        if par:
            assert np.all(p[:, tags.index(n)] <= p[:, tags.index(par[-1])])
            assert np.all(p[:, tags.index(n)] == np.minimum.reduce([raw[:, tags.index(a)] for a in t.path(n)]))
    for thr in (0.3, 0.5, 0.8):
        for row in p >= thr:
            chosen = [tags[j] for j in np.flatnonzero(row)]
            assert set(t.close_tags(chosen)) == set(chosen)  # no predicted child without its parent
    # a tag column order other than the tree's works too
    perm = tags[::-1]
    assert np.allclose(t.consistent_tag_proba(raw[:, ::-1], perm)[:, ::-1], p)


def test_per_level_micro_f1_and_coverage_match_a_hand_computation():
    t = Taxonomy(ANIMALS, key="tags", multilabel=True)
    tags = list(t.nodes)  # animal cat dog puppy vehicle car
    truth = [("puppy",), ("cat",), ("car",), None]
    pred = np.zeros((4, len(tags)), bool)
    for r, chosen in enumerate([("animal", "dog"), ("animal", "dog"), ("vehicle",), ("animal",)]):
        for c in chosen:
            pred[r, tags.index(c)] = True
    # level 1 (animal, vehicle): tp 3 (animal, animal, vehicle), fp 0, fn 0 -> 1.0 (the None row is left out)
    # level 2 (cat, dog, car): row 1 tp dog; row 2 fp dog, fn cat; row 3 fn car -> tp 1, fp 1, fn 2 -> 2/5
    # level 3 (puppy): row 1 fn puppy -> tp 0, fp 0, fn 1 -> 0.0
    assert t.tag_level_f1(truth, pred, tags) == [1.0, pytest.approx(0.4), 0.0]
    assert t.tag_level_counts([("puppy",), ("animal", "cat"), ("car", "zzz")]) == [
        {"animal": 2, "vehicle": 1}, {"cat": 1, "dog": 1, "car": 1}, {"puppy": 1}]
    assert t.tag_levels(["puppy", "car"]) == [["animal", "vehicle"], ["dog", "car"], ["puppy"]]


# ------------------------------------------------------------------------------------------------ store and loop
@pytest.fixture
def tagproj(tmp_path):
    p = Project.init(tmp_path / "p", "digits", tags=DIGIT_TAGS, query={"batch_size": 30}, backbone="pixels")
    yield p
    p.close()


@pytest.fixture
def tX(tagproj):
    return tagproj.source.pixels.reshape(len(tagproj.items), -1).astype("float32") / 16.0


def _session(p, X):
    return p.session(embeddings=X, warm_start=False,
                     head_factory=lambda: OneVsRestClassifier(LogisticRegression(max_iter=300)))


def test_choosing_a_tag_stores_its_ancestors_explicitly(tagproj, tX):
    s = _session(tagproj, tX)
    b = s.next_batch()
    a, c, d = (bi.item.id for bi in b.items[:3])
    s.submit(a, Answer.of_tags(["8"]))
    s.submit(c, Answer.of_tags(["1", "open"]))
    s.submit(d, Answer.of_tags(["straight"]))
    with pytest.raises(AnswerError, match="unknown tag"):
        s.submit(b.items[3].item.id, Answer.of_tags(["round/loops"]))
    evs = {e["sample_id"]: e for e in tagproj.store.events()}
    assert tuple(evs[a]["value"]) == ("8", "loops", "round")
    assert tuple(evs[c]["value"]) == ("1", "open", "round", "straight")
    assert tuple(evs[d]["value"]) == ("straight",)
    assert tagproj.store.tag_sets() == {
        a: ("8", "loops", "round"), c: ("1", "open", "round", "straight"), d: ("straight",)}
    s.close()


def test_round_report_per_level_micro_f1_and_predictions_never_contradict_the_tree(tagproj, tX, tmp_path, capsys):
    from alworkbench.cli import main, status_dict
    from alworkbench.export import export
    from alworkbench.loop.oracle import Oracle

    s = _session(tagproj, tX)
    rep = Oracle(s).run(2)[-1]
    tree = tagproj.config.tree
    m = s._model
    tags = m.classes
    assert rep.metric == "micro_f1" and [lv["name"] for lv in rep.levels] == ["level_1", "level_2", "level_3"]
    # no prediction contradicts the tree: every tag at most its parent's probability, decisions closed
    for n in tags:
        par = tree.path(n)[:-1]
        if par:
            assert np.all(m.proba[:, tags.index(n)] <= m.proba[:, tags.index(par[-1])] + 1e-12)
    for row in m.pred:
        chosen = [tags[j] for j in np.flatnonzero(row)]
        assert set(tree.close_tags(chosen)) == set(chosen)
    # held-out per level by hand: micro-F1 over the tags at that depth, truth = the digit closed under the tree
    ev = np.flatnonzero(s.eval_mask)
    for k in range(1, 4):
        nodes = [tags.index(n) for n in tree.tag_level_nodes(k)]
        tp = fp = fn = 0
        for i in ev:
            true = set(tree.path(tagproj.items[i].label))
            for j in nodes:
                pr, y = bool(m.pred[i, j]), tags[j] in true
                tp, fp, fn = tp + (pr and y), fp + (pr and not y), fn + (y and not pr)
        assert rep.levels[k - 1]["accuracy"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
        assert rep.levels[k - 1]["n_eval"] == len(ev)
    # the flat micro-F1 is over all tags against the closed truth
    from sklearn.metrics import f1_score

    Y = np.array([[t in tree.path(tagproj.items[i].label) for t in tags] for i in ev])
    assert rep.accuracy == pytest.approx(f1_score(Y, m.pred[ev], average="micro"))
    # cross-validated per level from the out-of-fold rows, made consistent the same way
    cal = m.calibration
    rows = np.arange(len(cal.oof_proba))  # multi-label: every out-of-fold row is usable
    idx, y = s._training_data()
    oof = tree.consistent_tag_proba(cal.oof_proba[rows], tags) >= 0.5
    hand = tree.tag_level_f1([[tags[j] for j in np.flatnonzero(y[r])] for r in rows], oof, tags)
    assert [lv["cv_accuracy"] for lv in rep.levels] == pytest.approx(hand)
    assert rep.levels[0]["n_cv"] == len(rows) > 0
    # the flat cross-validated micro-F1 is of the same tree-consistent out-of-fold decisions
    Yt = np.asarray(y)[rows]
    assert rep.cv_accuracy == pytest.approx(f1_score(Yt, oof.astype(int), average="micro"))
    # the tree labeller's hint: the tags decided present (closed) and every tag's probability
    sid = tagproj.items[int(ev[0])].id
    hint = s.predict_tree(sid)
    assert hint["path"] == [t for j, t in enumerate(tags) if m.pred[ev[0], j]]
    assert set(tree.close_tags(hint["path"])) == set(hint["path"])
    assert hint["p"] == {t: round(float(m.proba[ev[0], j]), 4) for j, t in enumerate(tags)}
    # coverage: every labelled item has one top tag; level 3 holds only depth-3 tags
    labels = tagproj.store.tag_sets()
    assert sum(rep.levels[0]["coverage"].values()) == len(labels) == 60
    assert rep.levels[1]["coverage"]["1"] == sum(1 for v in labels.values() if "1" in v)
    assert set(rep.levels[2]["coverage"]) == {"0", "6", "8", "9", "2", "3", "5", "4", "7"}
    assert tagproj.store.reports()[-1]["levels"] == rep.levels
    # alwb status: the same per-level numbers, named micro_f1
    st = status_dict(tagproj)
    assert [lv["accuracy"] for lv in st["levels"]] == [lv["accuracy"] for lv in rep.levels]
    assert [lv["coverage"] for lv in st["levels"]] == [lv["coverage"] for lv in rep.levels]
    s.close()
    capsys.readouterr()
    assert main(["status", str(tagproj.dir)]) == 0
    out = capsys.readouterr().out
    assert f"level_1: micro_f1 {rep.levels[0]['accuracy']:.3f}" in out and "tags labelled" in out
    # CSV export: per level the tags at that depth
    res = export(tagproj, tmp_path / "out.csv")
    got = list(csv.DictReader(open(res["path"], encoding="utf-8")))
    assert len(got) == 60
    for r in got:
        levels = tree.tag_levels(r["tags"].split("|"))
        assert [r["level_1"], r["level_2"], r["level_3"]] == ["|".join(x) for x in levels]


def test_round_summary_table_names_micro_f1_for_a_tag_tree(tagproj, tX):
    from alworkbench.ui.render import report_html

    s = _session(tagproj, tX)
    b = s.next_batch()
    for bi in b.items[:20]:
        s.submit(bi.item.id, Answer.of_tags([bi.item.label]))
    rep = s.retrain()
    out = report_html(s.reports, s.classes)
    assert "<th>held-out micro-F1</th>" in out and "held-out accuracy" not in out
    for lv in rep.levels:
        acc = "–" if lv["accuracy"] is None else f"{lv['accuracy']:.3f}"
        assert f"<tr data-level='{lv['level']}'><th>{lv['name']}</th><td class='alwb-level-acc'>{acc}</td>" in out
    cov = " · ".join(f"{n} {c}" for n, c in rep.levels[0]["coverage"].items())
    assert f"<td class='alwb-level-cov'>{cov}</td>" in out and sum(rep.levels[0]["coverage"].values()) == 20
    s.close()


def test_routed_auto_labels_of_a_tag_tree_hold_every_ancestor(tmp_path):
    from alworkbench.loop.oracle import Oracle
    from alworkbench.loop.routing import AUTO_LABEL

    p = Project.init(tmp_path / "r", "digits", tags=DIGIT_TAGS, query={"batch_size": 50},
                     routing={"target_precision": 0.9, "min_support": 20, "review_sample": 0.0},
                     quality={"review_sample": 0.0})
    X = p.source.pixels.reshape(len(p.items), -1).astype("float32") / 16
    s = p.session(annotator="ana", embeddings=X, warm_start=False,
                  head_factory=lambda: OneVsRestClassifier(LogisticRegression(max_iter=300)))
    oracle = Oracle(s)
    for _ in range(4):
        oracle.label_batch(s.next_batch())
    s.retrain()
    res = s.auto_label()
    recs = p.store.records(AUTO_LABEL)
    assert res["n_auto"] == len(recs) > 0
    tree = p.config.tree
    for r in recs:
        assert r["label"] and set(tree.close_tags(r["label"])) == set(r["label"])
        for t in r["label"]:  # every tag's confidence at most its parent's
            if len(tree.path(t)) > 1:
                assert r["tag_confidence"][t] <= r["tag_confidence"][tree.path(t)[-2]] + 1e-12
    s.close()
    p.close()


def test_simulate_refuses_a_tag_tree_in_one_line(tmp_path):
    import os
    import subprocess
    import sys

    cfg = tmp_path / "alwb.yaml"
    cfg.write_text("source: digits\ntags: {round: ['0', '8'], straight: ['1', '7']}\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(__import__("pathlib").Path(__file__).resolve().parents[2])]
                                                      + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    r = subprocess.run([sys.executable, "-m", "alworkbench.cli", "simulate", "--config", str(cfg), "--budget", "20",
                        "--workdir", str(tmp_path / "w"), "--quiet"], capture_output=True, text=True, timeout=600,
                       env=env)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "simulate runs class taxonomies (taxonomy:), not tag trees (tags: nested)" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
