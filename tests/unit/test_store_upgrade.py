"""Schema upgrades are appended, never written over (SQLite and PostgreSQL alike): a store created at an older
schema version is upgraded when it is opened, in one transaction under a lock, its data untouched; the upgrade
appends one ``schema_history`` row (from, to, time, software) and meta's ``schema_version`` keeps the value the
store was created with (the database refuses to rewrite it)."""
from __future__ import annotations

import threading
import time

import pytest

from alworkbench.labels.migrate import digest
from alworkbench.labels.store import SCHEMA_VERSION
from alworkbench.types import Answer, Prediction

# what a version-4 store has and a version-3 one (the schema PostgreSQL stores started at) had not
_TO_VERSION_3 = {
    "sqlite": ["DROP TABLE schema_history", "DROP TRIGGER meta_schema_version_update",
               "DROP TRIGGER meta_schema_version_delete",
               "UPDATE meta SET value_json = '3' WHERE key = 'schema_version'"],
    "postgresql": ["DROP TABLE schema_history", "DROP TRIGGER meta_schema_version_once ON meta",
                   "DROP TRIGGER meta_no_truncate ON meta", "DROP FUNCTION alwb_schema_version_once()",
                   "UPDATE meta SET value_json = '3' WHERE key = 'schema_version'"],
}
_UPSERT_VERSION = ("INSERT INTO meta(key, value_json) VALUES ('schema_version', '3')"
                   " ON CONFLICT(key) DO UPDATE SET value_json = excluded.value_json")


def _has_history_table(raw, backend) -> bool:
    if backend == "sqlite":
        return bool(raw.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_history'"))
    return raw.execute("SELECT to_regclass('schema_history') IS NOT NULL")[0][0] is True


def _version_3_store(make_store, raw_db, backend):
    """A store with answers, a batch, records and meta, as schema version 3 left it; returns its digest."""
    s = make_store()
    s.record("a", Answer.of_label("cat"), round=1, annotator="ana")
    s.record("b", Answer.of_label("dog"), round=1, annotator="ben")
    s.undo(annotator="ben")
    s.create_batch("ana", "margin", 1, [("c", 0.2, Prediction(top=(("cat", 0.7),), model_version=1)),
                                        ("d", 0.1, None)], 2)
    s.append_report({"round": 1, "accuracy": 0.5})
    s.append_model({"round": 1})
    s.acknowledge_guideline("ana", "2")
    s.set_meta("fiftyone_stamp", "abc")
    before = digest(s)
    s.close()
    raw = raw_db()
    for stmt in _TO_VERSION_3[backend]:
        raw.execute(stmt)
    assert not _has_history_table(raw, backend)
    assert raw.execute("SELECT value_json FROM meta WHERE key = 'schema_version'") == [("3",)]
    return before, raw


def test_a_new_store_records_its_creation(make_store, raw_db, backend):
    s = make_store()
    [h] = s.schema_history()
    assert (h["from_version"], h["to_version"]) == (None, SCHEMA_VERSION) == (None, 4)
    assert h["software"].startswith("alworkbench ") and h["created_at"] > 0
    assert s.schema_version() == s.get_meta("schema_version") == 4
    assert raw_db().execute("SELECT value_json FROM meta WHERE key = 'schema_version'") == [("4",)]
    make_store().close()  # opening a current store writes nothing
    assert len(s.schema_history()) == 1


def test_a_version_3_store_is_upgraded_on_open_once_its_data_intact(make_store, raw_db, backend):
    before, raw = _version_3_store(make_store, raw_db, backend)
    s = make_store()
    assert s.schema_version() == s.get_meta("schema_version") == SCHEMA_VERSION
    [h] = s.schema_history()
    assert (h["from_version"], h["to_version"]) == (3, SCHEMA_VERSION)
    assert digest(s) == before  # every event, record, batch and meta value as it was
    assert s.labels() == {"a": "cat"} and s.reserved_ids("ben") == {"c", "d"}
    assert s.integrity_check() == "ok"
    # meta's schema_version keeps the version the store was created at: the upgrade only appended
    assert raw.execute("SELECT value_json FROM meta WHERE key = 'schema_version'") == [("3",)]
    s.record("c", Answer.of_label("dog"), round=1, annotator="ana")  # the upgraded store works
    s.close()
    s = make_store()  # opening it again upgrades nothing
    assert [(h["from_version"], h["to_version"]) for h in s.schema_history()] == [(3, SCHEMA_VERSION)]
    assert s.labels() == {"a": "cat", "c": "dog"}
    # neither the history nor meta's schema_version can be rewritten, whoever connects (an older alworkbench's
    # upsert of the key included: its transaction rolls back)
    for sql in ("UPDATE schema_history SET to_version = 3", "DELETE FROM schema_history"):
        with pytest.raises(raw.errors, match="schema_history are append-only"):
            raw.execute(sql)
    for sql in (_UPSERT_VERSION, "DELETE FROM meta WHERE key = 'schema_version'"):
        with pytest.raises(raw.errors, match="meta key schema_version is written once"):
            raw.execute(sql)
    assert s.schema_version() == SCHEMA_VERSION and len(s.schema_history()) == 1


def test_two_clients_opening_an_old_store_at_once_upgrade_it_once(make_store, raw_db, backend):
    before, _raw = _version_3_store(make_store, raw_db, backend)
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def opener():
        try:
            barrier.wait()
            make_store()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    s = make_store()
    assert [(h["from_version"], h["to_version"]) for h in s.schema_history()] == [(3, SCHEMA_VERSION)]
    assert digest(s) == before


def test_postgresql_upgrade_needs_the_owner_once_then_every_member_reads_the_store(pg_server, pg_url):
    """A team member with the usual rights (read and write rows, no DDL) cannot upgrade: one line says who can; the
    store is untouched. Once the owner opened it, the member opens the upgraded store and reads its history."""
    from alworkbench.errors import StoreError
    from alworkbench.labels import open_store

    import psycopg
    from psycopg import sql

    schema = pg_url.split("search_path%3D")[1]
    member = f"m_{schema}"
    with pg_server.admin() as c:
        # the same password, so PGPASSWORD works for both
        c.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(member),
                                                                     sql.Literal(pg_server.password)))
    try:
        s = open_store(pg_url)
        s.record("a", Answer.of_label("cat"), round=1, annotator="ana")
        s.close()
        with pg_server.admin() as c:
            c.execute(f"GRANT USAGE ON SCHEMA {schema} TO {member}")
            c.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {member}")
            c.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {member}")
        raw = psycopg.connect(pg_url, autocommit=True)
        for stmt in _TO_VERSION_3["postgresql"]:
            raw.execute(stmt)
        member_url = pg_url.replace(f"{pg_server.user}@", f"{member}@")
        with pytest.raises(StoreError, match=r"^cannot open label store postgresql://m_\w+@127\.0\.0\.1:\d+/postgres: it "
                                             r"has schema version 3 and this alworkbench uses 4; the upgrade .* needs "
                                             r"the owner's rights .*open it once as the owner") as exc:
            open_store(member_url)
        assert "\n" not in str(exc.value)
        assert raw.execute("SELECT to_regclass('schema_history')").fetchone()[0] is None  # untouched
        with open_store(pg_url) as owner:
            assert [(h["from_version"], h["to_version"]) for h in owner.schema_history()] == [(3, 4)]
        with open_store(member_url) as s:  # the upgraded store opens for the member, who reads its history
            assert s.schema_version() == 4 and len(s.schema_history()) == 1
            s.record("b", Answer.of_label("dog"), round=1, annotator="ben")
            assert s.labels() == {"a": "cat", "b": "dog"}
        raw.close()
    finally:
        with pg_server.admin() as c:
            c.execute(f"DROP OWNED BY {member}")
            c.execute(f"DROP ROLE {member}")


