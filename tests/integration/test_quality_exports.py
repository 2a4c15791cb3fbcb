"""Issue 10: exports carry the FINAL label (review > consensus > single answer > gold; a tie exports nothing and is
reported) with review_state, label_source and annotators columns. Real digits projects, answers through real
sessions, reviews through the real ReviewSession, files read back."""
from __future__ import annotations

import csv

import pytest

from alworkbench import Answer, Project
from alworkbench.cli import main
from alworkbench.export import export
from alworkbench.labels.quality import add_gold


def answer(p, X, annotator, answers: dict):
    with p.session(annotator=annotator, embeddings=X, warm_start=False) as s:
        s.answer_items(answers)


@pytest.fixture
def team(tmp_path, project_backend):  # on SQLite and on PostgreSQL
    """Items 0-5 and 10 of a digits project:
    0: ana 0, ben 0, accepted by rita      -> 0 (review, accepted)
    1: ana 1, ben 7                        -> a tie: not exported
    2: ana 2                               -> 2 (single)
    3: ana 3, ben 7, corrected to 8        -> 8 (review, corrected)
    4: ana flags it                        -> not exported (flagged)
    5: ana 5, ben 5, carl 6                -> 5 (consensus)
    10: gold only                          -> its gold answer (gold)"""
    p = Project.init(tmp_path / "p", "digits", query={"batch_size": 10}, quality={"review_sample": 0.0})
    X = p.source.pixels.reshape(len(p.items), -1).astype("float32") / 16.0
    i = [it.id for it in p.items[:11]]
    answer(p, X, "ana", {i[0]: Answer.of_label("0"), i[1]: Answer.of_label("1"), i[2]: Answer.of_label("2"),
                         i[3]: Answer.of_label("3"), i[4]: Answer.flag("two digits"), i[5]: Answer.of_label("5")})
    answer(p, X, "ben", {i[0]: Answer.of_label("0"), i[1]: Answer.of_label("7"), i[3]: Answer.of_label("7"),
                         i[5]: Answer.of_label("5")})
    answer(p, X, "carl", {i[5]: Answer.of_label("6")})
    add_gold(p.store, [(i[10], p.items[10].label)], multilabel=False, source="test")
    s = p.session(annotator="rita", embeddings=X, warm_start=False)
    rs = s.review()
    rs.accept(i[0])
    rs.correct(i[3], "8", "a loop at the top: an eight")
    s.close()
    yield p, i
    p.close()


def _rows(path):
    return {r["id"]: r for r in csv.DictReader(open(path, encoding="utf-8"))}


def test_csv_exports_the_final_label_with_review_state_source_and_annotators(team, tmp_path):
    p, i = team
    res = export(p, tmp_path / "out.csv", "csv")
    assert res["n_exported"] == 5 and res["n_ties"] == 1 and res["ties"] == [i[1]]
    assert res["n_flagged"] == 1 and res["n_skipped"] == 0
    assert res["by_source"] == {"review": 2, "consensus": 1, "single": 1, "gold": 1}
    with open(tmp_path / "out.csv", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header == ["id", "path", "label", "annotator", "round", "answered_at", "review_state", "label_source",
                      "annotators", "source"]
    rows = _rows(tmp_path / "out.csv")
    got = {sid: (r["label"], r["review_state"], r["label_source"], r["annotators"]) for sid, r in rows.items()}
    assert got == {
        i[0]: ("0", "accepted", "review", "ana|ben"),
        i[2]: ("2", "unreviewed", "single", "ana"),
        i[3]: ("8", "corrected", "review", "ana|ben"),  # the correction, not either answer
        i[5]: ("5", "unreviewed", "consensus", "ana|ben|carl"),
        i[10]: (p.items[10].label, "", "gold", ""),
    }
    assert i[1] not in rows and i[4] not in rows  # the tie and the flag
    assert rows[i[5]]["annotator"] == "carl"  # who answered last
    assert rows[i[10]]["annotator"] == "" and rows[i[10]]["round"] == ""

    # a reviewer settles the tie: it is exported from then on, with the reviewer's label
    s = p.session(annotator="rita", warm_start=False, embeddings=p.source.pixels.reshape(len(p.items), -1) / 16.0)
    s.review().correct(i[1], "1", "a one with a serif")
    s.close()
    res = export(p, tmp_path / "again.csv", "csv")
    assert res["n_ties"] == 0 and res["n_exported"] == 6
    r = _rows(tmp_path / "again.csv")[i[1]]
    assert (r["label"], r["review_state"], r["label_source"]) == ("1", "corrected", "review")


def test_folders_export_and_the_cli_report_the_tie(team, tmp_path, capsys):
    p, i = team
    out = tmp_path / "folders"
    assert main(["export", str(p.dir), "--format", "folders", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"exported 5 labelled images to {out}" in printed
    assert "1 item(s) left out: their annotators disagree without a majority (a tie)" in printed
    assert f"alwb review {p.dir}" in printed
    files = {f.relative_to(out).as_posix() for f in out.rglob("*") if f.is_file()}
    stem = {sid: sid.replace("/", "__") + ".png" for sid in i}
    assert files == {f"0/{stem[i[0]]}", f"2/{stem[i[2]]}", f"8/{stem[i[3]]}", f"5/{stem[i[5]]}",
                     f"{p.items[10].label}/{stem[i[10]]}"}


def test_multilabel_consensus_and_tie(tmp_path, project_backend):
    p = Project.init(tmp_path / "m", "digits", tags=["round", "straight", "closed"], quality={"review_sample": 0.0})
    X = p.source.pixels.reshape(len(p.items), -1).astype("float32") / 16.0
    i = [it.id for it in p.items[:3]]
    answer(p, X, "ana", {i[0]: Answer.of_tags(["round", "closed"]), i[1]: Answer.of_tags(["round"]),
                         i[2]: Answer.of_tags(["straight"])})
    answer(p, X, "ben", {i[0]: Answer.of_tags(["closed", "round"]), i[1]: Answer.of_tags(["straight"])})
    res = export(p, tmp_path / "tags.csv", "csv")
    assert res["n_exported"] == 2 and res["ties"] == [i[1]]  # each tag chosen by exactly half: a tie
    rows = _rows(tmp_path / "tags.csv")
    assert {sid: (r["tags"], r["label_source"], r["annotators"]) for sid, r in rows.items()} == {
        i[0]: ("closed|round", "consensus", "ana|ben"), i[2]: ("straight", "single", "ana")}
