"""Embedding throughput: the batched DataLoader path of ``embed_source`` vs a naive one-image-at-a-time loop.

Same backbone, same images, same process. Images come from the built-in Fashion-MNIST source (or sklearn digits
when Fashion-MNIST is not installed), read through ``source.load`` on both paths; the batched path also gets the
``.pixels`` fast path measured on its own line. Run:

    .venv/bin/python bench/bench_embed.py                       # default backbone (randconv), CPU
    .venv/bin/python bench/bench_embed.py --backbone resnet18 --n 256
    .venv/bin/python bench/bench_embed.py --device cuda         # also done automatically when cuda is available
    .venv/bin/python bench/bench_embed.py --ray --n 20000       # local path vs Ray Data with 2 workers (needs [ray])

``--ray`` embeds the same images (no cache, pure compute) with ``embed_source`` in this process and with
``embed_source_ray`` on a local Ray cluster with ``--ray-workers`` actors (default 2, one CPU each), best of
``REPEATS`` each; the Ray time is end to end (actors start and load the backbone inside it). It prints both
throughputs and their ratio, writes the raw numbers to bench/results/embed_ray.json, and a projection for N workers
from the measured per-worker throughput (a projection: nothing was run on N machines or GPUs).
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def _source(n: int):
    from alworkbench.data import ImageSource
    from alworkbench.errors import DatasetMissingError

    try:
        src = ImageSource.builtin("fashion-mnist", limit=n)
    except DatasetMissingError:
        src = ImageSource.builtin("digits", limit=min(n, 1797))
    return src


REPEATS = 3  # best of 3: a shared machine's load only ever makes a run slower


def _best(fn, n: int) -> tuple[float, float]:
    """(images per wall second, images per CPU second of this process), best of REPEATS."""
    best_wall = best_cpu = 0.0
    for _ in range(REPEATS):
        w, c = time.perf_counter(), time.process_time()
        fn()
        w, c = time.perf_counter() - w, time.process_time() - c
        best_wall, best_cpu = max(best_wall, n / w), max(best_cpu, n / max(c, 1e-9))
    return best_wall, best_cpu


def naive(source, bb, n: int) -> tuple[float, float]:
    """One image at a time: load, transform, forward."""
    def go():
        for item in source.items[:n]:
            bb.forward(bb.transform(source.load(item)).unsqueeze(0))
    return _best(go, n)


def batched(source, bb, batch_size: int, num_workers: int, use_pixels: bool) -> tuple[float, float]:
    from alworkbench.embed import embed_source

    def go():
        X = embed_source(source, bb, None, batch_size=batch_size, num_workers=num_workers, progress=False,
                         use_pixels=use_pixels)
        assert X.shape == (len(source), bb.dim)
    return _best(go, len(source))


def run(name: str, weights: str, device: str, n: int, n_naive: int, batch_size: int, num_workers: int) -> None:
    from alworkbench.embed import get_backbone

    source = _source(n)
    bb = get_backbone(name, weights=weights, device=device)
    bb.forward(bb.transform(source.load(source.items[0])).unsqueeze(0))  # warm-up
    if device != "cpu":
        import torch
        torch.cuda.synchronize()
    n_naive = min(n_naive, len(source))
    r_naive = naive(source, bb, n_naive)
    r_loader = batched(source, bb, batch_size, num_workers, use_pixels=False)
    r_pixels = batched(source, bb, batch_size, num_workers, use_pixels=True)
    print(f"[{bb.key} on {bb.device}] {source.name}, {len(source)} images (naive loop on {n_naive})")
    print(f"  (best of {REPEATS}; img/s by wall clock, and per CPU-second of this process)")
    print(f"  naive one-at-a-time : {r_naive[0]:8.1f} img/s   {r_naive[1]:8.1f} img/cpu-s")
    print(f"  batched DataLoader  : {r_loader[0]:8.1f} img/s   {r_loader[1]:8.1f} img/cpu-s   "
          f"({r_loader[0] / r_naive[0]:4.1f}x / {r_loader[1] / r_naive[1]:4.1f}x naive)  "
          f"batch_size={batch_size} num_workers={num_workers}")
    print(f"  batched .pixels path: {r_pixels[0]:8.1f} img/s   {r_pixels[1]:8.1f} img/cpu-s   "
          f"({r_pixels[0] / r_naive[0]:4.1f}x / {r_pixels[1] / r_naive[1]:4.1f}x naive)")


def run_ray(name: str, weights: str, n: int, batch_size: int, workers: int, out: str) -> dict:
    import json
    import os
    import platform

    import torch

    from alworkbench.embed import embed_source, get_backbone
    from alworkbench.embed.ray_embed import connect, embed_source_ray

    from alworkbench.embed.ray_embed import RANDOM_INIT_SEED

    source = _source(n)
    torch.manual_seed(RANDOM_INIT_SEED)  # random-init weights: the same model as the Ray actors build
    bb = get_backbone(name, weights=weights, device="cpu")
    bb.forward(bb.transform(source.load(source.items[0])).unsqueeze(0))  # warm-up
    X_loc = embed_source(source, bb, None, batch_size=batch_size, progress=False)
    local = _best(lambda: embed_source(source, bb, None, batch_size=batch_size, progress=False), len(source))[0]
    ray = connect(None, num_cpus=workers, object_store_memory=500 * 2**20)
    X_ray = embed_source_ray(source, (name, weights, "cpu"), None, workers=workers, batch_size=batch_size,
                             progress=False)  # also starts the cluster's workers once
    assert np.allclose(X_ray, X_loc, rtol=1e-4, atol=1e-5), "Ray and local rows differ"
    on_ray = _best(lambda: embed_source_ray(source, (name, weights, "cpu"), None, workers=workers,
                                            batch_size=batch_size, progress=False), len(source))[0]
    # steady state: rows per second between the first and the last batch that reached the driver (actor start-up
    # and the backbone's load excluded), best of REPEATS
    steady = 0.0
    for _ in range(REPEATS):
        marks: list = []
        embed_source_ray(source, (name, weights, "cpu"), None, workers=workers, batch_size=batch_size,
                         chunk_size=batch_size, progress=False,
                         on_chunk=lambda done, todo: marks.append((time.perf_counter(), done)))
        if len(marks) >= 3 and marks[-1][0] > marks[0][0]:
            steady = max(steady, (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0]))
    ray.shutdown()
    per_worker = steady / workers
    res = {"backbone": bb.key, "dataset": source.name, "n_images": len(source), "batch_size": batch_size,
           "repeats": REPEATS, "cpu_count": os.cpu_count(), "torch_threads_local": torch.get_num_threads(),
           "machine": platform.machine(), "ray_workers": workers,
           "local_img_per_s": round(local, 1), "ray_img_per_s": round(on_ray, 1),
           "ratio_ray_over_local": round(on_ray / local, 3), "ray_steady_img_per_s": round(steady, 1),
           "ratio_ray_steady_over_local": round(steady / local, 3),
           "ray_per_worker_img_per_s": round(per_worker, 1),
           "projection_note": "projection, not a measurement: N workers x the measured steady-state per-worker "
                              "throughput of Ray on this machine's CPU workers "
                              "(ideal scaling; reading, the driver's cache writes and the network are not modelled)",
           "projection_img_per_s": {str(k): round(k * per_worker, 1) for k in (1, 2, 4, 8, 16, 64)}}
    print(f"[{bb.key}] {source.name}, {len(source)} images, batch {batch_size}, best of {REPEATS}, {os.cpu_count()} "
          f"CPU core(s)")
    print(f"  local embed_source (torch {torch.get_num_threads()} threads): {local:8.1f} img/s")
    print(f"  Ray Data, {workers} CPU workers (end to end)      : {on_ray:8.1f} img/s   "
          f"(ratio Ray/local {on_ray / local:4.2f}x)")
    print(f"  Ray Data, steady state (start-up excluded)      : {steady:8.1f} img/s   "
          f"(ratio Ray/local {steady / local:4.2f}x; {per_worker:.1f} img/s per worker)")
    print("  projection (not measured) for N workers at the measured per-worker rate: "
          + ", ".join(f"N={k}: {v:.0f} img/s" for k, v in res["projection_img_per_s"].items()))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(res, fh, indent=1)
    print(f"  raw numbers: {out}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default=None, help="default: the project default backbone")
    ap.add_argument("--weights", default="none", help="torchvision/timm weights (default 'none': no download)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n", type=int, default=5000, help="images for the batched runs")
    ap.add_argument("--n-naive", type=int, default=1000, help="images for the naive loop")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--ray", action="store_true", help="local path vs Ray Data with --ray-workers CPU workers")
    ap.add_argument("--ray-workers", type=int, default=2)
    ap.add_argument("--out", default="bench/results/embed_ray.json", help="with --ray: where the raw JSON goes")
    args = ap.parse_args()
    from alworkbench.embed import DEFAULT_BACKBONE

    name = args.backbone or DEFAULT_BACKBONE
    weights = "default" if name in ("randconv", "pixels") else args.weights
    if args.ray:
        run_ray(name, weights, args.n, args.batch_size, args.ray_workers, args.out)
        return
    run(name, weights, args.device, args.n, args.n_naive, args.batch_size, args.num_workers)
    import torch

    if args.device == "cpu" and torch.cuda.is_available():
        run(name, weights, "cuda", args.n, args.n_naive, args.batch_size * 4, max(args.num_workers, 4))
        if name in ("randconv", "pixels"):
            run("resnet18", "none", "cuda", args.n, min(args.n_naive, 500), 256, 4)
    elif not torch.cuda.is_available():
        print("(no CUDA device here: GPU run skipped)")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
