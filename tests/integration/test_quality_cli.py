"""Issue 10 from the terminal: `alwb review` driven through a pipe, `alwb quality [--json]`, `alwb gold ...` and the
review line of `alwb status`, on real digits projects with two annotators answering through real sessions (the real
SQLite store); the review records, the gold records and the report values are checked afterwards."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from alworkbench import Answer, Project
from alworkbench.cli import main, parse_review_line
from alworkbench.labels.quality import QualityView


def alwb(*args, input=None):
    return subprocess.run([sys.executable, "-m", "alworkbench.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=600, input=input)


def make_project(tmp_path, **init):
    quality = init.pop("quality", {})
    p = Project.init(tmp_path / "p", "digits", query={"batch_size": 10}, quality={"review_sample": 0.0, **quality},
                     **init)
    X = p.source.pixels.reshape(len(p.items), -1).astype("float32") / 16.0  # cheap embeddings
    return p, X


def answer(p, X, annotator, answers: dict, embeddings=True):
    """``annotator`` answers exactly these items (queued by id) through a real session."""
    with p.session(annotator=annotator, embeddings=X if embeddings else None, warm_start=False) as s:
        s.answer_items(answers)
    return s


def ids_of(p, *rows):
    return [p.items[i].id for i in rows]


def two_annotators(p, X):
    """Items 0-5: ana answers all (item 4: a flag), ben answers 0-3 (disagrees on 1 and 3)."""
    i = ids_of(p, 0, 1, 2, 3, 4, 5)
    answer(p, X, "ana", {i[0]: Answer.of_label("0"), i[1]: Answer.of_label("1"), i[2]: Answer.of_label("2"),
                         i[3]: Answer.of_label("3"), i[4]: Answer.flag("blurry"), i[5]: Answer.of_label("5")})
    answer(p, X, "ben", {i[0]: Answer.of_label("0"), i[1]: Answer.of_label("7"), i[2]: Answer.of_label("2"),
                         i[3]: Answer.of_label("7")})
    return i


# ------------------------------------------------------------------------------------------------ alwb review
def test_review_from_a_pipe_accepts_corrects_skips_and_quits(tmp_path):
    p, X = make_project(tmp_path, quality={"review_sample": 1.0})  # every answer sampled: all 6 items queued
    i = two_annotators(p, X)
    order = [e["item_id"] for e in QualityView(p.store, p.config).review_queue("rita")]
    assert order == [i[4], i[1], i[3], i[0], i[2], i[5]]  # flag, disagreements, then sampled answers
    script = "\n".join([
        "4", "clearly a four",        # i4 (flagged): corrected
        "x", "a", "1", "", "ben misread it",  # i1 (tie): unknown input, accept refused, correct, empty reason re-asked
        "s",                          # i3: skipped
        "",                           # i0: Enter accepts
        "a",                          # i2: accepted
        "q",                          # i5: quit
    ]) + "\n"
    r = alwb("review", p.dir, "--reviewer", "rita", input=script)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "review queue of p: 6 item(s) for reviewer rita (no model yet: no suggestions)" in out
    assert f"[1/6] {i[4]}  builtin://{i[4]}" in out
    assert "why: flagged" in out and "ana: flagged  note: 'blurry'" in out
    assert "why: annotators disagree" in out and "ben: 7" in out and "consensus: none (a tie: no majority)" in out
    assert "why: sampled from ana's answers; sampled from ben's answers" in out
    assert out.count("model: no model yet") == 6
    assert "unknown class 'x'" in out
    assert "Enter or a = accept the answer; a class name (#N picks the N-th) = correct it" in out  # choices re-shown
    assert "cannot accept" in out and "the annotators disagree" in out
    assert out.count("a correction needs a reason") == 1
    assert "corrected to 4" in out and "corrected to 1" in out
    assert "stopped (every decision so far is saved; rerun to continue)" in out
    assert "reviewed: 2 accepted, 2 corrected, 1 skipped; 2 left in the queue" in out

    recs = p.store.records("review")
    assert [(r["item_id"], r["action"], r["label"], r["reason"], r["reviewer"]) for r in recs] == [
        (i[4], "correct", "4", "clearly a four", "rita"),
        (i[1], "correct", "1", "ben misread it", "rita"),
        (i[0], "accept", "0", "", "rita"),
        (i[2], "accept", "2", "", "rita")]
    assert recs[0]["reasons"] == ["flag"]  # a flag has no answer to sample
    assert recs[1]["reasons"] == ["disagreement", "sample:ana", "sample:ben"]
    assert sorted(recs[1]["answers"]) == ["ana", "ben"]
    assert recs[1]["answers"]["ben"]["value"] == "7" and recs[1]["answers"]["ana"]["value"] == "1"
    assert all(r["suggestion"] is None for r in recs)
    view = QualityView(p.store, p.config)
    assert [e["item_id"] for e in view.review_queue("rita")] == [i[3], i[5]]
    assert view.final_labels() == {i[0]: "0", i[1]: "1", i[2]: "2", i[4]: "4", i[5]: "5"}  # i3: a tie, waits

    # the review line of `alwb status`
    st = json.loads(alwb("status", p.dir, "--json").stdout)
    assert st["review_states"] == {"unreviewed": 2, "accepted": 2, "corrected": 2}
    assert st["review_queue"] == 2 and st["gold"] == 0
    text = alwb("status", p.dir).stdout
    assert "review: 2 unreviewed, 2 accepted, 2 corrected; 2 waiting in the review queue (alwb review); " \
           "gold: 0 item(s)" in text


def test_review_end_of_input_during_a_reason_saves_nothing(tmp_path):
    p, X = make_project(tmp_path)
    i = two_annotators(p, X)
    r = alwb("review", p.dir, "--reviewer", "rita", input="4\n\n")  # a correction, then an empty reason, then EOF
    assert r.returncode == 0, r.stderr
    assert "this correction was not saved" in r.stdout
    assert "reviewed: 0 accepted, 0 corrected, 0 skipped; 3 left in the queue" in r.stdout
    assert p.store.records("review") == []
    r = alwb("review", p.dir, "--reviewer", "rita", input="q\n")
    assert r.returncode == 0 and "stopped (every decision so far is saved" in r.stdout
    assert "reviewed: 0 accepted, 0 corrected, 0 skipped; 3 left in the queue" in r.stdout
    # a reviewer whose name matches an annotator does not get items only they answered (review_own: false)
    r = alwb("review", p.dir, "--reviewer", "ana", input="q\n")
    assert "review queue of p: 2 item(s) for reviewer ana" in r.stdout  # the disagreements; not ana's own flag


def test_review_line_parser_never_guesses():
    names = ["a", "b", "cat"]
    r = parse_review_line("a", names, False)
    assert r.kind == "error" and ":accept" in r.message and "=a" in r.message  # a class named like a command
    forced = parse_review_line("=a", names, False)
    assert forced.kind == "correct" and forced.value == "a"
    assert parse_review_line(":accept", names, False).kind == "accept"
    assert parse_review_line("", names, False).kind == "accept"
    assert parse_review_line("q", ["x", "y"], False).kind == "quit"
    assert parse_review_line("S", ["x", "y"], False).kind == "skip"
    assert parse_review_line("2", ["x", "y"], False).value == "y"  # numbers pick by position when names are not numbers
    bad = parse_review_line("ct", names, False)
    assert bad.kind == "error" and "unknown class 'ct'" in bad.message and "did you mean 'cat'" in bad.message
    assert parse_review_line(":undo", names, False).kind == "error"
    multi = parse_review_line("red, round", ["red", "round", "green"], True)
    assert multi.kind == "correct" and multi.value == ["red", "round"]
    assert parse_review_line("red, blue", ["red", "round"], True).kind == "error"


def test_review_shows_the_restored_models_suggestions(tmp_path):
    """The reviewer's session restores the saved model (trained on the latest answers); nothing is retrained."""
    p, _ = make_project(tmp_path, backbone="pixels", source={"limit": 120})
    mask = p.eval_mask()
    ids = [it.id for k, it in enumerate(p.items) if not mask[k]][:24]
    truth = {it.id: it.label for it in p.items}
    answer(p, None, "ana", {s: Answer.of_label(truth[s]) for s in ids}, embeddings=False)
    answer(p, None, "ben", {ids[0]: Answer.of_label("9" if truth[ids[0]] != "9" else "8")}, embeddings=False)
    s = p.session(annotator="ana", warm_start=False)
    s.retrain()
    top = s.predict(ids[0]).top
    n_models = len(p.store.models())
    s.close()
    r = alwb("review", p.dir, "--reviewer", "rita", input=f"{truth[ids[0]]}\nben picked the wrong digit\nq\n")
    assert r.returncode == 0, r.stderr
    assert "model: " + ", ".join(f"{c} {pr:.0%}" for c, pr in top) in r.stdout
    assert "no model yet" not in r.stdout
    rec = p.store.records("review")[0]
    assert rec["item_id"] == ids[0] and rec["action"] == "correct" and rec["label"] == truth[ids[0]]
    assert [c for c, _ in rec["suggestion"]] == [c for c, _ in top]
    assert [pr for _, pr in rec["suggestion"]] == pytest.approx([pr for _, pr in top], abs=1e-6)
    assert len(p.store.models()) == n_models  # no retraining by the reviewer


