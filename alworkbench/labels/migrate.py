"""Copy a label store to another (SQLite -> PostgreSQL, or back) losslessly, and fingerprint a store.

Every row of ``events``, ``records``, ``batches`` and ``meta`` is copied with its id and every column unchanged,
inside one transaction of the target, which must be empty. ``schema_history`` is not copied: each store keeps
its own (the target's records its creation), as meta's ``schema_version`` is each store's own. ``digest`` counts the rows and hashes their full
content (SHA-256 over canonical JSON, in id order), so the two sides can be compared: equal checksums mean the
target holds exactly the source's history."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from ..errors import StoreError
from .store import _EVENT_COLUMNS, LabelStore

_RECORD_COLUMNS = ("id", "kind", "value_json", "created_at")
_BATCH_COLUMNS = ("batch_id", "round", "strategy", "model_version", "created_at", "item_ids_json", "scores_json",
                  "predictions_json", "annotator", "supersedes")


def _rows(store: LabelStore, table: str) -> list[tuple]:
    if table == "events":
        sql = f"SELECT {', '.join(_EVENT_COLUMNS)} FROM events ORDER BY id"
    elif table == "records":
        sql = f"SELECT {', '.join(_RECORD_COLUMNS)} FROM records ORDER BY id"
    elif table == "batches":
        sql = f"SELECT {', '.join(_BATCH_COLUMNS)} FROM batches ORDER BY rowid"
    else:
        sql = "SELECT key, value_json FROM meta WHERE key != 'schema_version' ORDER BY key"
    return [tuple(r) for r in store._read(sql)]


def _canon(v: Any) -> Any:
    return float(v).hex() if isinstance(v, float) else v


def digest(store: LabelStore) -> dict:
    """Row counts per table and one SHA-256 over the content of all of them (the same for a faithful copy)."""
    h = hashlib.sha256()
    counts = {}
    for table in ("events", "records", "batches", "meta"):
        rows = _rows(store, table)
        counts[table] = len(rows)
        h.update(table.encode())
        for r in rows:
            h.update(json.dumps([_canon(v) for v in r], ensure_ascii=False).encode())
            h.update(b"\n")
    return {"counts": counts, "checksum": h.hexdigest()}


def copy_store(src: LabelStore, dst: LabelStore) -> dict:
    """Copy every row of ``src`` into the empty ``dst``; return ``{"source": digest, "target": digest}``.
    StoreError when the target already holds events, records or batches (a store is never merged into)."""
    have = dst._read("SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM records),"
                     " (SELECT COUNT(*) FROM batches)")[0]
    if any(int(n) for n in have):
        raise StoreError(f"target label store {dst.path} is not empty ({have[0]} events, {have[1]} records, "
                         f"{have[2]} batches): migrate into a new database or schema")
    before = digest(src)
    tables = {t: _rows(src, t) for t in ("events", "records", "batches", "meta")}
    conn = dst._conn()
    with dst._write(conn):
        dst._before_copy(conn)
        for cols, table in ((_EVENT_COLUMNS, "events"), (_RECORD_COLUMNS, "records"), (_BATCH_COLUMNS, "batches")):
            sql = f"INSERT INTO {table}({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            for row in tables[table]:
                conn.execute(sql, row)
        for key, value in tables["meta"]:
            conn.execute("INSERT INTO meta(key, value_json) VALUES (?, ?)"
                         " ON CONFLICT(key) DO UPDATE SET value_json = excluded.value_json", (key, value))
        dst._after_copy(conn)
    return {"source": before, "target": digest(dst)}
