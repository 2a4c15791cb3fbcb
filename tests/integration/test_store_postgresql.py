"""The PostgreSQL team store: chosen by alwb.yaml or ALWB_STORE_URL, migrated from SQLite losslessly by
`alwb store migrate`, credentials never in alwb.yaml, and a real server restart in the middle of labelling."""
from __future__ import annotations

import pytest

from alworkbench.cli import main
from alworkbench.config import config_from_dict
from alworkbench.errors import ConfigError, StoreError
from alworkbench.labels import LabelStore, open_store
from alworkbench.labels.migrate import digest
from alworkbench.types import Answer, Prediction


def _fill(store: LabelStore) -> None:
    pred = Prediction(top=(("cat", 0.7), ("dog", 0.3)), model_version=1)
    for i in range(30):
        store.record(f"s{i}", Answer.of_label("cat" if i % 3 else "dog", time_spent_s=0.1 * i), round=i // 10,
                     annotator=f"a{i % 2}", batch_id=f"b{i // 10}", model_version=1, strategy="margin",
                     score=1 / (i + 3), prediction=pred, shown_at=1.5)
    store.record("t1", Answer.of_tags(["x", "y/z"]), round=3, annotator="a0")
    store.record("f1", Answer.flag("blurry \N{SNOWMAN}"), round=3, annotator="a1")
    store.undo("a0")
    store.record_enqueue(["s1", "s2"], 3, "review", "a1")
    store.append_model({"acc": 0.5})
    store.append_report({"round": 1, "n": 10})
    store.acknowledge_guideline("a0", "2")
    store.save_batch("r9-x", 9, "random", 1, ["s1", "s2"], [0.25, None], [pred, None], annotator="a0")
    store.create_batch("a1", "margin", 1, [(f"n{i}", 0.5, None) for i in range(5)], 3)
    store.set_meta("fiftyone_stamp", {"k": [1, 2]})


def test_migrate_copies_every_row_and_prints_matching_checksums(tmp_path, pg_url, capsys):
    proj = tmp_path / "proj"
    with LabelStore(proj / "labels.sqlite") as src:
        _fill(src)
        want = (src.events(), src.records("model"), src.reports(), src.batches(), src.labels(), src.tag_sets(),
                src.flagged(), src.get_meta("fiftyone_stamp"), src.last_round(), src.stamp())
        want_digest = digest(src)
    assert main(["store", "migrate", str(proj), "--to", pg_url]) == 0
    out = capsys.readouterr().out
    assert f"source: {proj / 'labels.sqlite'}: 35 events, 3 records, 2 batches, 1 meta keys; checksum " \
           f"{want_digest['checksum']}" in out
    assert f"target: postgresql://alwb@127.0.0.1:" in out and f"checksum {want_digest['checksum']}" in out.split("target:")[1]
    with open_store(pg_url) as dst:
        got = (dst.events(), dst.records("model"), dst.reports(), dst.batches(), dst.labels(), dst.tag_sets(),
               dst.flagged(), dst.get_meta("fiftyone_stamp"), dst.last_round(), dst.stamp())
        assert got == want
        # the copy goes on where the file stopped: new ids follow, the rules hold
        eid = dst.record("new", Answer.of_label("cat"), round=4, annotator="a0")
        assert eid == want[-1][0] + 1
        assert dst.append_model({}) == 2
        with pytest.raises(Exception, match="already answered"):
            dst.record("s20", Answer.of_label("cat"), round=2, annotator="a0")
    # and back: PostgreSQL -> a new SQLite file is as faithful (same checksum as the original file, plus the new rows)
    from alworkbench.labels.migrate import copy_store
    with open_store(pg_url) as pg, LabelStore(tmp_path / "back.sqlite") as back:
        res = copy_store(pg, back)
        assert res["source"] == res["target"] and res["target"]["counts"]["events"] == 36
    # a second migration into the same (no longer empty) store is refused
    assert main(["store", "migrate", str(proj), "--to", pg_url]) == 2
    assert "is not empty (36 events" in capsys.readouterr().err


