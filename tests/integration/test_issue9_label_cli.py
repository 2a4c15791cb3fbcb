"""Issue 9, finding 5 (silent wrong labels in the interactive `alwb label`) and finding 6 (class renames,
`init --force` with new classes, ground truth outside the class list), with the real `alwb` command, the real
store and the offline backbone. The tests whose subject is what reaches the store run on SQLite and on PostgreSQL
(``project_backend``: `alwb` subprocesses inherit ALWB_STORE_URL); the ones about reading the prompt run on SQLite."""
from __future__ import annotations

import contextlib
import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from alworkbench import Answer, Project


def alwb(*args, input=None):
    return subprocess.run([sys.executable, "-m", "alworkbench.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=600, input=input)


def _init(tmp_path, classes=None, name="p", batch=4, limit=40):
    proj = tmp_path / name
    args = ["init", proj, "--images", "digits", "--batch-size", batch, "--limit", limit]
    if classes:
        args += ["--classes", ",".join(classes)]
    r = alwb(*args)
    assert r.returncode == 0, r.stderr
    return proj


@contextlib.contextmanager
def _store(proj):
    """The project's label store, wherever it lives (labels.sqlite, or ALWB_STORE_URL)."""
    p = Project.open(proj)
    try:
        yield p.store
    finally:
        p.close()


def _active(proj):
    with _store(proj) as st:
        return sorted((e["kind"], e["value"], e["note"]) for e in st.active_answers().values())


# ------------------------------------------------------------------------------------------------ finding 5
def test_finding5_answers_starting_with_f_are_classes_not_flags(tmp_path, project_backend):
    proj = _init(tmp_path, ["fox", "foo", "dog"])
    r = alwb("label", proj, "--annotator", "tty", input="fox\nfoo\n2\nf\n:flag is it a fox?\n:quit\n")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "unknown class 'f'" in r.stdout and ":flag" in r.stdout  # a bare "f" is explained, then re-asked
    assert _active(proj) == [("flag", None, "is it a fox?"), ("label", "foo", ""), ("label", "foo", ""),
                             ("label", "fox", "")]


def test_finding5_zero_and_out_of_range_numbers_reask(tmp_path):
    proj = _init(tmp_path, ["cat", "dog"])
    r = alwb("label", proj, input="0\n3\n-1\nbird\n1\n:quit\n")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert r.stdout.count("is not in the list: numbers go from 1 to 2") == 3
    assert "unknown class 'bird'" in r.stdout and "list index" not in r.stdout
    assert _active(proj) == [("label", "cat", "")]  # only "1" answered; "0" did not pick the last class


def test_finding5_undo_at_first_prompt_says_nothing_to_undo(tmp_path, project_backend):
    proj = _init(tmp_path, ["cat", "dog"])
    r = alwb("label", proj, input=":undo\n:u\n2\n:undo\n1\n:quit\n")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert r.stdout.count("nothing to undo") == 2 and "undone:" in r.stdout
    assert _active(proj) == [("label", "cat", "")]


def test_finding5_ctrl_d_quits_cleanly(tmp_path):
    proj = _init(tmp_path, ["cat", "dog"])
    r = alwb("label", proj, input="2\n")  # then end of input, as Ctrl-D
    assert r.returncode == 0 and "Traceback" not in r.stderr and "EOFError" not in r.stderr, r.stderr
    assert "end of input" in r.stdout
    assert _active(proj) == [("label", "dog", "")]


def test_finding5_numbers_are_unambiguous_when_class_names_are_numbers(tmp_path):
    proj = _init(tmp_path)  # digits: the classes are named "0".."9"
    r = alwb("label", proj, input="3\n#3\n11\n:skip\n:quit\n")
    assert r.returncode == 0, r.stderr
    assert "#N picks the N-th" in r.stdout
    assert _active(proj) == [("label", "2", ""), ("label", "3", ""), ("skip", None, "")]


def test_finding5_parse_label_line_tags():
    from alworkbench.cli import parse_label_line

    tags, accepted = ["red", "round", "animal/cat"], ["animal", "animal/cat", "red", "round"]
    assert parse_label_line("1,3", tags, True, accepted).value == ["red", "animal/cat"]
    assert parse_label_line("red, animal", tags, True, accepted).value == ["red", "animal"]
    assert parse_label_line("red,4", tags, True, accepted).kind == "error"
    assert parse_label_line(":flag why", tags, True, accepted).value == "why"
    assert parse_label_line("s", tags, True, accepted).kind == "error"


# ------------------------------------------------------------------------------------------------ finding 6
def _label_in_store(proj, n, cls, round_=1):
    p = Project.open(proj)
    ids = [it.id for it in p.source.items if not it.split == "test"][:n]
    for sid in ids:
        p.store.record(sid, Answer.of_label(cls), round=round_, annotator="ana")
    p.close()
    return ids


# PostgreSQL once: both ways end in the same store calls; init --force is the one that reads the store itself
@pytest.mark.parametrize("backend,how", [("sqlite", "edit"), ("sqlite", "init-force"), ("postgresql", "init-force")])
def test_finding6_renamed_class_explained_then_mapped(tmp_path, how, project_backend):
    proj = _init(tmp_path, ["Bag", "Shoe"])
    ids = _label_in_store(proj, 5, "Bag")
    if how == "edit":
        cfg = (proj / "alwb.yaml").read_text(encoding="utf-8").replace("- Bag", "- Handbag")
        (proj / "alwb.yaml").write_text(cfg, encoding="utf-8")
    else:
        r = alwb("init", proj, "--images", "digits", "--limit", 40, "--classes", "Handbag,Shoe", "--force")
        assert r.returncode == 0 and "alwb classes rename" in r.stdout, r.stdout + r.stderr
        where = "labels.sqlite" if project_backend is None else "postgresql://alwb@127.0.0.1:"
        assert f"labels in {proj / 'labels.sqlite' if project_backend is None else where}" in r.stdout, r.stdout
    # every command explains it in one line naming the command that maps them; none crashes
    r = alwb("label", proj, "--oracle")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "is not in list" not in r.stderr
    assert "'Bag' (5 items)" in r.stderr and "alwb classes rename" in r.stderr and len(r.stderr.splitlines()) == 1
    r = alwb("status", proj)
    assert r.returncode == 0 and "'Bag' (5 items)" in r.stdout and "alwb classes rename" in r.stdout
    st = json.loads(alwb("status", proj, "--json").stdout)
    assert st["unknown_labels"] == {"Bag": 5}
    r = alwb("export", proj, "--out", tmp_path / "x.csv")
    assert r.returncode == 2 and "alwb classes rename" in r.stderr and not (tmp_path / "x.csv").exists()
    # map them: appended events, the old ones kept
    r = alwb("classes", "rename", proj, "Bag", "Handbag")
    assert r.returncode == 0 and "5 label(s) mapped" in r.stdout, r.stderr
    with _store(proj) as s:
        evs = s.events()
        assert [e["value"] for e in evs if e["kind"] == "label"].count("Bag") == 5  # history kept
        new = [e for e in evs if e["annotator"] == "alwb:rename"]
        assert sorted(e["sample_id"] for e in new) == sorted(ids) and {e["value"] for e in new} == {"Handbag"}
        assert all("'Bag' -> 'Handbag'" in e["note"] and "ana" in e["note"] for e in new)
        assert len({e["round"] for e in new}) == 1
    st = json.loads(alwb("status", proj, "--json").stdout)
    assert st["per_class"]["Handbag"] == 5 and st["unknown_labels"] == {}
    assert alwb("export", proj, "--out", tmp_path / "x.csv").returncode == 0
    rows = list(csv.DictReader((tmp_path / "x.csv").open(encoding="utf-8")))
    assert {r["label"] for r in rows} == {"Handbag"}
    assert "Handbag" in (proj / "alwb.yaml").read_text(encoding="utf-8")
    r = alwb("label", proj, "--oracle")  # the loop runs again (digits' ground truth is not a class: flagged)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    # a second rename is a no-op, not an error loop
    r = alwb("classes", "rename", proj, "Bag", "Handbag")
    assert r.returncode == 2 and "nothing to rename" in r.stderr


def test_finding6_rename_in_config_and_labels_together(tmp_path, project_backend):
    proj = _init(tmp_path, ["Bag", "Shoe"])
    _label_in_store(proj, 3, "Bag")
    r = alwb("classes", "rename", proj, "Bag", "Handbag")
    assert r.returncode == 0 and "config updated" in r.stdout
    p = Project.open(proj)
    assert p.config.classes == ["Handbag", "Shoe"] and p.store.counts(["Handbag"], False) == {"Handbag": 3}
    r = alwb("classes", "rename", proj, "Shoe", "../../x")
    assert r.returncode == 2 and "looks like a relative file path" in r.stderr


def test_finding6_oracle_ground_truth_outside_class_list_never_blocks(tmp_path, project_backend):
    """digits' ground truth 9 is not a class here: those items are flagged with the reason, the batch
    completes, and the next run goes on (before: every rerun failed on the same pending item)."""
    from sklearn.linear_model import LogisticRegression

    from alworkbench.loop.oracle import Oracle
    from alworkbench.loop.session import Session

    proj = _init(tmp_path, [str(d) for d in range(9)], batch=6, limit=60)
    p = Project.open(proj)
    px = p.source.pixels
    X = px.reshape(len(px), -1).astype(np.float32) / 255.0
    s = Session(p, annotator="oracle", embeddings=X, warm_start=False,
                head_factory=lambda: LogisticRegression(max_iter=300))
    try:
        nines = [it.id for it in p.source.items if it.label == "9" and it.split != "test"][:2]
        others = [it.id for it in p.source.items if it.label == "1" and it.split != "test"][:2]
        assert len(nines) == 2
        s.enqueue(nines + others, reason="test")
        o = Oracle(s)
        assert o.label_batch(s.current_batch) == 4
        assert s.pending() == []
        flags = s.store.flagged()
        assert set(flags) == set(nines) and all("ground-truth class '9'" in n for n in flags.values())
        assert o.unknown_truth == {"9": 2} and "2 item(s) flagged" in o.summary()
        assert o.label_batch(s.next_batch()) > 0  # the next run goes on
    finally:
        s.close()
        p.close()
    r = alwb("label", proj, "--oracle", "--rounds", 2)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
