"""Small budgets on small real image sets, as a person gets it (asynchronous loop): the default strategy against
random on (a) a real colour set made from six photographs (bench/photo_patches.py: 6 classes x 100 crops, 48x48) and
(b) scikit-learn's digits (10 classes). Budget 120 labels in batches of 12, and 200 in batches of 20; 5 seeds by default (the README's runs: 20).

    .venv/bin/python bench/bench_small_sets.py --seeds 0-19 --pace 0.02 --json bench/results/small_sets_20seeds.json
    .venv/bin/python bench/bench_small_sets.py --seeds 0-19 --clock virtual --pace 1 --compare-sync \
        --json bench/results/small_sets_person_pace.json   # a person's pace, one answer a second (virtual)

Prints, per set: the mean curves, the mean accuracy over the curve, and the worst round of the default vs random.
Goal (issue 8): the default's mean curve not below random's, no round more than 1 point below.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

from alworkbench.loop.simulation import format_table, simulate  # noqa: E402
from choose_default import seed_list  # noqa: E402
from photo_patches import make_patches  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2,3,4", help="0,1,2 or a range 0-19")
    ap.add_argument("--pace", type=float, default=0.02, help="seconds per simulated answer (virtual with --clock virtual)")
    ap.add_argument("--clock", default="real", choices=["real", "virtual"],
                    help="virtual: the asynchronous loop on a virtual clock (fits cost their measured time, nothing "
                         "sleeps), so a person's pace (--pace 1) runs in the time the fits take")
    ap.add_argument("--strategies", default="random,default")
    ap.add_argument("--json", default=None)
    ap.add_argument("--compare-sync", action="store_true", help="also run the synchronous loop, reported beside")
    a = ap.parse_args()
    seeds = seed_list(a.seeds)
    out: dict = {"command": "python bench/bench_small_sets.py " + " ".join(sys.argv[1:]), "sets": {}}
    with tempfile.TemporaryDirectory(prefix="alwb-small-") as tmp:
        photos = make_patches(Path(tmp) / "photo-patches", per_class=100, seed=0)
        for name, ds, budget, batch in (("photo-patches", str(photos), 120, 12), ("digits", "digits", 200, 20)):
            t0 = time.perf_counter()
            res = simulate(ds, strategies=a.strategies.split(","), budget=budget, batch_size=batch, initial=batch,
                           seeds=seeds, workdir=Path(tmp) / "work", progress=False, mode="async", pace=a.pace,
                           clock=a.clock, compare_sync=a.compare_sync, log=lambda m: print(m, flush=True))
            print(f"\n== {name}: {res['n_pool']} pool, {res['n_eval']} held out, budget {budget}, batches of {batch}, "
                  f"{len(seeds)} seeds, async (pace {a.pace} s, {a.clock} clock) ==")
            print(format_table(res))
            summ = res["summary"]["strategies"]
            for s, e in summ.items():
                line = f"  {s:>10s}: mean accuracy over the curve {e['mean_accuracy_over_curve']:.4f} (async)"
                if "summary_sync" in res:
                    es = res["summary_sync"]["strategies"][s]
                    line += (f", {es['mean_accuracy_over_curve']:.4f} (sync); worst round vs random "
                             f"{e['worst_gap_vs_baseline'] * 100:+.2f} (async) / {es['worst_gap_vs_baseline'] * 100:+.2f} "
                             f"points (sync)")
                print(line)
            res.pop("ingest", None)
            res["wall_seconds"] = round(time.perf_counter() - t0, 1)
            res["dataset"] = name
            out["sets"][name] = res
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=1))
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
