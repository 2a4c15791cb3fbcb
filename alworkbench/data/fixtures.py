"""Write a realistic messy image folder (for tests, demos and the CLI walkthrough).

``make_messy_folder(root)`` creates class sub-folders with unicode and space names holding images in every
awkward Pillow mode, plus the files a real photo dump contains: empty, truncated, mislabelled (SVG or text saved
as an image), unsupported formats, an exact duplicate and hidden clutter. It returns what it wrote, so a test can
check ingest against it.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

from .sources import natural_sorted

CLASSES = ("cats and dogs", "café", "zèbre 2")
ORIENTATION_TAG = 0x0112


def _gradient(w: int, h: int, seed: int) -> np.ndarray:
    """A smooth RGB picture (compresses well, differs per seed)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0, 255, size=3).astype(np.float32)
    r = (base[0] + 200 * x / max(1, w - 1)) % 256
    g = (base[1] + 200 * y / max(1, h - 1)) % 256
    b = (base[2] + 100 * (x + y) / max(1, w + h - 2)) % 256
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def _rgb(w: int, h: int, seed: int) -> Image.Image:
    return Image.fromarray(_gradient(w, h, seed), "RGB")


def make_messy_folder(root: Union[str, os.PathLike], *, large: bool = True) -> dict:
    """Write the messy tree under ``root`` (created if needed) and return what was written::

        {"root": str, "classes": [...], "n_good": int, "good": {id: class}, "skipped": {id: reason},
         "duplicates": {id: id_of_the_kept_copy}, "hidden": [paths that must be ignored],
         "special": {"exif_rotated": id, "exif_stored_size": (w, h), "tiny": id, "large": id|None, ...}}

    ids are paths relative to ``root`` with forward slashes (what ``ImageSource.from_folder`` uses).
    ``large=False`` leaves out the 4000x3000 JPEG (about 0.2 s to write and probe).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    good: dict[str, str] = {}
    skipped: dict[str, str] = {}
    duplicates: dict[str, str] = {}
    special: dict[str, object] = {}

    def path_of(rel: str) -> Path:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def add(rel: str, im: Image.Image, **save_kw) -> str:
        im.save(path_of(rel), **save_kw)
        good[rel] = rel.split("/", 1)[0]
        return rel

    cats, cafe, zebre = CLASSES

    # -- cats and dogs: plain JPEG, EXIF-rotated JPEG, grayscale, grayscale+alpha, 1-bit, upper-case extension
    add(f"{cats}/a photo.jpg", _rgb(64, 48, 1), quality=90)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6  # "rotate 90 CW to view": stored 60x40 landscape, shown 40x60 portrait
    special["exif_rotated"] = add(f"{cats}/rotated_exif6.jpg", _rgb(60, 40, 2), quality=90, exif=exif.tobytes())
    special["exif_stored_size"] = (60, 40)
    special["gray_L"] = add(f"{cats}/gray_L.png", Image.fromarray(
        np.tile(np.arange(0, 256, 8, dtype=np.uint8), (16, 1)), "L"))
    la = Image.merge("LA", (Image.new("L", (20, 20), 50), Image.new("L", (20, 20), 0)))
    la.paste(Image.new("LA", (10, 20), (50, 255)), (0, 0))  # left half opaque gray 50, right half transparent
    special["gray_LA"] = add(f"{cats}/gray_alpha_LA.png", la)
    add(f"{cats}/bilevel_1.bmp", Image.fromarray((np.indices((24, 24)).sum(0) % 2).astype(bool)))
    add(f"{cats}/UPPER CASE.JPG", _rgb(32, 32, 3), quality=85)
    duplicate_of = f"{cats}/a photo.jpg"
    dup = f"{cats}/z copy of a photo.jpg"
    path_of(dup).write_bytes((root / duplicate_of).read_bytes())
    duplicates[dup] = duplicate_of

    # -- café: palette, palette with transparency, RGBA, CMYK, 16-bit, TIFF, WebP, GIF
    pal = _rgb(30, 30, 4).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    special["palette_P"] = add(f"{cafe}/palette_P.png", pal)
    pt = Image.new("P", (16, 16), 0)
    pt.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    pt.paste(1, (8, 0, 16, 16))  # right half palette index 1 (blue); left half index 0 (red) is transparent
    special["palette_transparent"] = add(f"{cafe}/palette_transparent.png", pt, transparency=0)
    rgba = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (8, 0, 16, 16))
    rgba.paste((0, 0, 0, 128), (0, 8, 8, 16))  # bottom-left: half-transparent black
    special["rgba"] = add(f"{cafe}/rgba.png", rgba)
    cmyk = Image.new("CMYK", (24, 24), (0, 0, 0, 0))
    cmyk.paste((255, 0, 0, 0), (0, 0, 12, 24))  # left half full cyan
    special["cmyk"] = add(f"{cafe}/cmyk.jpg", cmyk, quality=95)
    sixteen = (np.arange(16 * 16, dtype=np.uint32).reshape(16, 16) * 257).astype(np.uint16)
    special["i16"] = add(f"{cafe}/sixteen_bit.png", Image.fromarray(sixteen))
    add(f"{cafe}/photo.tiff", _rgb(40, 30, 5))
    add(f"{cafe}/photo.webp", _rgb(40, 30, 6), quality=80)
    add(f"{cafe}/anim.gif", _rgb(20, 20, 7).convert("P"), save_all=True,
        append_images=[_rgb(20, 20, 8).convert("P")], duration=100)

    # -- zèbre 2: tiny, large, nested sub-folders (they belong to the top-level class)
    special["tiny"] = add(f"{zebre}/tiny_1x1.png", Image.new("RGB", (1, 1), (12, 34, 56)))
    add(f"{zebre}/nested/deeper/inner.png", _rgb(20, 10, 9))
    if large:
        special["large"] = add(f"{zebre}/large_4000x3000.jpg",
                               _rgb(400, 300, 10).resize((4000, 3000), Image.Resampling.BILINEAR), quality=80)
    else:
        special["large"] = None

    # -- the bad files
    path_of(f"{cats}/empty.jpg").write_bytes(b"")
    skipped[f"{cats}/empty.jpg"] = "empty file (0 bytes)"
    buf = io.BytesIO()
    _rgb(50, 50, 11).save(buf, "PNG")
    png = buf.getvalue()
    path_of(f"{cafe}/truncated.png").write_bytes(png[: len(png) // 2])
    skipped[f"{cafe}/truncated.png"] = "truncated image"
    path_of(f"{zebre}/vector.png").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" '
        'height="10"><rect width="10" height="10" fill="red"/></svg>\n', encoding="utf-8")
    skipped[f"{zebre}/vector.png"] = "not an image (SVG/XML text)"
    path_of(f"{zebre}/notes.jpg").write_text("shopping list: oat milk, café, 2 lemons\n", encoding="utf-8")
    skipped[f"{zebre}/notes.jpg"] = "not an image (text)"
    path_of(f"{zebre}/drawing.xcf").write_bytes(b"gimp xcf v011\x00" + bytes(range(256)) * 4)
    skipped[f"{zebre}/drawing.xcf"] = "unsupported format: GIMP XCF"
    path_of(f"{cafe}/phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(512))
    skipped[f"{cafe}/phone.heic"] = "unsupported format: HEIC/HEIF (pip install pillow-heif)"

    # -- clutter that must be ignored (hidden files and folders, non-image files)
    hidden = [".DS_Store", f"{cats}/._a photo.jpg", ".thumbnails/t1.png", f"{cafe}/.cache/x.png"]
    for rel in hidden:
        target = path_of(rel)
        if rel.endswith(".png"):
            _rgb(8, 8, 12).save(target)
        else:
            target.write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    path_of("README.txt").write_text("photos from the shared drive\n", encoding="utf-8")
    path_of(f"{zebre}/labels.csv").write_text("path,label\n", encoding="utf-8")

    return {
        "root": str(root),
        "classes": natural_sorted(CLASSES),
        "n_good": len(good),
        "good": dict(sorted(good.items())),
        "skipped": dict(sorted(skipped.items())),
        "duplicates": duplicates,
        "hidden": hidden,
        "special": special,
    }
