"""The quality loop's core (issue 10): review supersedes, consensus and ties, qualification, gold, sampling, overlap.

Real parts: a digits project, its SQLite store, Sessions and the ReviewSession; pixel embeddings keep it fast."""
import pytest

from alworkbench import Answer
from alworkbench.config import config_from_dict
from alworkbench.errors import ConfigError
from alworkbench.labels.quality import (GOLD, HIDDEN_GOLD_STRATEGY, QUALIFICATION_STRATEGY, QualityView, add_gold,
                                        promote_reviewed, read_gold_csv, stable_unit)
from alworkbench.loop.review import ReviewError
from alworkbench.loop.session import QualificationError


def _truth(proj, sid):
    return proj.source.ground_truth()[proj.index_of(sid)]


def _wrong(proj, sid):
    t = _truth(proj, sid)
    return next(c for c in proj.config.classes if c != t)


def _sessions(proj, X, *names):
    return [proj.session(annotator=n, embeddings=X, warm_start=False) for n in names]


def test_a_correction_supersedes_without_deleting(proj, X):
    proj.config.quality.review_sample = 1.0
    ana, rev = _sessions(proj, X, "ana", "rev")
    b = ana.next_batch()
    sid = b.items[0].item.id
    ana.submit(sid, Answer.of_label("3"))
    n_events = len(proj.store.events())
    r = rev.review()
    assert [e["item_id"] for e in r.queue()] == [sid] and r.queue()[0]["reasons"] == ["sample:ana"]
    with pytest.raises(ReviewError, match="reason"):
        r.correct(sid, "5", "  ")
    r.correct(sid, "5", "the loop is closed: a 5")
    view = QualityView(proj.store, proj.config)
    st = view.item_state(sid)
    assert st["review_state"] == "corrected" and st["final"] == "5" and st["source"] == "review"
    assert proj.store.labels()[sid] == "3"  # the answer stays, as given
    assert len(proj.store.events()) == n_events  # nothing appended to or removed from the answers
    assert ana.labels()[sid] == "5"  # training uses the reviewed label
    assert r.queue() == []
    rec = proj.store.records("review")[-1]
    assert rec["action"] == "correct" and rec["reviewer"] == "rev" and rec["answers"]["ana"]["value"] == "3"
    # the other answers of the batch were accepted one by one
    other = b.items[1].item.id
    ana.submit(other, Answer.of_label(_truth(proj, other)))
    r.accept(other)
    assert QualityView(proj.store, proj.config).item_state(other)["review_state"] == "accepted"
    for s in (ana, rev):
        s.close()


def test_consensus_majority_and_tie_goes_to_review(proj, X):
    proj.config.quality.review_sample = 0.0
    proj.config.quality.overlap_share = 1.0
    proj.config.quality.overlap_k = 3
    a, b, c = _sessions(proj, X, "a", "b", "c")
    items = [bi.item.id for bi in a.next_batch().items[:2]]
    x, y = items
    a.submit(x, Answer.of_label("1"))
    a.submit(y, Answer.of_label("1"))
    for s, vx, vy in ((b, "1", "7"), (c, "7", None)):
        got = [bi.item.id for bi in s.next_batch().items]
        assert x in got and y in got  # overlap items go to the other annotators
        s.submit(x, Answer.of_label(vx))
        if vy:
            s.submit(y, Answer.of_label(vy))
    view = QualityView(proj.store, proj.config)
    sx, sy = view.item_state(x), view.item_state(y)
    assert sx["final"] == "1" and sx["source"] == "consensus" and not sx["tie"]
    assert sy["final"] is None and sy["tie"] and sy["source"] == "tie"
    assert x in a.labels() and y not in a.labels()  # a tie trains on nothing
    queue = view.review_queue("rev")
    assert [e["item_id"] for e in queue if "disagreement" in e["reasons"]] == [x, y] or \
        {e["item_id"] for e in queue if "disagreement" in e["reasons"]} == {x, y}
    rev = proj.session(annotator="rev", embeddings=X, warm_start=False).review()
    with pytest.raises(ReviewError, match="disagree"):
        rev.accept(y)
    rev.correct(y, "7", "a seven with a bar")
    assert a.labels()[y] == "7"
    # a later answer on the item reopens it: the review covered the answers that existed then
    got = [bi.item.id for bi in c.next_batch().items]
    assert y in got
    c.submit(y, Answer.of_label("1"))
    st = QualityView(proj.store, proj.config).item_state(y)
    assert st["review_state"] == "unreviewed" and st["final"] == "1"  # 2 of 3 say 1
    # agreement is computed on the items with two or more answers
    ag = QualityView(proj.store, proj.config).agreement()
    assert ag["n_items"] == 2 and ag["n_annotators"] == 3
    for s in (a, b, c, rev.session):
        s.close()


