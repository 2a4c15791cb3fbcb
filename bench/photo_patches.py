"""A small real colour image set made from the photos in data/photos/ (public domain / CC0, see data/README.md):
class = the photo a crop comes from (astronaut, cat, coffee, galaxies, portrait, rocket), each crop a random square
of 12-35% of the photo's shorter side, randomly flipped, resized to 48x48 JPEG. Deterministic for a seed.

    .venv/bin/python bench/photo_patches.py OUT_DIR [--per-class 70] [--seed 0]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "data" / "photos"


def make_patches(out: str | Path, per_class: int = 70, seed: int = 0, size: int = 48) -> Path:
    from PIL import Image

    out = Path(out)
    rng = np.random.default_rng(seed)
    for photo in sorted(PHOTOS.glob("*.jpg")):
        im = Image.open(photo).convert("RGB")
        w, h = im.size
        d = out / photo.stem
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            side = int(min(w, h) * rng.uniform(0.12, 0.35))
            x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
            crop = im.crop((x, y, x + side, y + side)).resize((size, size), Image.Resampling.BILINEAR)
            if rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            crop.save(d / f"{photo.stem}_{i:03d}.jpg", quality=90)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--per-class", type=int, default=70)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(make_patches(a.out, a.per_class, a.seed))


if __name__ == "__main__":
    main()
