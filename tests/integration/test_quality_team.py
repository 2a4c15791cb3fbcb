"""Issue 10, build 4: a team on one store. Several annotators at once, each in their own OS process.

* Two processes x 1,000 answers on one project at the same time: 0 acknowledged answers lost, 0 duplicated, no item
  answered by both; with overlap (share 0.3, k = 2, three annotators x 1,000) the items answered by two are exactly
  overlap items and none has more than k answerers.
* A batch abandoned by a closed kernel returns to the pool: a normal exit without ``close()`` releases it (atexit);
  a SIGKILL releases nothing, and the items return once the batch's lease ran out; a kernel reopened after a
  release, with nobody having taken its items, resumes its old batch.

Every test runs against both store backends (the ``team_store`` fixture: the project's SQLite file, or a fresh
schema of a throwaway PostgreSQL server named by ``store:`` in alwb.yaml). Everything is checked from the real store; every subprocess runs under a timeout; the only waiting is a
poll with a deadline for the lease, which asserts the positive outcome.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from alworkbench import Project
from alworkbench.errors import PoolExhaustedError
from alworkbench.config import load_config
from alworkbench.labels import LabelStore, open_store
from alworkbench.labels.quality import stable_unit

REPO = Path(__file__).resolve().parents[2]
FMNIST = Path("/usr/share/datasets/fashion-mnist").is_dir()

# One annotator labelling ``n`` answers through the Session API, as a notebook would: next_batch / show_next /
# submit, each acknowledged event id appended (and flushed) to ``ack_file`` the moment submit returns. One
# background retrain (a cheap scikit-learn head on pixel embeddings) after the first batch: the model may land and
# re-select the open batch while the others hand out items; it has landed before the third batch, so the rest is
# selected by uncertainty (cheap: the cold start's clustering grows with the labelled set). All sessions share the
# project's seed, so their selections collide often: the store's atomic hand-out has to resolve it.
TEAM_WORKER = textwrap.dedent("""
    import json, sys, time
    from sklearn.linear_model import LogisticRegression
    from alworkbench import Project
    from alworkbench.loop.oracle import Oracle

    directory, name, n, ack_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    p = Project.open(directory)
    X = p.source.pixels.reshape(len(p.items), -1).astype("float32")
    X /= max(float(X.max()), 1.0)
    s = p.session(annotator=name, embeddings=X, head_factory=lambda: LogisticRegression(max_iter=200),
                  warm_start=False)
    o = Oracle(s, name=name)
    print("ready", flush=True)
    sys.stdin.readline()  # "go": every process starts together
    t0, done, batches = time.perf_counter(), 0, 0
    with open(ack_file, "w") as acks:
        while done < n:
            s.next_batch()
            batches += 1
            while done < n:
                bi, _ = s.show_next()
                if bi is None:
                    break
                eid = s.submit(bi.item.id, o.answer_for(bi.item))
                acks.write(f"{eid} {bi.item.id}\\n")
                acks.flush()
                done += 1
            if batches == 1:
                s.retrain_async()
            elif batches == 2:
                s.wait()
    s.close()
    print(json.dumps({"answers": done, "batches": batches, "elapsed": time.perf_counter() - t0}), flush=True)
""")

# Take a batch of every item still in the pool (the ``random`` strategy), print it as JSON; then either exit
# normally without close() ("exit": the atexit hook releases the batch, as when a kernel is shut down) or wait on
# stdin ("hang": until told to exit normally, or killed).
TAKE_WORKER = textwrap.dedent("""
    import json, sys
    from alworkbench import Project
    from alworkbench.errors import PoolExhaustedError

    directory, name, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    p = Project.open(directory)
    X = p.source.pixels.reshape(len(p.items), -1).astype("float32")
    s = p.session(annotator=name, embeddings=X, strategy="random", warm_start=False)
    try:
        b = s.next_batch(max(1, len(s.pool_indices())))
        rec = p.store.load_batch(b.batch_id)
        out = {"batch_id": b.batch_id, "round": b.round, "items": [x.item.id for x in b.items],
               "supersedes": rec["supersedes"], "created_at": rec["created_at"]}
    except PoolExhaustedError:
        out = {"exhausted": True}
    print(json.dumps(out), flush=True)
    if mode == "hang":
        sys.stdin.readline()
