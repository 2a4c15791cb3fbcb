"""The label store on PostgreSQL (psycopg 3): the same interface and semantics as the SQLite ``LabelStore``.

Chosen by ``store: postgresql://user@host:port/db`` in alwb.yaml or ``ALWB_STORE_URL``. Imported only when
such a URL is used, so the core never imports psycopg otherwise.

How the SQLite guarantees carry over:

* append-only: ``events`` and ``records`` carry BEFORE UPDATE/DELETE (row) and BEFORE TRUNCATE (statement)
  triggers that raise, so no client (psql included) can rewrite the logs;
* one active answer per item and round: every write of the store runs in a transaction that first takes
  ``LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE`` (self-conflicting: writers queue, readers never wait), the
  PostgreSQL counterpart of SQLite's ``BEGIN IMMEDIATE``; the check, the batch hand-out and the insert happen
  under that lock. A BEFORE INSERT trigger on ``events`` checks the rule again inside the database (under an
  advisory transaction lock), so a client that bypasses the store cannot add a second active answer either;
* durable when ``record`` returns: COMMIT returns after the WAL is flushed (``synchronous_commit`` is forced
  to ``on`` for the store's connections when the server default is ``off``). A failed COMMIT is resolved by
  re-reading the answer's idempotency key on a fresh connection, as for SQLite;
* errors are one line naming the server (``postgresql://user@host:port/db``), never the password. A lost
  connection (server restarted) is reopened on the next call: reads are retried once on a fresh connection,
  writes whose BEGIN failed are retried once; a write that was cut off mid-way is reported, not guessed.

Credentials: the URL names no password; libpq reads it from ``PGPASSWORD``, ``~/.pgpass`` (``PGPASSFILE``) or
a service file (``service=`` / ``PGSERVICE``). The tables live in the connection's current schema (choose one
with ``?options=-csearch_path%3Dmyproject``).
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
from typing import Any, Optional, Sequence

import psycopg
from psycopg import conninfo as _conninfo
from psycopg import errors as _pgerr

from ..errors import DuplicateAnswerError, StoreError
from . import store as _s
from .store import (_ANSWER_KINDS_SQL, is_postgres_url, _KINDS_SQL, SCHEMA_VERSION, SCHEMA_VERSION_ONCE, LabelStore,
                    _CommitFailed, _one_line, _translated, _Write)

CONNECT_TIMEOUT_S = 10

_APPEND_ONLY = ("events", "records", "schema_history")
_DDL = [
    f"""CREATE TABLE IF NOT EXISTS events (
    id              BIGSERIAL PRIMARY KEY,
    kind            TEXT    NOT NULL CHECK (kind IN ({_KINDS_SQL})),
    sample_id       TEXT    NOT NULL,
    value_json      TEXT,
    note            TEXT    NOT NULL DEFAULT '',
    round           INTEGER NOT NULL,
    batch_id        TEXT    NOT NULL DEFAULT '',
    annotator       TEXT    NOT NULL,
    created_at      DOUBLE PRECISION NOT NULL,
    shown_at        DOUBLE PRECISION,
    time_spent_s    DOUBLE PRECISION,
    model_version   INTEGER NOT NULL DEFAULT 0,
    strategy        TEXT    NOT NULL DEFAULT '',
    score           DOUBLE PRECISION,
    prediction_json TEXT,
    undoes          BIGINT REFERENCES events(id),
    uid             TEXT,
    path_json       TEXT,
    CHECK ((kind = 'undo') = (undoes IS NOT NULL))
)""",
    """CREATE TABLE IF NOT EXISTS meta (
    key        TEXT PRIMARY KEY,
    value_json TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS batches (
    seq              BIGSERIAL UNIQUE,
    batch_id         TEXT    PRIMARY KEY,
    round            INTEGER NOT NULL,
    strategy         TEXT    NOT NULL,
    model_version    INTEGER NOT NULL,
    created_at       DOUBLE PRECISION NOT NULL,
    item_ids_json    TEXT    NOT NULL,
    scores_json      TEXT    NOT NULL,
    predictions_json TEXT    NOT NULL,
    annotator        TEXT    NOT NULL DEFAULT '',
    supersedes       TEXT
)""",
    """CREATE TABLE IF NOT EXISTS records (
    id         BIGSERIAL PRIMARY KEY,
    kind       TEXT    NOT NULL,
    value_json TEXT    NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
)""",
    # schema version 4: every creation and upgrade of the schema, appended (see LabelStore._schema_version)
    """CREATE TABLE IF NOT EXISTS schema_history (
    id           BIGSERIAL PRIMARY KEY,
    from_version INTEGER,
    to_version   INTEGER NOT NULL,
    created_at   DOUBLE PRECISION NOT NULL,
    software     TEXT    NOT NULL DEFAULT '',
    details_json TEXT
)""",
    "CREATE INDEX IF NOT EXISTS events_sample_round ON events(sample_id, round)",
    "CREATE INDEX IF NOT EXISTS events_round ON events(round)",
    "CREATE INDEX IF NOT EXISTS events_batch ON events(batch_id)",
    "CREATE UNIQUE INDEX IF NOT EXISTS events_undoes ON events(undoes) WHERE undoes IS NOT NULL",
    "CREATE UNIQUE INDEX IF NOT EXISTS events_uid ON events(uid) WHERE uid IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS batches_annotator ON batches(annotator)",
    "CREATE INDEX IF NOT EXISTS batches_supersedes ON batches(supersedes) WHERE supersedes IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS records_kind ON records(kind, id)",
    """CREATE OR REPLACE FUNCTION alwb_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% are append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'restrict_violation';
END $$""",
    f"""CREATE OR REPLACE FUNCTION alwb_one_active_answer() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.kind IN ({_ANSWER_KINDS_SQL}) THEN
        PERFORM pg_advisory_xact_lock(hashtext(TG_TABLE_SCHEMA || '.alwb_one_active_answer'));
        IF EXISTS (SELECT 1 FROM events e WHERE e.sample_id = NEW.sample_id AND e.round = NEW.round
                   AND e.kind IN ({_ANSWER_KINDS_SQL})
                   AND NOT EXISTS (SELECT 1 FROM events u WHERE u.undoes = e.id)) THEN
            RAISE EXCEPTION 'item % was already answered in round %; refused', quote_literal(NEW.sample_id), NEW.round
                USING ERRCODE = 'unique_violation';
        END IF;
    END IF;
    RETURN NEW;
END $$""",
    # record()'s transaction in one round trip (one autocommit statement: the lock is held only on the server, for
    # the checks, the insert and the commit): the same steps as LabelStore._insert_answer
    f"""CREATE OR REPLACE FUNCTION alwb_record(p_kind text, p_sample text, p_value text, p_note text, p_round integer,
    p_batch text, p_annotator text, p_created double precision, p_shown double precision, p_spent double precision,
    p_model integer, p_strategy text, p_score double precision, p_pred text, p_uid text, p_path text)
RETURNS TABLE(status text, event_id bigint, other text) LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    r record;
    new_id bigint;
BEGIN
    LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE;
    SELECT e.id, e.sample_id INTO r FROM events e WHERE e.uid = p_uid;
    IF FOUND THEN
        RETURN QUERY SELECT (CASE WHEN r.sample_id = p_sample THEN 'same' ELSE 'uid_clash' END), r.id, r.sample_id;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM events e WHERE e.sample_id = p_sample AND e.round = p_round
               AND e.kind IN ({_ANSWER_KINDS_SQL}) AND NOT EXISTS (SELECT 1 FROM events u WHERE u.undoes = e.id)) THEN
        RETURN QUERY SELECT 'dup'::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    INSERT INTO events(kind, sample_id, value_json, note, round, batch_id, annotator, created_at, shown_at,
                       time_spent_s, model_version, strategy, score, prediction_json, uid, path_json)
    VALUES (p_kind, p_sample, p_value, p_note, p_round, p_batch, p_annotator, p_created, p_shown, p_spent, p_model,
            p_strategy, p_score, p_pred, p_uid, p_path)
    RETURNING id INTO new_id;
    RETURN QUERY SELECT 'ok'::text, new_id, NULL::text;
