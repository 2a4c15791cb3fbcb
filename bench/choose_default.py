"""How the default query strategy is chosen: on VALIDATION splits, never on the test splits the README reports on.

For each set, 20% of the pool is held back as the validation set (simulate(validation=0.2)): the test split is
neither queried nor evaluated on. Sets: a colour set cropped from the six photos with a different seed (1) than the
one bench_small_sets.py reports on (0), digits, and a 12,000-image subset of Fashion-MNIST. Asynchronous loop.
Prints, per set and strategy, the mean validation accuracy over the curve and the worst round against random.

    .venv/bin/python bench/choose_default.py [--seeds 0,1,2] [--strategies random,default,diverse_margin,margin] \\
        --json bench/results/choose_default.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

from alworkbench.loop.simulation import simulate  # noqa: E402
from photo_patches import make_patches  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--strategies", default="random,default,diverse_margin,margin")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    out: dict = {"command": "python bench/choose_default.py " + " ".join(sys.argv[1:]), "sets": {}}
    with tempfile.TemporaryDirectory(prefix="alwb-choose-") as tmp:
        photos = make_patches(Path(tmp) / "photo-patches-seed1", per_class=100, seed=1)
        sets = (("photo-patches (crop seed 1)", str(photos), None, 120, 12), ("digits", "digits", None, 200, 20),
                ("fashion-mnist 12k", "fashion-mnist", 12000, 300, 20))
        for name, ds, limit, budget, batch in sets:
            res = simulate(ds, strategies=a.strategies.split(","), budget=budget, batch_size=batch, initial=batch,
                           seeds=seeds, limit=limit, workdir=Path(tmp) / "work", progress=False, mode="async",
                           validation=0.2, log=lambda m: print(m, flush=True))
            print(f"\n== {name}: validation accuracy, budget {budget}, batches of {batch}, {len(seeds)} seeds ==")
            for s, e in res["summary"]["strategies"].items():
                print(f"  {s:>16s}: mean over the curve {e['mean_accuracy_over_curve']:.4f}, worst round vs random "
                      f"{e['worst_gap_vs_baseline'] * 100:+.2f} pts, final {e['final_accuracy']:.4f}", flush=True)
            res.pop("ingest", None)
            out["sets"][name] = {k: res[k] for k in ("summary", "budget", "batch_size", "seeds", "evaluated_on",
                                                     "n_pool", "mode")}
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=1))
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
