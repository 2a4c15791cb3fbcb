"""A team on one label store: N annotator processes x M answers each, at the same time, against PostgreSQL and
against SQLite on this machine. Each process takes leased batches (``create_batch``, 20 items from the same
ranked candidate list, so hand-outs collide) and records an answer for every item, each its own committed
transaction. Printed side by side: answers per second (all answers / wall time from the common start to the
last process's end), lost answers (acknowledged ids missing from the store, or stored under another item or
annotator), duplicated answers (an item answered twice, an id acknowledged twice, a uid stored twice).

PostgreSQL is a throwaway server started here (initdb into a temp folder, a free port on 127.0.0.1, a generated
password; tests/pgserver.py), with its default durability (fsync on, synchronous_commit on), unless --url names
one (password from PGPASSWORD / ~/.pgpass). SQLite is a file in a temp folder (WAL, synchronous=FULL).

    .venv/bin/python bench/bench_team.py --procs 8 --answers 500 --json bench/results/bench_team.json
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alworkbench.labels import open_store  # noqa: E402
from alworkbench.types import Answer  # noqa: E402

BATCH = 20


def worker(location: str, name: str, n: int, n_items: int, go, ready, out_q) -> None:
    cands = [(f"item/{i:05d}", 1.0 - i / n_items, None) for i in range(n_items)]
    acks: list[tuple[int, str]] = []
    store = open_store(location, lease_s=600)
    try:
        store.labels()  # connect before the start
        ready.put(name)
        go.wait()
        t0 = time.perf_counter()
        batches = 0
        while len(acks) < n:
            b = store.create_batch(name, "bench", 0, cands, min(BATCH, n - len(acks)))
            if b is None:
                break
            batches += 1
            for sid in b["item_ids"]:
                eid = store.record(sid, Answer.of_label(str(len(acks) % 10)), round=b["round"], annotator=name,
                                   batch_id=b["batch_id"])
                acks.append((eid, sid))
        out_q.put({"name": name, "acks": acks, "batches": batches, "elapsed_s": time.perf_counter() - t0,
                   "end": time.time()})
    except BaseException as exc:
        out_q.put({"name": name, "error": f"{type(exc).__name__}: {exc}", "acks": acks})
    finally:
        store.close()


def run(location: str, procs: int, n: int) -> dict:
    open_store(location).close()  # create the schema before the race
    ctx = mp.get_context("fork")
    go, ready, out_q = ctx.Event(), ctx.Queue(), ctx.Queue()
    n_items = procs * n + 5 * BATCH
    ps = [ctx.Process(target=worker, args=(location, f"ann{k}", n, n_items, go, ready, out_q)) for k in range(procs)]
    for p in ps:
        p.start()
    for _ in ps:
        ready.get(timeout=300)
    t0 = time.time()
    go.set()
    outs = [out_q.get(timeout=1800) for _ in ps]
    for p in ps:
        p.join(timeout=60)
    errors = [o for o in outs if "error" in o]
    wall = max(o["end"] for o in outs if "end" in o) - t0 if not errors else float("nan")
    with open_store(location) as store:
        events = store.events()
        active = store.active_events()
    by_id = {e["id"]: e for e in events}
    acked = [(o["name"], eid, sid) for o in outs for eid, sid in o["acks"]]
    lost = [a for a in acked if a[1] not in by_id or by_id[a[1]]["sample_id"] != a[2]
            or by_id[a[1]]["annotator"] != a[0]]
    item_twice = [s for s, c in Counter(e["sample_id"] for e in active).items() if c > 1]
    id_twice = [i for i, c in Counter(a[1] for a in acked).items() if c > 1]
    uid_twice = [u for u, c in Counter(e["uid"] for e in events if e["uid"]).items() if c > 1]
    total = len(acked)
    return {"answers": total, "stored_events": len(events), "wall_s": wall, "answers_per_s": total / wall,
            "lost": len(lost), "duplicated": len(item_twice) + len(id_twice) + len(uid_twice),
            "unacknowledged_stored": len(events) - total, "errors": [o["error"] for o in errors],
            "per_process": [{"name": o["name"], "answers": len(o["acks"]), "batches": o.get("batches"),
                             "elapsed_s": o.get("elapsed_s")} for o in outs]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=8)
    ap.add_argument("--answers", type=int, default=500, help="answers per process")
    ap.add_argument("--url", help="an existing PostgreSQL database (default: start a throwaway server)")
    ap.add_argument("--json", help="write the raw results here")
    a = ap.parse_args()
    server = None
    res: dict = {"procs": a.procs, "answers_per_process": a.answers, "batch": BATCH,
                 "command": "bench/bench_team.py " + " ".join(sys.argv[1:]),
                 "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}}
    try:
        if a.url:
            url = a.url
        else:
            sys.path.insert(0, str(REPO / "tests"))
            from pgserver import PgServer
            server = PgServer()
            os.environ["PGPASSWORD"] = server.password
            url = server.url()
        with tempfile.TemporaryDirectory() as tmp:
            res["sqlite"] = run(str(Path(tmp) / "labels.sqlite"), a.procs, a.answers)
        res["postgresql"] = run(url, a.procs, a.answers)
        with open_store(url) as s:
            res["postgresql"]["server"] = s._read("SELECT version()")[0][0]
            res["postgresql"]["settings"] = {k: s._read(f"SHOW {k}")[0][0] for k in ("fsync", "synchronous_commit")}
    finally:
        if server is not None:
            server.close()
    print(f"{a.procs} processes x {a.answers} answers, leased batches of {BATCH}, each answer its own commit")
    print(f"{'':24}{'PostgreSQL':>14}{'SQLite':>14}")
    for key, fmt in (("answers", "{:d}"), ("wall_s", "{:.1f}"), ("answers_per_s", "{:.0f}"), ("lost", "{:d}"),
                     ("duplicated", "{:d}"), ("unacknowledged_stored", "{:d}")):
        print(f"{key:24}{fmt.format(res['postgresql'][key]):>14}{fmt.format(res['sqlite'][key]):>14}")
    for side in ("postgresql", "sqlite"):
        if res[side]["errors"]:
            print(f"{side} errors: {res[side]['errors']}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {a.json}")
    ok = all(res[s]["lost"] == 0 and res[s]["duplicated"] == 0 and not res[s]["errors"] for s in ("postgresql", "sqlite"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