def test_migrate_and_config_refuse_passwords_and_say_where_they_go(tmp_path, pg_server, pg_url, capsys):
    proj = tmp_path / "proj"
    LabelStore(proj / "labels.sqlite").close()
    with_pw = pg_url.replace("alwb@", "alwb:hunter2@")
    assert main(["store", "migrate", str(proj), "--to", with_pw]) == 2
    err = capsys.readouterr().err
    assert "--to carries a password" in err and "PGPASSWORD, ~/.pgpass" in err and "hunter2" not in err
    with pytest.raises(ConfigError, match=r"config key 'store' carries a password") as e:
        config_from_dict({"source": "digits", "store": with_pw})
    assert "hunter2" not in str(e.value)
    with pytest.raises(ConfigError, match=r"config key 'store' must be a postgresql://"):
        config_from_dict({"source": "digits", "store": "mysql://x@y/z"})
    assert config_from_dict({"source": "digits", "store": pg_url}).store == pg_url
    assert "store" not in config_from_dict({"source": "digits"}).to_dict()  # SQLite stays the default
    assert main(["store", "migrate", str(proj)]) == 2
    assert "say where to migrate to" in capsys.readouterr().err


def test_password_from_a_service_file(pg_server, tmp_path, monkeypatch):
    """alwb.yaml may name only a PostgreSQL service; host, port, user and password come from the service file."""
    svc = tmp_path / "pg_service.conf"
    svc.write_text(f"[team]\nhost=127.0.0.1\nport={pg_server.port}\nuser=alwb\ndbname=postgres\n"
                   f"password={pg_server.password}\n")
    svc.chmod(0o600)
    monkeypatch.setenv("PGSERVICEFILE", str(svc))
    monkeypatch.delenv("PGPASSWORD")
    url = f"postgresql://?service=team&options=-csearch_path%3D{pg_server.new_schema()}"
    cfg = config_from_dict({"source": "digits", "store": url})
    with open_store(cfg.store) as s:
        assert s.integrity_check() == "ok" and str(s.path) == "postgresql service 'team'"
        s.record("a", Answer.skip(), round=0, annotator="u")
        assert s.skipped() == {"a"}


def test_project_store_follows_config_and_env(tmp_path, pg_url, monkeypatch):
    from alworkbench import Project
    from alworkbench.labels.pgstore import PgLabelStore

    monkeypatch.delenv("ALWB_STORE_URL", raising=False)
    p = Project.init(tmp_path / "a", "digits", query={"batch_size": 5})
    try:
        assert isinstance(p.store, LabelStore) and not isinstance(p.store, PgLabelStore)
    finally:
        p.close()
    monkeypatch.setenv("ALWB_STORE_URL", pg_url)
    p = Project.open(tmp_path / "a")
    try:
        assert isinstance(p.store, PgLabelStore) and p.store.lease_s == p.config.quality.lease_s
        p.store.record("x", Answer.skip(), round=0, annotator="a")
    finally:
        p.close()
    assert not (tmp_path / "a" / "labels.sqlite").exists() or LabelStore(tmp_path / "a" / "labels.sqlite").n_events() == 0
    monkeypatch.setenv("ALWB_STORE_URL", pg_url.replace("alwb@", "alwb:pw@"))
    p = Project.open(tmp_path / "a")
    try:
        with pytest.raises(ConfigError, match="ALWB_STORE_URL carries a password"):
            p.store
    finally:
        p.close()
    monkeypatch.delenv("ALWB_STORE_URL")
    cfg = (tmp_path / "a" / "alwb.yaml").read_text()
    (tmp_path / "a" / "alwb.yaml").write_text(cfg + f"store: {pg_url}\n")
    p = Project.open(tmp_path / "a")
    try:
        assert isinstance(p.store, PgLabelStore) and p.store.skipped() == {"x"}
    finally:
        p.close()


def test_server_restart_mid_labelling_loses_nothing_and_resumes(pg_server, pg_url):
    """A real restart of the PostgreSQL server between answers: the call that meets the stopped server says the
    store is unreachable (naming the server, not the password); every acknowledged answer is there afterwards;
    the same store object resumes without being reopened."""
    store = open_store(pg_url)
    acked = {}
    try:
        for i in range(20):
            acked[f"s{i}"] = store.record(f"s{i}", Answer.of_label("cat"), round=0, annotator="a")
        pg_server.stop()
        try:
            with pytest.raises(StoreError, match=rf"label store postgresql://alwb@127.0.0.1:{pg_server.port}/postgres:"
                                                 r" the server is unreachable") as err:
                store.record("s20", Answer.of_label("cat"), round=0, annotator="a")
            assert pg_server.password not in str(err.value) and "\n" not in str(err.value)
            with pytest.raises(StoreError, match="the server is unreachable"):
                store.labels()
        finally:
            pg_server.start()
        for i in range(20, 40):
            acked[f"s{i}"] = store.record(f"s{i}", Answer.of_label("dog"), round=0, annotator="a")
        ev = {e["sample_id"]: e["id"] for e in store.events()}
        assert ev == acked  # nothing lost, nothing doubled; s20 (refused while down) was stored once, after
    finally:
        store.close()


