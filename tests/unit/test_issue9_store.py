"""Issue 9 in the label store: every report, model version and guideline acknowledgement is an appended record
(never an overwritten meta key); a version-1 file is migrated once; batches are handed out per annotator inside one
transaction (finding 3)."""
from __future__ import annotations

import json
import sqlite3
import threading

import pytest

from alworkbench.errors import StoreError
from alworkbench.labels import LabelStore
from alworkbench.labels.store import SCHEMA_VERSION
from alworkbench.types import Answer, Prediction


@pytest.fixture
def store(make_store):
    return make_store()


# -- every record is appended --------------------------------------------------------------------------------
def test_every_report_model_and_ack_is_an_appended_record(store):
    assert store.reports() == [] and store.models() == [] and store.latest_model() is None
    assert store.model_version() == 0 and store.acknowledged_guideline("ana") is None
    r1 = store.append_report({"round": 1, "model_version": 1, "accuracy": 0.5, "annotator": "ana"})
    r2 = store.append_report({"round": 2, "model_version": 2, "accuracy": None, "annotator": "ben"})
    reps = store.reports()
    assert [r["id"] for r in reps] == [r1, r2] and [r["round"] for r in reps] == [1, 2]
    assert reps[0]["accuracy"] == 0.5 and reps[1]["annotator"] == "ben" and reps[0]["created_at"] > 0
    assert store.append_model({"n_labels": 10, "path": "m1.npz"}) == 1
    assert store.append_model({"n_labels": 20, "version": 99}) == 2  # the store assigns the version
    assert store.model_version() == 2 and [m["version"] for m in store.models()] == [1, 2]
    assert store.latest_model()["n_labels"] == 20 and store.latest_model()["version"] == 2
    store.acknowledge_guideline("ana", "1")
    store.acknowledge_guideline("ben", 1)
    store.acknowledge_guideline("ana", "2")
    assert store.acknowledged_guideline("ana") == "2" and store.acknowledged_guideline("ben") == "1"
    assert [(a["annotator"], a["version"]) for a in store.records("guideline_ack")] == [
        ("ana", "1"), ("ben", "1"), ("ana", "2")]  # nothing overwritten: the history is there
    # generic records
    rid = store.append_record("note", {"text": "hello", "n": [1, 2]})
    assert store.records("note") == [{"text": "hello", "n": [1, 2], "id": rid,
                                      "created_at": store.records("note")[0]["created_at"]}]
    with pytest.raises(StoreError, match="may not carry key"):
        store.append_record("note", {"id": 3})
    with pytest.raises(StoreError, match="must be a dict"):
        store.append_record("note", [1])
    with pytest.raises(StoreError, match="not JSON-serialisable"):
        store.append_record("note", {"x": float("nan")})


def test_legacy_meta_keys_are_read_only_views_of_the_records(store):
    for key, value in (("reports", []), ("model_version", 3), ("guideline_ack:ana", "2")):
        with pytest.raises(StoreError, match=f"meta key '{key}' is no longer written"):
            store.set_meta(key, value)
    store.append_report({"round": 1, "model_version": 1})
    store.append_model({})
    store.acknowledge_guideline("ana", "4")
    assert store.get_meta("reports") == [{"round": 1, "model_version": 1}]
    assert store.get_meta("model_version") == 1
    assert store.get_meta("guideline_ack:ana") == "4" and store.get_meta("guideline_ack:zoe") is None
    assert store.get_meta("fiftyone_stamp", "d") == "d"  # ordinary meta keys still work


def test_records_are_append_only_at_the_sql_level(store, raw_db, backend):
    store.append_report({"round": 1})
    raw = raw_db()
    with pytest.raises(raw.errors, match="records are append-only: UPDATE refused"):
        raw.execute("UPDATE records SET value_json = '{}'")
    with pytest.raises(raw.errors, match="records are append-only: DELETE refused"):
        raw.execute("DELETE FROM records")
    if backend == "postgresql":
        with pytest.raises(raw.errors, match="records are append-only: TRUNCATE refused"):
            raw.execute("TRUNCATE records")
    assert len(store.reports()) == 1


