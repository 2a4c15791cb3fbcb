"""LabelStore: append-only events, derived labels, undo chains, batches, meta, thread safety."""
from __future__ import annotations

import re
import threading

import pytest

from alworkbench.errors import AnswerError, DuplicateAnswerError, NothingToUndoError, StoreError
from alworkbench.labels import LabelStore
from alworkbench.labels.store import SCHEMA_VERSION
from alworkbench.types import Answer, Prediction


@pytest.fixture
def store(make_store):
    return make_store()


def test_file_is_wal_and_full_sync(tmp_path):
    store = LabelStore(tmp_path / "labels.sqlite")
    conn = store._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.integrity_check() == "ok"
    assert store.get_meta("schema_version") == SCHEMA_VERSION == 4
    store.close()


def test_postgresql_store_is_durable_and_complete(pg_url):
    from alworkbench.labels import open_store
    with open_store(pg_url) as store:
        conn = store._conn()
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] in ("on", "remote_write", "remote_apply")
        assert conn.execute("SHOW fsync").fetchone()[0] == "on"
        assert store.integrity_check() == "ok"
        assert store.get_meta("schema_version") == SCHEMA_VERSION == 4
        assert "PgLabelStore" in repr(store) and "127.0.0.1" in str(store.path)


def test_record_returns_increasing_ids_and_full_provenance(store):
    pred = Prediction(top=(("cat", 0.7), ("dog", 0.3)), model_version=3)
    e1 = store.record("img/1", Answer.of_label("cat", time_spent_s=1.5), round=2, annotator="alice",
                      batch_id="b7", model_version=3, strategy="margin", score=0.42, prediction=pred)
    e2 = store.record("img/2", Answer.of_label("dog"), round=2, annotator="bob", shown_at=0.0)
    assert e2 > e1
    ev = store.events()
    assert [e["id"] for e in ev] == [e1, e2]
    first = ev[0]
    assert first["kind"] == "label" and first["value"] == "cat" and first["sample_id"] == "img/1"
    assert (first["round"], first["batch_id"], first["annotator"]) == (2, "b7", "alice")
    assert (first["model_version"], first["strategy"], first["score"]) == (3, "margin", 0.42)
    assert first["time_spent_s"] == 1.5
    assert first["prediction"] == {"top": [["cat", 0.7], ["dog", 0.3]], "model_version": 3}
    assert first["undoes"] is None and first["created_at"] > 0
    # time spent derived from shown_at when the answer carries none
    assert ev[1]["time_spent_s"] > 0 and ev[1]["shown_at"] == 0.0
    assert store.n_events() == 2 and store.events(since_id=e1) == [ev[1]]


def test_duplicate_in_same_round_refused_and_not_counted(store):
    store.record("s1", Answer.of_label("cat"), round=1, annotator="a")
    with pytest.raises(DuplicateAnswerError, match=r"item 's1' was already answered in round 1; refused"):
        store.record("s1", Answer.of_label("dog"), round=1, annotator="b")
    with pytest.raises(DuplicateAnswerError):
        store.record("s1", Answer.skip(), round=1, annotator="a")
    assert store.n_events() == 1
    assert store.labels() == {"s1": "cat"}
    assert store.counts(["cat", "dog"], multilabel=False) == {"cat": 1, "dog": 0}
    # a later round may relabel (review); the latest answer wins
    store.record("s1", Answer.of_label("dog"), round=2, annotator="b")
    assert store.labels() == {"s1": "dog"}
    assert store.answered_ids(round=1) == {"s1"} and store.answered_ids(round=2) == {"s1"}