END $$""",
    # every row's created_at is the server's clock (machines of a team may disagree by seconds or more: leases are
    # measured on one clock), unless a copy keeps the source's (alwb.keep_created_at, set by migrate)
    """CREATE OR REPLACE FUNCTION alwb_server_time() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('alwb.keep_created_at', true), '') <> 'on' THEN
        NEW.created_at := extract(epoch from clock_timestamp());
    END IF;
    RETURN NEW;
END $$""",
] + [
    f"CREATE OR REPLACE TRIGGER {t}_server_time BEFORE INSERT ON {t} FOR EACH ROW EXECUTE FUNCTION alwb_server_time()"
    for t in ("events", "records", "batches", "schema_history")
] + [
    f"CREATE OR REPLACE TRIGGER {t}_no_{op.lower()} BEFORE {op} ON {t} FOR EACH ROW EXECUTE FUNCTION alwb_append_only()"
    for t in _APPEND_ONLY for op in ("UPDATE", "DELETE")
] + [
    f"CREATE OR REPLACE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} FOR EACH STATEMENT"
    " EXECUTE FUNCTION alwb_append_only()" for t in _APPEND_ONLY
] + [
    # meta's schema_version is written once (at creation): an alworkbench that predates schema_history cannot
    # rewrite it (its transaction rolls back, the store is untouched)
    f"""CREATE OR REPLACE FUNCTION alwb_schema_version_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{SCHEMA_VERSION_ONCE}' USING ERRCODE = 'restrict_violation';
