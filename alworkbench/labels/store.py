"""The durable label store: an append-only log in SQLite (WAL, synchronous=FULL).

Every answer, undo and enqueue is one row of ``events``; every round report, model version and guideline
acknowledgement is one row of ``records``. Rows of both are never updated or deleted (triggers refuse it).
Current labels, tag sets, skips, flags, coverage, "answered" sets, the latest model version and each
annotator's acknowledged guideline are derived from the logs on each call, never stored as truth.
``record`` returns only after the transaction is committed, so an answer whose event id was handed back
survives a crash of the process (and, with synchronous=FULL, of the machine).

Several annotators (threads or processes) may share one file: ``create_batch`` hands out items inside one
``BEGIN IMMEDIATE`` transaction, skipping items that are already answered or that sit unanswered in another
annotator's open batch, so no item is handed to two annotators at once and rounds are never shared.

Errors: every SQLite failure (read-only file, full disk, damaged file, lock held too long) surfaces as a
one-line ``StoreError`` that names the file and what to do. ``record`` carries an idempotency key (``uid``):
when COMMIT itself fails, the store re-reads the key on a fresh connection and returns the event id if the
answer is durable after all, so a caller is never told "failed" for an answer that was saved.

Thread and process safety: each thread gets its own SQLite connection; writes run in ``BEGIN IMMEDIATE``
transactions, so the "one active answer per item and round" rule holds across threads and processes.
A background thread can read (``labels()``, ``events()``) while another thread writes.
"""
from __future__ import annotations

import functools
import json
import math
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from ..errors import AnswerError, DuplicateAnswerError, NothingToUndoError, StoreError
from ..types import Answer, Prediction
from .schema import with_ancestors

# 3: events.path_json (a taxonomy label's ancestors, stored explicitly); 4: schema_history (every creation and
# upgrade appended; meta's schema_version is written once, when the store is created, and never again)
SCHEMA_VERSION = 4
ANSWER_KINDS = ("label", "tags", "skip", "flag")
EVENT_KINDS = ANSWER_KINDS + ("undo", "enqueue")
SYNCHRONOUS_MODES = ("FULL", "NORMAL", "EXTRA")
BUSY_TIMEOUT_MS = 30_000
# record kinds written by the convenience wrappers
REPORT, MODEL, GUIDELINE_ACK = "report", "model", "guideline_ack"
# meta keys that schema version 1 overwrote in place; now appended records (read-only views through get_meta)
_LEGACY_KEYS = ("reports", "model_version")
_LEGACY_ACK_PREFIX = "guideline_ack:"
_RESERVED_RECORD_KEYS = ("id", "created_at")

SCHEMA_VERSION_ONCE = ("meta key schema_version is written once: schema upgrades are appended to schema_history "
                       "(a newer alworkbench upgraded this store: upgrade alworkbench)")
_KINDS_SQL = ", ".join(f"'{k}'" for k in EVENT_KINDS)
_ANSWER_KINDS_SQL = ", ".join(f"'{k}'" for k in ANSWER_KINDS)
# an answer event is active while no undo event points at it
_ACTIVE = f"e.kind IN ({_ANSWER_KINDS_SQL}) AND NOT EXISTS (SELECT 1 FROM events u WHERE u.undoes = e.id)"
#: answers given on gold items (qualification test, hidden gold) carry a strategy starting with this: they are
#: scored against the known answer (alworkbench.labels.quality), never counted as labels
GOLD_PREFIX = "gold:"
_NOT_GOLD = "e.strategy NOT LIKE 'gold:%'"
RELEASE = "batch_release"

# tables first (a version-1 file already has events/meta/batches: their new columns are added by the migration),
# then what depends on the new columns
_DDL_TABLES = [
    f"""CREATE TABLE IF NOT EXISTS events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT    NOT NULL CHECK (kind IN ({_KINDS_SQL})),
    sample_id       TEXT    NOT NULL,
    value_json      TEXT,
    note            TEXT    NOT NULL DEFAULT '',
    round           INTEGER NOT NULL,
    batch_id        TEXT    NOT NULL DEFAULT '',
    annotator       TEXT    NOT NULL,
    created_at      REAL    NOT NULL,
    shown_at        REAL,
    time_spent_s    REAL,
    model_version   INTEGER NOT NULL DEFAULT 0,
    strategy        TEXT    NOT NULL DEFAULT '',
    score           REAL,
    prediction_json TEXT,
    undoes          INTEGER REFERENCES events(id),
    uid             TEXT,
    path_json       TEXT,
    CHECK ((kind = 'undo') = (undoes IS NOT NULL))
)""",
    """CREATE TABLE IF NOT EXISTS meta (
    key        TEXT PRIMARY KEY,
    value_json TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS batches (
    batch_id         TEXT    PRIMARY KEY,
    round            INTEGER NOT NULL,
    strategy         TEXT    NOT NULL,
    model_version    INTEGER NOT NULL,
    created_at       REAL    NOT NULL,
    item_ids_json    TEXT    NOT NULL,
    scores_json      TEXT    NOT NULL,
    predictions_json TEXT    NOT NULL,
    annotator        TEXT    NOT NULL DEFAULT '',
    supersedes       TEXT
)""",
    """CREATE TABLE IF NOT EXISTS records (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL,
    value_json TEXT    NOT NULL,
    created_at REAL    NOT NULL
)""",
    # one row per creation (from_version NULL) or upgrade of the store's schema, appended in the transaction that
    # made it; the current version is the highest to_version (and never less than meta's schema_version)
    """CREATE TABLE IF NOT EXISTS schema_history (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    from_version INTEGER,
    to_version   INTEGER NOT NULL,
    created_at   REAL    NOT NULL,
    software     TEXT    NOT NULL DEFAULT '',
    details_json TEXT
)""",
]
# columns added to version-1 tables: (table, column, declaration)
_ADDED_COLUMNS = [("events", "uid", "TEXT"), ("batches", "annotator", "TEXT NOT NULL DEFAULT ''"),
                  ("batches", "supersedes", "TEXT"), ("events", "path_json", "TEXT")]
_DDL_AFTER = [
    "CREATE INDEX IF NOT EXISTS events_sample_round ON events(sample_id, round)",
    "CREATE INDEX IF NOT EXISTS events_round ON events(round)",
    "CREATE INDEX IF NOT EXISTS events_batch ON events(batch_id)",
    "CREATE UNIQUE INDEX IF NOT EXISTS events_undoes ON events(undoes) WHERE undoes IS NOT NULL",
    "CREATE UNIQUE INDEX IF NOT EXISTS events_uid ON events(uid) WHERE uid IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS batches_annotator ON batches(annotator)",
    "CREATE INDEX IF NOT EXISTS batches_supersedes ON batches(supersedes) WHERE supersedes IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS records_kind ON records(kind, id)",
] + [
    f"CREATE TRIGGER IF NOT EXISTS {t}_no_{op.lower()} BEFORE {op} ON {t}"
    f" BEGIN SELECT RAISE(ABORT, '{t} are append-only: {op} refused'); END"
    for t in ("events", "records", "schema_history") for op in ("UPDATE", "DELETE")
] + [
    # an alworkbench that predates schema_history (it reads only this key) would otherwise rewrite it, and an
    # older one re-run its version-1 migration: refused, that transaction rolls back and the store is untouched
    f"CREATE TRIGGER IF NOT EXISTS meta_schema_version_{op.lower()} BEFORE {op} ON meta"
    f" WHEN OLD.key = 'schema_version' BEGIN SELECT RAISE(ABORT, '{SCHEMA_VERSION_ONCE}'); END"
    for op in ("UPDATE", "DELETE")
]