def test_undo_chain_walks_back_and_rederives_labels(store):
    ids = [store.record(f"s{i}", Answer.of_label("cat" if i % 2 else "dog"), round=0, annotator="a")
           for i in range(4)]
    assert store.counts(["cat", "dog"], False) == {"cat": 2, "dog": 2}
    undone = store.undo()
    assert undone["id"] == ids[3] and undone["sample_id"] == "s3" and undone["value"] == "cat"
    assert store.undo()["id"] == ids[2]
    assert store.labels() == {"s0": "dog", "s1": "cat"}
    assert store.counts(["cat", "dog"], False) == {"cat": 1, "dog": 1}
    assert store.answered_ids() == {"s0", "s1"}
    # the undone item can be answered again in the same round
    store.record("s2", Answer.of_label("cat"), round=0, annotator="a")
    assert store.labels()["s2"] == "cat"
    # undo events are events: nothing was deleted
    kinds = [e["kind"] for e in store.events()]
    assert kinds.count("undo") == 2 and kinds.count("label") == 5
    undo_events = [e for e in store.events() if e["kind"] == "undo"]
    assert [e["undoes"] for e in undo_events] == [ids[3], ids[2]]
    # undo everything, then nothing left
    for _ in range(3):
        store.undo()
    assert store.labels() == {}
    with pytest.raises(NothingToUndoError, match="nothing to undo"):
        store.undo()


def test_undo_per_annotator(store):
    a1 = store.record("x", Answer.of_label("cat"), round=0, annotator="alice")
    store.record("y", Answer.of_label("dog"), round=0, annotator="bob")
    assert store.undo(annotator="alice")["id"] == a1
    assert store.labels() == {"y": "dog"}
    with pytest.raises(NothingToUndoError, match="annotator 'alice'"):
        store.undo(annotator="alice")
    assert [e["annotator"] for e in store.events() if e["kind"] == "undo"] == ["alice"]


def test_undo_of_relabel_restores_previous_round_answer(store):
    store.record("s", Answer.of_label("cat"), round=1, annotator="a")
    store.record("s", Answer.of_label("dog"), round=2, annotator="a")
    store.undo()
    assert store.labels() == {"s": "cat"}


def test_tags_flags_skips_are_derived_from_latest_answer(store):
    store.record("t1", Answer.of_tags(["animal/cat", "red"]), round=0, annotator="a")
    store.record("t2", Answer.of_tags(["animal/dog"]), round=0, annotator="a")
    store.record("t3", Answer.skip(), round=0, annotator="a")
    store.record("t4", Answer.flag("two animals, guideline unclear"), round=0, annotator="a")
    assert store.tag_sets() == {"t1": ("animal/cat", "red"), "t2": ("animal/dog",)}
    assert store.skipped() == {"t3"}
    assert store.flagged() == {"t4": "two animals, guideline unclear"}
    assert store.labels() == {}
    assert set(store.active_answers()) == {"t1", "t2", "t3", "t4"}
    assert store.counts(["animal", "animal/cat", "animal/dog", "red", "blue"], multilabel=True) == {
        "animal": 2, "animal/cat": 1, "animal/dog": 1, "red": 1, "blue": 0}
    # a later flag in review replaces the tag set as the item's current state
    store.record("t1", Answer.flag("mislabelled?"), round=1, annotator="b")
    assert "t1" not in store.tag_sets() and store.flagged()["t1"] == "mislabelled?"


def test_answered_ids_by_batch(store):
    store.record("a", Answer.of_label("x"), round=1, annotator="u", batch_id="b1")
    store.record("b", Answer.skip(), round=1, annotator="u", batch_id="b1")
    store.record("c", Answer.of_label("x"), round=1, annotator="u", batch_id="b2")
    assert store.answered_ids(batch_id="b1") == {"a", "b"}
    assert store.answered_ids(round=1, batch_id="b2") == {"c"}
    assert store.answered_ids(round=0) == set()


def test_record_enqueue(store):
    ids = store.record_enqueue(["p", "q"], round=3, reason="review: low confidence", annotator="alice")
    assert len(ids) == 2
    ev = store.events()
    assert [e["kind"] for e in ev] == ["enqueue", "enqueue"]
    assert ev[0]["value"] == {"reason": "review: low confidence"} and ev[0]["round"] == 3
    assert store.answered_ids() == set() and store.last_round() == 3
    with pytest.raises(NothingToUndoError):
        store.undo()  # enqueue events are not answers