""")


@pytest.fixture
def team_store(backend, request):
    """``store:`` for the project's alwb.yaml: None (the embedded SQLite file) or a PostgreSQL URL."""
    return None if backend == "sqlite" else request.getfixturevalue("pg_url")


def _open_store(directory: Path, **kw) -> LabelStore:
    """The project's store, where its alwb.yaml says it is."""
    return open_store(load_config(directory / "alwb.yaml").store or directory / "labels.sqlite", **kw)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONWARNINGS"] = "ignore"
    # one thread per process: several annotators' processes share a small machine (OpenMP/BLAS thread pools
    # spinning against each other would measure the machine, not the hand-out)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    return env


def _popen(script: str, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO)


def _reap(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=60)


# ---------------------------------------------------------------------------------------------- many at once
def run_team(directory: Path, names: list[str], n: int, timeout: float = 540) -> dict:
    """Every annotator in ``names`` in its own process, released together, ``n`` answers each."""
    acks = {name: directory.parent / f"acks-{name}.txt" for name in names}
    procs = [_popen(TEAM_WORKER, directory, name, n, acks[name]) for name in names]
    try:
        for p in procs:
            line = p.stdout.readline()
            assert line.strip() == "ready", p.stderr.read()[-3000:]
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        deadline = time.monotonic() + timeout
        out = {}
        for name, p in zip(names, procs):
            try:
                so, se = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"annotator {name}'s process is stuck after {timeout:.0f} s")
            assert p.returncode == 0, f"{name} exited {p.returncode}:\n{so[-2000:]}\n{se[-3000:]}"
            out[name] = json.loads(so.strip().splitlines()[-1])
    finally:
        _reap(procs)
    acked = {}
    for name in names:
        rows = [line.split() for line in acks[name].read_text().splitlines()]
        acked[name] = [(int(eid), sid) for eid, sid in rows]
    with _open_store(directory) as store:
        events = store.events()
        active = store.active_events()
    return {"out": out, "acked": acked, "events": events, "active": active}


def check_team(r: dict, names: list[str], n: int) -> dict:
    """The counts the issue asks for, from the store: lost, duplicated, answerers per item."""
    by_id = {e["id"]: e for e in r["events"]}
    active_ids = {e["id"] for e in r["active"]}
    lost = [(name, eid, sid) for name, rows in r["acked"].items() for eid, sid in rows
            if eid not in by_id or by_id[eid]["sample_id"] != sid or by_id[eid]["annotator"] != name
            or eid not in active_ids]
    acked_twice = [eid for eid, c in Counter(eid for rows in r["acked"].values() for eid, _ in rows).items() if c > 1]
    uids = Counter(e["uid"] for e in r["events"] if e["uid"] is not None)
    answers = [e for e in r["active"] if not str(e["strategy"]).startswith("gold:")]
    per_item_annotator = Counter((e["sample_id"], e["annotator"]) for e in answers)
    answerers: dict[str, set] = {}
    for e in answers:
        answerers.setdefault(e["sample_id"], set()).add(e["annotator"])
    return {"per_process": {name: len(r["acked"][name]) for name in names},
            "stored": dict(Counter(e["annotator"] for e in answers)),
            "lost": lost, "acked_twice": acked_twice,
            "uid_twice": [u for u, c in uids.items() if c > 1],
            "two_answers_same_annotator": [k for k, c in per_item_annotator.items() if c > 1],
            "undos": sum(e["kind"] == "undo" for e in r["events"]),
            "answerers": answerers,
            "elapsed_s": max(o["elapsed"] for o in r["out"].values())}


def _team_project(directory: Path, limit: int, store=None, **quality) -> None:
    if FMNIST:
        Project.init(directory, "fashion-mnist", source={"limit": limit}, query={"batch_size": 50},
                     quality=quality or {}, store=store).close()
    else:  # digits (1,797 images, its own test split of 359): 1,438 to hand out
        Project.init(directory, "digits", query={"batch_size": 50}, quality=quality or {}, store=store).close()


