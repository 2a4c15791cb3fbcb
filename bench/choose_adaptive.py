"""Two choices inside the adaptive default, compared on VALIDATION splits (20% of each pool held back; the test
splits the README reports on are neither queried nor evaluated), in the asynchronous loop a person gets:

* ``--knob no_model``: what a batch opened before the first model exists (labelled items, no model) is chosen by:
  ``cold_start`` (TypiClust seeded with the labelled set) or ``weak`` (the weak-model choice, ADAPTIVE_WEAK).
* ``--knob skill_source``: where the skill signal that moves the batch from coverage to uncertainty is measured:
  ``all`` (out of fold on every label) or ``representative`` (out of fold on the labels no uncertainty score chose).

Sets: photo crops made with crop seed 1 (the README's set uses crop seed 0), scikit-learn's digits, a 12,000-image
Fashion-MNIST subset, and the full Fashion-MNIST pool (budget 1,000, batches of 50: labels to reach random@1000).

    .venv/bin/python bench/choose_adaptive.py --knob skill_source --sets photo,digits --seeds 0-19 \\
        --json bench/results/choose_skill_source_small.json

Prints, per set and value: the mean validation accuracy over the curve and the worst round, both against random
(and for the full pool the labels to reach random's final accuracy).
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

from alworkbench.loop import session as session_mod  # noqa: E402
from alworkbench.loop.simulation import simulate  # noqa: E402
from alworkbench.query import strategies as st  # noqa: E402
from choose_default import seed_list, validation_sets  # noqa: E402

# knob -> (module, attribute, values; the first is the one compared against)
KNOBS = {"no_model": (st, "ADAPTIVE_NO_MODEL", ("cold_start", "weak")),
         "skill_source": (session_mod, "SKILL_SOURCE", ("all", "representative"))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--knob", required=True, choices=sorted(KNOBS))
    ap.add_argument("--seeds", default="0,1,2,3,4", help="0,1,2 or a range 0-19")
    ap.add_argument("--pace", type=float, default=0.02, help="seconds per simulated answer")
    ap.add_argument("--sets", default="photo,digits,fmnist12k")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    module, attr, values = KNOBS[a.knob]
    seeds = seed_list(a.seeds)
    out: dict = {"command": "python bench/choose_adaptive.py " + " ".join(sys.argv[1:]), "knob": a.knob,
                 "evaluated_on": "validation", "pace_seconds_per_answer": a.pace, "sets": {}}
    with tempfile.TemporaryDirectory(prefix="alwb-adaptive-") as tmp:
        every = validation_sets(Path(tmp), photo="photo" in a.sets.split(","))
        for key in a.sets.split(","):
            name, ds, budget, batch, limit = every[key]
            rows = out["sets"][name] = {"budget": budget, "batch_size": batch, "seeds": seeds}
            for value in values:
                setattr(module, attr, value)  # read at call time
                res = simulate(ds, strategies=["random", "adaptive"], budget=budget, batch_size=batch, initial=batch,
                               seeds=seeds, limit=limit, workdir=Path(tmp) / "work", progress=False, mode="async",
                               pace=a.pace, validation=0.2)
                e, r = res["summary"]["strategies"]["adaptive"], res["summary"]["strategies"]["random"]
                rows[value] = {"mean_gap": e["mean_accuracy_over_curve"] - r["mean_accuracy_over_curve"],
                               "worst_round": e["worst_gap_vs_baseline"], "final": e["final_accuracy"],
                               "random_final": r["final_accuracy"],
                               "labels_to_reach_random_final": e["labels_to_reach_baseline_final"],
                               "adaptive_curve": e["mean_curve"], "random_curve": r["mean_curve"]}
                print(f"{name:>28s} {a.knob}={value:>14s}: mean over the curve vs random "
                      f"{rows[value]['mean_gap'] * 100:+.2f} pts, worst round {rows[value]['worst_round'] * 100:+.2f} "
                      f"pts, labels to reach random@{budget}: {e['labels_to_reach_baseline_final']}", flush=True)
            if a.json:  # after every set, so a long run keeps what it measured
                Path(a.json).parent.mkdir(parents=True, exist_ok=True)
                Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