def test_flags_come_first_and_cannot_be_accepted(proj, X):
    proj.config.quality.review_sample = 1.0
    ana, rev = _sessions(proj, X, "ana", "rev")
    items = [bi.item.id for bi in ana.next_batch().items[:3]]
    ana.submit(items[0], Answer.of_label(_truth(proj, items[0])))
    ana.submit(items[1], Answer.flag(note="4 or 9?"))
    ana.submit(items[2], Answer.skip())
    q = rev.review().queue()
    assert q[0]["item_id"] == items[1] and q[0]["reasons"] == ["flag"] and q[0]["answers"][0]["note"] == "4 or 9?"
    assert [e["item_id"] for e in q] == [items[1], items[0]]  # skips are not reviewed
    with pytest.raises(ReviewError, match="flagged"):
        rev.review().accept(items[1])
    # a reviewer does not review their own answers unless review_own
    assert ana.review().queue() == []
    proj.config.quality.review_own = True
    assert len(ana.review().queue()) == 2
    for s in (ana, rev):
        s.close()


def _gold(proj, n=10, offset=0):
    ev = proj.eval_mask()
    ids = [it.id for it, m in zip(proj.items, ev) if not m][offset:offset + n]
    add_gold(proj.store, [(s, _truth(proj, s)) for s in ids], multilabel=False, source="test",
             known_ids=[it.id for it in proj.items])
    return ids


def test_qualification_gates_training_and_retry_needs_the_guideline(proj, X):
    q = proj.config.quality
    q.qualification_items, q.pass_mark = 4, 1.0
    gold = _gold(proj, 6)
    (ben,) = _sessions(proj, X, "ben")
    assert ben.needs_qualification()
    b = ben.next_batch()
    assert b.strategy == QUALIFICATION_STRATEGY and len(b) == 4 and all(bi.prediction is None for bi in b.items)
    assert {bi.item.id for bi in b.items} <= set(gold)
    for i, bi in enumerate(b.items):
        ben.submit(bi.item.id, Answer.of_label(_wrong(proj, bi.item.id) if i == 0 else _truth(proj, bi.item.id)))
    with pytest.raises(QualificationError, match="3 of 4 correct"):
        ben.next_batch()
    with pytest.raises(QualificationError):  # no retry until the guideline was read again
        ben.next_batch()
    # answers recorded meanwhile (the API lets them through) are kept but not trained on
    rec = proj.store.records("qualification")
    assert [r["passed"] for r in rec] == [False] and rec[0]["correct"] == 3
    ben.acknowledge_guideline()
    b2 = ben.next_batch()
    assert b2.strategy == QUALIFICATION_STRATEGY and b2.batch_id != b.batch_id
    first_seen = {bi.item.id for bi in b.items}
    assert len({bi.item.id for bi in b2.items} - first_seen) >= 2  # unseen gold first
    for bi in b2.items:
        ben.submit(bi.item.id, Answer.of_label(_truth(proj, bi.item.id)))
    b3 = ben.next_batch()
    assert b3.strategy not in (QUALIFICATION_STRATEGY,) and not ben.needs_qualification()
    from alworkbench.errors import NothingToUndoError

    with pytest.raises(NothingToUndoError, match="scored"):  # a scored test's answers stay
        ben.undo()
    assert [r["passed"] for r in proj.store.records("qualification")] == [False, True]
    # gold answers are scored, never labels
    assert not (set(proj.store.labels()) & set(gold))
    gold_evs = proj.store.active_events(gold=True)
    assert len(gold_evs) == 8 and {e["strategy"] for e in gold_evs} == {QUALIFICATION_STRATEGY}
    acc = QualityView(proj.store, proj.config).accuracy("ben")
    assert acc["n"] == 8 and acc["correct"] == 7
    ben.close()


def test_answers_of_an_unqualified_annotator_are_kept_not_trained_on(proj, X):
    q = proj.config.quality
    q.qualification_items = 2
    _gold(proj, 4)
    (ana,) = _sessions(proj, X, "ana")
    sid = next(it.id for it, m in zip(proj.items, proj.eval_mask()) if not m and it.id not in QualityView(
        proj.store, proj.config).gold)
    proj.store.record(sid, Answer.of_label("2"), round=99, annotator="ana")  # e.g. an answer from before the test
    assert proj.store.labels() == {sid: "2"}
    assert sid not in ana.labels()
    b = ana.next_batch()
    for bi in b.items:
        ana.submit(bi.item.id, Answer.of_label(_truth(proj, bi.item.id)))
    ana.next_batch()
    assert ana.labels()[sid] == "2"  # counted once qualified
    ana.close()


