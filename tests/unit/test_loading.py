"""load_image / probe_image: every Pillow mode to RGB with the right pixels, EXIF, sizes, and every bad-file reason."""
from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from alworkbench.data.loading import (
    DEFAULT_MAX_PIXELS,
    is_image_name,
    load_image,
    probe_file,
    probe_image,
)
from alworkbench.errors import ImageLoadError


def px(im: Image.Image, xy) -> tuple:
    return tuple(int(v) for v in im.getpixel(xy))


def close(a, b, tol=6) -> bool:
    return all(abs(int(x) - int(y)) <= tol for x, y in zip(a, b))


# ------------------------------------------------------------------------------------------ mode conversions


def test_grayscale_L_becomes_equal_rgb(tmp_path):
    arr = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (4, 1))
    Image.fromarray(arr, "L").save(tmp_path / "g.png")
    im = load_image(tmp_path / "g.png")
    assert im.mode == "RGB" and im.size == (16, 4)
    out = np.asarray(im)
    assert (out[..., 0] == arr).all() and (out[..., 1] == arr).all() and (out[..., 2] == arr).all()


def test_bilevel_1_bit(tmp_path):
    im1 = Image.new("1", (4, 2), 0)
    im1.putpixel((1, 0), 1)
    im1.save(tmp_path / "b.bmp")
    im = load_image(tmp_path / "b.bmp")
    assert px(im, (1, 0)) == (255, 255, 255) and px(im, (0, 0)) == (0, 0, 0)


def test_LA_is_composited_on_white(tmp_path):
    la = Image.merge("LA", (Image.new("L", (4, 2), 50), Image.new("L", (4, 2), 255)))
    la.putpixel((3, 1), (50, 0))       # fully transparent
    la.putpixel((2, 1), (0, 128))      # half-transparent black
    la.save(tmp_path / "la.png")
    im = load_image(tmp_path / "la.png")
    assert px(im, (0, 0)) == (50, 50, 50)
    assert px(im, (3, 1)) == (255, 255, 255)
    assert close(px(im, (2, 1)), (127, 127, 127), tol=2)


def test_RGBA_is_composited_on_white_not_black(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # transparent red: must become white
    rgba.putpixel((1, 1), (0, 0, 255, 255))
    rgba.putpixel((2, 2), (0, 0, 0, 128))
    rgba.save(tmp_path / "a.png")
    im = load_image(tmp_path / "a.png")
    assert px(im, (0, 0)) == (255, 255, 255)
    assert px(im, (1, 1)) == (0, 0, 255)
    assert close(px(im, (2, 2)), (127, 127, 127), tol=2)


def test_palette_without_and_with_transparency(tmp_path):
    p = Image.new("P", (4, 1), 0)
    p.putpalette([255, 0, 0, 0, 0, 255, 10, 200, 30] + [0, 0, 0] * 253)
    p.putpixel((1, 0), 1)
    p.putpixel((2, 0), 2)
    p.save(tmp_path / "p.png")
    p.save(tmp_path / "pt.png", transparency=0)
    opaque = load_image(tmp_path / "p.png")
    assert [px(opaque, (x, 0)) for x in range(3)] == [(255, 0, 0), (0, 0, 255), (10, 200, 30)]
    transparent = load_image(tmp_path / "pt.png")
    assert [px(transparent, (x, 0)) for x in range(3)] == [(255, 255, 255), (0, 0, 255), (10, 200, 30)]


def test_palette_gif(tmp_path):
    Image.new("RGB", (3, 3), (0, 128, 255)).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "x.gif")
    im = load_image(tmp_path / "x.gif")
    assert im.mode == "RGB" and close(px(im, (1, 1)), (0, 128, 255), tol=3)