END $$""",
    "CREATE OR REPLACE TRIGGER meta_schema_version_once BEFORE UPDATE OR DELETE ON meta FOR EACH ROW"
    " WHEN (OLD.key = 'schema_version') EXECUTE FUNCTION alwb_schema_version_once()",
    "CREATE OR REPLACE TRIGGER meta_no_truncate BEFORE TRUNCATE ON meta FOR EACH STATEMENT"
    " EXECUTE FUNCTION alwb_append_only()",
] + [
    "CREATE OR REPLACE TRIGGER events_one_active_answer BEFORE INSERT ON events FOR EACH ROW"
    " EXECUTE FUNCTION alwb_one_active_answer()",
]
_TRIGGERS = tuple(f"{t}_no_{op}" for t in _APPEND_ONLY for op in ("update", "delete", "truncate")) + (
    "events_one_active_answer", "meta_schema_version_once", "meta_no_truncate") + tuple(
    f"{t}_server_time" for t in ("events", "records", "batches", "schema_history"))
_WRITE_LOCK = "LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE"

_JSON_EXTRACT = re.compile(r"json_extract\(([\w.]+), '\$\.(\w+)'\)")
_ROWID = re.compile(r"\browid\b")
_INSERT_ID = re.compile(r"^\s*INSERT INTO (events|records)\b", re.I)


def describe_url(url: str) -> str:
    """``postgresql://user@host:port/db``: the server a message names (never a password)."""
    try:
        d = _conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        d = {}
    host = d.get("host") or os.environ.get("PGHOST") or "localhost"
    port = d.get("port") or os.environ.get("PGPORT") or "5432"
    db = d.get("dbname") or os.environ.get("PGDATABASE") or d.get("user") or ""
    user = d.get("user") or os.environ.get("PGUSER") or ""
    service = d.get("service") or ""
    if service and not d.get("host"):
        return f"postgresql service {service!r}"
    return f"postgresql://{user + '@' if user else ''}{host}:{port}/{db}"


def url_password(url: str) -> Optional[str]:
    try:
        return _conninfo.conninfo_to_dict(url).get("password") or None
    except psycopg.Error:
        return None


def _translate_sql(sql: str) -> str:
    out = _JSON_EXTRACT.sub(r"(\1::jsonb ->> '\2')", sql)
    out = _ROWID.sub("seq", out)
    out = out.replace("%", "%%").replace("?", "%s")
    if _INSERT_ID.match(out) and "RETURNING" not in out.upper():
        out += " RETURNING id"
    return out


