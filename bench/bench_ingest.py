"""Ingest cost: `alwb init` and `alwb status` on a folder of many small images, first run vs second run.

The first scan reads, hashes and decodes every file; later commands find each unchanged file in the project's
scan index (``DIR/cache/scan.sqlite``) by ``stat`` and read nothing. Every command runs as a user runs it (a
separate `alwb` process); its wall time and peak resident memory (the process's own ``ru_maxrss``) are printed.

    .venv/bin/python bench/bench_ingest.py --n 100000          # about 2-4 minutes on 2 cores
    .venv/bin/python bench/bench_ingest.py --n 100000 --json out.json

The files are 8x8 PNGs (about 100 bytes each) in 10 class folders, written to a temporary folder, with their
modification time set one minute back (files written in the 2 s before a scan are read again by the next one:
the racy-timestamp guard of the index).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def make_files(root: Path, n: int, classes: int = 10) -> float:
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    old = time.time() - 60
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        p = root / f"class{i % classes}" / f"img{i:06d}.png"
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L").save(p, compress_level=1)
        os.utime(p, (old, old))
    return time.perf_counter() - t0


def alwb_measured(*args) -> dict:
    """Run one `alwb` command in its own process; wall seconds and that process's peak RSS (its ru_maxrss)."""
    code = ("import resource, sys, time\n"
            "sys.argv = ['alwb'] + sys.argv[1:]\n"
            "t0 = time.perf_counter()\n"
            "from alworkbench.cli import main\n"
            "rc = main(sys.argv[1:])\n"
            "dt = time.perf_counter() - t0\n"
            "sys.stdout.flush()\n"
            "print('\\n@@', dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rc, file=sys.stderr)\n")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO), TQDM_DISABLE="1"))
    wall = time.perf_counter() - t0
    tail = [line for line in r.stderr.splitlines() if line.startswith("@@ ")]
    if r.returncode != 0 or not tail or tail[-1].split()[3] != "0":
        raise SystemExit(f"alwb {' '.join(map(str, args))} failed:\n{r.stderr[-2000:]}")
    _, inner, rss_kb, _rc = tail[-1].split()
    return {"seconds": round(wall, 2), "in_process_seconds": round(float(inner), 2),
            "peak_rss_mb": round(int(rss_kb) / 1024, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="number of image files (default 100000)")
    ap.add_argument("--keep", help="generate into this folder and keep it (default: a temporary folder)")
    ap.add_argument("--json", help="also write the numbers to this file")
    a = ap.parse_args(argv)
    base = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="alwb-bench-ingest-"))
    try:
        images, proj = base / "images", base / "proj"
        if not images.is_dir() or sum(1 for _ in images.rglob("*.png")) != a.n:
            shutil.rmtree(images, ignore_errors=True)
            print(f"writing {a.n} 8x8 PNGs to {images} ...", flush=True)
            gen = make_files(images, a.n)
            print(f"  {gen:.1f} s", flush=True)
        shutil.rmtree(proj, ignore_errors=True)
        res = {"n_files": a.n, "cpus": os.cpu_count()}
        res["init_first"] = alwb_measured("init", proj, "--images", images)
        res["status_second"] = alwb_measured("status", proj)
        res["status_third"] = alwb_measured("status", proj)
        # what a run without the index costs (the first scan of a new project): init again into another folder
        res["init_new_project"] = alwb_measured("init", base / "proj2", "--images", images)
        res["ratio_first_over_second"] = round(res["init_first"]["seconds"] / res["status_second"]["seconds"], 1)
        index = proj / "cache" / "scan.sqlite"
        res["scan_index_mb"] = round(index.stat().st_size / 2**20, 1)
        print(f"\n{a.n} files, {os.cpu_count()} CPU(s)")
        print(f"{'command':28s} {'wall s':>8s} {'peak RSS MB':>12s}")
        for name in ("init_first", "status_second", "status_third", "init_new_project"):
            r = res[name]
            print(f"{name:28s} {r['seconds']:8.2f} {r['peak_rss_mb']:12.1f}")
        print(f"first run / second run: {res['ratio_first_over_second']}x; scan index {res['scan_index_mb']} MB")
        if a.json:
            Path(a.json).write_text(json.dumps(res, indent=2))
    finally:
        if not a.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