# ------------------------------------------------------------------------------------------------ gold
def _wilson(k: int, n: int, z: float = 1.959963984540054):
    """The Wilson score interval, written out (independent of statsmodels)."""
    ph = k / n
    centre = (ph + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_gold_import_list_promote_and_the_quality_report(tmp_path, capsys):
    p, X = make_project(tmp_path)
    gold_ids = ids_of(p, 10, 11, 12, 13, 14)
    truth = {it.id: it.label for it in p.items}
    csv_file = tmp_path / "gold.csv"
    csv_file.write_text("id,label\n" + "".join(f"{s},{truth[s]}\n" for s in gold_ids) + "nope/42,3\n",
                        encoding="utf-8")
    # unknown ids are reported (exit 1), the rest is added
    r = alwb("gold", "import", p.dir, csv_file)
    assert r.returncode == 1 and "gold: 5 item(s) added" in r.stdout
    assert "1 id(s) in" in r.stderr and "nope/42" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert sorted(g["item_id"] for g in p.store.records("gold")) == sorted(gold_ids)
    # importing the same file again adds nothing new
    r = alwb("gold", "import", p.dir, csv_file)
    assert "gold: 0 item(s) added" in r.stdout and "5 already gold" in r.stdout
    assert len(p.store.records("gold")) == 5
    # an invalid file: one line naming the line, exit 2, nothing added
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{gold_ids[0]},1\n{gold_ids[1]},1\n{gold_ids[2]},eleven\n", encoding="utf-8")
    r = alwb("gold", "import", p.dir, bad)
    assert r.returncode == 2 and f"{bad}:3:" in r.stderr and "'eleven'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert len(p.store.records("gold")) == 5
    r = alwb("gold", "import", p.dir, tmp_path / "missing.csv")
    assert r.returncode == 2 and "does not exist" in r.stderr

    # answers on gold are scored (ana: 4 of 5 right; ben: 5 of 5) and overlap items are rated by both
    wrong = {gold_ids[2]: "8" if truth[gold_ids[2]] != "8" else "9"}
    answer(p, X, "ana", {s: Answer.of_label(wrong.get(s, truth[s])) for s in gold_ids})
    answer(p, X, "ben", {s: Answer.of_label(truth[s]) for s in gold_ids})
    i = ids_of(p, 0, 1, 2, 3, 4, 5)
    ana_vals = ["0", "1", "2", "3", "4", "5"]
    ben_vals = ["0", "7", "2", "7", "4", "5"]
    answer(p, X, "ana", {s: Answer.of_label(v, time_spent_s=t) for s, v, t in zip(i, ana_vals, [1, 2, 3, 4, 5, 6])})
    answer(p, X, "ben", {s: Answer.of_label(v, time_spent_s=2.0) for s, v in zip(i, ben_vals)})
    rs = p.session(annotator="rita", embeddings=X, warm_start=False).review()
    rs.accept(i[0])
    rs.correct(i[1], "1", "ben misread it")
    rs.session.close()

    assert main(["quality", str(p.dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)  # stdout holds the JSON and nothing else
    by = {a["annotator"]: a for a in report["annotators"]}
    assert set(by) == {"ana", "ben"}
    ana, ben = by["ana"], by["ben"]
    assert ana["answers"] == 6 and ana["gold_answers"] == 5 and ana["gold_accuracy"] == pytest.approx(0.8)
    assert ana["gold_ci"] == pytest.approx(list(_wilson(4, 5)), abs=1e-9)
    assert ben["gold_accuracy"] == 1.0 and ben["gold_ci"] == pytest.approx(list(_wilson(5, 5)), abs=1e-9)
    assert ana["median_seconds"] == 3.5 and ana["images_per_minute"] == pytest.approx(60 / 3.5)
    assert ben["median_seconds"] == 2.0 and ben["images_per_minute"] == 30.0
    assert ana["review_acceptance"] == 1.0 and ana["reviewed"] == 2  # i0 accepted, i1 corrected to ana's answer
    assert ben["review_acceptance"] == 0.5 and ben["reviewed"] == 2
    # Cohen's kappa on the 6 items both rated, written out: p_o = 4/6; p_e from the marginals
    from collections import Counter

    ca, cb = Counter(ana_vals), Counter(ben_vals)
    po = sum(a == b for a, b in zip(ana_vals, ben_vals)) / 6
    pe = sum(ca[c] * cb[c] for c in set(ca) | set(cb)) / 36
    ag = report["agreement"]
    assert ag["n_items"] == 6 and ag["cohen_kappa"] == pytest.approx((po - pe) / (1 - pe))
    assert set(ag["per_class"]) == {str(d) for d in range(10)}
    assert report["review_states"] == {"unreviewed": 4, "accepted": 1, "corrected": 1}
    assert report["review_queue"]["n"] == 1 and report["review_queue"]["items"] == [
        {"item_id": i[3], "reasons": ["disagreement"]}]
    assert report["gold"]["n"] == 5

    # the text report: the same numbers, rendered
    assert main(["quality", str(p.dir)]) == 0
    text = capsys.readouterr().out
    lo, hi = _wilson(4, 5)
    ana_line = next(line for line in text.splitlines() if line.strip().startswith("ana "))
    assert f"80% [{lo:.0%}-{hi:.0%}] n=5" in ana_line and "3.5" in ana_line and "17.1" in ana_line
    assert "100% of 2" in ana_line
    assert f"agreement on 6 item(s) answered by 2+ annotators (ana, ben): {po:.0%} identical" in text
    assert f"overall      6  {ag['cohen_kappa']:>5.2f}  {ag['fleiss_kappa']:>6.2f}" in text
    assert "review states: 4 unreviewed, 1 accepted, 1 corrected" in text
    assert "review queue: 1 open (0 flagged, 1 disagreements, 0 sampled)" in text
    assert f"  {i[3]}: annotators disagree" in text

    # promote a reviewed item; an unreviewed one is refused in one line
    r = alwb("gold", "promote", p.dir, "--item", i[1])
    assert r.returncode == 0 and "gold: 1 reviewed item(s) promoted; 6 gold item(s)" in r.stdout
    g = p.store.records("gold")[-1]
    assert (g["item_id"], g["label"], g["source"]) == (i[1], "1", "review")
    r = alwb("gold", "promote", p.dir, "--item", i[5])
    assert r.returncode == 2 and "has no review to promote" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = alwb("gold", "list", p.dir)
    assert r.returncode == 0 and "6 gold item(s)" in r.stdout
    assert f"  {i[1]}: 1  (source review; answered 0 time(s) as gold)" in r.stdout
    assert f"  {gold_ids[0]}: {truth[gold_ids[0]]}  (source csv:gold.csv; answered 2 time(s) as gold)" in r.stdout


# ------------------------------------------------------------------------------------------------ notebook call
def test_quality_report_notebook_call_draws_accuracy_and_confusion(tmp_path):
    from alworkbench.errors import AlwbError
    from alworkbench.labels.quality import add_gold
    from alworkbench.plots import plot_annotator_accuracy, plot_annotator_confusion
    from alworkbench.quality_report import format_quality_report, jsonable, quality_report

    p, X = make_project(tmp_path)
    truth = {it.id: it.label for it in p.items}
    gold_ids = ids_of(p, 10, 11, 12, 13, 14, 15)
    add_gold(p.store, [(s, truth[s]) for s in gold_ids], multilabel=False, source="test")
    wrong = lambda s: "8" if truth[s] != "8" else "9"  # noqa: E731
    ana_gold = [truth[s] if k not in (1, 4) else wrong(s) for k, s in enumerate(gold_ids)]  # 4 of 6 right
    answer(p, X, "ana", dict(zip(gold_ids, map(Answer.of_label, ana_gold))))
    answer(p, X, "ben", {s: Answer.of_label(truth[s]) for s in gold_ids})
    two_annotators(p, X)

    report = quality_report(p, plot=True, out=tmp_path / "figs")
    view = QualityView(p.store, p.config)
    assert report == jsonable(view.report())
    assert quality_report(str(p.dir), plot=False) == report  # a folder works too, and so does a Session
    s = p.session(annotator="rita", embeddings=X, warm_start=False)
    assert quality_report(s, plot=False) == report
    s.close()
    assert (tmp_path / "figs" / "accuracy.png").stat().st_size > 0
    assert (tmp_path / "figs" / "confusion.png").stat().st_size > 0

    # accuracy over time: cumulative and rolling per annotator, as the view computes them, and the pass mark
    ax = plot_annotator_accuracy(view)
    lines = {line.get_label(): line for line in ax.get_lines()}
    series = view.accuracy_series("ana")
    assert list(lines["ana cumulative"].get_xdata()) == [1, 2, 3, 4, 5, 6]
    assert list(lines["ana cumulative"].get_ydata()) == pytest.approx([1, 1 / 2, 2 / 3, 3 / 4, 3 / 5, 4 / 6])
    assert list(lines["ana rolling (50)"].get_ydata()) == pytest.approx([c["rolling"] for c in series])
    assert list(lines["ben cumulative"].get_ydata()) == [1.0] * 6
    assert list(lines["pass mark 95%"].get_ydata()) == [0.95, 0.95]

    # the confusion between ana (rows) and ben (columns) on the items both answered
    ax = plot_annotator_confusion(view, "ana", "ben")
    mat = ax.get_images()[0].get_array()
    expected = np.zeros((10, 10), int)
    for a, b in [("0", "0"), ("1", "7"), ("2", "2"), ("3", "7")]:
        expected[int(a), int(b)] += 1
    assert (np.asarray(mat) == expected).all()
    assert ax.get_title() == "ana vs ben on 4 item(s) both answered"

    text = format_quality_report(report)
    assert "67% [" in text and "n=6" in text and "review queue: 3 open (1 flagged, 2 disagreements, 0 sampled)" in text

    m = Project.init(tmp_path / "m", "digits", tags=["round", "straight"])
    with pytest.raises(AlwbError, match="single-label"):
        plot_annotator_confusion(QualityView(m.store, m.config), "ana", "ben")
