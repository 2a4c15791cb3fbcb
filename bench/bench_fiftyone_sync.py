"""Benchmark: write one model's predictions for the 60,000 Fashion-MNIST training images into FiftyOne.

Two ways, in the same run and the same database:
  bulk        alworkbench.integrations.fiftyone_sync.write_predictions, as sync() calls it for a new model:
              Classification(label, confidence, uncertainty) per sample as stored documents, one
              ``set_values`` call into ``predictions_r1``, a registered run (no ``predictions`` alias copy)
  per-sample  the naive loop ``sample["field"] = Classification(...same content...); sample.save()``, on a subset
              (``--loop-n``, default 2,000) and extrapolated linearly to all samples (labelled as such).

The predictions are real: a LogisticRegression fitted on 2,000 labelled training images (pixels) scores all
60,000. Samples are added once with ``add_samples`` and file paths under a temp folder (no PNGs are written:
what is timed is the prediction sync, not image export). Goal: bulk >= 20x faster and <= 10 s.

Usage: .venv/bin/python bench/bench_fiftyone_sync.py [--n 60000] [--loop-n 2000] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60000, help="training images to sync (max 60000)")
    ap.add_argument("--loop-n", type=int, default=2000, help="samples timed in the per-sample save loop")
    ap.add_argument("--json", type=str, default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="alwb-bench-fo-"))
    os.environ.setdefault("FIFTYONE_DATABASE_DIR", str(tmp / "db"))
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

    from sklearn.linear_model import LogisticRegression

    from alworkbench.data.sources import ImageSource
    from alworkbench.integrations import fiftyone_sync as fs

    t = time.perf_counter()
    src = ImageSource.builtin("fashion-mnist")
    train = [i for i, it in enumerate(src.items) if it.split == "train"][: args.n]
    items = [src.items[i] for i in train]
    X = src.pixels[train].reshape(len(train), -1).astype(np.float32) / 255.0
    classes = list(src.classes)
    y = np.array([classes.index(it.label) for it in items])
    rng = np.random.default_rng(0)
    fit_idx = rng.choice(len(items), size=2000, replace=False)
    clf = LogisticRegression(max_iter=300).fit(X[fit_idx], y[fit_idx])
    proba = clf.predict_proba(X).astype(np.float32)
    print(f"data + model: {len(items)} images, {len(classes)} classes, {time.perf_counter() - t:.1f} s")

    fo = fs.connect()
    ds = fo.Dataset(f"alwb-bench-sync-{os.getpid()}")
    try:
        t = time.perf_counter()
        ds.add_samples([fo.Sample(filepath=str(tmp / "images" / f"{it.id}.png"), alwb_id=it.id, alwb_index=k)
                        for k, it in enumerate(items)], progress=False)
        t_add = time.perf_counter() - t
        print(f"add_samples ({len(ds)} samples, once): {t_add:.2f} s")
        ids = [it.id for it in items]

        # bulk: exactly what sync() does for a new model
        t = time.perf_counter()
        fo_docs = fs._raw_classification_docs(fo, proba, classes)
        t_build = time.perf_counter() - t
        t = time.perf_counter()
        ds.add_sample_field("predictions_setvalues_only", fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
        ds.set_values("predictions_setvalues_only", fo_docs, validate=False, progress=False)
        t_set_only = time.perf_counter() - t
        ds.delete_sample_field("predictions_setvalues_only")
        t = time.perf_counter()
        key, written = fs.write_predictions(ds, ids, proba, classes, round_=1, model_version=1, logits=False)
        t_bulk = time.perf_counter() - t
        assert written and key == "predictions_r1"
        print(f"bulk write_predictions -> {key}: {t_bulk:.2f} s for {len(ids)} samples "
              f"({1e3 * t_bulk / len(ids):.3f} ms/sample; of which building the documents {t_build:.2f} s, "
              f"set_values alone {t_set_only:.2f} s)")

        # per-sample save loop on a subset, extrapolated
        m = min(args.loop_n, len(ids))
        sub = ds.limit(m)
        rows = np.asarray(sub.values("alwb_index"))
        t = time.perf_counter()
        for sample, r in zip(sub.iter_samples(progress=False), rows):
            p = proba[r]
            j = int(p.argmax())
            srt = np.sort(p)
            sample["predictions_loop"] = fo.Classification(label=classes[j], confidence=float(p[j]),
                                                           uncertainty=float(1.0 - (srt[-1] - srt[-2])))
            sample.save()
        t_loop = time.perf_counter() - t
        per = t_loop / m
        t_loop_all = per * len(ids)
        print(f"per-sample save loop: {t_loop:.2f} s for {m} samples = {1e3 * per:.3f} ms/sample; "
              f"EXTRAPOLATED to {len(ids)} samples: {t_loop_all:.1f} s")

        # check: both paths wrote the same labels
        same = sub.values("predictions_loop.label") == sub.values("predictions_r1.label")
        speedup = t_loop_all / t_bulk
        ok_speed, ok_time = speedup >= 20, t_bulk <= 10
        print(f"speed-up bulk vs per-sample (extrapolated): {speedup:.1f}x  (goal >= 20x: "
              f"{'met' if ok_speed else 'NOT met'});  bulk {t_bulk:.2f} s (goal <= 10 s: "
              f"{'met' if ok_time else 'NOT met'});  same labels on the subset: {same}")
        res = {"n": len(ids), "add_samples_s": t_add, "bulk_s": t_bulk, "bulk_label_objects_s": t_build,
               "bulk_set_values_only_s": t_set_only, "loop_n": m, "loop_s": t_loop,
               "loop_ms_per_sample": 1e3 * per, "loop_extrapolated_s": t_loop_all, "speedup": speedup,
               "goal_speedup_met": ok_speed, "goal_time_met": ok_time, "same_labels": same}
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2))
    finally:
        ds.delete()
    return 0


if __name__ == "__main__":
    sys.exit(main())