def test_session_and_cli_say_unreachable_while_the_server_restarts_then_resume(tmp_path, pg_server, pg_url, capsys):
    """Labelling through the Session (as the notebook does) on a project whose alwb.yaml names the PostgreSQL
    store; the server is stopped mid-batch: submit and `alwb status` say the store is unreachable (exit 2, one
    line, no password); once it is back the same session goes on, and every acknowledged answer is stored."""
    from alworkbench import Project
    from alworkbench.loop.oracle import Oracle

    d = tmp_path / "proj"
    Project.init(d, "digits", source={"limit": 60}, query={"batch_size": 10}, store=pg_url).close()
    p = Project.open(d)
    X = p.source.pixels.reshape(len(p.items), -1).astype("float32")
    s = p.session(annotator="ana", embeddings=X, strategy="random", warm_start=False)
    oracle = Oracle(s, name="ana")
    acked = {}
    try:
        s.next_batch()
        for _ in range(4):
            bi, _ = s.show_next()
            acked[bi.item.id] = s.submit(bi.item.id, oracle.answer_for(bi.item))
        bi, _ = s.show_next()  # on screen when the server goes away
        pg_server.stop()
        try:
            with pytest.raises(StoreError, match=r"postgresql://alwb@127.0.0.1:\d+/postgres: the server is "
                                                 "unreachable") as err:
                s.submit(bi.item.id, oracle.answer_for(bi.item))
            assert pg_server.password not in str(err.value)
            with pytest.raises(StoreError, match="the server is unreachable"):
                s.show_next()  # what comes next is read from the store: refused the same way
            assert main(["status", str(d)]) == 2
            cli_err = capsys.readouterr().err.strip()
            assert cli_err.startswith("alwb: error:") and "the server is unreachable" in cli_err, cli_err
            assert "\n" not in cli_err and pg_server.password not in cli_err
        finally:
            pg_server.start()
        # the refused answer is given again and everything goes on in the same session
        acked[bi.item.id] = s.submit(bi.item.id, oracle.answer_for(bi.item))
        while True:
            bi, _ = s.show_next()
            if bi is None:
                break
            acked[bi.item.id] = s.submit(bi.item.id, oracle.answer_for(bi.item))
        assert len(acked) == 10
        stored = {e["sample_id"]: e["id"] for e in p.store.events() if e["kind"] != "undo"}
        assert stored == acked
        assert main(["status", str(d)]) == 0
    finally:
        s.close()
        p.close()


def test_bench_team_runs_and_counts_lost_and_duplicated(pg_url, tmp_path):
    """bench/bench_team.py end to end (3 processes x 30 answers on both backends): it prints both columns and
    its JSON says 0 lost, 0 duplicated, every acknowledged answer stored."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    out_json = tmp_path / "team.json"
    env = dict(os.environ, PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, str(repo / "bench" / "bench_team.py"), "--procs", "3", "--answers", "30",
                        "--url", pg_url, "--json", str(out_json)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "PostgreSQL" in r.stdout and "SQLite" in r.stdout and "answers_per_s" in r.stdout
    res = json.loads(out_json.read_text())
    for side in ("postgresql", "sqlite"):
        assert res[side]["answers"] == res[side]["stored_events"] == 90
        assert res[side]["lost"] == 0 and res[side]["duplicated"] == 0 and res[side]["errors"] == []
        assert res[side]["answers_per_s"] > 0


CRASH_WRITER = """
import sys
from alworkbench.errors import StoreError
from alworkbench.labels import open_store
from alworkbench.types import Answer
store = open_store(sys.argv[1])
i = 0
try:
    while True:
        eid = store.record(f"s{i}", Answer.of_label(str(i % 3)), round=0, annotator="w")
        print(i, eid, flush=True)
        i += 1
except StoreError as exc:
    print("ERR", exc, flush=True)