def test_model_versions_and_reports_from_concurrent_writers_are_all_kept(make_store):
    """Four writers (each its own store object and connection, like processes) append models and reports at once:
    every version is handed out exactly once and no report is lost (the version-1 meta keys lost half)."""
    make_store().close()
    barrier = threading.Barrier(4)
    got: list[int] = []
    errors: list[BaseException] = []

    def writer(k):
        try:
            with make_store() as s:
                barrier.wait()
                for i in range(25):
                    v = s.append_model({"writer": k})
                    got.append(v)
                    s.append_report({"writer": k, "model_version": v})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sorted(got) == list(range(1, 101))
    with make_store() as s:
        assert sorted(r["model_version"] for r in s.reports()) == list(range(1, 101))
        assert s.model_version() == 100 and len(s.models()) == 100


# -- migration from a version-1 file ---------------------------------------------------------------------------
V1_DDL = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('label', 'tags', 'skip', 'flag', 'undo', 'enqueue')),
    sample_id TEXT NOT NULL, value_json TEXT, note TEXT NOT NULL DEFAULT '', round INTEGER NOT NULL,
    batch_id TEXT NOT NULL DEFAULT '', annotator TEXT NOT NULL, created_at REAL NOT NULL, shown_at REAL,
    time_spent_s REAL, model_version INTEGER NOT NULL DEFAULT 0, strategy TEXT NOT NULL DEFAULT '', score REAL,
    prediction_json TEXT, undoes INTEGER REFERENCES events(id),
    CHECK ((kind = 'undo') = (undoes IS NOT NULL)));
CREATE INDEX events_sample_round ON events(sample_id, round);
CREATE INDEX events_batch ON events(batch_id);
CREATE UNIQUE INDEX events_undoes ON events(undoes) WHERE undoes IS NOT NULL;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'events are append-only: UPDATE refused'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'events are append-only: DELETE refused'); END;
CREATE TABLE meta (key TEXT PRIMARY KEY, value_json TEXT NOT NULL);
CREATE TABLE batches (batch_id TEXT PRIMARY KEY, round INTEGER NOT NULL, strategy TEXT NOT NULL,
    model_version INTEGER NOT NULL, created_at REAL NOT NULL, item_ids_json TEXT NOT NULL,
    scores_json TEXT NOT NULL, predictions_json TEXT NOT NULL);
