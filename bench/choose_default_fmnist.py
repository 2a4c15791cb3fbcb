"""Query strategies on the VALIDATION split of the full Fashion-MNIST pool (20% held back; the test split is neither
queried nor evaluated on): labels each strategy needs to reach random's 1,000-label validation accuracy. Synchronous
loop (the strategy's best case), batches of 50 after 50, seeds 0,1. Used to decide the default on Fashion-MNIST
without looking at the test split the README reports on.

    .venv/bin/python bench/choose_default_fmnist.py random,default,margin,entropy,class_balanced 1000 \\
        bench/results/choose_default_fmnist.json
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from alworkbench.loop.simulation import simulate  # noqa: E402


def main() -> None:
    strats, budget, out = sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3]
    res = simulate("fashion-mnist", strategies=strats, budget=budget, batch_size=50, initial=50, seeds=[0, 1],
                   mode="sync", validation=0.2, progress=False, log=lambda m: print(m, flush=True))
    for s, e in res["summary"]["strategies"].items():
        print(s, "reaches random@budget with", e["labels_to_reach_baseline_final"], "labels; worst round",
              round(e["worst_gap_vs_baseline"] * 100, 2), "pts;",
              [(r["n_labels"], round(r["accuracy"], 4)) for r in e["mean_curve"]], flush=True)
    res.pop("ingest", None)
    res["command"] = "python bench/choose_default_fmnist.py " + " ".join(sys.argv[1:])
    Path(out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
