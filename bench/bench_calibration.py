"""Expected calibration error of the shown top-1 confidence on Fashion-MNIST, before (raw head) and after (temperature
scaled on out-of-fold predictions of the labelled set, what the session shows), at 200 and 1,000 random labels,
on the 10,000 test images. 15 equal-width bins. 3 seeds. Also the head the workbench used before (AdamW, 300+
steps, uncalibrated) on the same labels, for reference.

    .venv/bin/python bench/bench_calibration.py [--sizes 200,1000] [--seeds 0,1,2] --json bench/results/calibration.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fmnist  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="200,1000")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    from alworkbench.head import make_head_factory
    from alworkbench.loop.calibration import apply_temperature, calibrate, top1_ece

    X, y, ev, classes, _ = fmnist.embedded()
    tr, te = np.flatnonzero(~ev), np.flatnonzero(ev)
    factory = make_head_factory({"device": "cpu"})
    rows = []
    for n in (int(s) for s in a.sizes.split(",")):
        for seed in (int(s) for s in a.seeds.split(",")):
            idx = np.random.default_rng(seed).choice(tr, n, replace=False)
            head = factory().fit(X[idx], y[idx])
            cal = calibrate(factory, X[idx], y[idx], False, len(classes), seed=seed, warm_from=head)
            raw = head.predict_proba(X[te])
            shown = apply_temperature(raw, cal.temperature)
            old = factory().set_params(solver="adamw").fit(X[idx], y[idx]).predict_proba(X[te])
            r = {"n_labels": n, "seed": seed, "temperature": cal.temperature, "cv_accuracy": cal.cv_accuracy,
                 "test_accuracy": float((raw.argmax(1) == y[te]).mean()),
                 "mean_confidence_before": float(raw.max(1).mean()), "mean_confidence_after": float(shown.max(1).mean()),
                 "ece_before": top1_ece(raw, y[te]), "ece_after": top1_ece(shown, y[te]),
                 "ece_previous_head": top1_ece(old, y[te]), "mean_confidence_previous_head": float(old.max(1).mean()),
                 "test_accuracy_previous_head": float((old.argmax(1) == y[te]).mean())}
            rows.append(r)
            print(f"n={n:5d} seed {seed}: T={r['temperature']:.2f}  test acc {r['test_accuracy']:.4f} (CV "
                  f"{r['cv_accuracy']:.4f})  mean top-1 confidence {r['mean_confidence_before']:.3f} -> "
                  f"{r['mean_confidence_after']:.3f}  ECE {r['ece_before']:.4f} -> {r['ece_after']:.4f}  (previous AdamW "
                  f"head: confidence {r['mean_confidence_previous_head']:.3f}, ECE {r['ece_previous_head']:.4f})",
                  flush=True)
    for n in sorted({r["n_labels"] for r in rows}):
        sel = [r for r in rows if r["n_labels"] == n]
        print(f"n={n}: mean ECE previous head {np.mean([r['ece_previous_head'] for r in sel]):.4f}, L-BFGS head "
              f"before calibration {np.mean([r['ece_before'] for r in sel]):.4f}, after "
              f"{np.mean([r['ece_after'] for r in sel]):.4f} (goal <= 0.05)")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"command": "python bench/bench_calibration.py " + " ".join(sys.argv[1:]),
                                            "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