def test_cmyk_tiff_exact_and_jpeg_close(tmp_path):
    cmyk = Image.new("CMYK", (4, 2), (0, 0, 0, 0))
    cmyk.putpixel((1, 0), (255, 0, 0, 0))    # cyan
    cmyk.putpixel((2, 0), (0, 0, 0, 255))    # black
    cmyk.save(tmp_path / "c.tif")
    im = load_image(tmp_path / "c.tif")
    assert px(im, (0, 0)) == (255, 255, 255) and px(im, (1, 0)) == (0, 255, 255) and px(im, (2, 0)) == (0, 0, 0)
    big = Image.new("CMYK", (16, 16), (255, 0, 0, 0))
    big.save(tmp_path / "c.jpg", quality=95)
    assert close(px(load_image(tmp_path / "c.jpg"), (8, 8)), (0, 255, 255), tol=8)


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 1000, 257 * 128, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "s.png")
    assert Image.open(tmp_path / "s.png").mode == "I;16"
    im = load_image(tmp_path / "s.png")
    row = np.asarray(im)[0, :, 0].tolist()
    assert row == [0, 4, 128, 255]  # Pillow's own convert("L") would give [0, 255, 255, 255]


def test_32bit_int_and_float_modes(tmp_path):
    sixteen = np.array([[0, 32896, 65535]], dtype=np.int32)  # fits 16-bit -> 16-bit scale
    Image.fromarray(sixteen, "I").save(tmp_path / "i16.tif")
    assert np.asarray(load_image(tmp_path / "i16.tif"))[0, :, 0].tolist() == [0, 128, 255]
    eight = np.array([[0, 100, 255]], dtype=np.int32)  # fits 8-bit -> kept
    Image.fromarray(eight, "I").save(tmp_path / "i8.tif")
    assert np.asarray(load_image(tmp_path / "i8.tif"))[0, :, 0].tolist() == [0, 100, 255]
    unit = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)  # 0..1 floats -> x255
    Image.fromarray(unit, "F").save(tmp_path / "f1.tif")
    assert np.asarray(load_image(tmp_path / "f1.tif"))[0, :, 0].tolist() == [0, 128, 255]
    wide = np.array([[-10.0, 0.0, 10.0, np.nan]], dtype=np.float32)  # anything else -> min-max, NaN -> 0
    Image.fromarray(wide, "F").save(tmp_path / "f2.tif")
    assert np.asarray(load_image(tmp_path / "f2.tif"))[0, :, 0].tolist() == [0, 128, 255, 0]


def test_tiny_1x1(tmp_path):
    Image.new("RGB", (1, 1), (12, 34, 56)).save(tmp_path / "t.png")
    im = load_image(tmp_path / "t.png")
    assert im.size == (1, 1) and px(im, (0, 0)) == (12, 34, 56)
    assert load_image(tmp_path / "t.png", max_side=64).size == (1, 1)  # never upscaled


# ------------------------------------------------------------------------------------------ orientation, size


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def test_exif_orientation_6_rotates_the_picture(tmp_path):
    stored = Image.new("RGB", (60, 40), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 60, 20))  # top half red, bottom half blue
    stored.save(tmp_path / "r.jpg", quality=95, exif=_exif(6))
    im = load_image(tmp_path / "r.jpg")
    assert im.size == (40, 60)  # portrait once upright
    # orientation 6 = rotate 90 degrees clockwise for display: the stored top (red) ends on the right
    assert close(px(im, (35, 30)), (255, 0, 0), tol=10)
    assert close(px(im, (4, 30)), (0, 0, 255), tol=10)
    stored.save(tmp_path / "plain.jpg", quality=95)
    assert load_image(tmp_path / "plain.jpg").size == (60, 40)


