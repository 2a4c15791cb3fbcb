"""The durable label store: an append-only event log in SQLite (WAL, synchronous=FULL).

Every answer, undo and enqueue is one row of ``events``; rows are never updated or deleted (triggers refuse
it). Current labels, tag sets, skips, flags, coverage and "answered" sets are derived from the log on each
call, never stored as truth. ``record`` returns only after the transaction is committed, so an answer whose
event id was handed back survives a crash of the process (and, with synchronous=FULL, of the machine).

Thread and process safety: each thread gets its own SQLite connection; writes run in ``BEGIN IMMEDIATE``
transactions, so the "one active answer per item and round" rule holds across threads and processes.
A background thread can read (``labels()``, ``events()``) while another thread writes.
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from ..errors import AnswerError, DuplicateAnswerError, NothingToUndoError, StoreError
from ..types import Answer, Prediction
from .schema import with_ancestors

SCHEMA_VERSION = 1
ANSWER_KINDS = ("label", "tags", "skip", "flag")
EVENT_KINDS = ANSWER_KINDS + ("undo", "enqueue")
SYNCHRONOUS_MODES = ("FULL", "NORMAL", "EXTRA")
BUSY_TIMEOUT_MS = 30_000

_KINDS_SQL = ", ".join(f"'{k}'" for k in EVENT_KINDS)
_ANSWER_KINDS_SQL = ", ".join(f"'{k}'" for k in ANSWER_KINDS)
# an answer event is active while no undo event points at it
_ACTIVE = f"e.kind IN ({_ANSWER_KINDS_SQL}) AND NOT EXISTS (SELECT 1 FROM events u WHERE u.undoes = e.id)"

_DDL = f"""
CREATE TABLE IF NOT EXISTS events (
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
    CHECK ((kind = 'undo') = (undoes IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS events_sample_round ON events(sample_id, round);
CREATE INDEX IF NOT EXISTS events_batch ON events(batch_id);
CREATE UNIQUE INDEX IF NOT EXISTS events_undoes ON events(undoes) WHERE undoes IS NOT NULL;
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'events are append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'events are append-only: DELETE refused'); END;
CREATE TABLE IF NOT EXISTS meta (
    key        TEXT PRIMARY KEY,
    value_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id         TEXT    PRIMARY KEY,
    round            INTEGER NOT NULL,
    strategy         TEXT    NOT NULL,
    model_version    INTEGER NOT NULL,
    created_at       REAL    NOT NULL,
    item_ids_json    TEXT    NOT NULL,
    scores_json      TEXT    NOT NULL,
    predictions_json TEXT    NOT NULL
);
"""

_EVENT_COLUMNS = ("id", "kind", "sample_id", "value_json", "note", "round", "batch_id", "annotator",
                  "created_at", "shown_at", "time_spent_s", "model_version", "strategy", "score",
                  "prediction_json", "undoes")
_SAMPLE_COL = _EVENT_COLUMNS.index("sample_id")
_SELECT_EVENTS = "SELECT " + ", ".join("e." + c for c in _EVENT_COLUMNS) + " FROM events e"


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
    return d


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
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (including a failed COMMIT)."""

    def __init__(self, conn: sqlite3.Connection, timeout_s: float):
        self.conn = conn
        self.timeout_s = timeout_s

    def __enter__(self):
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreError(f"label store busy: could not start a write within {self.timeout_s:g} s"
                             f" ({exc}); is another program holding it open for writing?") from exc
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
        elif self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        return False


class LabelStore:
    """Append-only label events in one SQLite file. See the module docstring for the guarantees."""

    def __init__(self, path, *, synchronous: str = "FULL", busy_timeout_s: float = BUSY_TIMEOUT_MS / 1000):
        sync = str(synchronous).upper()
        if sync not in SYNCHRONOUS_MODES:
            raise StoreError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, got {synchronous!r}")
        if not busy_timeout_s > 0:
            raise StoreError(f"busy_timeout_s must be > 0 seconds, got {busy_timeout_s!r}")
        self.busy_timeout_s = float(busy_timeout_s)
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        try:
            try:
                conn.executescript("BEGIN IMMEDIATE;" + _DDL + "COMMIT;")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot prepare label store {self.path}: {exc}") from exc
            with self._write(conn):
                row = conn.execute("SELECT value_json FROM meta WHERE key = 'schema_version'").fetchone()
                if row is None:
                    conn.execute("INSERT INTO meta(key, value_json) VALUES ('schema_version', ?)",
                                 (json.dumps(SCHEMA_VERSION),))
                elif json.loads(row[0]) > SCHEMA_VERSION:
                    raise StoreError(f"{self.path} has label-store schema version {json.loads(row[0])}; this "
                                     f"alworkbench reads up to version {SCHEMA_VERSION}: upgrade alworkbench")
        except BaseException:
            self.close()
            raise

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
            raise StoreError(f"cannot open label store {self.path}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: SQLite refused WAL journal mode (got {mode!r}); "
                                 "is the file on a network file system?")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot open label store {self.path}: {exc}") from exc
            raise
        self._local.conn = conn
        with self._conns_lock:
            dead = [c for t, c in self._conns if not t.is_alive()]
            self._conns = [(t, c) for t, c in self._conns if t.is_alive()]
            self._conns.append((threading.current_thread(), conn))
        for c in dead:
            c.close()
        return conn

    def _write(self, conn: sqlite3.Connection) -> "_Write":
        return _Write(conn, self.busy_timeout_s)

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
            except sqlite3.ProgrammingError:  # closing from another thread mid-use: nothing more to do
                pass

    def __enter__(self) -> "LabelStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"LabelStore({str(self.path)!r}, {state})"

    # -- writing ------------------------------------------------------------------------------------------
    def record(self, sample_id: str, answer: Answer, *, round: int, annotator: str, batch_id: str = "",
               model_version: int = 0, strategy: str = "", score: Optional[float] = None,
               prediction: Any = None, shown_at: Optional[float] = None) -> int:
        """Append one answer event; return its id once committed.

        Raises DuplicateAnswerError when ``sample_id`` already has an active (not undone) answer in ``round``.
        ``time_spent_s`` comes from the answer, or from ``shown_at`` (epoch seconds) when the answer has none.
        """
        _check_id(sample_id, "sample_id")
        _check_id(annotator, "annotator")
        _check_round(round)
        value = _answer_value(answer)
        now = time.time()
        spent = answer.time_spent_s
        if spent is None and shown_at is not None:
            spent = max(0.0, now - float(shown_at))
        row = (answer.kind, sample_id, value, answer.note or "", round, batch_id or "", annotator, now,
               None if shown_at is None else float(shown_at), None if spent is None else float(spent),
               int(model_version), strategy or "", _encode_score(score), _encode_prediction(prediction))
        conn = self._conn()
        with self._write(conn):
            dup = conn.execute(f"SELECT e.id FROM events e WHERE e.sample_id = ? AND e.round = ? AND {_ACTIVE}"
                               " LIMIT 1", (sample_id, round)).fetchone()
            if dup is not None:
                raise DuplicateAnswerError(sample_id, round)
            cur = conn.execute(
                "INSERT INTO events(kind, sample_id, value_json, note, round, batch_id, annotator, created_at,"
                " shown_at, time_spent_s, model_version, strategy, score, prediction_json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            return int(cur.lastrowid)

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
    def active_answers(self) -> dict[str, dict]:
        """The latest active (not undone) answer event per sample, of any answer kind."""
        latest: dict[str, tuple] = {}
        for row in self._read(_SELECT_EVENTS + f" WHERE {_ACTIVE} ORDER BY e.id"):
            latest[row[_SAMPLE_COL]] = row  # decode only the rows that win
        return {sid: _row_to_event(row) for sid, row in latest.items()}

    def _current(self) -> dict[str, tuple[str, Optional[str], str]]:
        """Sample id -> (kind, value_json, note) of its latest active answer; a light version of
        ``active_answers`` for the hot paths (UI refresh, retrain)."""
        out: dict[str, tuple[str, Optional[str], str]] = {}
        for sid, kind, raw, note in self._read(
                f"SELECT e.sample_id, e.kind, e.value_json, e.note FROM events e WHERE {_ACTIVE} ORDER BY e.id"):
            out[sid] = (kind, raw, note)
        return out

    def labels(self) -> dict[str, str]:
        """Sample id -> class, for samples whose latest active answer is a single label."""
        return {s: json.loads(raw) for s, (kind, raw, _) in self._current().items() if kind == "label"}

    def tag_sets(self) -> dict[str, tuple[str, ...]]:
        """Sample id -> sorted tag tuple, for samples whose latest active answer is a tag set."""
        return {s: tuple(json.loads(raw)) for s, (kind, raw, _) in self._current().items() if kind == "tags"}

    def skipped(self) -> set[str]:
        """Samples whose latest active answer is a skip."""
        return {s for s, (kind, _, _) in self._current().items() if kind == "skip"}

    def flagged(self) -> dict[str, str]:
        """Sample id -> note, for samples whose latest active answer is a flag."""
        return {s: note for s, (kind, _, note) in self._current().items() if kind == "flag"}

    def answered_ids(self, round: Optional[int] = None, batch_id: Optional[str] = None) -> set[str]:
        """Samples with an active answer (any kind), optionally only in ``round`` and/or ``batch_id``."""
        sql = f"SELECT DISTINCT e.sample_id FROM events e WHERE {_ACTIVE}"
        params: list[Any] = []
        if round is not None:
            sql += " AND e.round = ?"
            params.append(round)
        if batch_id is not None:
            sql += " AND e.batch_id = ?"
            params.append(batch_id)
        return {r[0] for r in self._read(sql, params)}

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

    def events(self, since_id: int = 0) -> list[dict]:
        """All events with id > ``since_id``, oldest first; ``value`` and ``prediction`` decoded from JSON."""
        return [_row_to_event(r) for r in self._read(_SELECT_EVENTS + " WHERE e.id > ? ORDER BY e.id",
                                                       (int(since_id),))]

    def n_events(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM events")[0][0])

    def last_round(self) -> int:
        """The highest round seen in events or saved batches (0 for an empty store)."""
        row = self._read("SELECT MAX(r) FROM (SELECT MAX(round) AS r FROM events"
                         " UNION ALL SELECT MAX(round) FROM batches)")
        return int(row[0][0] or 0)

    # -- batches ------------------------------------------------------------------------------------------
    def save_batch(self, batch_id: str, round: int, strategy: str, model_version: int,
                   item_ids: Sequence[str], scores: Optional[Sequence[Optional[float]]] = None,
                   predictions: Optional[Sequence[Any]] = None) -> None:
        """Store a batch so a session can resume it after a restart.

        Saving the same batch again with identical content is a no-op; a different batch under an existing
        id is refused (StoreError), so a batch is never silently replaced.
        """
        _check_id(batch_id, "batch_id")
        _check_round(round)
        ids = [_check_id(s, "item id") for s in item_ids]
        if len(set(ids)) != len(ids):
            raise StoreError(f"batch {batch_id!r} lists {len(ids) - len(set(ids))} item id(s) more than once")
        scores = [None] * len(ids) if scores is None else list(scores)
        predictions = [None] * len(ids) if predictions is None else list(predictions)
        if len(scores) != len(ids) or len(predictions) != len(ids):
            raise StoreError(f"batch {batch_id!r}: {len(ids)} item ids but {len(scores)} scores and "
                             f"{len(predictions)} predictions")
        row = (batch_id, round, strategy or "", int(model_version), time.time(), json.dumps(ids),
               json.dumps([_encode_score(s) for s in scores]),
               "[" + ", ".join(_encode_prediction(p) or "null" for p in predictions) + "]")
        conn = self._conn()
        with self._write(conn):
            old = conn.execute("SELECT round, strategy, model_version, item_ids_json, scores_json,"
                               " predictions_json FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
            if old is not None:
                if tuple(old) == row[1:4] + row[5:]:
                    return
                raise StoreError(f"batch {batch_id!r} already exists with different content; "
                                 "batches are never replaced, use a new batch id")
            conn.execute("INSERT INTO batches(batch_id, round, strategy, model_version, created_at,"
                         " item_ids_json, scores_json, predictions_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)

    _SELECT_BATCH = ("SELECT batch_id, round, strategy, model_version, created_at, item_ids_json, scores_json,"
                     " predictions_json FROM batches")

    @staticmethod
    def _batch_row(row: Sequence[Any]) -> dict:
        preds = json.loads(row[7])
        return {"batch_id": row[0], "round": row[1], "strategy": row[2], "model_version": row[3],
                "created_at": row[4], "item_ids": json.loads(row[5]), "scores": json.loads(row[6]),
                "predictions": [None if p is None else _decode_prediction_obj(json.dumps(p)) for p in preds]}

    def load_batch(self, batch_id: str) -> dict:
        """The saved batch as a dict (item_ids, scores, predictions as Prediction objects); StoreError if absent."""
        rows = self._read(self._SELECT_BATCH + " WHERE batch_id = ?", (batch_id,))
        if not rows:
            n = self._read("SELECT COUNT(*) FROM batches")[0][0]
            raise StoreError(f"no batch {batch_id!r} in {self.path.name} ({n} batch(es) saved)")
        return self._batch_row(rows[0])

    def open_batch(self) -> Optional[dict]:
        """The most recently saved batch (None if none); the caller decides whether it is still open."""
        rows = self._read(self._SELECT_BATCH + " ORDER BY rowid DESC LIMIT 1")
        return self._batch_row(rows[0]) if rows else None

    def batches(self) -> list[dict]:
        """All saved batches, oldest first."""
        return [self._batch_row(r) for r in self._read(self._SELECT_BATCH + " ORDER BY rowid")]

    # -- meta ---------------------------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self._read("SELECT value_json FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def set_meta(self, key: str, value: Any) -> None:
        _check_id(key, "meta key")
        if key == "schema_version":
            raise StoreError("meta key 'schema_version' is managed by the label store")
        try:
            raw = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"meta value for {key!r} is not JSON-serialisable: {exc}") from exc
        conn = self._conn()
        with self._write(conn):
            conn.execute("INSERT INTO meta(key, value_json) VALUES (?, ?)"
                         " ON CONFLICT(key) DO UPDATE SET value_json = excluded.value_json", (key, raw))

    # -- maintenance --------------------------------------------------------------------------------------
    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` result: ``"ok"`` for a healthy file."""
        return "; ".join(str(r[0]) for r in self._read("PRAGMA integrity_check"))