def test_two_processes_1000_answers_each_nothing_lost_nothing_shared(tmp_path, team_store):
    """Two annotators x 1,000 answers (650 on digits) at the same time: every acknowledged answer is in the store
    under its annotator and active, none twice, and no item was answered by both (overlap_share 0)."""
    d = tmp_path / "team"
    _team_project(d, limit=3000, store=team_store)
    n = 1000 if FMNIST else 650
    names = ["ana", "ben"]
    st = check_team(run_team(d, names, n), names, n)
    assert st["per_process"] == {"ana": n, "ben": n}, st["per_process"]
    assert st["stored"] == {"ana": n, "ben": n}, st["stored"]  # nothing recorded beyond what was acknowledged
    assert st["lost"] == [] and st["acked_twice"] == [] and st["uid_twice"] == [], st
    assert st["undos"] == 0
    assert st["two_answers_same_annotator"] == []
    both = [sid for sid, who in st["answerers"].items() if len(who) > 1]
    assert both == [], f"{len(both)} item(s) answered by both annotators without overlap: {both[:5]}"
    assert len(st["answerers"]) == 2 * n  # every answer on its own item


def test_overlap_items_go_to_k_annotators_and_no_others(tmp_path, team_store):
    """Overlap share 0.3, k = 2, three annotators x 1,000 answers (450 on digits) at once: items answered by two or more are
    exactly overlap items (the stable hash the session uses), none has more than k answerers, nothing lost or
    duplicated."""
    share, k = 0.3, 2
    d = tmp_path / "overlap"
    _team_project(d, limit=4000, store=team_store, overlap_share=share, overlap_k=k)
    n = 1000 if FMNIST else 450
    names = ["ana", "ben", "cat"]
    st = check_team(run_team(d, names, n), names, n)
    assert st["per_process"] == {name: n for name in names}, st["per_process"]
    assert st["stored"] == {name: n for name in names}, st["stored"]
    assert st["lost"] == [] and st["acked_twice"] == [] and st["uid_twice"] == [], st
    assert st["two_answers_same_annotator"] == [], st["two_answers_same_annotator"][:5]
    shared = {sid: who for sid, who in st["answerers"].items() if len(who) > 1}
    not_overlap = [sid for sid in shared if not stable_unit("overlap", sid) < share]
    assert not_overlap == [], f"{len(not_overlap)} non-overlap item(s) answered by several annotators"
    too_many = {sid: sorted(who) for sid, who in shared.items() if len(who) > k}
    assert too_many == {}, too_many
    # overlap really happened, between every pair of annotators
    assert len(shared) >= 50, len(shared)
    pairs = Counter(tuple(sorted(who)) for who in shared.values())
    assert set(pairs) == {("ana", "ben"), ("ana", "cat"), ("ben", "cat")}, pairs


# ---------------------------------------------------------------------------------------------- abandoned batches
def _small_project(directory: Path, store=None, **quality) -> set[str]:
    """A digits project with 60 images; returns the ids that can be handed out (not held out)."""
    p = Project.init(directory, "digits", source={"limit": 60}, query={"batch_size": 10}, quality=quality or {},
                     store=store)
    try:
        poolable = {it.id for it, held in zip(p.items, p.eval_mask()) if not held}
    finally:
        p.close()
    assert 30 <= len(poolable) < 60
    return poolable


def _take(directory: Path, name: str, mode: str, timeout: float = 300):
    """Start a TAKE_WORKER; returns (process, its batch as printed)."""
    proc = _popen(TAKE_WORKER, directory, name, mode)
    try:
        line = proc.stdout.readline()
        if not line.strip():
            proc.wait(timeout=timeout)
            pytest.fail(f"{name}'s process printed nothing: {proc.stderr.read()[-3000:]}")
        return proc, json.loads(line)
    except BaseException:
        _reap([proc])
        raise


def _finish(proc: subprocess.Popen, timeout: float = 300) -> None:
    """Let a worker exit normally (a line on stdin for "hang"); it must exit 0."""
    try:
        _, err = proc.communicate("exit\n", timeout=timeout)
    except subprocess.TimeoutExpired:
        _reap([proc])
        pytest.fail(f"a worker did not exit within {timeout} s")
    assert proc.returncode == 0, err[-3000:]


