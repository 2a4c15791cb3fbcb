"""Issue 9, finding 7 (store part): every SQLite failure is one line naming the file and what to do, and an
answer is reported as saved exactly when it is durable.

Conditions are made real, not mocked where the OS can make them: a read-only mount (as root, which ignores file
modes, a read-only bind mount; as another user, chmod), a full disk (a 256 KiB tmpfs; without mount rights,
SQLite's own page limit, which fails the same way with SQLITE_FULL), a page overwritten in the middle of the
file, and a lock held by another connection. Only "COMMIT raised although the answer is durable" is injected: it
depends on where exactly a disk fills up, so the test replays both outcomes deterministically.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from alworkbench.errors import StoreError
from alworkbench.labels import LabelStore
from alworkbench.types import Answer

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _sh(*cmd) -> bool:
    return subprocess.run([str(c) for c in cmd], capture_output=True, timeout=60).returncode == 0


def assert_one_line(err: BaseException, path: Path, *words: str) -> str:
    msg = str(err)
    assert isinstance(err, StoreError), type(err)
    assert "\n" not in msg and str(path) in msg, msg
    for w in words:
        assert w in msg, msg
    # the raw SQLite error is the cause, never what the caller sees
    assert not isinstance(err, sqlite3.Error)
    return msg


@contextmanager
def read_only_view(folder: Path):
    """``folder`` as a read-only location: a read-only bind mount when root (root ignores file modes), else
    chmod. Yields the path to open the store through."""
    if not IS_ROOT:
        files = list(folder.iterdir())
        for f in files:
            f.chmod(0o444)
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
            for f in files:
                f.chmod(0o644)
        return
    view = folder.parent / (folder.name + "-ro")
    view.mkdir()
    if not (_sh("mount", "--bind", folder, view) and _sh("mount", "-o", "remount,bind,ro", view)):
        _sh("umount", "-l", view)
        pytest.skip("root without mount rights: cannot make a read-only location")
    try:
        yield view
    finally:
        _sh("umount", "-l", view)  # lazy: SQLite may keep a descriptor until its other connection closes


def _filled(path: Path, n: int = 50) -> None:
    with LabelStore(path) as s:
        for i in range(n):
            s.record(f"s{i}", Answer.of_label("cat"), round=0, annotator="ana")


def test_finding7_read_only_store_is_a_one_line_error(tmp_path):
    folder = tmp_path / "proj"
    folder.mkdir()
    path = folder / "labels.sqlite"
    _filled(path)
    with read_only_view(folder) as view:
        target = view / "labels.sqlite"
        try:
            store = LabelStore(target)
        except StoreError as exc:  # a closed WAL store on a read-only mount cannot even be read
            assert_one_line(exc, target, "read-only", "writable")
        else:  # chmod: readable, not writable
            with store:
                assert len(store.labels()) == 50
                with pytest.raises(StoreError) as ei:
                    store.record("new", Answer.skip(), round=0, annotator="ana")
                assert_one_line(ei.value, target, "read-only", "writable")
    with LabelStore(path) as s:
        assert s.n_events() == 50 and "new" not in s.skipped()


def test_finding7_read_only_view_of_an_open_store_reads_but_refuses_writes(tmp_path):
    folder = tmp_path / "proj"
    folder.mkdir()
    path = folder / "labels.sqlite"
    writer = LabelStore(path)  # keeps the -wal/-shm files, as a running labelling session does
    try:
        for i in range(10):
            writer.record(f"s{i}", Answer.of_label("cat"), round=0, annotator="ana")
        with read_only_view(folder) as view:
            with LabelStore(view / "labels.sqlite") as ro:
                assert len(ro.labels()) == 10 and ro.last_round() == 0
                for call in (lambda: ro.record("x", Answer.skip(), round=0, annotator="ben"),
                             lambda: ro.append_report({"round": 1}),
                             lambda: ro.create_batch("ben", "random", 0, [("x", None, None)], 1),
                             lambda: ro.undo()):
                    with pytest.raises(StoreError) as ei:
                        call()
                    assert_one_line(ei.value, view / "labels.sqlite", "read-only")
        assert writer.n_events() == 10 and writer.batches() == []
    finally:
        writer.close()


@contextmanager
def small_disk(tmp_path: Path):
    """A folder on a 256 KiB tmpfs (root), yielding (folder, grow) where grow() frees space; without mount
    rights a store-level page limit plays the full disk (same SQLITE_FULL error through the same code)."""
    d = tmp_path / "small"
    d.mkdir()
    if IS_ROOT and _sh("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", d):
        try:
            yield d, None, (lambda: _sh("mount", "-o", "remount,size=16m", d))
        finally:
            _sh("umount", "-l", d)
        return

    def limit(store, extra: int = 2):  # per connection: applied again after the store replaces a failed one
        conn = store._conn()
        conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0] + extra}")

    yield d, limit, None


def test_finding7_full_disk_answer_is_saved_exactly_when_acknowledged(tmp_path):
    with small_disk(tmp_path) as (d, limit, grow):
        path = d / "labels.sqlite"
        store = LabelStore(path)
        if limit is not None:
            limit(store)
        acked: dict[str, tuple[str, int]] = {}
        failed: list[tuple[str, str]] = []
        for i in range(5000):
            uid = uuid.uuid4().hex
            try:
                acked[uid] = (f"s{i}", store.record(f"s{i}", Answer.flag("n" * 300), round=0, annotator="ana",
                                                    uid=uid))
            except StoreError as exc:
                assert_one_line(exc, path, "disk is full", "free space")
                failed.append((uid, f"s{i}"))
                if len(failed) == 3:
                    break
                if limit is not None:
                    limit(store, 0)
        assert len(failed) == 3 and acked, "the disk never filled up"
        # other writes fail the same way, reads keep working
        if limit is not None:
            limit(store, 0)
        with pytest.raises(StoreError) as ei:
            store.append_report({"round": 1, "text": "r" * 40000})
        assert_one_line(ei.value, path, "disk is full")
        assert len(store.flagged()) == len(acked)
        # space freed: the same store object carries on
        if grow is not None:
            assert grow()
        else:
            store._conn().execute("PRAGMA max_page_count = 1000000")
        store.record("after", Answer.skip(), round=0, annotator="ana")
        store.close()
        with LabelStore(path) as s:  # what is on disk: every acknowledged answer, none of the refused ones
            by_uid = {e["uid"]: e for e in s.events()}
            assert all(uid in by_uid and by_uid[uid]["id"] == eid and by_uid[uid]["sample_id"] == sid
                       for uid, (sid, eid) in acked.items())
            assert not any(uid in by_uid for uid, _ in failed)
            assert s.integrity_check() == "ok"


class _CommitRaises:
    """A connection whose COMMIT raises SQLITE_FULL, either after the transaction became durable
    (``durable=True``: the ambiguous case seen on a full disk) or without it."""

    def __init__(self, conn, durable: bool):
        self._c, self.durable = conn, durable

    def execute(self, sql, *args):
        if sql == "COMMIT":
            self._c.execute("COMMIT" if self.durable else "ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")
        return self._c.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._c, name)


def test_finding7_commit_error_after_a_durable_answer_returns_its_id(tmp_path):
    path = tmp_path / "labels.sqlite"
    with LabelStore(path) as store:
        store._local.conn = _CommitRaises(store._conn(), durable=True)
        eid = store.record("s1", Answer.of_label("cat"), round=0, annotator="ana", uid="k-1")
        assert isinstance(eid, int)  # told "saved", because it is
        assert store.labels() == {"s1": "cat"}  # a fresh connection replaced the failed one
        # retrying the same call (same idempotency key) returns the same event, stores nothing twice
        assert store.record("s1", Answer.of_label("cat"), round=0, annotator="ana", uid="k-1") == eid
        assert store.n_events() == 1
        with pytest.raises(StoreError, match="already used for item 's1'"):
            store.record("s2", Answer.skip(), round=0, annotator="ana", uid="k-1")
    with LabelStore(path) as store:
        assert [(e["id"], e["uid"]) for e in store.events()] == [(eid, "k-1")]


def test_finding7_commit_error_without_a_durable_answer_is_a_one_line_error(tmp_path):
    path = tmp_path / "labels.sqlite"
    with LabelStore(path) as store:
        store._local.conn = _CommitRaises(store._conn(), durable=False)
        with pytest.raises(StoreError) as ei:
            store.record("s1", Answer.of_label("cat"), round=0, annotator="ana")
        assert_one_line(ei.value, path, "was not saved", "disk is full")
        assert store.n_events() == 0
        eid = store.record("s1", Answer.of_label("cat"), round=0, annotator="ana")  # and it carries on
        assert store.labels() == {"s1": "cat"} and eid >= 1


@pytest.mark.parametrize("where", [1 / 3, 1 / 2, 2 / 3])
def test_finding7_damaged_page_is_a_one_line_error(tmp_path, where):
    path = tmp_path / "labels.sqlite"
    LabelStore(path).close()
    raw = sqlite3.connect(path)  # 1,500 answers in one transaction (the store commits each on its own)
    raw.executemany("INSERT INTO events(kind, sample_id, note, round, annotator, created_at, uid)"
                    " VALUES ('flag', ?, ?, ?, 'ana', 1.0, ?)",
                    [(f"sample-{i:05d}", "note " * 10, i // 100, f"u{i}") for i in range(1500)])
    raw.commit()
    raw.close()
    with LabelStore(path) as s:
        assert len(s.flagged()) == 1500 and s.integrity_check() == "ok"
    size = path.stat().st_size
    page = 4096
    with open(path, "r+b") as f:  # one page in the middle of the file overwritten with junk
        f.seek(int(size * where) // page * page)
        f.write(bytes((i * 97 + 13) % 256 for i in range(page)))
    with pytest.raises(StoreError) as ei:
        with LabelStore(path) as s:
            s.labels()
            s.integrity_check()
    assert_one_line(ei.value, path, "damaged", ".recover", "backup")


def test_finding7_not_a_database_and_locked_are_one_line_errors(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not sqlite at all " * 300)
    with pytest.raises(StoreError) as ei:
        LabelStore(junk)
    assert_one_line(ei.value, junk, "cannot open label store", "damaged or not a label store")

    path = tmp_path / "labels.sqlite"
    _filled(path, 5)
    with LabelStore(path, busy_timeout_s=0.2) as store:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another program is writing
            with pytest.raises(StoreError) as ei:
                store.record("x", Answer.skip(), round=0, annotator="ana")
            assert_one_line(ei.value, path, "busy", "retry")
            other.execute("ROLLBACK")
            store._discard_conn()
            other.execute("PRAGMA locking_mode = EXCLUSIVE")  # another program took the file for itself
            other.execute("BEGIN EXCLUSIVE")
            other.execute("INSERT INTO meta VALUES ('x', '1')")
            other.execute("COMMIT")
            with pytest.raises(StoreError) as ei:
                store.labels()
            assert_one_line(ei.value, path, "locked by another program", "retry")
        finally:
            other.close()
        assert len(store.labels()) == 5