def test_max_side_downsizes_large_jpeg_and_png(tmp_path):
    big = Image.new("RGB", (400, 300), (10, 120, 200)).resize((4000, 3000))
    big.save(tmp_path / "big.jpg", quality=80)
    im = load_image(tmp_path / "big.jpg", max_side=500)
    assert im.size == (500, 375) and im.mode == "RGB"
    assert close(px(im, (250, 180)), (10, 120, 200), tol=8)
    assert load_image(tmp_path / "big.jpg").size == (4000, 3000)
    Image.new("RGBA", (900, 300), (0, 0, 0, 0)).save(tmp_path / "wide.png")
    small = load_image(tmp_path / "wide.png", max_side=90)
    assert small.size == (90, 30) and px(small, (45, 15)) == (255, 255, 255)
    with pytest.raises(ValueError, match="max_side"):
        load_image(tmp_path / "wide.png", max_side=0)


def test_a_display_copy_decodes_a_photo_at_the_smallest_jpeg_scale_that_still_fills_it(tmp_path, monkeypatch):
    """A 4000x3000 JPEG shown at 768 px: the thumbnail will be 768x576, so the decoder is asked for that size and
    decodes at 1/4 (1000x750), not at 1/2 (2000x1500, four times the pixels) as a square 768x768 request gives.
    The memory bound of the embedding path still keeps BOTH sides >= bound."""
    from PIL import ImageDraw

    big = Image.new("RGB", (4000, 3000), (10, 120, 200))
    ImageDraw.Draw(big).ellipse([1000, 700, 3000, 2300], fill=(240, 200, 40))
    big.save(tmp_path / "photo.jpg", quality=85)
    before = []
    real = Image.Image.thumbnail

    def spy(self, size, *a, **kw):
        before.append(self.size)
        return real(self, size, *a, **kw)

    monkeypatch.setattr(Image.Image, "thumbnail", spy)
    im = load_image(tmp_path / "photo.jpg", max_side=768)
    assert im.size == (768, 576)
    assert before == [(1000, 750)]
    assert close(px(im, (384, 288)), (240, 200, 40), tol=10) and close(px(im, (10, 10)), (10, 120, 200), tol=10)
    before.clear()
    portrait = big.transpose(Image.Transpose.ROTATE_90)   # 3000x4000
    portrait.save(tmp_path / "portrait.jpg", quality=85)
    assert load_image(tmp_path / "portrait.jpg", max_side=768).size == (576, 768)
    assert before == [(750, 1000)]
    bounded = load_image(tmp_path / "photo.jpg", bound=700)
    assert min(bounded.size) >= 700


def test_unicode_and_spaces_in_path(tmp_path):
    folder = tmp_path / "café au lait" / "日本 語"
    folder.mkdir(parents=True)
    Image.new("RGB", (3, 2), (1, 2, 3)).save(folder / "ünï cödé.png")
    assert load_image(folder / "ünï cödé.png").size == (3, 2)
    assert probe_image(str(folder / "ünï cödé.png")) is None


# ------------------------------------------------------------------------------------------ bad files


def _png_bytes(size=(50, 50)) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _jpeg_bytes() -> bytes:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