def test_hidden_gold_is_mixed_in_scored_and_never_in_the_pool(proj, X):
    proj.config.quality.gold_rate = 0.3
    gold = set(_gold(proj, 30))
    (ana,) = _sessions(proj, X, "ana")
    import numpy as np

    pool_ids = {proj.items[int(i)].id for i in ana.pool_indices()}
    assert not (pool_ids & gold)
    n_gold = 0
    for _ in range(3):
        b = ana.next_batch()
        ids = [bi.item.id for bi in b.items]
        in_batch = [s for s in ids if s in gold]
        n_gold += len(in_batch)
        assert len(ids) - len(in_batch) == 10  # gold does not take the place of selected items
        for s in ids:
            ana.submit(s, Answer.of_label(_truth(proj, s)))
    assert 3 <= n_gold <= 3 * 10  # about 0.3/(1-0.3) * 10 = 4.3 per batch
    evs = proj.store.active_events(gold=True)
    assert len(evs) == n_gold and {e["strategy"] for e in evs} == {HIDDEN_GOLD_STRATEGY}
    assert not (set(proj.store.labels()) & gold) and len(proj.store.labels()) == 30
    acc = QualityView(proj.store, proj.config).accuracy("ana")
    assert acc["n"] == n_gold and acc["accuracy"] == 1.0 and 0 < acc["ci_low"] < 1
    assert np.isclose(acc["ci_high"], 1.0)
    ana.close()


def test_review_sampling_is_stable_and_follows_the_rate(proj, X):
    proj.config.quality.review_sample = 0.25
    (ana,) = _sessions(proj, X, "ana")
    for _ in range(8):
        for bi in ana.next_batch().items:
            ana.submit(bi.item.id, Answer.of_label(_truth(proj, bi.item.id)))
    q1 = [e["item_id"] for e in QualityView(proj.store, proj.config).review_queue("rev")]
    q2 = [e["item_id"] for e in QualityView(proj.store, proj.config).review_queue("rev")]
    assert q1 == q2 and 8 <= len(q1) <= 35  # 25% of 80, the same items every time
    evs = {e["sample_id"]: e for e in proj.store.active_events(gold=False)}
    assert {s for s, e in evs.items() if stable_unit("review", s, "ana", e["id"]) < 0.25} == set(q1)
    ana.close()


def test_promote_reviewed_items_to_gold(proj, X):
    proj.config.quality.review_sample = 1.0
    ana, rev = _sessions(proj, X, "ana", "rev")
    items = [bi.item.id for bi in ana.next_batch().items[:2]]
    for s in items:
        ana.submit(s, Answer.of_label("1"))
    r = rev.review()
    r.accept(items[0])
    r.correct(items[1], "8", "an eight")
    assert promote_reviewed(proj.store, proj.config) == 2
    assert promote_reviewed(proj.store, proj.config) == 0  # already gold with that label
    gold = QualityView(proj.store, proj.config).gold
    assert gold == {items[0]: "1", items[1]: "8"}
    assert [g["source"] for g in proj.store.records(GOLD)] == ["review", "review"]
    for s in (ana, rev):
        s.close()


def test_gold_csv_is_checked_line_by_line(tmp_path, proj):
    f = tmp_path / "gold.csv"
    f.write_text("id,label\ndigits/train/0,0\ndigits/train/1,1\n")
    assert read_gold_csv(f, proj.schema) == [("digits/train/0", "0"), ("digits/train/1", "1")]
    f.write_text("digits/train/0,0\ndigits/train/1,eleven\n")
    with pytest.raises(ConfigError, match=r"gold.csv:2: unknown class 'eleven'"):
        read_gold_csv(f, proj.schema)
    f.write_bytes(b"digits/train/0,0\ndigits/train/\xff1,1\n")  # Latin-1 bytes, not UTF-8
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_gold_csv(f, proj.schema)
    out = add_gold(proj.store, [("digits/train/0", "0"), ("nope", "1")], multilabel=False, source="csv",
                   known_ids=[it.id for it in proj.items])
    assert out == {"added": 1, "unknown": ["nope"]}