"""


def make_v1_file(path) -> None:
    """A label store as alworkbench wrote it before schema version 2 (meta keys overwritten in place)."""
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA journal_mode = WAL")
    raw.executescript(V1_DDL)
    meta = {"schema_version": 1, "model_version": 2, "guideline_ack:ana": "3", "guideline_ack:ben": "1",
            "reports": [{"round": 1, "model_version": 1, "n_labels": 2}, {"round": 2, "model_version": 2, "n_labels": 3}],
            "fiftyone_stamp": "abc"}
    raw.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
    batches = [("r1-a", 1, ["s1", "s2"]), ("r2-b", 2, ["s3", "s4"]), ("r3-c", 3, ["s5", "s6"])]
    for bid, rnd, ids in batches:
        raw.execute("INSERT INTO batches VALUES (?, ?, 'margin', 0, 1.0, ?, ?, ?)",
                    (bid, rnd, json.dumps(ids), json.dumps([None] * len(ids)), json.dumps([None] * len(ids))))
    for sid, rnd, bid, who in (("s1", 1, "r1-a", "ana"), ("s2", 1, "r1-a", "ana"), ("s3", 2, "r2-b", "ben")):
        raw.execute("INSERT INTO events(kind, sample_id, value_json, round, batch_id, annotator, created_at)"
                    " VALUES ('label', ?, '\"cat\"', ?, ?, ?, 1.0)", (sid, rnd, bid, who))
    raw.commit()
    raw.close()


def test_version1_file_is_migrated_once(tmp_path):
    path = tmp_path / "labels.sqlite"
    make_v1_file(path)
    with LabelStore(path) as s:
        assert s.get_meta("schema_version") == SCHEMA_VERSION == 4
        assert [(r["round"], r["n_labels"]) for r in s.reports()] == [(1, 2), (2, 3)]
        assert s.model_version() == 2 and len(s.models()) == 1
        assert s.acknowledged_guideline("ana") == "3" and s.acknowledged_guideline("ben") == "1"
        assert s.get_meta("fiftyone_stamp") == "abc"
        marker = s.get_meta("migrated_v1_to_v2")
        assert (marker["reports"], marker["models"], marker["acks"]) == (2, 1, 2)
        # the upgrade is one appended schema_history row; meta's schema_version keeps the file's first version
        [h] = s.schema_history()
        assert (h["from_version"], h["to_version"]) == (1, SCHEMA_VERSION)
        assert h["details"] == {"migrated_v1": {"reports": 2, "models": 1, "acks": 2}}
        # batches belong to whoever answered in them; an unanswered one to nobody (it reserves nothing)
        assert [(b["batch_id"], b["annotator"], b["supersedes"]) for b in s.batches()] == [
            ("r1-a", "ana", None), ("r2-b", "ben", None), ("r3-c", "", None)]
        assert s.open_batch(annotator="ben")["batch_id"] == "r2-b"
        assert s.reserved_ids("ana") == {"s4"} and s.reserved_ids("ben") == set()
        assert s.labels() == {"s1": "cat", "s2": "cat", "s3": "cat"}
        assert [e["uid"] for e in s.events()] == [None, None, None]
        # the file works as a version-2 store
        s.record("s4", Answer.of_label("dog"), round=2, annotator="ben", uid="u-1")
        assert s.append_model({}) == 3
        s.append_report({"round": 3, "model_version": 3, "n_labels": 4})
    with LabelStore(path) as s:  # reopening does not migrate again
        assert [r["round"] for r in s.reports()] == [1, 2, 3]
        assert s.model_version() == 3 and len(s.models()) == 2
        assert len(s.records("guideline_ack")) == 2
        assert s.integrity_check() == "ok"
    raw = sqlite3.connect(path)
    try:  # the old keys were left as they were, never rewritten
        assert json.loads(raw.execute("SELECT value_json FROM meta WHERE key = 'model_version'").fetchone()[0]) == 2
        assert json.loads(raw.execute("SELECT value_json FROM meta WHERE key = 'schema_version'").fetchone()[0]) == 1
    finally:
        raw.close()


def test_version1_file_opened_by_two_writers_at_once_is_migrated_once(tmp_path):
    path = tmp_path / "labels.sqlite"
    make_v1_file(path)
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def opener():
        try:
            barrier.wait()
            LabelStore(path).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    with LabelStore(path) as s:
        assert len(s.reports()) == 2 and len(s.models()) == 1 and len(s.records("guideline_ack")) == 2
        assert [(h["from_version"], h["to_version"]) for h in s.schema_history()] == [(1, SCHEMA_VERSION)]


# -- finding 3: per-annotator batches ---------------------------------------------------------------------------
def _cands(ids, model_version=0):
    return [(i, 0.1 * k, Prediction(top=(("cat", 0.6),), model_version=model_version) if model_version else None)
            for k, i in enumerate(ids)]


def test_finding3_create_batch_never_hands_an_item_to_two_annotators(store):
    ids = [f"s{i}" for i in range(10)]
    a = store.create_batch("ana", "margin", 0, _cands(ids), 5)
    b = store.create_batch("ben", "margin", 0, _cands(ids), 5)  # the same selection, a moment later
    assert a["item_ids"] == ids[:5] and b["item_ids"] == ids[5:]
    assert (a["round"], b["round"]) == (1, 2) and (a["annotator"], b["annotator"]) == ("ana", "ben")
    assert a["scores"] == [0.0, 0.1, 0.2, 0.30000000000000004, 0.4]
    assert store.reserved_ids("ben") == set(ids[:5]) and store.reserved_ids("ana") == set(ids[5:])
    assert store.reserved_ids(None) == set(ids)
    # nothing left for a third annotator: None, and nothing written
    assert store.create_batch("cleo", "margin", 0, _cands(ids), 5) is None
    assert len(store.batches()) == 2 and store.last_round() == 2
    # answered items leave the reservation and are not handed out again
    store.record("s0", Answer.of_label("cat"), round=1, annotator="ana", batch_id=a["batch_id"])
    store.record("s1", Answer.skip(), round=1, annotator="ana", batch_id=a["batch_id"])
    assert store.reserved_ids("ben") == {"s2", "s3", "s4"}
    assert store.create_batch("cleo", "random", 0, _cands(ids), 5) is None
    # undo puts the item back into ana's open batch: still reserved for her
    store.undo(annotator="ana")
    assert store.reserved_ids("ben") == {"s1", "s2", "s3", "s4"}
    # once every item of a batch has an answer in its round the batch is closed and reserves nothing
    for sid in ("s1", "s2", "s3", "s4"):
        store.record(sid, Answer.of_label("cat"), round=1, annotator="ana")
    assert store.reserved_ids("ben") == set()
    # review queues may hand out answered items (never items waiting for someone else)
    q = store.create_batch("ana", "queue:review", 0, _cands(ids), 10, allow_answered=True)
    assert q["item_ids"] == ids[:5] and q["round"] == 3
    assert store.open_batch(annotator="ana")["batch_id"] == q["batch_id"]
    assert store.open_batch(annotator="ben")["batch_id"] == b["batch_id"]
    assert store.open_batch()["batch_id"] == q["batch_id"]


def test_finding3_superseding_batch_keeps_answered_items_and_round(store):
    a = store.create_batch("ana", "margin", 1, _cands(["x1", "x2", "x3"], model_version=1), 3)
    store.record("x1", Answer.of_label("cat"), round=a["round"], annotator="ana", batch_id=a["batch_id"])
    # a new model lands: the unanswered rest is selected again, x1 stays first, same round
    n = store.create_batch("ana", "margin", 2, _cands(["y1", "y2"], model_version=2), 2, round=a["round"],
                           supersedes=a["batch_id"], keep=["x1"])
    assert n["item_ids"] == ["x1", "y1", "y2"] and n["round"] == a["round"] and n["supersedes"] == a["batch_id"]
    assert n["predictions"][0] == Prediction(top=(("cat", 0.6),), model_version=1)  # kept as it was shown
    assert n["predictions"][1].model_version == 2
    assert store.open_batch(annotator="ana")["batch_id"] == n["batch_id"]
    assert store.reserved_ids("ben") == {"y1", "y2"}  # the superseded batch's x2, x3 are free again
    with pytest.raises(StoreError, match="already superseded"):
        store.create_batch("ana", "margin", 2, _cands(["z"]), 1, round=a["round"], supersedes=a["batch_id"])
    with pytest.raises(StoreError, match="to supersede is not in"):
        store.create_batch("ana", "margin", 2, _cands(["z"]), 1, supersedes="nope")
    assert store.answered_ids(round=a["round"]) == {"x1"}


def test_finding3_threads_racing_for_batches_share_nothing(make_store):
    """Three annotators (own store objects, like processes) take batches from the same ranked candidates and
    answer them: every item is handed out once and answered once."""
    make_store().close()
    ids = [f"s{i:03d}" for i in range(300)]
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def annotator(name):
        try:
            with make_store() as s:
                barrier.wait()
                while True:
                    b = s.create_batch(name, "margin", 0, _cands(ids), 7)
                    if b is None:
                        return
                    for sid in b["item_ids"]:
                        s.record(sid, Answer.of_label("cat"), round=b["round"], annotator=name,
                                 batch_id=b["batch_id"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=annotator, args=(n,)) for n in ("ana", "ben", "cleo")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    with make_store() as s:
        events = s.events()
        assert sorted(e["sample_id"] for e in events) == ids  # each item answered exactly once
        rounds = [b["round"] for b in s.batches()]
        assert len(rounds) == len(set(rounds))  # no round shared by two batches
        for b in s.batches():  # every answer was given by the annotator its batch was handed to
            assert {e["annotator"] for e in events if e["batch_id"] == b["batch_id"]} == {b["annotator"]}


def test_save_batch_still_works_and_records_the_annotator(store):
    store.save_batch("r1-x", 1, "random", 0, ["a", "b"], annotator="ana")
    b = store.load_batch("r1-x")
    assert b["annotator"] == "ana" and b["supersedes"] is None
    store.save_batch("r1-x", 1, "random", 0, ["a", "b"], annotator="ana")  # identical: no-op
    with pytest.raises(StoreError, match="different content"):
        store.save_batch("r1-x", 1, "random", 0, ["a", "b"], annotator="ben")