def test_invalid_inputs_are_refused_without_writing(store):
    with pytest.raises(AnswerError, match="empty tag set"):
        store.record("a", Answer("tags", tags=()), round=0, annotator="u")
    with pytest.raises(AnswerError, match="non-empty class name"):
        store.record("a", Answer("label"), round=0, annotator="u")
    with pytest.raises(StoreError, match="round must be an integer >= 0, got -1"):
        store.record("a", Answer.skip(), round=-1, annotator="u")
    with pytest.raises(StoreError, match="sample_id must be a non-empty string"):
        store.record("", Answer.skip(), round=0, annotator="u")
    with pytest.raises(StoreError, match="annotator"):
        store.record("a", Answer.skip(), round=0, annotator="")
    assert store.n_events() == 0


def test_events_are_append_only_at_the_sql_level(store, raw_db, backend):
    store.record("a", Answer.of_label("x"), round=0, annotator="u")
    raw = raw_db()
    with pytest.raises(raw.errors, match="append-only: UPDATE refused"):
        raw.execute("UPDATE events SET value_json = '\"y\"'")
    with pytest.raises(raw.errors, match="append-only: DELETE refused"):
        raw.execute("DELETE FROM events")
    if backend == "postgresql":
        with pytest.raises(raw.errors, match="append-only: TRUNCATE refused"):
            raw.execute("TRUNCATE events")
        # the database itself holds "one active answer per item and round", whoever inserts
        with pytest.raises(raw.errors, match="item 'a' was already answered in round 0; refused"):
            raw.execute("INSERT INTO events(kind, sample_id, value_json, round, annotator, created_at)"
                        " VALUES ('label', 'a', '\"z\"', 0, 'psql', 0)")
    assert store.labels() == {"a": "x"} and store.n_events() == 1


def test_meta_roundtrip_and_persistence(make_store):
    with make_store() as s:
        assert s.get_meta("missing", default=7) == 7
        s.set_meta("guideline_ack", {"alice": "2"})
        s.set_meta("guideline_ack", {"alice": "2"})  # the value it holds: a no-op
        with pytest.raises(StoreError, match="written once"):  # never overwritten
            s.set_meta("guideline_ack", {"alice": "3", "bob": "1"})
        s.set_meta("n", 5)
        with pytest.raises(StoreError, match="written once"):
            s.set_meta("n", 6)
        with pytest.raises(StoreError, match="not JSON-serialisable"):
            s.set_meta("bad", object())
        with pytest.raises(StoreError, match="managed by the label store"):
            s.set_meta("schema_version", 99)
    with make_store() as s:
        assert s.get_meta("guideline_ack") == {"alice": "2"}
        assert s.get_meta("n") == 5


def test_batches_save_load_resume(make_store):
    preds = [Prediction(top=(("cat", 0.6),), model_version=2), None]
    with make_store() as s:
        assert s.open_batch() is None
        s.save_batch("r1-b0", 1, "random", 0, ["a", "b"])
        s.save_batch("r2-b0", 2, "margin", 2, ["c", "d"], [0.9, float("nan")], preds)
        s.save_batch("r2-b0", 2, "margin", 2, ["c", "d"], [0.9, None], preds)  # identical re-save: no-op
        with pytest.raises(StoreError, match="already exists with different content"):
            s.save_batch("r2-b0", 2, "margin", 2, ["c", "e"], [0.9, None], preds)
        with pytest.raises(StoreError, match="2 item ids but 1 scores and 2 predictions"):
            s.save_batch("bad", 2, "margin", 2, ["c", "d"], [0.1], preds)
        with pytest.raises(StoreError, match="more than once"):
            s.save_batch("bad", 2, "margin", 2, ["c", "c"])
    with make_store() as s:  # after a restart
        b = s.open_batch()
        assert b["batch_id"] == "r2-b0" and b["round"] == 2 and b["strategy"] == "margin"
        assert b["model_version"] == 2 and b["item_ids"] == ["c", "d"] and b["scores"] == [0.9, None]
        assert b["predictions"] == preds
        assert s.load_batch("r1-b0")["predictions"] == [None, None]
        assert [x["batch_id"] for x in s.batches()] == ["r1-b0", "r2-b0"]
        assert s.last_round() == 2
        with pytest.raises(StoreError, match=rf"no batch 'nope' in {re.escape(s.path.name)} \(2 batch\(es\) saved\)"):
            s.load_batch("nope")