def test_quality_config_is_validated():
    base = {"source": "digits", "classes": ["a", "b"]}
    with pytest.raises(ConfigError, match="last tier must have min_accuracy: 0"):
        config_from_dict({**base, "quality": {"tiers": [{"min_accuracy": 0.9, "review_sample": 0}]}})
    with pytest.raises(ConfigError, match="gold_rate"):
        config_from_dict({**base, "quality": {"gold_rate": 0.8}})
    with pytest.raises(ConfigError, match="overlap_k"):
        config_from_dict({**base, "quality": {"overlap_k": 1}})
    with pytest.raises(ConfigError, match="unknown config key 'quality.gold_rat'"):
        config_from_dict({**base, "quality": {"gold_rat": 0.1}})
    c = config_from_dict({**base, "quality": {"tiers": [{"name": "ok", "min_accuracy": 0, "review_sample": 0.5},
                                                        {"name": "top", "min_accuracy": 0.99}]}})
    assert [t["name"] for t in c.quality.tiers] == ["top", "ok"]  # best first


def test_a_class_rename_maps_every_answer_and_review_not_a_new_annotator(proj, X):
    from alworkbench.classes import rename_class

    proj.config.quality.review_sample = 1.0
    proj.config.quality.overlap_share = 1.0
    a, b, rev = _sessions(proj, X, "a", "b", "rev")
    x, y = [bi.item.id for bi in a.next_batch().items[:2]]
    a.submit(x, Answer.of_label("1"))
    a.submit(y, Answer.of_label("1"))
    got = [bi.item.id for bi in b.next_batch().items]
    assert x in got
    b.submit(x, Answer.of_label("1"))
    rev.review().accept(y)
    rename_class(proj, "1", "one", update_config=False)
    view = QualityView(proj.store, proj.config)
    assert view.annotators() == ["a", "b"]  # the rename is not a third annotator
    sx = view.item_state(x)
    assert sx["final"] == "one" and not sx["tie"] and set(sx["counted"].values()) == {"one"}
    assert view.item_state(y)["final"] == "one" and view.item_state(y)["review_state"] == "accepted"
    for s in (a, b, rev):
        s.close()


def test_a_tier_rise_keeps_what_was_queued_and_a_drop_pulls_in_earlier_answers(proj, X):
    q = proj.config.quality
    q.review_sample, q.min_known, q.window = 1.0, 3, 3
    gold = _gold(proj, 40)
    ana, rev = _sessions(proj, X, "ana", "rev")
    early = [bi.item.id for bi in ana.next_batch().items if bi.item.id not in gold]
    for s in early:
        ana.submit(s, Answer.of_label(_truth(proj, s)))
    # three right answers on gold (through an enqueued batch, recorded as hidden gold): ana becomes trusted
    b = ana.enqueue(gold[:3], reason="gold-check")
    for bi in b.items:
        ana.submit(bi.item.id, Answer.of_label(_truth(proj, bi.item.id)))
    view = QualityView(proj.store, proj.config)
    assert view.tier("ana")["name"] == "trusted" and view.tier("ana")["review_sample"] == 0.0
    queued = {e["item_id"] for e in view.review_queue("rev")}
    assert queued == set(early)  # sampled at 100% when answered: still queued after the rise
    later = [bi.item.id for bi in ana.next_batch().items if bi.item.id not in gold]
    for s in later:
        ana.submit(s, Answer.of_label(_truth(proj, s)))
    assert {e["item_id"] for e in QualityView(proj.store, proj.config).review_queue("rev")} == set(early)
    # three wrong gold answers: probation (rate 1.0) pulls every answer in again
    b = ana.enqueue(gold[3:6], reason="gold-check")
    for bi in b.items:
        ana.submit(bi.item.id, Answer.of_label(_wrong(proj, bi.item.id)))
    view = QualityView(proj.store, proj.config)
    assert view.tier("ana")["name"] == "probation"
    assert {e["item_id"] for e in view.review_queue("rev")} == set(early) | set(later)
    assert "below the pass mark" in view.below_pass_mark("ana")
    for s in (ana, rev):
        s.close()


def test_answer_items_queues_and_answers_exactly_those_items(proj, X):
    ids = [it.id for it, m in zip(proj.items, proj.eval_mask()) if not m][:3]
    with proj.session(annotator="imp", embeddings=X, warm_start=False) as s:
        eids = s.answer_items({ids[0]: Answer.of_label("1"), ids[1]: Answer.of_label("2"), ids[2]: Answer.skip()})
    evs = {e["id"]: e for e in proj.store.events() if e["kind"] in ("label", "skip")}
    assert [evs[e]["sample_id"] for e in eids] == ids and {evs[e]["annotator"] for e in eids} == {"imp"}
    assert proj.store.labels() == {ids[0]: "1", ids[1]: "2"} and s._closed