BAD_FILES = {
    "empty.jpg": (b"", "empty file (0 bytes)"),
    "half.png": (_png_bytes()[: len(_png_bytes()) // 2], "truncated image"),
    "header_only.png": (_png_bytes()[:40], "truncated image"),
    "half.jpg": (_jpeg_bytes()[: len(_jpeg_bytes()) // 2], "truncated image"),
    "vector.png": (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "not an image (SVG/XML text)"),
    "bare.svg": (b"<svg width='1' height='1'></svg>", "not an image (SVG/XML text)"),
    "notes.jpg": ("list: café, thé\n".encode(), "not an image (text)"),
    "page.png": (b"<!DOCTYPE html><html><body>404</body></html>", "not an image (HTML text)"),
    "drawing.xcf": (b"gimp xcf v011\x00" + bytes(300), "unsupported format: GIMP XCF"),
    "phone.heic": (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64),
                   "unsupported format: HEIC/HEIF (pip install pillow-heif)"),
    "doc.jpg": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(64), "not an image (PDF document)"),
    "blob.png": (bytes([0x13, 0x37, 0xBE, 0xEF, 0x00, 0x01, 0x02, 0x03]) + bytes(100),
                 "unsupported format: unrecognised header 1337beef00010203"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_reasons(tmp_path, name):
    content, reason = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(content)
    assert probe_image(path) == reason
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert info.value.reason == reason
    assert info.value.path == str(path)
    assert str(info.value) == f"{path}: {reason}"


def test_missing_file_and_directory(tmp_path):
    assert probe_image(tmp_path / "nope.png") == "file not found"
    with pytest.raises(ImageLoadError, match="file not found"):
        load_image(tmp_path / "nope.png")
    assert probe_image(tmp_path) == "not a file (directory)"


def test_decompression_bomb_limit_is_configurable(tmp_path):
    Image.new("RGB", (50, 50), (1, 1, 1)).save(tmp_path / "x.png")
    assert probe_image(tmp_path / "x.png", max_pixels=1000) == "decompression bomb: 2500 pixels > limit 1000"
    with pytest.raises(ImageLoadError, match=r"decompression bomb: 2500 pixels > limit 1000"):
        load_image(tmp_path / "x.png", max_pixels=1000)
    assert probe_image(tmp_path / "x.png", max_pixels=2500) is None


def test_huge_image_refused_before_decoding_and_pillow_limit_untouched(tmp_path):
    # 200 M pixels of 1-bit PNG: a few kB on disk, 600 MB once RGB. Refused from the header alone.
    Image.new("1", (20000, 10000), 0).save(tmp_path / "bomb.png")
    before = Image.MAX_IMAGE_PIXELS
    assert probe_image(tmp_path / "bomb.png") == f"decompression bomb: 200000000 pixels > limit {DEFAULT_MAX_PIXELS}"
    # a larger configured limit is honoured even though Pillow's own default would refuse this image
    assert probe_image(tmp_path / "bomb.png", max_pixels=250_000_000) is None
    assert Image.MAX_IMAGE_PIXELS == before


def test_concurrent_probes_restore_pillow_limit(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    before = Image.MAX_IMAGE_PIXELS
    results = []

    def work():
        for _ in range(20):
            results.append(probe_image(tmp_path / "a.png"))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [None] * 120
    assert Image.MAX_IMAGE_PIXELS == before


def test_probe_file_hashes_the_bytes(tmp_path):
    import hashlib

    data = _png_bytes((8, 8))
    (tmp_path / "a.png").write_bytes(data)
    assert probe_file(tmp_path / "a.png") == (hashlib.sha256(data).hexdigest(), None)
    (tmp_path / "b.png").write_bytes(data[:30])
    digest, reason = probe_file(tmp_path / "b.png")
    assert digest == hashlib.sha256(data[:30]).hexdigest() and reason == "truncated image"


def test_is_image_name():
    assert is_image_name("a.JPG") and is_image_name("x.tiff") and is_image_name("y.webp")
    assert is_image_name("drawing.xcf") and is_image_name("phone.HEIC")
    assert not is_image_name("notes.txt") and not is_image_name("labels.csv") and not is_image_name("Makefile")


@pytest.mark.parametrize("mode, value, expected", [
    ("La", (100, 255), (100, 100, 100)),        # premultiplied gray + alpha
    ("RGBa", (0, 0, 0, 0), (255, 255, 255)),    # fully transparent -> white
    ("PA", (0, 0), (255, 255, 255)),
    ("YCbCr", (255, 128, 128), (255, 255, 255)),
    ("I;16B", 65535, (255, 255, 255)),
    ("RGBX", (1, 2, 3, 0), (1, 2, 3)),
])
def test_to_rgb_rare_modes(mode, value, expected):
    from alworkbench.data.loading import to_rgb

    out = to_rgb(Image.new(mode, (2, 2), value))
    assert out.mode == "RGB" and close(px(out, (1, 1)), expected, tol=1)
