"""Robust image loading: every readable image becomes an RGB ``PIL.Image``; everything else an ``ImageLoadError``.

``load_image(path)`` applies the EXIF orientation, converts every Pillow mode to RGB without losing the picture
(alpha is composited on white, 16-bit and float data are scaled into 0..255 rather than clipped), refuses
decompression bombs over a configurable pixel limit, and can downsize on the way in (``max_side``), using JPEG
draft mode so a 4000x3000 photo is decoded at reduced scale.

``probe_image(path)`` fully decodes a file and returns the short reason it is unusable, or ``None``.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import struct
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageLoadError

PathLike = Union[str, "os.PathLike[str]"]

#: Default pixel limit: the same ~179 M pixels at which Pillow itself refuses an image.
DEFAULT_MAX_PIXELS = 178_956_970

#: Extensions recognised as images when scanning a folder (compared lower-case).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})

#: Other extensions that name images. Files with these are probed too: kept when Pillow decodes them
#: (e.g. .ppm, .ico, .avif), reported as skipped with a reason otherwise (e.g. .xcf, .heic, .svg).
IMAGE_LIKE_EXTENSIONS = frozenset({
    ".jfif", ".jpe", ".pjpeg", ".pjp", ".jp2", ".j2k", ".jpx", ".avif", ".heic", ".heif", ".svg", ".svgz",
    ".ico", ".icns", ".cur", ".psd", ".psb", ".xcf", ".kra", ".ora", ".tga", ".dds", ".ppm", ".pgm", ".pbm",
    ".pnm", ".pcx", ".sgi", ".rgb", ".eps", ".exr", ".hdr", ".raw", ".dng", ".cr2", ".cr3", ".nef", ".arw",
    ".orf", ".rw2", ".raf", ".jxl", ".qoi", ".apng", ".dib", ".xbm", ".xpm",
})

# Errors Pillow and its plugins raise for unreadable data (UnidentifiedImageError is an OSError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)
_EXIF_ERRORS = (OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError, struct.error, ZeroDivisionError)

# Pillow's own bomb check (``Image.MAX_IMAGE_PIXELS``) is a process-wide setting that belongs to the user: we never
# change it. Instead we open lazily through Pillow's plugin registry (what ``Image.open`` does, minus its global
# check: header only, no pixel decoded) and apply our configurable limit to the size before anything is decoded.


def _open_lazily(fp) -> Image.Image:
    """``Image.open`` without its process-wide decompression-bomb check (ours follows, with our limit)."""
    registry = getattr(Image, "OPEN", None)
    ids = getattr(Image, "ID", None)
    if registry is None or ids is None:  # a Pillow without the plugin registry: fall back to the public call
        return Image.open(fp)
    exclusive = False
    filename = ""
    if isinstance(fp, (str, bytes, os.PathLike)):
        filename = os.fspath(fp)
        fp = open(filename, "rb")
        exclusive = True
    try:
        fp.seek(0)
        prefix = fp.read(16)
        Image.preinit()
        tried: set = set()
        for loader in (None, Image.init):
            if loader is not None:
                loader()
            for fmt in list(ids):
                if fmt in tried:
                    continue
                tried.add(fmt)
                factory, accept = registry[fmt]
                try:
                    ok = not accept or accept(prefix)
                    if ok and not isinstance(ok, str):
                        fp.seek(0)
                        im = factory(fp, filename)
                        im._exclusive_fp = exclusive
                        return im
                except (SyntaxError, IndexError, TypeError, struct.error):
                    continue
    except BaseException:
        if exclusive:
            fp.close()
        raise
    if exclusive:
        fp.close()
    raise UnidentifiedImageError(f"cannot identify image file {filename!r}")


# --------------------------------------------------------------------------------------------- public API


def load_image(path: PathLike, *, max_side: Optional[int] = None,
               max_pixels: Optional[int] = DEFAULT_MAX_PIXELS, bound: Optional[int] = None,
               keep_alpha: bool = False) -> Image.Image:
    """Load ``path`` as an upright RGB image (raises ``ImageLoadError(path, reason)`` when it cannot).

    ``max_side``: when given, the result is downsized (aspect kept, Lanczos filter) so that neither side exceeds
    it; JPEGs are then decoded at reduced scale, which is several times faster for large photos.
    ``max_pixels``: images with more pixels are refused as decompression bombs (``None`` disables the check).
    ``bound``: memory bound for huge images. An image whose short side exceeds ``2 * bound`` is shrunk by an
    integer factor while it is decoded (JPEG draft scaling, else ``Image.reduce`` straight after decoding, before
    any mode conversion or copy), keeping both sides >= ``bound``; smaller images are returned unchanged.
    Embedding uses it so a 13000x13000 PNG costs one decoded frame, not several.
    ``keep_alpha``: an image with transparency comes back as RGBA (for display), not flattened to RGB.
    """
    if max_side is not None and (not isinstance(max_side, int) or max_side < 1):
        raise ValueError(f"max_side must be a positive int or None, got {max_side!r}")
    if bound is not None and (not isinstance(bound, int) or bound < 1):
        raise ValueError(f"bound must be a positive int or None, got {bound!r}")
    spath = os.fspath(path)
    _check_file(spath)
    return _decode(spath, spath, max_side=max_side, max_pixels=max_pixels, convert=True, bound=bound,
                   keep_alpha=keep_alpha)


def probe_image(path: PathLike, *, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> Optional[str]:
    """Fully decode ``path``; return the short reason it is unusable, or ``None`` when it is a good image."""
    _digest, reason = probe_file(path, max_pixels=max_pixels, hash_content=False)
    return reason


def probe_file(path: PathLike, *, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
               hash_content: bool = True) -> tuple[Optional[str], Optional[str]]:
    """Read ``path`` once, return ``(sha256 hex of the bytes or None, reason or None)``.

    The whole image is decoded (so truncation is caught), at reduced JPEG scale where that is equivalent.
    """
    spath = os.fspath(path)
    try:
        _check_file(spath)
        with open(spath, "rb") as fh:
            data = fh.read()
    except ImageLoadError as exc:
        return None, exc.reason
    except OSError as exc:
        return None, _os_reason(exc)
    digest = hashlib.sha256(data).hexdigest() if hash_content else None
    if not data:  # emptied between stat and read
        return digest, "empty file (0 bytes)"
    try:
        _decode(io.BytesIO(data), spath, max_side=None, max_pixels=max_pixels, convert=False, probe=True,
                raw=data)
    except ImageLoadError as exc:
        return digest, exc.reason
    return digest, None


def is_image_name(name: str) -> bool:
    """True for a file name whose extension names an image (recognised or image-like)."""
    ext = os.path.splitext(name)[1].lower()
    return ext in IMAGE_EXTENSIONS or ext in IMAGE_LIKE_EXTENSIONS


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow image mode to RGB: alpha composited on white, 16-bit/float scaled into 0..255."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I;16") or mode in ("I", "F"):  # high bit depth first (a tRNS key is dropped)
        return Image.fromarray(_scale_to_uint8(np.asarray(im), mode), "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = (im.convert("LA") if mode == "La" else im).convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB")  # 1, L, P, CMYK, YCbCr, HSV, LAB, RGBX ...


# --------------------------------------------------------------------------------------------- internals


def _scale_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """Map high-bit-depth samples into uint8 without clipping.

    ``I;16*`` is full-scale 16-bit: v -> round(v * 255 / 65535). ``I`` (32-bit int) declares no depth, so the
    smallest of the 8-bit and 16-bit ranges that holds every value is used, else a min-max stretch. ``F`` in
    0..1 is scaled by 255, otherwise min-max stretched; NaN becomes 0.
    """
    if mode.startswith("I;16"):
        wide = arr.astype(np.uint32)
        return ((wide * 255 + 32767) // 65535).astype(np.uint8)
    data = arr.astype(np.float64)
    finite = np.isfinite(data)
    if not finite.any():
        return np.zeros(arr.shape, np.uint8)
    lo, hi = float(data[finite].min()), float(data[finite].max())
    if mode == "I" and lo >= 0 and hi <= 255:
        scaled = data
    elif mode == "I" and lo >= 0 and hi <= 65535:
        scaled = data * (255.0 / 65535.0)
    elif mode == "F" and lo >= 0 and hi <= 1.0:
        scaled = data * 255.0
    elif hi > lo:
        scaled = (data - lo) * (255.0 / (hi - lo))
    else:
        scaled = np.zeros_like(data)
    scaled = np.where(finite, scaled, 0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, IsADirectoryError):
        return "not a file (directory)"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return f"cannot read file ({exc.strerror or type(exc).__name__})"


def _check_file(path: str) -> None:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ImageLoadError(path, _os_reason(exc)) from exc
    if os.path.isdir(path):
        raise ImageLoadError(path, "not a file (directory)")
    if st.st_size == 0:
        raise ImageLoadError(path, "empty file (0 bytes)")


def _read_head_tail(path: str, raw: Optional[bytes]) -> tuple[bytes, bytes, int]:
    if raw is not None:
        return raw[:4096], raw[-64:], len(raw)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, size - 64))
            tail = fh.read(64)
    except OSError:
        return b"", b"", 0
    return head, tail, size


_MAGIC = (  # (prefix, format name) of formats Pillow reads; used to tell "broken PNG" from "not an image"
    (b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
    (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"8BPS", "PSD"),
)


def _known_format(head: bytes) -> Optional[str]:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def _looks_truncated(fmt: Optional[str], head: bytes, tail: bytes, size: int) -> bool:
    """Structural end-of-file checks for the common formats (no reliance on a decoder's error wording)."""
    if fmt == "PNG":
        return b"IEND" not in tail
    if fmt in ("JPEG", "MPO"):
        return b"\xff\xd9" not in tail
    if fmt == "GIF":
        return not tail.rstrip(b"\x00").endswith(b";")
    if fmt == "BMP" and len(head) >= 6:
        return struct.unpack("<I", head[2:6])[0] > size
    if fmt == "WEBP" and len(head) >= 8:
        return struct.unpack("<I", head[4:8])[0] + 8 > size
    return False


def _unidentified_reason(head: bytes, tail: bytes, size: int) -> str:
    """Say what a file Pillow could not identify actually is."""
    fmt = _known_format(head)
    if fmt is not None:
        return "truncated image" if _looks_truncated(fmt, head, tail, size) else f"corrupt {fmt} header"
    low = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if low.startswith(b"gimp xcf"):
        return "unsupported format: GIMP XCF"
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypmsf1", b"ftyphevc"):
        return "unsupported format: HEIC/HEIF (pip install pillow-heif)"
    if head.startswith(b"%PDF"):
        return "not an image (PDF document)"
    if head.startswith(b"%!PS"):
        return "unsupported format: PostScript/EPS"
    if head.startswith(b"PK\x03\x04"):
        return "not an image (ZIP archive)"
    if head.startswith(b"\x1f\x8b"):
        return "not an image (gzip data)"
    if low.startswith((b"<svg", b"<?xml")) or b"<svg" in low[:512]:
        return "not an image (SVG/XML text)"
    if low.startswith(b"<!doctype html") or low.startswith(b"<html"):
        return "not an image (HTML text)"
    if _is_text(head):
        return "not an image (text)"
    return f"unsupported format: unrecognised header {head[:8].hex()}"


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a multi-byte character cut at the end of the sample is fine
            return False
    return True


def _decode(fp, path: str, *, max_side: Optional[int], max_pixels: Optional[int], convert: bool,
            probe: bool = False, raw: Optional[bytes] = None, bound: Optional[int] = None,
            keep_alpha: bool = False) -> Image.Image:
    try:
        im = _open_lazily(fp)  # reads the header only
    except Image.DecompressionBombError as exc:  # only from the fallback to Image.open
        raise ImageLoadError(path, f"decompression bomb: refused by Pillow when opening (over twice "
                                   f"Image.MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS}, this process's setting)"
                             ) from exc
    except UnidentifiedImageError as exc:
        head, tail, size = _read_head_tail(path, raw)
        raise ImageLoadError(path, _unidentified_reason(head, tail, size)) from exc
    except _DECODE_ERRORS as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise ImageLoadError(path, _os_reason(exc)) from exc
        head, tail, size = _read_head_tail(path, raw)
        fmt = _known_format(head)
        reason = ("truncated image" if _looks_truncated(fmt, head, tail, size)
                  else f"corrupt image header ({fmt or 'unknown format'}: {exc})")
        raise ImageLoadError(path, reason) from exc
    try:
        width, height = im.size
        n_pixels = width * height
        if max_pixels is not None and n_pixels > max_pixels:
            raise ImageLoadError(path, f"decompression bomb: {n_pixels} pixels > limit {max_pixels}")
        if width < 1 or height < 1:
            raise ImageLoadError(path, f"invalid size {width}x{height}")
        fmt = im.format
        target = max_side
        if bound is not None and min(width, height) > 2 * bound:
            target = bound if target is None else min(target, bound)
        if fmt in ("JPEG", "MPO"):
            if probe:  # decoding at 1/8 scale still reads the whole entropy-coded stream
                im.draft(None, (max(1, width // 8), max(1, height // 8)))
            elif target is not None:
                if target == max_side and (bound is None or max_side < bound):
                    # a display copy: the long side is what must reach max_side, so ask the decoder for the size
                    # the thumbnail will have (a 4000x3000 photo for 768 px decodes at 1/4, not 1/2)
                    k = target / max(width, height)
                    req = (max(1, math.ceil(width * k)), max(1, math.ceil(height * k)))
                else:
                    req = (target, target)   # the memory bound keeps BOTH sides >= bound
                im.draft("RGB" if im.mode == "RGB" else None, req)
        try:
            im.load()
        except Image.DecompressionBombError as exc:  # a plugin's own check on a frame or tile while decoding
            raise ImageLoadError(path, f"decompression bomb: {n_pixels} pixels, refused by Pillow while "
                                       f"decoding (Image.MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS})") from exc
        except _DECODE_ERRORS as exc:
            head, tail, size = _read_head_tail(path, raw)
            if _looks_truncated(fmt, head, tail, size):
                raise ImageLoadError(path, "truncated image") from exc
            raise ImageLoadError(path, f"corrupt image data ({fmt}: {exc})") from exc
        if not convert:
            return im
        if bound is not None:
            im = _reduce_early(im, bound)
        try:
            upright = ImageOps.exif_transpose(im)
        except _EXIF_ERRORS:  # malformed EXIF: keep the stored orientation rather than lose the image
            upright = im
        if upright is None:
            upright = im
        try:
            if keep_alpha and (upright.mode in ("RGBA", "LA", "PA")
                               or (upright.mode == "P" and "transparency" in upright.info)):
                rgb = upright.convert("RGBA")
            else:
                rgb = to_rgb(upright)
        except ValueError as exc:
            raise ImageLoadError(path, f"unsupported format: cannot convert mode {upright.mode} to RGB") from exc
        if max_side is not None and max(rgb.size) > max_side:
            rgb = rgb.copy() if rgb is im else rgb
            rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
        if rgb is im:
            rgb = im.copy()  # detach from the file handle
        return rgb
    finally:
        im.close()


_REDUCIBLE = frozenset({"L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "1"})


def _reduce_early(im: Image.Image, bound: int) -> Image.Image:
    """Shrink a huge decoded frame by an integer box factor (long side stays >= ``bound``) before any copy.

    The full frame is released as soon as the reduced one exists, so peak memory is one frame plus 1/factor^2.
    """
    factor = min(im.size) // bound  # both sides stay >= bound
    if factor < 2:
        return im
    if im.mode not in _REDUCIBLE:  # palette, 16-bit ...: to RGB first (same mapping as load_image applies)
        converted = to_rgb(im)
        converted.info = dict(im.info)
        converted.info.pop("transparency", None)
        im.close()
        im = converted
    elif im.mode == "1":
        converted = im.convert("L")
        im.close()
        im = converted
    small = im.reduce(factor)
    small.info = dict(im.info)  # keep EXIF orientation and transparency info
    im.close()
    return small


def file_sha256(path: PathLike, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(Path(path), "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
