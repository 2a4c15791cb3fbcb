"""Embedding throughput: the batched DataLoader path of ``embed_source`` vs a naive one-image-at-a-time loop.

Same backbone, same images, same process. Images come from the built-in Fashion-MNIST source (or sklearn digits
when Fashion-MNIST is not installed), read through ``source.load`` on both paths; the batched path also gets the
``.pixels`` fast path measured on its own line. Run:

    .venv/bin/python bench/bench_embed.py                       # default backbone (randconv), CPU
    .venv/bin/python bench/bench_embed.py --backbone resnet18 --n 256
    .venv/bin/python bench/bench_embed.py --device cuda         # also done automatically when cuda is available
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default=None, help="default: the project default backbone")
    ap.add_argument("--weights", default="none", help="torchvision/timm weights (default 'none': no download)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n", type=int, default=5000, help="images for the batched runs")
    ap.add_argument("--n-naive", type=int, default=1000, help="images for the naive loop")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--num-workers", type=int, default=0)
    args = ap.parse_args()
    from alworkbench.embed import DEFAULT_BACKBONE

    name = args.backbone or DEFAULT_BACKBONE
    weights = "default" if name in ("randconv", "pixels") else args.weights
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
