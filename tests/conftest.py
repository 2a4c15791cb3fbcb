import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture
def project_dir(tmp_path):
    return tmp_path / "proj"


@pytest.fixture(scope="session")
def python():
    return sys.executable


# --- In CI (ALWB_CI=1, set by .ci/run) a skipped test is a failure: a missing browser, dataset or package must
# not turn a broken feature into a green run. Only skips listed here are expected (scikit-learn's optional
# array-API estimator checks, which need SCIPY_ARRAY_API and an array library we do not use).
_EXPECTED_SKIPS = ("SCIPY_ARRAY_API is not set",
                   # a real full disk needs mount(8) (root); the same path is covered with a patched write
                   "cannot mount a tmpfs here")
_unexpected_skips: list = []


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail") and os.environ.get("ALWB_CI"):
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not any(x in reason for x in _EXPECTED_SKIPS):
            _unexpected_skips.append(f"{report.nodeid}: {reason}")


def pytest_collectreport(report):
    # a module-level ``pytest.importorskip`` / ``pytest.skip(allow_module_level=True)`` skips at collection: it never
    # reaches pytest_runtest_logreport, so it is checked here
    if report.skipped and os.environ.get("ALWB_CI"):
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not any(x in reason for x in _EXPECTED_SKIPS):
            _unexpected_skips.append(f"{report.nodeid} (whole module, at collection): {reason}")


def pytest_sessionfinish(session, exitstatus):
    # exit status 5: nothing ran because everything was skipped at collection
    if _unexpected_skips and exitstatus in (0, 5):
        print("\nALWB_CI: tests were skipped; in CI that is a failure:", *_unexpected_skips, sep="\n  ")
        session.exitstatus = 1


# --- PostgreSQL: one throwaway server per test session (started on first use), a fresh schema per store --------
@pytest.fixture(scope="session")
def pg_server():
    sys.path.insert(0, str(ROOT / "tests"))
    from pgserver import PgServer, PostgresMissing
    try:
        server = PgServer()
    except PostgresMissing as exc:  # fail, never skip: CI installs it (scripts/setup.sh)
        pytest.fail(str(exc), pytrace=False)
    old = os.environ.get("PGPASSWORD")
    os.environ["PGPASSWORD"] = server.password  # how a team passes it: the environment, never alwb.yaml
    yield server
    if old is None:
        os.environ.pop("PGPASSWORD", None)
    else:
        os.environ["PGPASSWORD"] = old
    server.close()


@pytest.fixture
def pg_url(pg_server):
    """A URL (no password in it) of an empty schema of the throwaway server."""
    return pg_server.url(schema=pg_server.new_schema())


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request):
    return request.param


@pytest.fixture
def store_url(backend, tmp_path, request):
    """Where a label store lives for this test: a SQLite file under tmp_path or a fresh PostgreSQL schema."""
    if backend == "sqlite":
        return str(tmp_path / "labels.sqlite")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def project_backend(backend, monkeypatch, request):
    """Projects used in this test keep their labels in ``backend``: SQLite (labels.sqlite in the project folder) or
    a fresh PostgreSQL schema, named by ALWB_STORE_URL (as a team sets it; `alwb` subprocesses inherit it). Returns
    the URL, or None for SQLite."""
    monkeypatch.delenv("ALWB_STORE_URL", raising=False)
    if backend == "sqlite":
        yield None
        return
    url = request.getfixturevalue("pg_url")
    monkeypatch.setenv("ALWB_STORE_URL", url)
    yield url
    # the test really labelled in PostgreSQL: its schema holds a store
    schema = url.rsplit("search_path%3D", 1)[1]
    with request.getfixturevalue("pg_server").admin() as c:
        assert c.execute("SELECT to_regclass(%s)", (f"{schema}.events",)).fetchone()[0] is not None, \
            "the test never opened its PostgreSQL store (ALWB_STORE_URL)"


@pytest.fixture
def make_store(store_url):
    """Open (another handle on) this test's label store: ``make_store(lease_s=...)``; all closed at teardown."""
    from alworkbench.labels import open_store
    opened = []

    def make(**kwargs):
        s = open_store(store_url, **kwargs)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


class RawDB:
    """A connection of its own to this test's store database (what another program, or psql, could do):
    ``execute`` runs one statement (``?`` placeholders) and returns its rows; ``errors`` is the driver's error
    class tuple; ``hold_write_lock`` takes the lock a store write needs, ``rollback`` lets it go."""

    def __init__(self, backend: str, url: str):
        self.backend = backend
        if backend == "sqlite":
            import sqlite3
            self.conn = sqlite3.connect(url, isolation_level=None)
            self.errors = (sqlite3.DatabaseError,)
        else:
            import psycopg
            self.conn = psycopg.connect(url, autocommit=True)
            self.errors = (psycopg.Error,)

    def execute(self, sql: str, params=()) -> list:
        if self.backend == "postgresql":
            sql = sql.replace("?", "%s")
        cur = self.conn.execute(sql, tuple(params))
        return cur.fetchall() if cur.description is not None else []

    def hold_write_lock(self) -> None:
        if self.backend == "sqlite":
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.conn.execute("BEGIN")
            self.conn.execute("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE")

    def rollback(self) -> None:
        self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def raw_db(backend, store_url):
    """Open a RawDB on this test's store (call it after the store created its tables)."""
    opened = []

    def make():
        r = RawDB(backend, store_url)
        opened.append(r)
        return r

    yield make
    for r in opened:
        r.close()