_EVENT_COLUMNS = ("id", "kind", "sample_id", "value_json", "note", "round", "batch_id", "annotator",
                  "created_at", "shown_at", "time_spent_s", "model_version", "strategy", "score",
                  "prediction_json", "undoes", "uid", "path_json")
_SAMPLE_COL = _EVENT_COLUMNS.index("sample_id")
_SELECT_EVENTS = "SELECT " + ", ".join("e." + c for c in _EVENT_COLUMNS) + " FROM events e"


# -- errors ---------------------------------------------------------------------------------------------
class _CommitFailed(Exception):
    """COMMIT raised: whether the transaction is durable is unknown until it is re-read."""

    def __init__(self, exc: sqlite3.Error):
        super().__init__(str(exc))
        self.exc = exc


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def _not_writable(path: Path) -> bool:
    """True when the file (or, for a new file, its folder) cannot be written: a read-only mount or mode."""
    try:
        target = path if path.exists() else path.parent
        return target.exists() and not (os.access(target, os.W_OK) and os.access(path.parent, os.W_OK))
    except OSError:
        return False


def _store_error(path: Path, exc: BaseException, what: str = "", *, opening: bool = False) -> StoreError:
    """One line naming the file and what to do, for any SQLite error."""
    if isinstance(exc, _CommitFailed):
        exc = exc.exc
    msg = _one_line(exc)
    low = msg.lower()
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    subject = f"cannot open label store {path}" if opening else f"label store {path}"
    cantopen = primary == 14 or "unable to open" in low
    if primary == 8 or "readonly" in low or "read-only" in low or (cantopen and _not_writable(path)):
        text = (f"{subject}: it is read-only ({msg}); make the file, its folder and any -wal/-shm files "
                "writable (or mount the disk read-write), or work on a writable copy of the project")
    elif primary == 13 or "disk is full" in low:
        text = (f"{subject}: the disk is full ({msg}); free space on that disk and retry "
                "(answers acknowledged before are safe)")
    elif primary in (11, 26) or "malformed" in low or "not a database" in low:
        text = (f"{subject}: the file is damaged or not a label store ({msg}); restore it from a backup, or "
                f"salvage it with `sqlite3 {path} .recover | sqlite3 recovered.sqlite` and put the result in "
                "its place")
    elif primary in (5, 6) or "locked" in low or "busy" in low:
        text = (f"{subject}: it is locked by another program ({msg}); close the other program "
                "(or wait for it to finish) and retry")
    elif cantopen:
        text = f"{subject} ({msg}): check that its folder exists and that you may read and write there"
    elif primary == 10 or "disk i/o error" in low:
        text = f"{subject}: I/O error ({msg}); check the disk (free space, kernel log) and retry"
    else:
        text = f"{subject}: {msg}"
    return StoreError(f"{what}: {text}" if what else text)


def _translated(fn):
    """Public store methods raise StoreError (one line, naming the file) instead of raw sqlite3 errors."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except Exception as exc:
            if isinstance(exc, _CommitFailed) or isinstance(exc, self._db_errors()):
                raise self._translate_error(exc) from exc
            raise

    return wrapper


# -- encoding helpers ----------------------------------------------------------------------------------
def _encode_prediction(pred: Any) -> Optional[str]:
    if pred is None:
        return None
    if isinstance(pred, Prediction):
        pred = {"top": [[str(c), float(p)] for c, p in pred.top], "model_version": int(pred.model_version)}
    try:
        return json.dumps(pred, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"prediction is not JSON-serialisable: {exc}") from exc


def _decode_prediction_obj(raw: Optional[str]) -> Optional[Prediction]:
    if raw is None:
        return None
    d = json.loads(raw)
    if isinstance(d, dict) and "top" in d and "model_version" in d:
        return Prediction(top=tuple((str(c), float(p)) for c, p in d["top"]), model_version=int(d["model_version"]))
    return d


def _encode_score(score: Any) -> Optional[float]:
    if score is None:
        return None
    s = float(score)
    return None if math.isnan(s) else s


def _row_to_event(row: Sequence[Any]) -> dict:
    d = dict(zip(_EVENT_COLUMNS, row))
    raw_value = d.pop("value_json")
    raw_pred = d.pop("prediction_json")
    value = None if raw_value is None else json.loads(raw_value)
    if d["kind"] == "tags" and value is not None:
        value = tuple(value)
    d["value"] = value
    d["prediction"] = None if raw_pred is None else json.loads(raw_pred)
    raw_path = d.pop("path_json")
    d["path"] = None if raw_path is None else tuple(json.loads(raw_path))
    return d


def _answer_path(answer: Answer) -> Optional[str]:
    """A taxonomy label's path (root first, ending in the label) as JSON; None when the answer has none."""
    path = tuple(getattr(answer, "path", ()) or ())
    if not path:
        return None
    if answer.kind != "label":
        raise AnswerError(f"only a 'label' answer carries a taxonomy path, got a {answer.kind!r} answer with "
                          f"{list(path)}")
    if not all(isinstance(p, str) and p for p in path) or path[-1] != answer.label:
        raise AnswerError(f"a taxonomy path must be non-empty names ending in the label {answer.label!r}, got "
                          f"{list(path)}")
    return json.dumps(list(path))


def _answer_value(answer: Answer) -> Optional[str]:
    if not isinstance(answer, Answer):
        raise AnswerError(f"expected an Answer, got {type(answer).__name__}")
    if answer.kind == "label":
        if not isinstance(answer.label, str) or not answer.label:
            raise AnswerError(f"a 'label' answer needs a non-empty class name, got {answer.label!r}")
        return json.dumps(answer.label)
    if answer.kind == "tags":
        tags = tuple(answer.tags) if not isinstance(answer.tags, str) else ()
        if not tags:
            raise AnswerError("empty tag set: choose at least one tag, or skip the item")
        if not all(isinstance(t, str) and t for t in tags):
            raise AnswerError(f"tags must be non-empty strings, got {list(answer.tags)!r}")
        return json.dumps(sorted(set(tags)))
    if answer.kind in ("skip", "flag"):
        return None
    raise AnswerError(f"unknown answer kind {answer.kind!r}; allowed: {', '.join(ANSWER_KINDS)}")