"""


def test_server_crash_immediate_shutdown_keeps_every_acknowledged_answer(pg_server, pg_url):
    """The server stopped with `pg_ctl -m immediate` (no checkpoint, crash recovery at the next start) while a
    process keeps recording: every answer whose id the writer printed is there after recovery, and the writer's
    last call ended in a one-line 'unreachable' StoreError, not a traceback."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    open_store(pg_url).close()
    proc = subprocess.Popen([sys.executable, "-c", CRASH_WRITER, pg_url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    acks: dict[int, int] = {}
    try:
        for line in proc.stdout:
            i, eid = map(int, line.split())
            acks[i] = eid
            if len(acks) >= 150:
                break
        pg_server.stop("immediate")  # while it keeps writing
        try:
            rest, err = proc.communicate(timeout=120)
        finally:
            pg_server.start()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    tail = [ln for ln in rest.splitlines() if ln]
    assert tail and tail[-1].startswith("ERR label store postgresql://alwb@127.0.0.1:") and "unreachable" in tail[-1], \
        (tail[-3:], err[-2000:])
    for ln in tail[:-1]:
        i, eid = map(int, ln.split())
        acks[i] = eid
    with open_store(pg_url) as store:
        events = {e["id"]: e["sample_id"] for e in store.events()}
    for i, eid in acks.items():
        assert events.get(eid) == f"s{i}", f"acknowledged answer s{i} (event {eid}) lost in the crash"
    assert len(acks) <= len(events) <= len(acks) + 1  # at most the one in flight, stored but not acknowledged


def test_leases_are_measured_on_the_server_clock(pg_url, monkeypatch):
    """Two machines whose clocks disagree by an hour share one PostgreSQL store: every created_at is the server's
    and the lease is measured on the server's clock, so the machine that runs ahead does not see the other's
    fresh batch as expired (on one SQLite file, one machine's clock is all there is)."""
    import time as real_time
    import types

    from alworkbench.labels import store as store_module

    ana = open_store(pg_url, lease_s=600)
    ben = open_store(pg_url, lease_s=600)
    try:
        b = ana.create_batch("ana", "margin", 0, [(f"i{i}", None, None) for i in range(10)], 4)
        ahead = types.SimpleNamespace(time=lambda: real_time.time() + 3600,
                                      **{k: getattr(real_time, k) for k in ("perf_counter", "monotonic", "sleep")})
        monkeypatch.setattr(store_module, "time", ahead)  # ben's machine runs an hour ahead
        assert ben.batch_holds(b["batch_id"]) is True
        assert ben.reserved_ids("ben") == set(b["item_ids"])
        got = ben.create_batch("ben", "margin", 0, [(f"i{i}", None, None) for i in range(10)], 4)
        assert not set(got["item_ids"]) & set(b["item_ids"])
        ben.record(got["item_ids"][0], Answer.skip(), round=got["round"], annotator="ben")
        ev = ben.events()[-1]
        assert abs(ev["created_at"] - real_time.time()) < 600  # the server's clock, not ben's
    finally:
        ana.close()
        ben.close()


def test_status_names_the_store_backend_and_location_never_a_password(backend, store_url, tmp_path, monkeypatch,
                                                                        capsys, request):
    import json

    from alworkbench import Project

    monkeypatch.delenv("ALWB_STORE_URL", raising=False)
    proj = tmp_path / "proj"
    Project.init(proj, "digits", query={"batch_size": 5}).close()
    if backend == "postgresql":
        monkeypatch.setenv("ALWB_STORE_URL", store_url)
    assert main(["status", str(proj)]) == 0
    out = capsys.readouterr().out
    assert main(["status", str(proj), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)["store"]
    if backend == "sqlite":
        assert st == {"backend": "sqlite", "location": str(proj / "labels.sqlite"), "schema_version": 4}
        assert f"  label store: SQLite {proj / 'labels.sqlite'} (store schema version 4)\n" in out
    else:
        pg_server = request.getfixturevalue("pg_server")
        schema = store_url.split("search_path%3D")[1]
        where = f"postgresql://alwb@127.0.0.1:{pg_server.port}/postgres"
        assert st == {"backend": "postgresql", "location": where, "schema": schema, "schema_version": 4}
        assert f"  label store: PostgreSQL {where}, schema {schema} (store schema version 4)\n" in out
        assert pg_server.password not in out and not (proj / "labels.sqlite").exists()


def test_init_force_keeps_the_team_store_the_labels_live_in(tmp_path, pg_url, monkeypatch):
    from alworkbench import Project

    monkeypatch.delenv("ALWB_STORE_URL", raising=False)
    p = Project.init(tmp_path / "p", "digits", classes=[str(d) for d in range(10)], store=pg_url)
    p.store.record(p.items[0].id, Answer.of_label("3"), round=1, annotator="ana")
    p.close()
    p = Project.init(tmp_path / "p", "digits", classes=[str(d) for d in range(10)], overwrite=True)
    try:  # re-initialised (new classes, say): still the same store, not a new empty labels.sqlite
        assert p.config.store == pg_url and p.store.labels() == {p.items[0].id: "3"}
        assert not (tmp_path / "p" / "labels.sqlite").exists()
    finally:
        p.close()
