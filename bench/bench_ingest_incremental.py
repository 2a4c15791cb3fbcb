"""Incremental ingest (issue 11, part 3): add images to a labelled folder project and ingest again.

Builds a folder project of ``--n`` small PNGs (10 class folders, random 16x16 RGB), ingests it once with the
project's real backbone (the offline default ``randconv``), labels ``--labels`` items through a Session, then adds
``--add`` new PNGs and runs ``project.ingest()`` again. Printed and kept as JSON, all from the same run:

- ``embedded``: how many images the incremental ingest embedded, counted as the growth of the embedding cache's
  distinct entries (read from the cache files before and after), beside the backbone's own count;
- the wall time of the incremental ingest against a full re-embed of everything: a second project over the same
  folder (empty cache, empty scan index) ingested from scratch by the same code path, and the ratio of the two;
- whether the label store's events and labels are identical before and after.

    .venv/bin/python bench/bench_ingest_incremental.py                       # 10,000 + 1,000: ~4 min on 2 cores
    .venv/bin/python bench/bench_ingest_incremental.py --json bench/results/ingest_incremental.json

Files get a modification time one minute back, as files that arrived earlier would have (files written in the
2 s before a scan are hashed again by the next one: the scan index's racy-timestamp guard).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CLASSES = 10


def make_files(root: Path, start: int, n: int, seed: int) -> float:
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    old = time.time() - 60
    for c in range(CLASSES):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        p = root / f"class{i % CLASSES}" / f"img{i:06d}.png"
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(p, compress_level=1)
        os.utime(p, (old, old))
    return time.perf_counter() - t0


def cache_count(project) -> int:
    from alworkbench.embed.backbones import get_backbone
    from alworkbench.embed.cache import EmbeddingCache

    b = project.config.backbone
    return EmbeddingCache(project.dir / "cache").count(get_backbone(b.name, weights=b.weights, device=b.device).key)


def store_digest(store) -> str:
    body = json.dumps({"events": store.events(), "labels": store.labels()}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="images in the project before the addition")
    ap.add_argument("--add", type=int, default=1_000, help="images added")
    ap.add_argument("--labels", type=int, default=100, help="labels given before the addition")
    ap.add_argument("--workdir", help="where to build the folders (default: a temporary folder, removed after)")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)

    import torch

    from alworkbench import Answer, Project

    work = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="alwb-ingest-inc-"))
    images = work / "images"
    res: dict = {"n_before": a.n, "n_added": a.add, "image": "16x16 RGB PNG, 10 class folders",
                 "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                 "python": platform.python_version(), "torch": torch.__version__}
    try:
        res["generate_s"] = round(make_files(images, 0, a.n, seed=0), 2)
        p = Project.init(work / "proj", str(images), evaluation={"holdout": 0.0},
                         query={"batch_size": a.labels, "strategy": "random"})
        res["backbone"] = p.config.backbone.name
        first = p.ingest()
        res["initial_ingest_s"] = round(first.seconds, 2)
        assert first.embedded == a.n, first.to_dict()
        print(f"initial ingest: {first.embedded} embedded in {first.seconds:.1f} s", flush=True)

        s = p.session(annotator="bench", warm_start=False)
        for bi in s.next_batch().items:
            s.submit(bi.item.id, Answer.of_label(bi.item.id.split("/")[0]))
        s.close()
        labels_before = p.store.labels()
        digest_before = store_digest(p.store)
        p.close()

        make_files(images, a.n, a.add, seed=1)
        p = Project.open(work / "proj")
        before = cache_count(p)
        inc = p.ingest()
        after = cache_count(p)
        same_store = store_digest(p.store) == digest_before and p.store.labels() == labels_before
        p.close()
        res.update(incremental_s=round(inc.seconds, 3), embedded_counted_in_cache=after - before,
                   embedded_reported=inc.embedded, computed_by_backbone=inc.computed, new=len(inc.new),
                   changed=len(inc.changed), removed=len(inc.removed), unchanged=inc.unchanged,
                   labels=len(labels_before), store_events_and_labels_identical=same_store)
        print(f"incremental ingest of {a.add} added images: {after - before} embedded (cache {before} -> {after}), "
              f"{inc.seconds:.2f} s; store identical: {same_store}", flush=True)

        full_p = Project.init(work / "proj_full", str(images), evaluation={"holdout": 0.0})
        full = full_p.ingest()
        full_p.close()
        res.update(full_reembed_s=round(full.seconds, 2), full_embedded=full.embedded)
        res["ratio_incremental_to_full"] = round(inc.seconds / full.seconds, 4)
        print(f"full re-embed of all {full.embedded} images (empty cache, same code path): {full.seconds:.1f} s",
              flush=True)
        print(f"incremental / full = {inc.seconds:.2f} s / {full.seconds:.1f} s = "
              f"{res['ratio_incremental_to_full']:.3f} ({full.seconds / inc.seconds:.1f}x faster)")
        ok = (after - before == a.add and inc.embedded == a.add and inc.computed == a.add and same_store
              and full.embedded == a.n + a.add)
        res["ok"] = ok
    finally:
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
        print(f"wrote {a.json}")
    return 0 if res.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