class _Cursor:
    def __init__(self, cur: psycopg.Cursor, returning: bool):
        self._cur = cur
        self._rows = cur.fetchall() if cur.description is not None else []
        self.lastrowid = self._rows[0][0] if returning and self._rows else None
        self._i = 0

    def fetchone(self):
        if self._i >= len(self._rows):
            return None
        self._i += 1
        return self._rows[self._i - 1]

    def fetchall(self):
        rows, self._i = self._rows[self._i:], len(self._rows)
        return rows

    def __iter__(self):
        return iter(self.fetchall())


class _PgConn:
    """A psycopg connection behind the small part of the sqlite3 API the store uses (``execute`` with ``?``
    placeholders, ``lastrowid``, ``in_transaction``). Outside a transaction, a statement that fails because the
    connection was lost (server restart) is retried once on a fresh connection: those statements are reads or
    the BEGIN of a write, so nothing can be applied twice."""

    def __init__(self, store: "PgLabelStore"):
        self._store = store
        self.raw = store._connect()
        self.in_transaction = False
        self._cache: dict[str, str] = {}

    def _run(self, sql: str, params: Sequence[Any]) -> _Cursor:
        q = self._cache.get(sql)
        if q is None:
            q = self._cache[sql] = _translate_sql(sql)
        cur = self.raw.execute(q, tuple(params))
        return _Cursor(cur, q.endswith(" RETURNING id"))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        stripped = sql.strip().upper()
        if stripped in ("COMMIT", "ROLLBACK"):
            self.in_transaction = False
            self.raw.execute(stripped)
            return _Cursor(self.raw.cursor(), False)
        begin = stripped.startswith("BEGIN")
        try:
            if begin:
                self.raw.execute("BEGIN")
                self.in_transaction = True
                return _Cursor(self.raw.cursor(), False)
            return self._run(sql, params)
        except psycopg.OperationalError:
            if self.in_transaction or not (self.raw.broken or self.raw.closed):
                raise
            self._reconnect()
            if begin:
                self.raw.execute("BEGIN")
                self.in_transaction = True
                return _Cursor(self.raw.cursor(), False)
            return self._run(sql, params)

    def _reconnect(self) -> None:
        try:
            self.raw.close()
        except Exception:
            pass
        self.raw = self._store._connect()

    def close(self) -> None:
        try:
            self.raw.close()
        except Exception:
            pass


class _PgWrite(_Write):
    """BEGIN; LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE; ... COMMIT (or ROLLBACK on any exception)."""

    db_error = psycopg.Error

    def __init__(self, conn: _PgConn, store: "PgLabelStore"):  # noqa: D107 - no super(): no SQLite timeout/path
        self.conn = conn
        self.store = store

    def __enter__(self):
        self.conn.execute("BEGIN")
        try:
            self.conn.execute(_WRITE_LOCK)
        except _pgerr.LockNotAvailable as exc:
            self._rollback()
            raise StoreError(f"label store busy: could not start a write within {self.store.busy_timeout_s:g} s on "
                             f"{self.store.path} ({_one_line(self.store._scrub(exc))}); another writer holds it: "
                             "retry") from exc
        except BaseException:
            self._rollback()
            raise
        return self.conn

    def _rollback(self) -> None:
        super()._rollback()
        self.conn.in_transaction = False


class _Where(str):
    """What messages name for a PostgreSQL store (``self.path`` of the SQLite store): the server, no password."""

    @property
    def name(self) -> str:
        return str(self)