def _session(directory: Path, name: str):
    p = Project.open(directory)
    X = p.source.pixels.reshape(len(p.items), -1).astype("float32")
    return p, p.session(annotator=name, embeddings=X, strategy="random", warm_start=False)


def _released(directory: Path) -> list[str]:
    with _open_store(directory) as store:
        return [r["batch_id"] for r in store.records("batch_release")]


def test_batch_of_a_closed_kernel_returns_to_the_pool_and_resumes(tmp_path, team_store):
    """(c) A exits normally without close(): the atexit hook releases its batch; A reopened, with nobody having
    taken the items, resumes the same batch (renewed, held again). (a) After A exits again, B gets exactly A's
    items; A reopened while B holds them does not get them back."""
    d = tmp_path / "closed"
    poolable = _small_project(d, store=team_store)

    # A takes every poolable item and exits normally, never calling close()
    proc, a1 = _take(d, "ana", "exit")
    _finish(proc)
    assert set(a1["items"]) == poolable and a1["supersedes"] is None
    assert _released(d) == [a1["batch_id"]]
    with _open_store(d) as store:
        assert store.batch_holds(a1["batch_id"]) is False

    proj, ben = _session(d, "ben")
    try:
        # (c) A reopened: nobody took the items, so A resumes its old batch (same round, same items)
        proc, a2 = _take(d, "ana", "hang")
        try:
            assert a2.get("exhausted") is None, a2
            assert a2["round"] == a1["round"] and a2["items"] == a1["items"], (a1, a2)
            assert a2["supersedes"] == a1["batch_id"]  # renewed as a record that holds again
            assert proj.store.batch_holds(a2["batch_id"]) is True
            # ... and while resumed A holds them, B gets none of them
            assert ben.pool_indices().size == 0
            with pytest.raises(PoolExhaustedError):
                ben.next_batch()
        finally:
            _finish(proc)  # normal exit again: released again
        assert _released(d) == [a1["batch_id"], a2["batch_id"]]

        # (a) B (this process) now gets exactly A's items
        b = ben.next_batch(len(poolable))
        assert {x.item.id for x in b.items} == poolable
        assert proj.store.batch_holds(b.batch_id) is True

        # A reopened while B holds its old items: no resume, and nothing is left for A
        proc, a3 = _take(d, "ana", "exit")
        _finish(proc)
        assert a3 == {"exhausted": True}, a3
    finally:
        ben.close()
        proj.close()


def test_batch_of_a_killed_kernel_returns_when_its_lease_runs_out(tmp_path, team_store):
    """(b) A is killed with SIGKILL holding a batch: nothing is released, and while the lease holds B does not get
    the items; once the lease ran out B gets exactly them."""
    lease = 10.0  # long enough that the check right after A's batch is created is safe on a loaded machine
    d = tmp_path / "killed"
    poolable = _small_project(d, store=team_store, lease_s=lease)
    proj, ben = _session(d, "ben")  # opened first: the check below follows A's batch at once
    try:
        assert proj.store.lease_s == lease
        proc, a = _take(d, "ana", "hang")
        try:
            assert set(a["items"]) == poolable
            # the lease holds: B gets none of A's items
            with pytest.raises(PoolExhaustedError):
                ben.next_batch()
            holds_now = proj.store.batch_holds(a["batch_id"])
            age = time.time() - a["created_at"]
            assert holds_now, f"A's batch no longer held {age:.1f} s after it was created (lease {lease} s)"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            proc.stdout.close()
            proc.stderr.close()
            proc.stdin.close()
        assert proc.returncode == -signal.SIGKILL
        # a killed kernel releases nothing: without a lease, the batch would hold forever
        assert _released(d) == []
        with _open_store(d) as no_lease:
            assert no_lease.lease_s is None and no_lease.batch_holds(a["batch_id"]) is True

        # the lease runs out (no answer in the batch for lease_s seconds): the items return to the pool
        deadline = time.monotonic() + lease + 120
        while proj.store.batch_holds(a["batch_id"]):
            assert time.monotonic() < deadline, "the lease of the killed kernel's batch never ran out"
            time.sleep(0.2)
        b = ben.next_batch(len(poolable))
        assert {x.item.id for x in b.items} == poolable
        assert _released(d) == []  # returned by the lease, not by a release
    finally:
        ben.close()
        proj.close()