def test_batch_origins_follow_the_log_from_a_position(make_store):
    """batch_origins(after) returns only the batches saved after a position (without predictions) and the next
    position, including batches another handle saved; together they are the full log, in order."""
    with make_store() as s:
        assert s.batch_origins() == ([], 0)
        s.save_batch("b1", 1, "random", 0, ["a", "b"])
        s.save_batch("b2", 2, "margin", 1, ["c"], [0.4], [Prediction(top=(("cat", 0.6),), model_version=1)])
        rows, pos = s.batch_origins()
        assert rows == [{"batch_id": "b1", "strategy": "random", "item_ids": ["a", "b"], "scores": [None, None],
                         "supersedes": None},
                        {"batch_id": "b2", "strategy": "margin", "item_ids": ["c"], "scores": [0.4],
                         "supersedes": None}]
        assert pos > 0 and s.batch_origins(pos) == ([], pos)
        with make_store() as other:  # another process of the team
            other.save_batch("b3", 3, "random", 1, ["d"])
        more, pos3 = s.batch_origins(pos)
        assert [r["batch_id"] for r in more] == ["b3"] and pos3 > pos
        full = s.batches()
        assert [b["batch_id"] for b in full] == ["b1", "b2", "b3"]
        assert [{k: b[k] for k in o} for o, b in zip(rows + more, full)] == rows + more


def test_reopen_rebuilds_derived_state_from_events(make_store):
    with make_store() as s:
        for i in range(10):
            s.record(f"s{i}", Answer.of_label(str(i % 3)), round=i // 5, annotator="a")
        s.undo()
        before = (s.labels(), s.counts(["0", "1", "2"], False), s.events())
    with make_store() as s:
        assert (s.labels(), s.counts(["0", "1", "2"], False), s.events()) == before
        assert s.last_round() == 1 and len(before[0]) == 9


def test_closed_store(make_store):
    s = make_store()
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="is closed"):
        s.labels()
    with pytest.raises(StoreError, match="is closed"):
        s.record("a", Answer.skip(), round=0, annotator="u")


def test_bad_paths(tmp_path):
    with pytest.raises(StoreError, match="is a directory"):
        LabelStore(tmp_path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="cannot open label store"):
        LabelStore(junk)
    with pytest.raises(StoreError, match="synchronous must be one of"):
        LabelStore(tmp_path / "x.sqlite", synchronous="OFF")


def test_newer_schema_version_refused(make_store, raw_db):
    make_store().close()
    # what a newer alworkbench writes when it upgrades a store: a schema_history row
    raw_db().execute("INSERT INTO schema_history(from_version, to_version, created_at) VALUES (4, 99, 0)")
    with pytest.raises(StoreError, match="schema version 99; this alworkbench reads up to version 4"):
        make_store()


def test_background_reader_while_ui_thread_writes(store):
    """A training thread reads labels while the UI thread writes; reads never fail and only grow."""
    n = 300
    errors: list[BaseException] = []
    seen: list[int] = []
    stop = threading.Event()

    def reader():
        try:
            while not stop.is_set():
                labels = store.labels()
                counts = store.counts(["a", "b"], multilabel=False)
                assert sum(counts.values()) >= len(labels)  # counts are read after labels
                seen.append(len(labels))
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(n):
            store.record(f"s{i}", Answer.of_label("a" if i % 2 else "b"), round=0, annotator="ui")
    finally:
        stop.set()
        t.join(timeout=30)
    assert not errors, errors
    assert seen == sorted(seen) and seen  # monotone: committed answers never disappear
    assert len(store.labels()) == n


