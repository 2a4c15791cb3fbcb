"""Two annotators on one project at once (issue 9, finding 3): counts and throughput.

Two real processes label the same project concurrently, first through the Session API (a cheap scikit-learn head on
pixel embeddings, retrained after every batch, so the run measures the hand-out and the store), then as two
``alwb label --oracle`` terminals (the project's own head, pixel backbone). Printed per mode: answers, lost answers
(acknowledged but not in the store), items answered by both annotators, round reports written vs kept, model
versions handed out twice, answers/s. Every process runs under a timeout: one that does not finish is "stuck".
Run:

    .venv/bin/python bench/bench_annotators.py                  # 2 x 1,000 answers each way (Fashion-MNIST subset)
    .venv/bin/python bench/bench_annotators.py --n 300 --json out.json
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _helpers():
    """The same two-process drivers the tests use (tests/integration/test_issue9_annotators.py)."""
    path = REPO / "tests" / "integration" / "test_issue9_annotators.py"
    spec = importlib.util.spec_from_file_location("issue9_annotators", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="answers per process")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=580, help="seconds before a process counts as stuck")
    ap.add_argument("--json", help="write the results here too")
    a = ap.parse_args(argv)
    h = _helpers()
    from alworkbench import Project

    dataset = h.DATASET
    limit = 3000 if dataset != "digits" else 0
    n = a.n if dataset != "digits" else min(a.n, 650)
    out = {"dataset": dataset, "limit": limit, "answers_per_process": n, "batch_size": a.batch_size}
    with tempfile.TemporaryDirectory(prefix="alwb-annotators-") as tmp:
        d = Path(tmp) / "session-api"
        Project.init(d, dataset, source={"limit": limit} if limit else {},
                     query={"batch_size": a.batch_size, "strategy": "margin"}).close()
        st = h.two_session_processes(d, n, timeout=a.timeout)
        versions = st.pop("model_versions")
        st["model_versions_given_twice"] = sum(1 for c in Counter(versions).values() if c > 1)
        out["session_api"] = st

        d = Path(tmp) / "cli"
        t0 = time.perf_counter()
        h.init_cli_project(d, dataset, a.batch_size, limit)
        t_setup = time.perf_counter() - t0
        rounds = -(-n // a.batch_size)
        t0 = time.perf_counter()
        st = h.two_cli_processes(d, rounds, timeout=a.timeout)
        elapsed = time.perf_counter() - t0
        st.pop("outs")
        versions = st.pop("model_versions")
        st.update(rounds_per_process=rounds, setup_s=t_setup, elapsed_s=elapsed,
                  answers_per_s=st["answers"] / elapsed,
                  model_versions_given_twice=sum(1 for c in Counter(versions).values() if c > 1))
        out["cli"] = st

    s, c = out["session_api"], out["cli"]
    print(f"two annotators, one project ({dataset}{f' first {limit}' if limit else ''}), batches of {a.batch_size}")
    print(f"  Session API x2: {s['answers']} answers ({s['per_process']}), lost {s['lost']}, answered by both "
          f"{s['answered_by_both']}, reports kept {s['reports_kept']}/{s['reports_written']}, model versions given "
          f"twice {s['model_versions_given_twice']}, {s['answers_per_s']:.0f} answers/s (incl. a retrain per batch)")
    print(f"  alwb label x2:  {c['answers']} answers ({c['per_annotator']}), answered by both "
          f"{c['answered_by_both']}, items answered twice {c['items_answered_twice']}, reports kept "
          f"{c['reports_kept']}/{c['reports_printed']} printed, model versions given twice "
          f"{c['model_versions_given_twice']}, {c['answers_per_s']:.1f} answers/s (incl. torch head retrain per "
          f"round; process start included)")
    print("  stuck processes: 0 (each finished within its timeout)")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