@pytest.mark.parametrize("old", [None, 3], ids=["new", "version-3"])
def test_postgresql_clients_queued_on_the_prepare_lock_find_the_store_ready(pg_server, pg_url, old):
    """Two clients open a store (empty, or of version 3) while a third holds the lock under which stores are
    created and upgraded; when it lets go, exactly one of them prepares the store and the other finds it ready
    (its view of the catalog is fresh: no second creation, no second history row)."""
    from alworkbench.labels import open_store

    import psycopg

    if old == 3:
        open_store(pg_url).close()
        with psycopg.connect(pg_url, autocommit=True) as raw:
            for stmt in _TO_VERSION_3["postgresql"]:
                raw.execute(stmt)
    schema = pg_url.split("search_path%3D")[1]
    holder = psycopg.connect(pg_url, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(hashtext(current_schema() || '.alwb_prepare'))")
    errors: list[BaseException] = []

    def opener():
        try:
            open_store(pg_url).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(2)]
    for t in threads:
        t.start()
    with pg_server.admin() as watch:  # both are queued on the lock (a condition, not a sleep)
        while watch.execute("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                            " WHERE l.locktype = 'advisory' AND NOT l.granted AND a.query LIKE %s",
                            ("%alwb_prepare%",)).fetchone()[0] < 2:
            assert all(t.is_alive() for t in threads), errors
            time.sleep(0.02)
    holder.execute("SELECT pg_advisory_unlock(hashtext(current_schema() || '.alwb_prepare'))")
    for t in threads:
        t.join()
    holder.close()
    assert not errors, errors
    with open_store(pg_url) as s:
        assert [(h["from_version"], h["to_version"]) for h in s.schema_history()] == [(old, SCHEMA_VERSION)]
        assert s.integrity_check() == "ok" and schema