class PgLabelStore(LabelStore):
    """The label store in a PostgreSQL database. See the module docstring; the API is LabelStore's."""

    def __init__(self, url: str, *, busy_timeout_s: float = _s.BUSY_TIMEOUT_MS / 1000,
                 lease_s: Optional[float] = None, connect_timeout_s: float = CONNECT_TIMEOUT_S):
        if not is_postgres_url(url):
            raise StoreError(f"not a PostgreSQL URL: {describe_url(str(url))} (expected postgresql://...)")
        if not busy_timeout_s > 0:
            raise StoreError(f"busy_timeout_s must be > 0 seconds, got {busy_timeout_s!r}")
        if lease_s is not None and not lease_s > 0:
            raise StoreError(f"lease_s must be > 0 seconds (or None: batches hold until answered), got {lease_s!r}")
        self.url = url
        self.busy_timeout_s = float(busy_timeout_s)
        self.lease_s = None if lease_s is None else float(lease_s)
        self.connect_timeout_s = connect_timeout_s
        self.path = _Where(describe_url(url))
        self._password = url_password(url)
        self.synchronous = "FULL"
        self._local = threading.local()
        self._conns: list = []
        self._conns_lock = threading.Lock()
        self._pid = os.getpid()
        self._inherited: list = []
        self._closed = False
        try:
            conn = self._conn()
            self._prepare(conn)
        except BaseException as exc:
            self.close()
            if isinstance(exc, (psycopg.Error, _CommitFailed)):
                raise self._translate_error(exc, opening=True) from exc
            raise

    # -- connections ------------------------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection:
        kwargs: dict[str, Any] = {"autocommit": True}
        have = _conninfo.conninfo_to_dict(self.url)
        if "connect_timeout" not in have:
            kwargs["connect_timeout"] = int(self.connect_timeout_s)
        if "application_name" not in have:
            kwargs["application_name"] = "alworkbench"
        raw = psycopg.connect(self.url, **kwargs)
        try:
            raw.execute(f"SET lock_timeout = {int(self.busy_timeout_s * 1000)}")
            if raw.execute("SHOW synchronous_commit").fetchone()[0] == "off":
                raw.execute("SET synchronous_commit = on")
        except BaseException:
            raw.close()
            raise
        return raw

    def _conn(self) -> _PgConn:
        if self._closed:
            raise StoreError(f"label store {self.path} is closed")
        if os.getpid() != self._pid:  # forked: a connection must not cross fork(); open fresh ones
            self._conns_lock = threading.Lock()
            self._inherited.append(self._conns)
            self._conns = []
            self._local = threading.local()
            self._pid = os.getpid()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            if conn.raw.closed and not conn.in_transaction:
                conn._reconnect()
            return conn
        try:
            conn = _PgConn(self)
        except psycopg.Error as exc:
            raise self._translate_error(exc, opening=True) from exc
        self._local.conn = conn
        with self._conns_lock:
            dead = [c for t, c in self._conns if not t.is_alive()]
            self._conns = [(t, c) for t, c in self._conns if t.is_alive()]
            self._conns.append((threading.current_thread(), conn))
        for c in dead:
            c.close()
        return conn

    _RECORD_SQL = ("SELECT status, event_id, other FROM alwb_record(?::text, ?::text, ?::text, ?::text, ?::integer,"
                   " ?::text, ?::text, ?::float8, ?::float8, ?::float8, ?::integer, ?::text, ?::float8, ?::text,"
                   " ?::text, ?::text)")

    def _insert_answer(self, row: tuple, uid: str, sample_id: str, round: int) -> int:
        """One autocommit statement (alwb_record): durable when it returns. A connection lost on the way is
        reopened and the statement sent once more with the same uid (idempotent: a first attempt that was
        committed after all is found by its uid, never stored twice)."""
        conn = self._conn()
        if conn.in_transaction:  # not reachable through the public API; keep the plain path
            return super()._insert_answer(row, uid, sample_id, round)
        try:
            status, eid, other = conn.execute(self._RECORD_SQL, row).fetchone()
        except psycopg.OperationalError as exc:
            if not (conn.raw.broken or conn.raw.closed):
                raise
            raise StoreError(f"label store {self.path}: the server is unreachable "
                             f"({_one_line(self._scrub(exc))}); the answer for {sample_id!r} was not acknowledged "
                             f"(if it reached the server it is stored once, under uid {uid}): give it again when the "
                             "server is back (answers acknowledged before are safe)") from exc
        if status == "uid_clash":
            raise StoreError(f"uid {uid!r} was already used for item {other!r} in {self.path}; "
                             "use a fresh uid per answer")
        if status == "dup":
            raise DuplicateAnswerError(sample_id, round)
        return int(eid)

    def _now(self, conn: _PgConn) -> float:
        """The server's clock: every created_at is written on it (trigger alwb_server_time)."""
        return float(conn.execute("SELECT extract(epoch from clock_timestamp())::float8").fetchone()[0])

    def _before_copy(self, conn: _PgConn) -> None:
        """Copied rows keep their created_at (for this transaction only)."""
        conn.execute("SET LOCAL alwb.keep_created_at = 'on'")

    def _after_copy(self, conn: _PgConn) -> None:
        """Rows were copied in with their ids: move the id sequences past them."""
        for table in ("events", "records"):
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                         f" GREATEST((SELECT COALESCE(MAX(id), 0) FROM {table}), 1),"
                         f" (SELECT COUNT(*) > 0 FROM {table}))")

    def _write(self, conn: _PgConn) -> _PgWrite:
        return _PgWrite(conn, self)

    def __repr__(self) -> str:
        return f"PgLabelStore({str(self.path)!r}, {'closed' if self._closed else 'open'})"

    @property
    def backend(self) -> str:
        return "postgresql"

    @_translated
    def describe(self) -> dict:
        """``backend``, ``location`` (``postgresql://user@host:port/db``, never a password) and the PostgreSQL
        ``schema`` the tables are in."""
        return {"backend": self.backend, "location": str(self.path),
                "schema": self._read("SELECT current_schema()")[0][0]}

    # -- errors -------------------------------------------------------------------------------------------
    @staticmethod
    def _db_errors() -> tuple:
        return (psycopg.Error,)

    def _scrub(self, exc: Any) -> str:
        text = str(exc)
        if self._password:
            text = text.replace(self._password, "***")
        return text

    def _translate_error(self, exc: BaseException, opening: bool = False) -> StoreError:
        if isinstance(exc, _CommitFailed):
            exc = exc.exc
        diag = getattr(exc, "diag", None)
        primary = getattr(diag, "message_primary", None) if diag is not None else None
        msg = _one_line(self._scrub(primary or exc))  # the server's message without its CONTEXT lines
        subject = f"cannot open label store {self.path}" if opening else f"label store {self.path}"
        if isinstance(exc, _pgerr.InvalidPassword) or "password authentication failed" in msg \
                or "no password supplied" in msg:
            return StoreError(f"{subject}: authentication failed ({msg}); put the password in PGPASSWORD, "
                              "~/.pgpass or a service file (never in alwb.yaml)")
        if isinstance(exc, _pgerr.InvalidCatalogName) or re.search(r'database ".*" does not exist', msg):
            return StoreError(f"{subject}: the database does not exist ({msg}); create it (createdb) or fix the URL")
        if isinstance(exc, psycopg.OperationalError) and not isinstance(exc, _pgerr.LockNotAvailable):
            return StoreError(f"{subject}: the server is unreachable ({msg}); check that it runs and that this "
                              "machine can reach it, then retry (answers acknowledged before are safe)")
        if isinstance(exc, _pgerr.LockNotAvailable):
            return StoreError(f"label store busy: could not start a write within {self.busy_timeout_s:g} s on "
                              f"{self.path} ({msg}); another writer holds it: retry")
        if isinstance(exc, _pgerr.InsufficientPrivilege):
            return StoreError(f"{subject}: permission denied ({msg}); ask the database owner for access")
        return StoreError(f"{subject}: {msg}")

    # -- schema -------------------------------------------------------------------------------------------
    @staticmethod
    def _has_table(conn: _PgConn, name: str) -> bool:
        return conn.execute("SELECT to_regclass(?) IS NOT NULL", (name,)).fetchone()[0] is True

    #: PostgreSQL stores began at schema version 3; older ones are SQLite files (migrate them with alwb store migrate)
    OLDEST = 3

    _PREPARE_LOCK = "hashtext(current_schema() || '.alwb_prepare')"

    def _prepare(self, conn: _PgConn) -> None:
        """Create the tables, or upgrade a store of an older schema version, in one transaction under an advisory
        lock of this schema: a second client opening it at the same time waits, then finds it current. DDL is
        transactional in PostgreSQL, so a failed upgrade leaves the store exactly as it was.

        The lock is taken before the transaction begins (a session lock, let go at the end): a transaction that
        began before another client committed the tables could still see them as missing in its catalog caches
        (an advisory lock does not refresh them), and create them, or append the upgrade, a second time."""
        if conn.execute("SELECT current_schema()").fetchone()[0] is None:
            raise StoreError(f"cannot open label store {self.path}: no schema to create the tables in (the "
                             "search_path names none that exists); create it or fix options=-csearch_path=...")
        version = self._schema_version(conn)
        self._check_newer(version)
        if version == SCHEMA_VERSION:
            return
        conn.execute(f"SELECT pg_advisory_lock({self._PREPARE_LOCK})")
        try:
            self._prepare_locked(conn)
        finally:
            if not (conn.raw.closed or conn.raw.broken):
                conn.execute(f"SELECT pg_advisory_unlock({self._PREPARE_LOCK})")

    def _prepare_locked(self, conn: _PgConn) -> None:
        conn.execute("BEGIN")
        try:
            version = self._schema_version(conn)
            self._check_newer(version)
            if version != SCHEMA_VERSION:
                if version is not None and version < self.OLDEST:
                    raise StoreError(f"{self.path} has label-store schema version {version}; PostgreSQL stores "
                                     f"start at version {self.OLDEST}")
                try:
                    for stmt in _DDL:  # idempotent: creates what a version-3 store lacks
                        conn.execute(stmt)
                except _pgerr.InsufficientPrivilege as exc:
                    if version is None:
                        raise
                    raise StoreError(
                        f"cannot open label store {self.path}: it has schema version {version} and this alworkbench "
                        f"uses {SCHEMA_VERSION}; the upgrade (made once, on open, by whoever opens it first) needs the "
                        f"owner's rights on its tables ({_one_line(self._scrub(exc.diag.message_primary or exc))}): "
                        "open it once as the owner (e.g. `alwb status DIR` with ALWB_STORE_URL naming the owner), "
                        "then everyone can") from exc
                if version is not None:
                    self._share_new_tables(conn)
                self._append_schema_history(conn, version)
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                pass
            raise
        conn.execute("COMMIT")

    @staticmethod
    def _share_new_tables(conn: _PgConn) -> None:
        """An upgrade creates tables (schema_history) that the team's other roles need to read: whoever may read
        ``meta`` may read them too (the roles the owner granted it to, PUBLIC included)."""
        roles = conn.execute(
            "SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END"
            " FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee"
            " WHERE c.oid = to_regclass('meta') AND a.privilege_type = 'SELECT' AND a.grantee <> c.relowner"
        ).fetchall()
        for (role,) in roles:
            conn.execute(f"GRANT SELECT ON schema_history TO {role}")

    def _confirm_event(self, uid: str, sample_id: str, failure: _CommitFailed) -> int:
        """COMMIT of ``uid``'s answer raised: look for it on a fresh connection. Durable -> its id."""
        self._discard_conn()
        try:
            with self._connect() as fresh:
                row = fresh.execute("SELECT id FROM events WHERE uid = %s", (uid,)).fetchone()
        except psycopg.Error as exc:
            raise StoreError(f"saving the answer for {sample_id!r} failed ({_one_line(self._scrub(failure))}) and "
                             f"{self.path} cannot be reached to check it ({_one_line(self._scrub(exc))}): when the "
                             f"server is back, look for uid {uid} (answers acknowledged before are safe)") from exc
        if row is not None:
            return int(row[0])
        raise StoreError(f"the answer for {sample_id!r} was not saved: "
                         f"{self._translate_error(failure)}") from failure.exc

    def _discard_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            return
        self._local.conn = None
        with self._conns_lock:
            self._conns = [(t, c) for t, c in self._conns if c is not conn]
        conn.close()

    def integrity_check(self) -> str:
        """``"ok"`` when the tables and the triggers that keep the logs append-only are all in place."""
        try:
            have = {r[0] for r in self._read(
                "SELECT t.tgname FROM pg_trigger t WHERE NOT t.tgisinternal AND t.tgrelid IN (to_regclass('events'),"
                " to_regclass('records'), to_regclass('batches'), to_regclass('meta'), to_regclass('schema_history'))")}
        except psycopg.Error as exc:
            raise self._translate_error(exc) from exc
        missing = [t for t in _TRIGGERS if t not in have]
        return "ok" if not missing else f"{len(missing)} of the store's triggers are missing: {', '.join(missing)}"
