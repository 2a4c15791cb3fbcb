"""Issue 9, finding 7 (FiftyOne part) and finding 8 (FIFTYONE_DATABASE_DIR): a failed connection is remembered and
later calls fail at once with the same one-line error; the database dir is set on FiftyOne's config object, never
in os.environ, and a second project in the same process gets a clear error instead of the first one's database."""
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("fiftyone")

pytestmark = pytest.mark.fiftyone


def _run(code, env, timeout=240):
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_finding7_fiftyone_failure_is_remembered_and_fails_fast(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=1500&connectTimeoutMS=1500"
    code = f"""
        import json, time
        from alworkbench import Project
        from alworkbench.errors import FiftyOneUnavailableError
        from alworkbench.integrations import fiftyone_sync as fs
        p = Project.init({str(tmp_path / 'p')!r}, "digits", backbone="pixels", source={{"limit": 30}})
        res = []
        for call in (lambda: fs.connect(p), lambda: fs.get_dataset(p), lambda: fs.connect(p), fs.connect):
            t0 = time.perf_counter()
            try:
                call()
                res.append(["ok", 0])
            except FiftyOneUnavailableError as exc:
                res.append([str(exc), time.perf_counter() - t0])
            except Exception as exc:
                res.append(["RAW " + type(exc).__name__ + ": " + str(exc), time.perf_counter() - t0])
        print(json.dumps(res))
    """
    env = {**os.environ, "FIFTYONE_DATABASE_URI": uri}
    env.pop("FIFTYONE_PRIVATE_DATABASE_PORT", None)
    res = _run(code, env)
    first = res[0][0]
    assert "MongoDB could not be started or reached" in first and uri in first and "\n" not in first
    for msg, seconds in res[1:]:
        assert msg == first  # the same one-line error, not a raw pymongo one
        assert seconds < 0.5  # at once, not after another server-selection timeout


def test_finding8_fiftyone_database_dir_is_not_put_in_the_environment(tmp_path):
    code = f"""
        import json, os
        from alworkbench import Project
        from alworkbench.errors import FiftyOneUnavailableError
        from alworkbench.integrations import fiftyone_sync as fs
        a = Project.init({str(tmp_path / 'a')!r}, "digits", backbone="pixels", source={{"limit": 30}})
        b = Project.init({str(tmp_path / 'b')!r}, "digits", backbone="pixels", source={{"limit": 30}})
        fo = fs.connect(a)
        out = {{"env": os.environ.get("FIFTYONE_DATABASE_DIR"), "dir": fo.config.database_dir}}
        fs.connect(a)  # the same project again is fine
        try:
            fs.connect(b)
            out["b"] = "connected"
        except FiftyOneUnavailableError as exc:
            out["b"] = str(exc)
        print(json.dumps(out))
    """
    env = dict(os.environ)
    for k in ("FIFTYONE_DATABASE_DIR", "FIFTYONE_DATABASE_URI", "FIFTYONE_PRIVATE_DATABASE_PORT"):
        env.pop(k, None)
    env["HOME"] = str(tmp_path / "home")  # no user FiftyOne config file
    res = _run(code, env)
    assert res["env"] is None
    assert res["dir"] == str(tmp_path / "a" / "fiftyone" / "db")
    # (whether mongod creates the folder depends on FiftyOne: it reuses a database service another process on the
    # machine already started, e.g. earlier tests of the same run; so only b's side is checked on disk)
    assert not (tmp_path / "b" / "fiftyone").exists()
    assert "already uses the database" in res["b"] and str(tmp_path / "b" / "fiftyone" / "db") in res["b"]
    assert "new kernel" in res["b"] and "\n" not in res["b"]