def _check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise StoreError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _check_round(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StoreError(f"round must be an integer >= 0, got {value!r}")
    return value


class _Write:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception. A failed COMMIT raises ``_CommitFailed``:
    the caller decides how to find out whether it was durable after all."""

    db_error: type = sqlite3.Error  # the driver's error class (the PostgreSQL store's subclass sets psycopg's)

    def __init__(self, conn: sqlite3.Connection, timeout_s: float, path: Path):
        self.conn = conn
        self.timeout_s = timeout_s
        self.path = path

    def __enter__(self):
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            if (isinstance(code, int) and code & 0xFF in (5, 6)) or "locked" in str(exc).lower():
                raise StoreError(f"label store busy: could not start a write within {self.timeout_s:g} s on "
                                 f"{self.path} ({_one_line(exc)}); is another program holding it open for "
                                 "writing? Close it and retry") from exc
            raise
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
            except self.db_error as cexc:
                self._rollback()
                raise _CommitFailed(cexc) from cexc
        else:
            self._rollback()
        return False

    def _rollback(self) -> None:
        try:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        except self.db_error:  # the original error is the one to report
            pass


class LabelStore:
    """Append-only label events and records in one SQLite file. See the module docstring for the guarantees."""

    def __init__(self, path, *, synchronous: str = "FULL", busy_timeout_s: float = BUSY_TIMEOUT_MS / 1000,
                 lease_s: Optional[float] = None):
        sync = str(synchronous).upper()
        if sync not in SYNCHRONOUS_MODES:
            raise StoreError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, got {synchronous!r}")
        if not busy_timeout_s > 0:
            raise StoreError(f"busy_timeout_s must be > 0 seconds, got {busy_timeout_s!r}")
        self.busy_timeout_s = float(busy_timeout_s)
        if lease_s is not None and not lease_s > 0:
            raise StoreError(f"lease_s must be > 0 seconds (or None: batches hold until answered), got {lease_s!r}")
        #: an open batch with no answer for this many seconds returns its unanswered items to the pool
        self.lease_s = None if lease_s is None else float(lease_s)
        self.path = Path(path)
        self.synchronous = sync
        self._local = threading.local()
        # (owning thread, connection); connections of finished threads are closed when the next one opens
        self._conns: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._conns_lock = threading.Lock()
        self._pid = os.getpid()
        self._inherited: list = []  # a forked child keeps, never closes, its parent's connections
        self._closed = False
        if self.path.is_dir():
            raise StoreError(f"label store path {self.path} is a directory; expected a .sqlite file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of label store {self.path} ({_one_line(exc)}): "
                             "create it or pick a writable location") from exc
        try:
            conn = self._conn()
            self._prepare(conn)
            # a damaged page is found now (about 0.2 s per 200,000 answers), not halfway through a labelling run
            problems = [str(r[0]) for r in conn.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError("database disk image is malformed: " + "; ".join(problems))
        except BaseException as exc:
            self.close()
            if isinstance(exc, (sqlite3.Error, _CommitFailed)):
                raise _store_error(self.path, exc, opening=True) from exc
            raise

    # -- schema and migration ----------------------------------------------------------------------------
    @staticmethod
    def _has_table(conn, name: str) -> bool:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() \
            is not None

    def _schema_version(self, conn) -> Optional[int]:
        """The store's schema version: the highest of meta's ``schema_version`` (written once, at creation) and
        the ``to_version`` of every appended ``schema_history`` row; None for an empty database."""
        if not self._has_table(conn, "meta"):
            return None
        row = conn.execute("SELECT value_json FROM meta WHERE key = 'schema_version'").fetchone()
        versions = [] if row is None else [int(json.loads(row[0]))]
        if self._has_table(conn, "schema_history"):
            top = conn.execute("SELECT MAX(to_version) FROM schema_history").fetchone()[0]
            if top is not None:
                versions.append(int(top))
        return max(versions) if versions else None

    def _check_newer(self, version: Optional[int]) -> None:
        if version is not None and version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} has label-store schema version {version}; this "
                             f"alworkbench reads up to version {SCHEMA_VERSION}: upgrade alworkbench")

    def _append_schema_history(self, conn, from_version: Optional[int], details: Optional[dict] = None) -> None:
        """One row for this creation or upgrade (the only write a schema change makes to the store's bookkeeping:
        meta's schema_version is inserted at creation and never rewritten)."""
        from .. import __version__

        if from_version is None:
            conn.execute("INSERT INTO meta(key, value_json) VALUES ('schema_version', ?)",
                         (json.dumps(SCHEMA_VERSION),))
        conn.execute("INSERT INTO schema_history(from_version, to_version, created_at, software, details_json)"
                     " VALUES (?, ?, ?, ?, ?)", (from_version, SCHEMA_VERSION, self._now(conn),
                                                 f"alworkbench {__version__}",
                                                 None if details is None else json.dumps(details)))

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Create the tables, or upgrade an older store, in one write transaction (BEGIN IMMEDIATE: a second
        process opening the store at the same time waits, then finds it current and writes nothing)."""
        version = self._schema_version(conn)
        self._check_newer(version)
        if version == SCHEMA_VERSION:
            return  # nothing to write: a current store also opens (for reading) on a read-only disk
        with self._write(conn):
            version = self._schema_version(conn)  # another process may have prepared it meanwhile
            self._check_newer(version)
            if version == SCHEMA_VERSION:
                return
            for stmt in _DDL_TABLES:
                conn.execute(stmt)
            for table, column, decl in _ADDED_COLUMNS:
                have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
            for stmt in _DDL_AFTER:
                conn.execute(stmt)
            details = None
            if version == 1:
                details = self._migrate_v1(conn)  # 2 -> 3 adds events.path_json, 3 -> 4 schema_history
            self._append_schema_history(conn, version, details)

    def _migrate_v1(self, conn: sqlite3.Connection) -> dict:
        """Version 1 kept round reports, the model version and guideline acknowledgements in overwritten meta
        keys. Turn them into appended records (once: this runs inside the transaction that bumps the schema
        version). The old keys stay untouched for the record and are never written again. Returns the counts
        (kept in the upgrade's schema_history row)."""
        now = time.time()
        meta = {k: json.loads(v) for k, v in conn.execute("SELECT key, value_json FROM meta")}
        n = {"reports": 0, "models": 0, "acks": 0}
        for rep in meta.get("reports") or []:
            if isinstance(rep, dict):
                self._insert_record(conn, REPORT, rep, now)
                n["reports"] += 1
        version = meta.get("model_version")
        if isinstance(version, int) and not isinstance(version, bool) and version > 0:
            self._insert_record(conn, MODEL, {"version": version, "migrated_from": "meta:model_version"}, now)
            n["models"] += 1
        for key, value in sorted(meta.items()):
            if key.startswith(_LEGACY_ACK_PREFIX) and value is not None:
                self._insert_record(conn, GUIDELINE_ACK, {"annotator": key[len(_LEGACY_ACK_PREFIX):],
                                                          "version": str(value)}, now)
                n["acks"] += 1
        # batches saved before annotators were recorded belong to whoever answered in them
        conn.execute("UPDATE batches SET annotator = COALESCE((SELECT e.annotator FROM events e"
                     " WHERE e.batch_id = batches.batch_id AND e.kind != 'undo' ORDER BY e.id LIMIT 1), '')"
                     " WHERE annotator = ''")
        conn.execute("INSERT INTO meta(key, value_json) VALUES ('migrated_v1_to_v2', ?)",
                     (json.dumps({"at": now, **n}),))
        return {"migrated_v1": n}

    # -- connections and transactions -------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"label store {self.path} is closed")
        if os.getpid() != self._pid:  # forked: SQLite handles must not cross fork(); open fresh ones
            self._conns_lock = threading.Lock()  # another thread may have held the old one at fork time
            self._inherited.append(self._conns)
            self._conns = []
            self._local = threading.local()
            self._pid = os.getpid()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise _store_error(self.path, exc, opening=True) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: SQLite refused WAL journal mode (got {mode!r}); "
                                 "is the file on a network file system? Move the project to a local disk")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise _store_error(self.path, exc, opening=True) from exc
            raise
        self._local.conn = conn
        with self._conns_lock:
            dead = [c for t, c in self._conns if not t.is_alive()]
            self._conns = [(t, c) for t, c in self._conns if t.is_alive()]
            self._conns.append((threading.current_thread(), conn))
        for c in dead:
            c.close()
        return conn

    def _discard_conn(self) -> None:
        """Close this thread's connection (after a failed COMMIT its state is unknown); the next call opens
        a fresh one."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            return
        self._local.conn = None
        with self._conns_lock:
            self._conns = [(t, c) for t, c in self._conns if c is not conn]
        try:
            conn.close()
        except sqlite3.Error:
            pass

    @staticmethod
    def _db_errors() -> tuple:
        """The driver's exception classes that public methods turn into one-line StoreErrors."""
        return (sqlite3.Error,)

    def _translate_error(self, exc: BaseException) -> StoreError:
        return _store_error(self.path, exc)

    def _before_copy(self, conn) -> None:
        """Before rows are copied in with their ids and times (alworkbench.labels.migrate): nothing for SQLite."""

    def _after_copy(self, conn) -> None:
        """After rows were copied in with their ids (alworkbench.labels.migrate): nothing to do for SQLite
        (AUTOINCREMENT follows explicit ids)."""

    def _write(self, conn: sqlite3.Connection) -> "_Write":
        return _Write(conn, self.busy_timeout_s, self.path)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self._conn().execute(sql, params).fetchall()

    def close(self) -> None:
        """Close every connection this store opened (from any thread). Idempotent."""
        self._closed = True
        with self._conns_lock:
            conns, self._conns = self._conns, []
        if os.getpid() != self._pid:  # a forked child must not close its parent's handles
            self._inherited.append(conns)
            return
        for _, c in conns:
            try:
                c.close()
            except sqlite3.Error:  # closing from another thread mid-use, or a failed checkpoint: nothing to do
                pass

    def __enter__(self) -> "LabelStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"LabelStore({str(self.path)!r}, {state})"

    # -- writing ------------------------------------------------------------------------------------------
    @_translated
    def record(self, sample_id: str, answer: Answer, *, round: int, annotator: str, batch_id: str = "",
               model_version: int = 0, strategy: str = "", score: Optional[float] = None,
               prediction: Any = None, shown_at: Optional[float] = None, uid: Optional[str] = None) -> int:
        """Append one answer event; return its id once committed.

        Raises DuplicateAnswerError when ``sample_id`` already has an active (not undone) answer in ``round``.
        ``time_spent_s`` comes from the answer, or from ``shown_at`` (epoch seconds) when the answer has none.
        ``uid`` is the call's idempotency key (a fresh uuid4 by default): recording the same uid again returns
        the first call's event id; if COMMIT fails, the key is re-read on a fresh connection, so the id is
        returned when the answer is durable after all and StoreError is raised only when it is not stored.
        """
        _check_id(sample_id, "sample_id")
        _check_id(annotator, "annotator")
        _check_round(round)
        uid = uuid.uuid4().hex if uid is None else _check_id(uid, "uid")
        value = _answer_value(answer)
        path = _answer_path(answer)
        now = time.time()
        spent = answer.time_spent_s
        if spent is None and shown_at is not None:
            spent = max(0.0, now - float(shown_at))
        row = (answer.kind, sample_id, value, answer.note or "", round, batch_id or "", annotator, now,
               None if shown_at is None else float(shown_at), None if spent is None else float(spent),
               int(model_version), strategy or "", _encode_score(score), _encode_prediction(prediction), uid, path)
        return self._insert_answer(row, uid, sample_id, round)

    def _insert_answer(self, row: tuple, uid: str, sample_id: str, round: int) -> int:
        """The transaction of ``record``: idempotency key, the one-active-answer check, the insert."""
        conn = self._conn()
        try:
            with self._write(conn):
                same = conn.execute("SELECT id, sample_id FROM events WHERE uid = ?", (uid,)).fetchone()
                if same is not None:  # a retried call: the first one was stored
                    if same[1] != sample_id:
                        raise StoreError(f"uid {uid!r} was already used for item {same[1]!r} in {self.path}; "
                                         "use a fresh uid per answer")
                    return int(same[0])
                dup = conn.execute(f"SELECT e.id FROM events e WHERE e.sample_id = ? AND e.round = ? AND {_ACTIVE}"
                                   " LIMIT 1", (sample_id, round)).fetchone()
                if dup is not None:
                    raise DuplicateAnswerError(sample_id, round)
                cur = conn.execute(
                    "INSERT INTO events(kind, sample_id, value_json, note, round, batch_id, annotator, created_at,"
                    " shown_at, time_spent_s, model_version, strategy, score, prediction_json, uid, path_json)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
                eid = int(cur.lastrowid)
        except _CommitFailed as exc:
            return self._confirm_event(uid, sample_id, exc)
        return eid

    def _confirm_event(self, uid: str, sample_id: str, failure: _CommitFailed) -> int:
        """COMMIT of ``uid``'s answer raised: look for it on a fresh connection. Durable -> its id."""
        self._discard_conn()
        try:
            fresh = sqlite3.connect(str(self.path), timeout=self.busy_timeout_s)
            try:
                row = fresh.execute("SELECT id FROM events WHERE uid = ?", (uid,)).fetchone()
            finally:
                fresh.close()
        except sqlite3.Error as exc:
            raise StoreError(f"saving the answer for {sample_id!r} failed ({_one_line(failure)}) and {self.path} "
                             f"cannot be re-read to check it ({_one_line(exc)}): fix the disk, reopen the project "
                             f"and look for uid {uid}") from exc
        if row is not None:
            return int(row[0])
        raise _store_error(self.path, failure, f"the answer for {sample_id!r} was not saved") from failure.exc

    @_translated
    def undo(self, annotator: Optional[str] = None) -> dict:
        """Undo the latest still-active answer (of ``annotator`` when given); return that answer's event.

        Repeated calls walk further back. Raises NothingToUndoError when there is nothing left to undo.
        """
        conn = self._conn()
        with self._write(conn):
            sql = _SELECT_EVENTS + f" WHERE {_ACTIVE}"
            params: tuple = ()
            if annotator is not None:
                sql += " AND e.annotator = ?"
                params = (annotator,)
            row = conn.execute(sql + " ORDER BY e.id DESC LIMIT 1", params).fetchone()
            if row is None:
                who = f" by annotator {annotator!r}" if annotator is not None else ""
                raise NothingToUndoError(f"nothing to undo: no active answer{who} in {self.path.name}")
            ev = _row_to_event(row)
            conn.execute(
                "INSERT INTO events(kind, sample_id, value_json, note, round, batch_id, annotator, created_at,"
                " model_version, strategy, undoes) VALUES ('undo', ?, NULL, '', ?, ?, ?, ?, ?, ?, ?)",
                (ev["sample_id"], ev["round"], ev["batch_id"], annotator or ev["annotator"], time.time(),
                 ev["model_version"], ev["strategy"], ev["id"]))
        return ev

    @_translated
    def supersede(self, event_id: int, answer: Answer, *, annotator: str) -> int:
        """Change an earlier answer without overwriting it: in one transaction, append an undo of answer event
        ``event_id`` (active, given by ``annotator``) and a new answer for the same item, with the same round,
        batch, strategy, score, model version and prediction. Returns the new event's id."""
        _check_id(annotator, "annotator")
        value = _answer_value(answer)
        conn = self._conn()
        with self._write(conn):
            old = conn.execute(
                "SELECT e.sample_id, e.round, e.batch_id, e.model_version, e.strategy, e.score, e.prediction_json,"
                f" e.annotator FROM events e WHERE e.id = ? AND {_ACTIVE} AND {_NOT_GOLD}", (int(event_id),)).fetchone()
            if old is None:
                raise NothingToUndoError(f"answer {int(event_id)} cannot be changed: it is not active any more "
                                         "(undone or changed meanwhile), or it was given on a known-answer item")
            sid, round_, batch_id, version, strategy, score, pred, who = old
            if who != annotator:
                raise NothingToUndoError(f"that answer is {who}'s: only they can change it (a reviewer corrects it)")
            now = time.time()
            conn.execute(
                "INSERT INTO events(kind, sample_id, value_json, note, round, batch_id, annotator, created_at,"
                " model_version, strategy, undoes) VALUES ('undo', ?, NULL, '', ?, ?, ?, ?, ?, ?, ?)",
                (sid, round_, batch_id, annotator, now, version, strategy, int(event_id)))
            cur = conn.execute(
                "INSERT INTO events(kind, sample_id, value_json, note, round, batch_id, annotator, created_at,"
                " shown_at, time_spent_s, model_version, strategy, score, prediction_json, uid)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?)",
                (answer.kind, sid, value, answer.note or "", round_, batch_id, annotator, now,
                 None if answer.time_spent_s is None else float(answer.time_spent_s), version, strategy, score,
                 pred, uuid.uuid4().hex))
            return int(cur.lastrowid)

    @_translated
    def recent_answers(self, annotator: str, limit: int = 20) -> list[dict]:
        """``annotator``'s latest active answers (not on gold items), newest first."""
        rows = self._read(_SELECT_EVENTS + f" WHERE {_ACTIVE} AND {_NOT_GOLD} AND e.annotator = ?"
                          " ORDER BY e.id DESC LIMIT ?", (annotator, int(limit)))
        return [_row_to_event(r) for r in rows]

    @_translated
    def record_enqueue(self, sample_ids: Iterable[str], round: int, reason: str, annotator: str) -> list[int]:
        """Append one 'enqueue' event per id (e.g. items pushed into a review queue); return the event ids."""
        ids = [_check_id(s, "sample_id") for s in sample_ids]
        _check_round(round)
        _check_id(annotator, "annotator")
        now = time.time()
        value = json.dumps({"reason": str(reason)})
        conn = self._conn()
        out: list[int] = []
        with self._write(conn):
            for sid in ids:
                cur = conn.execute(
                    "INSERT INTO events(kind, sample_id, value_json, note, round, annotator, created_at)"
                    " VALUES ('enqueue', ?, ?, ?, ?, ?, ?)", (sid, value, str(reason), round, annotator, now))
                out.append(int(cur.lastrowid))
        return out

    # -- derived state (computed from events on every call) -----------------------------------------------
    @_translated
    def active_answers(self) -> dict[str, dict]:
        """The latest active (not undone) answer event per sample, of any answer kind (answers on gold items,
        which are scored rather than counted as labels, are left out)."""
        latest: dict[str, tuple] = {}
        for row in self._read(_SELECT_EVENTS + f" WHERE {_ACTIVE} AND {_NOT_GOLD} ORDER BY e.id"):
            latest[row[_SAMPLE_COL]] = row  # decode only the rows that win
        return {sid: _row_to_event(row) for sid, row in latest.items()}

    @_translated
    def active_events(self, *, gold: Optional[bool] = None) -> list[dict]:
        """Every active (not undone) answer event of every annotator, oldest first. ``gold``: True for only the
        answers on gold items, False for only the others, None for both."""
        sql = _SELECT_EVENTS + f" WHERE {_ACTIVE}"
        if gold is True:
            sql += f" AND NOT ({_NOT_GOLD})"
        elif gold is False:
            sql += f" AND {_NOT_GOLD}"
        return [_row_to_event(r) for r in self._read(sql + " ORDER BY e.id")]

    @_translated
    def _current(self) -> dict[str, tuple[str, Optional[str], str]]:
        """Sample id -> (kind, value_json, note) of its latest active answer; a light version of
        ``active_answers`` for the hot paths (UI refresh, retrain)."""
        out: dict[str, tuple[str, Optional[str], str]] = {}
        for sid, kind, raw, note in self._read(
                f"SELECT e.sample_id, e.kind, e.value_json, e.note FROM events e WHERE {_ACTIVE} AND {_NOT_GOLD}"
                " ORDER BY e.id"):
            out[sid] = (kind, raw, note)
        return out

    def labels(self) -> dict[str, str]:
        """Sample id -> class, for samples whose latest active answer is a single label."""
        return {s: json.loads(raw) for s, (kind, raw, _) in self._current().items() if kind == "label"}

    @_translated
    def paths(self) -> dict[str, tuple[str, ...]]:
        """Sample id -> stored taxonomy path (root first, ending in the label) of its current label answer, for
        answers that stored one (taxonomy projects)."""
        out: dict[str, Optional[str]] = {}
        for sid, kind, raw in self._read(f"SELECT e.sample_id, e.kind, e.path_json FROM events e WHERE {_ACTIVE}"
                                         f" AND {_NOT_GOLD} ORDER BY e.id"):
            out[sid] = raw if kind == "label" else None
        return {s: tuple(json.loads(raw)) for s, raw in out.items() if raw is not None}

    def tag_sets(self) -> dict[str, tuple[str, ...]]:
        """Sample id -> sorted tag tuple, for samples whose latest active answer is a tag set."""
        return {s: tuple(json.loads(raw)) for s, (kind, raw, _) in self._current().items() if kind == "tags"}

    def skipped(self) -> set[str]:
        """Samples whose latest active answer is a skip."""
        return {s for s, (kind, _, _) in self._current().items() if kind == "skip"}

    def flagged(self) -> dict[str, str]:
        """Sample id -> note, for samples whose latest active answer is a flag."""
        return {s: note for s, (kind, _, note) in self._current().items() if kind == "flag"}

    @_translated
    def answered_ids(self, round: Optional[int] = None, batch_id: Optional[str] = None) -> set[str]:
        """Samples with an active answer (any kind), optionally only in ``round`` and/or ``batch_id``."""
        return self._answered(self._conn(), round, batch_id)

    @staticmethod
    def _answerers(conn: sqlite3.Connection, ids) -> dict[str, set[str]]:
        """Item id -> the annotators with an active, non-gold answer on it (for the given ids)."""
        out: dict[str, set[str]] = {}
        ids = list(ids)
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            rows = conn.execute(f"SELECT DISTINCT e.sample_id, e.annotator FROM events e WHERE {_ACTIVE} AND {_NOT_GOLD}"
                                f" AND e.sample_id IN ({', '.join('?' * len(chunk))})", chunk).fetchall()
            for sid, who in rows:
                out.setdefault(sid, set()).add(who)
        return out

    @staticmethod
    def _answered(conn: sqlite3.Connection, round: Optional[int] = None, batch_id: Optional[str] = None) -> set[str]:
        sql = f"SELECT DISTINCT e.sample_id FROM events e WHERE {_ACTIVE}"
        params: list[Any] = []
        if round is not None:
            sql += " AND e.round = ?"
            params.append(round)
        if batch_id is not None:
            sql += " AND e.batch_id = ?"
            params.append(batch_id)
        return {r[0] for r in conn.execute(sql, params)}

    def counts(self, names: Sequence[str], multilabel: bool) -> dict[str, int]:
        """Coverage: how many samples currently carry each name (in the order of ``names``).

        Multi-label: a sample tagged ``"animal/cat"`` also counts for ``"animal"``.
        """
        out = {n: 0 for n in names}
        if multilabel:
            for tags in self.tag_sets().values():
                for t in with_ancestors(tags):
                    if t in out:
                        out[t] += 1
        else:
            for lab in self.labels().values():
                if lab in out:
                    out[lab] += 1
        return out

    @_translated
    def events(self, since_id: int = 0) -> list[dict]:
        """All events with id > ``since_id``, oldest first; ``value`` and ``prediction`` decoded from JSON."""
        return [_row_to_event(r) for r in self._read(_SELECT_EVENTS + " WHERE e.id > ? ORDER BY e.id",
                                                       (int(since_id),))]

    @_translated
    def answer_times(self, annotator: str, limit: int = 200) -> list[float]:
        """Seconds ``annotator`` spent on each of their latest ``limit`` answers, newest first (answers later undone
        count too: the time was spent; answers without a recorded time are left out)."""
        rows = self._read(f"SELECT time_spent_s FROM events WHERE annotator = ? AND kind IN ({_ANSWER_KINDS_SQL})"
                          " AND time_spent_s IS NOT NULL ORDER BY id DESC LIMIT ?", (annotator, int(limit)))
        return [float(r[0]) for r in rows]

    @_translated
    def n_events(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM events")[0][0])

    @_translated
    def stamp(self) -> tuple[int, int]:
        """(last event id, last record id): changes with every write of any process (both logs only grow)."""
        row = self._read("SELECT (SELECT COALESCE(MAX(id), 0) FROM events), (SELECT COALESCE(MAX(id), 0) FROM records)")
        return int(row[0][0]), int(row[0][1])

    @_translated
    def last_round(self) -> int:
        """The highest round seen in events or saved batches (0 for an empty store)."""
        return self._last_round(self._conn())

    @staticmethod
    def _last_round(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT MAX(r) FROM (SELECT MAX(round) AS r FROM events"
                           " UNION ALL SELECT MAX(round) FROM batches) AS rounds").fetchone()
        return int(row[0] or 0)

    # -- batches ------------------------------------------------------------------------------------------
    @_translated
    def save_batch(self, batch_id: str, round: int, strategy: str, model_version: int,
                   item_ids: Sequence[str], scores: Optional[Sequence[Optional[float]]] = None,
                   predictions: Optional[Sequence[Any]] = None, *, annotator: str = "") -> None:
        """Store a batch under a caller-chosen id and round (sessions use ``create_batch``, which assigns
        items and round inside one transaction).

        Saving the same batch again with identical content is a no-op; a different batch under an existing
        id is refused (StoreError), so a batch is never silently replaced.
        """
        _check_id(batch_id, "batch_id")
        _check_round(round)
        row = self._batch_values(batch_id, round, strategy, model_version, item_ids, scores, predictions,
                                 annotator, None)
        conn = self._conn()
        with self._write(conn):
            old = conn.execute("SELECT round, strategy, model_version, item_ids_json, scores_json,"
                               " predictions_json, annotator FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
            if old is not None:
                if tuple(old) == row[1:4] + row[5:9]:
                    return
                raise StoreError(f"batch {batch_id!r} already exists with different content; "
                                 "batches are never replaced, use a new batch id")
            self._insert_batch(conn, row)

    @staticmethod
    def _batch_values(batch_id, round, strategy, model_version, item_ids, scores, predictions, annotator,
                      supersedes) -> tuple:
        ids = [_check_id(s, "item id") for s in item_ids]
        if len(set(ids)) != len(ids):
            raise StoreError(f"batch {batch_id!r} lists {len(ids) - len(set(ids))} item id(s) more than once")
        scores = [None] * len(ids) if scores is None else list(scores)
        predictions = [None] * len(ids) if predictions is None else list(predictions)
        if len(scores) != len(ids) or len(predictions) != len(ids):
            raise StoreError(f"batch {batch_id!r}: {len(ids)} item ids but {len(scores)} scores and "
                             f"{len(predictions)} predictions")
        return (batch_id, round, strategy or "", int(model_version), time.time(), json.dumps(ids),
                json.dumps([_encode_score(s) for s in scores]),
                "[" + ", ".join(_encode_prediction(p) or "null" for p in predictions) + "]",
                annotator or "", supersedes)

    @staticmethod
    def _insert_batch(conn: sqlite3.Connection, row: tuple) -> None:
        conn.execute("INSERT INTO batches(batch_id, round, strategy, model_version, created_at, item_ids_json,"
                     " scores_json, predictions_json, annotator, supersedes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     row)

    @_translated
    def create_batch(self, annotator: str, strategy: str, model_version: int,
                     candidates: Sequence[tuple[str, Optional[float], Any]], n: int, *,
                     round: Optional[int] = None, supersedes: Optional[str] = None, keep: Sequence[str] = (),
                     allow_answered: bool = False, overlap: Sequence[str] = (), overlap_k: int = 2,
                     gold: Sequence[tuple[int, str, Optional[float], Any]] = ()) -> Optional[dict]:
        """Hand ``annotator`` a new batch, atomically with respect to every other writer of the file.

        ``candidates`` is an ordered list of ``(item_id, score, prediction)``. Inside one BEGIN IMMEDIATE
        transaction: drop candidates that already have an active answer (unless ``allow_answered``: review
        queues and undo) or that sit unanswered in another annotator's open batch, take the first ``n``,
        assign ``round = last_round() + 1`` when ``round`` is None, and insert the batch. ``keep`` lists item
        ids (the answered items of the batch named by ``supersedes``) placed first, unchanged. Returns the
        batch as ``load_batch`` does, or None (and writes nothing) when no candidate is left.

        ``overlap`` names candidates that go to several annotators: one of them may be handed out although others
        answered it, while fewer than ``overlap_k`` different annotators gave it a (non-gold) answer and
        ``annotator`` has not. ``gold`` lists ``(position, item_id, score, prediction)`` gold items mixed into the
        batch (hidden gold): allowed whether answered or not, never while they wait in another annotator's batch;
        they do not count towards ``n``.
        """
        _check_id(annotator, "annotator")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise StoreError(f"n must be an integer >= 0, got {n!r}")
        if round is not None:
            _check_round(round)
        keep = [_check_id(k, "kept item id") for k in dict.fromkeys(keep)]
        cands = []
        seen = set(keep)
        for c in candidates:
            sid, score, pred = c
            if _check_id(sid, "candidate item id") not in seen:
                seen.add(sid)
                cands.append((sid, score, pred))
        conn = self._conn()
        with self._write(conn):
            old = None
            if supersedes is not None:
                rows = conn.execute(self._SELECT_BATCH + " WHERE batch_id = ?", (supersedes,)).fetchall()
                if not rows:
                    raise StoreError(f"batch {supersedes!r} to supersede is not in {self.path}")
                if conn.execute("SELECT batch_id FROM batches WHERE supersedes = ?", (supersedes,)).fetchone():
                    raise StoreError(f"batch {supersedes!r} was already superseded in {self.path}; "
                                     "reload the open batch and retry")
                old = self._batch_row(rows[0])
            reserved = self._reserved(conn, annotator)
            blocked = set(reserved)
            if not allow_answered:
                blocked |= self._answered(conn)
            ov = set(overlap)
            if ov:
                by = self._answerers(conn, ov)
                ok_ov = {sid for sid in ov if sid not in reserved and annotator not in by.get(sid, ())
                         and len(by.get(sid, ())) < int(overlap_k)}
                chosen = [c for c in cands if (c[0] in ok_ov if c[0] in ov else c[0] not in blocked)][:n]
            else:
                chosen = [c for c in cands if c[0] not in blocked][:n]
            if not chosen:
                return None
            taken = {c[0] for c in chosen} | set(keep)
            for pos, sid, sc, pr in sorted(gold, key=lambda g: g[0]):
                if _check_id(sid, "gold item id") not in reserved and sid not in taken:
                    chosen.insert(max(0, min(int(pos), len(chosen))), (sid, sc, pr))
                    taken.add(sid)
            round_ = self._last_round(conn) + 1 if round is None else round
            batch_id = f"r{round_}-{uuid.uuid4().hex[:12]}"
            kept = []
            if keep:
                prev = {} if old is None else {sid: (sc, pr) for sid, sc, pr in
                                               zip(old["item_ids"], old["scores"], old["predictions"])}
                kept = [(sid, *prev.get(sid, (None, None))) for sid in keep]
            items = kept + chosen
            row = self._batch_values(batch_id, round_, strategy, model_version, [c[0] for c in items],
                                     [c[1] for c in items], [c[2] for c in items], annotator, supersedes)
            self._insert_batch(conn, row)
            out = self._batch_row(conn.execute(self._SELECT_BATCH + " WHERE batch_id = ?", (batch_id,)).fetchone())
        return out

    _SELECT_BATCH = ("SELECT batch_id, round, strategy, model_version, created_at, item_ids_json, scores_json,"
                     " predictions_json, annotator, supersedes FROM batches")
    # the latest batch of an annotator that no other batch replaced
    _NOT_SUPERSEDED = "NOT EXISTS (SELECT 1 FROM batches s WHERE s.supersedes = batches.batch_id)"

    @staticmethod
    def _batch_row(row: Sequence[Any]) -> dict:
        preds = json.loads(row[7])
        return {"batch_id": row[0], "round": row[1], "strategy": row[2], "model_version": row[3],
                "created_at": row[4], "item_ids": json.loads(row[5]), "scores": json.loads(row[6]),
                "predictions": [None if p is None else _decode_prediction_obj(json.dumps(p)) for p in preds],
                "annotator": row[8], "supersedes": row[9]}

    @_translated
    def load_batch(self, batch_id: str) -> dict:
        """The saved batch as a dict (item_ids, scores, predictions as Prediction objects); StoreError if absent."""
        rows = self._read(self._SELECT_BATCH + " WHERE batch_id = ?", (batch_id,))
        if not rows:
            n = self._read("SELECT COUNT(*) FROM batches")[0][0]
            raise StoreError(f"no batch {batch_id!r} in {self.path.name} ({n} batch(es) saved)")
        return self._batch_row(rows[0])

    @_translated
    def open_batch(self, annotator: Optional[str] = None) -> Optional[dict]:
        """The most recently saved batch of ``annotator`` (of anyone when None) that no later batch
        supersedes; None if none. The caller decides whether it still has unanswered items."""
        sql = self._SELECT_BATCH + " WHERE " + self._NOT_SUPERSEDED
        params: tuple = ()
        if annotator is not None:
            sql += " AND annotator = ?"
            params = (annotator,)
        rows = self._read(sql + " ORDER BY rowid DESC LIMIT 1", params)
        return self._batch_row(rows[0]) if rows else None

    @_translated
    def reserved_ids(self, exclude_annotator: Optional[str] = None) -> set[str]:
        """Items waiting unanswered in another annotator's latest open batch: not to be handed to anyone else."""
        return self._reserved(self._conn(), exclude_annotator)

    def _reserved(self, conn: sqlite3.Connection, exclude: Optional[str]) -> set[str]:
        # batches from before annotators were recorded ('') reserve nothing: their items return to the pool;
        # so do released batches (a session closed, its kernel shut down) and batches whose lease ran out
        rows = conn.execute(
            "SELECT batch_id, round, item_ids_json, created_at, annotator, strategy FROM batches WHERE rowid IN"
            " (SELECT MAX(rowid) FROM batches WHERE " + self._NOT_SUPERSEDED + " AND annotator != '' AND annotator != ?"
            " GROUP BY annotator)", ("" if exclude is None else exclude,)).fetchall()
        out: set[str] = set()
        for batch_id, round_, raw, created, who, strategy in rows:
            if str(strategy).startswith(GOLD_PREFIX):
                continue  # a qualification test holds nothing: every candidate answers the same gold items
            if not self._holds(conn, batch_id, round_, created, who):
                continue
            ids = json.loads(raw)
            out |= set(ids) - self._answered(conn, round_)
        return out

    def _holds(self, conn: sqlite3.Connection, batch_id: str, round_: int, created_at: float, annotator: str) -> bool:
        """Does this open batch still hold its unanswered items? Not once released, nor once its lease ran out
        (no answer in it for ``lease_s`` seconds)."""
        if conn.execute("SELECT 1 FROM records WHERE kind = ? AND json_extract(value_json, '$.batch_id') = ? LIMIT 1",
                        (RELEASE, batch_id)).fetchone():
            return False
        if self.lease_s is None:
            return True
        last = conn.execute("SELECT MAX(created_at) FROM events WHERE round = ? AND annotator = ?",
                            (round_, annotator)).fetchone()[0]
        return self._now(conn) - max(float(created_at), float(last or 0)) <= self.lease_s

    def _now(self, conn) -> float:
        """The clock leases are measured on: this machine's for SQLite (one machine shares a file)."""
        return time.time()

    @_translated
    def batch_holds(self, batch_id: str) -> bool:
        """True while the batch reserves its unanswered items (not released, lease not run out)."""
        conn = self._conn()
        row = conn.execute("SELECT round, created_at, annotator FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
        if row is None:
            raise StoreError(f"no batch {batch_id!r} in {self.path.name}")
        return self._holds(conn, batch_id, row[0], row[1], row[2])

    def release_batch(self, batch_id: str, reason: str = "closed") -> int:
        """Give the unanswered items of an open batch back to the pool (appended record); answers stay."""
        _check_id(batch_id, "batch_id")
        return self.append_record(RELEASE, {"batch_id": batch_id, "reason": str(reason)})

    @_translated
    def batches(self) -> list[dict]:
        """All saved batches, oldest first."""
        return [self._batch_row(r) for r in self._read(self._SELECT_BATCH + " ORDER BY rowid")]

    @_translated
    def batch_origins(self, after: int = 0) -> tuple[list[dict], int]:
        """The batches saved after position ``after`` (0: from the first), oldest first, without their predictions
        (``batch_id``, ``strategy``, ``item_ids``, ``scores``, ``supersedes``), and the position to pass next time.
        For readers that follow the batch log as it grows (a session asks which items were random picks at every
        calibration) without reading and decoding the whole log each time. Batches are append-only and written
        one transaction at a time, so positions only grow."""
        rows = self._read("SELECT rowid, batch_id, strategy, item_ids_json, scores_json, supersedes FROM batches"
                          " WHERE rowid > ? ORDER BY rowid", (int(after),))
        out = [{"batch_id": r[1], "strategy": r[2], "item_ids": json.loads(r[3]), "scores": json.loads(r[4]),
                "supersedes": r[5]} for r in rows]
        return out, (int(rows[-1][0]) if rows else int(after))

    # -- records: reports, model versions, guideline acknowledgements (append-only) -----------------------
    @staticmethod
    def _encode_record(kind: str, value: Any) -> str:
        _check_id(kind, "record kind")
        if not isinstance(value, dict):
            raise StoreError(f"a {kind!r} record must be a dict, got {type(value).__name__}")
        clash = [k for k in _RESERVED_RECORD_KEYS if k in value]
        if clash:
            raise StoreError(f"a {kind!r} record may not carry key(s) {', '.join(map(repr, clash))}: the store "
                             "sets them")
        try:
            return json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"{kind!r} record is not JSON-serialisable: {exc}") from exc

    def _insert_record(self, conn: sqlite3.Connection, kind: str, value: dict, now: Optional[float] = None) -> int:
        raw = self._encode_record(kind, value)
        cur = conn.execute("INSERT INTO records(kind, value_json, created_at) VALUES (?, ?, ?)",
                           (kind, raw, time.time() if now is None else now))
        return int(cur.lastrowid)

    @_translated
    def append_record(self, kind: str, value: dict) -> int:
        """Append one record (a JSON-serialisable dict) of ``kind``; return its id once committed."""
        self._encode_record(kind, value)  # validate before taking the write lock
        conn = self._conn()
        with self._write(conn):
            return self._insert_record(conn, kind, value)

    @_translated
    def records(self, kind: str) -> list[dict]:
        """Every record of ``kind``, oldest first: the stored dict plus ``id`` and ``created_at``."""
        return [{**json.loads(raw), "id": rid, "created_at": at} for rid, raw, at in self._read(
            "SELECT id, value_json, created_at FROM records WHERE kind = ? ORDER BY id", (kind,))]

    def append_report(self, d: dict) -> int:
        """Keep one round report (every process's reports are kept, in the order they were written)."""
        return self.append_record(REPORT, d)

    def reports(self) -> list[dict]:
        return self.records(REPORT)

    @_translated
    def append_model(self, info: dict) -> int:
        """Record a newly trained model; its version (max existing + 1, assigned inside one transaction so two
        processes never get the same number) is stored in the record and returned."""
        self._encode_record(MODEL, {k: v for k, v in info.items() if k != "version"})
        conn = self._conn()
        with self._write(conn):
            version = self._model_version(conn) + 1
            self._insert_record(conn, MODEL, {**info, "version": version})
        return version

    def models(self) -> list[dict]:
        return self.records(MODEL)

    @_translated
    def latest_model(self) -> Optional[dict]:
        rows = self._read("SELECT id, value_json, created_at FROM records WHERE kind = ?"
                          " ORDER BY CAST(json_extract(value_json, '$.version') AS INTEGER) DESC, id DESC LIMIT 1", (MODEL,))
        return {**json.loads(rows[0][1]), "id": rows[0][0], "created_at": rows[0][2]} if rows else None

    @_translated
    def latest_model_summary(self) -> Optional[dict]:
        """The latest model record merged with the latest ``calibration`` record of that version (temperature,
        cross-validated accuracy, folds), which the session appends once the model's calibration finished."""
        m = self.latest_model()
        if m is None:
            return None
        rows = self._read("SELECT value_json FROM records WHERE kind = 'calibration'"
                          " AND CAST(json_extract(value_json, '$.version') AS INTEGER) = ? ORDER BY id DESC LIMIT 1",
                          (int(m["version"]),))
        cal = json.loads(rows[0][0]) if rows else {}
        return {**m, **{k: v for k, v in cal.items() if k != "version"}, "calibrated": bool(rows)}

    @_translated
    def model_version(self) -> int:
        """The highest model version recorded (0 before the first model)."""
        return self._model_version(self._conn())

    @staticmethod
    def _model_version(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT MAX(CAST(json_extract(value_json, '$.version') AS INTEGER)) FROM records"
                           " WHERE kind = ?", (MODEL,)).fetchone()
        return int(row[0] or 0)

    def acknowledge_guideline(self, annotator: str, version) -> int:
        """Record that ``annotator`` read guideline ``version`` (appended; earlier acknowledgements stay)."""
        _check_id(annotator, "annotator")
        return self.append_record(GUIDELINE_ACK, {"annotator": annotator, "version": str(version)})

    @_translated
    def annotators(self) -> list[str]:
        """Every annotator the project knows, sorted: who answered, who was handed a batch, who acknowledged a
        guideline."""
        rows = self._read("SELECT annotator FROM events UNION SELECT annotator FROM batches UNION"
                          " SELECT json_extract(value_json, '$.annotator') FROM records WHERE kind = ?",
                          (GUIDELINE_ACK,))
        return sorted({str(r[0]) for r in rows if r[0]})

    @_translated
    def acknowledged_guideline(self, annotator: str) -> Optional[str]:
        """The guideline version ``annotator`` acknowledged last, or None."""
        rows = self._read("SELECT json_extract(value_json, '$.version') FROM records WHERE kind = ?"
                          " AND json_extract(value_json, '$.annotator') = ? ORDER BY id DESC LIMIT 1",
                          (GUIDELINE_ACK, annotator))
        return None if not rows or rows[0][0] is None else str(rows[0][0])

    # -- meta ---------------------------------------------------------------------------------------------
    @_translated
    def get_meta(self, key: str, default: Any = None) -> Any:
        """A meta value. The version-1 keys ``reports``, ``model_version`` and ``guideline_ack:<name>`` are
        answered from the appended records (read-only views kept for older callers)."""
        if key == "reports":
            reps = self.reports()
            return [{k: v for k, v in r.items() if k not in _RESERVED_RECORD_KEYS} for r in reps] if reps else default
        if key == "model_version":
            v = self.model_version()
            return v if v else default
        if isinstance(key, str) and key.startswith(_LEGACY_ACK_PREFIX):
            ack = self.acknowledged_guideline(key[len(_LEGACY_ACK_PREFIX):])
            return default if ack is None else ack
        if key == "schema_version":  # the current version (meta keeps the one the store was created at)
            return self.schema_version()
        rows = self._read("SELECT value_json FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    @_translated
    def set_meta(self, key: str, value: Any) -> None:
        """Write a meta key once. Writing the value it already holds is a no-op; another value raises StoreError
        (meta is never overwritten: what changes over time is an appended record)."""
        _check_id(key, "meta key")
        if key == "schema_version":
            raise StoreError("meta key 'schema_version' is managed by the label store")
        if key in _LEGACY_KEYS or key.startswith(_LEGACY_ACK_PREFIX):
            raise StoreError(f"meta key {key!r} is no longer written: reports, model versions and guideline "
                             "acknowledgements are appended records (append_report, append_model, "
                             "acknowledge_guideline)")
        try:
            raw = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"meta value for {key!r} is not JSON-serialisable: {exc}") from exc
        conn = self._conn()
        with self._write(conn):  # the writers' lock: the check and the insert are one step for every client
            row = conn.execute("SELECT value_json FROM meta WHERE key = ?", (key,)).fetchone()
            if row is None:
                conn.execute("INSERT INTO meta(key, value_json) VALUES (?, ?)", (key, raw))
            elif json.loads(row[0]) != json.loads(raw):
                raise StoreError(f"meta key {key!r} is written once and already holds another value: meta is never "
                                 "overwritten (keep changing values as appended records: append_record)")

    # -- schema -------------------------------------------------------------------------------------------
    @_translated
    def schema_version(self) -> int:
        """The store's schema version (SCHEMA_VERSION once opened: an older store is upgraded on open)."""
        return int(self._schema_version(self._conn()) or 0)

    @_translated
    def schema_history(self) -> list[dict]:
        """Every creation and upgrade of the store's schema, oldest first: ``from_version`` (None: created),
        ``to_version``, ``created_at``, ``software`` and ``details``. A store upgraded from before version 4 has
        no row for its creation or earlier upgrades (meta's ``schema_version`` keeps the version it had)."""
        return [{"id": i, "from_version": f, "to_version": t, "created_at": at, "software": sw,
                 "details": None if d is None else json.loads(d)}
                for i, f, t, at, sw, d in self._read("SELECT id, from_version, to_version, created_at, software,"
                                                      " details_json FROM schema_history ORDER BY id")]

    @property
    def backend(self) -> str:
        return "sqlite"

    def describe(self) -> dict:
        """Which store this is, for people: ``backend`` and ``location`` (never a password)."""
        return {"backend": self.backend, "location": str(self.path)}

    # -- maintenance --------------------------------------------------------------------------------------
    @_translated
    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` result: ``"ok"`` for a healthy file."""
        return "; ".join(str(r[0]) for r in self._read("PRAGMA integrity_check"))


def is_postgres_url(location: Any) -> bool:
    """True for a ``postgresql://`` (or ``postgres://``) URL: a PostgreSQL label store, not a SQLite file."""
    return isinstance(location, str) and location.split(":", 1)[0].lower() in ("postgresql", "postgres")


def open_store(location, *, lease_s: Optional[float] = None, **kwargs) -> LabelStore:
    """A label store: PostgreSQL (psycopg, imported only here) for a ``postgresql://`` URL, else the SQLite file
    at ``location``. Both have the same interface and semantics."""
    if is_postgres_url(location):
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            from ..errors import MissingDependencyError
            raise MissingDependencyError("psycopg", "postgresql", "the PostgreSQL label store") from exc
        from .pgstore import PgLabelStore
        return PgLabelStore(location, lease_s=lease_s, **kwargs)
    return LabelStore(location, lease_s=lease_s, **kwargs)