def test_threads_racing_on_same_item_only_one_wins(store):
    barrier = threading.Barrier(4)
    results: list[str] = []

    def worker(k):
        barrier.wait()
        for i in range(30):
            try:
                store.record(f"s{i}", Answer.of_label(str(k)), round=0, annotator=f"t{k}")
                results.append("ok")
            except DuplicateAnswerError:
                results.append("dup")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results.count("ok") == 30 and results.count("dup") == 90
    assert store.n_events() == 30 and len(store.labels()) == 30


def test_busy_store_gives_a_clear_error_and_writes_nothing(make_store, raw_db):
    with make_store(busy_timeout_s=0.2) as store:
        other = raw_db()
        other.hold_write_lock()  # another program holds the write lock
        with pytest.raises(StoreError, match=r"label store busy: could not start a write within 0.2 s"):
            store.record("a", Answer.skip(), round=0, annotator="u")
        assert store.labels() == {}  # readers are not blocked by a writer
        other.rollback()
        store.record("a", Answer.skip(), round=0, annotator="u")
        assert store.skipped() == {"a"}


def test_connections_of_finished_threads_are_released(store):
    store.labels()  # main thread connection

    def read():
        store.labels()

    for _ in range(8):
        t = threading.Thread(target=read)
        t.start()
        t.join()
    # each new thread's connection first closes the ones left by finished threads
    assert len(store._conns) <= 2


def test_forked_child_uses_fresh_connections(make_store):
    mp = pytest.importorskip("multiprocessing")
    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    store = make_store()
    store.record("parent-1", Answer.of_label("a"), round=0, annotator="p")

    def child():
        store.record("child", Answer.of_label("b"), round=0, annotator="c")
        store.close()  # must not close (or checkpoint through) the parent's handles

    proc = mp.get_context("fork").Process(target=child)
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == 0
    store.record("parent-2", Answer.of_label("a"), round=0, annotator="p")
    assert store.labels() == {"parent-1": "a", "child": "b", "parent-2": "a"}
    assert store.integrity_check() == "ok"
    store.close()


def test_postgresql_errors_name_the_server_never_the_password(pg_server, pg_url, monkeypatch):
    from alworkbench.labels import open_store
    secret = pg_server.password
    port = pg_server.port
    # a wrong password written into the URL: refused, and the message shows neither password
    bad = pg_server.url().replace("alwb@", "alwb:wrong-Secret-123@")
    with pytest.raises(StoreError) as err:
        open_store(bad)
    msg = str(err.value)
    assert f"postgresql://alwb@127.0.0.1:{port}/postgres" in msg and "authentication failed" in msg
    assert "wrong-Secret-123" not in msg and secret not in msg and "\n" not in msg
    # no password anywhere: the message says where to put it
    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")
    with pytest.raises(StoreError, match=r"PGPASSWORD, ~/.pgpass or a service file \(never in alwb.yaml\)"):
        open_store(pg_url)
    monkeypatch.setenv("PGPASSWORD", secret)
    # a database that does not exist, a server that does not listen
    with pytest.raises(StoreError, match=rf"127.0.0.1:{port}/nosuchdb: the database does not exist"):
        open_store(pg_server.url("nosuchdb"))
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    with pytest.raises(StoreError, match=rf"cannot open label store postgresql://alwb@127.0.0.1:{closed_port}/postgres: "
                                         "the server is unreachable") as err:
        open_store(pg_server.url().replace(f":{port}/", f":{closed_port}/"))
    assert secret not in str(err.value)
    # a password given through ~/.pgpass works too
    monkeypatch.delenv("PGPASSWORD")
    import pathlib
    import tempfile
    pgpass = pathlib.Path(tempfile.mkdtemp()) / "pgpass"
    pgpass.write_text(f"127.0.0.1:{port}:*:alwb:{secret}\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    with open_store(pg_url) as s:
        assert s.integrity_check() == "ok"
