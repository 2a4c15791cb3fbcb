"""Issue 9, finding 7 (cache part) and finding 9 (embedding memory): a damaged or unwritable embedding cache is a
one-line error or a recomputation with a warning, never a traceback, a leftover temporary file or a silently
wrong row; a huge image costs one decoded frame."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from alworkbench.data import ImageSource  # noqa: E402
from alworkbench.embed import EmbeddingCache, embed_source, get_backbone  # noqa: E402
from alworkbench.errors import AlwbError, CacheError  # noqa: E402
from alworkbench.types import Item  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _source(root: Path, n: int = 10, seed: int = 0) -> ImageSource:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        p = root / f"i{i:02d}.png"
        Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8), "RGB").save(p)
        items.append(Item(id=p.name, uri=str(p), sha256=hashlib.sha256(p.read_bytes()).hexdigest()))
    return ImageSource("t", str(root), items, kind="folder")


@pytest.fixture
def world(tmp_path):
    src = _source(tmp_path / "imgs")
    bb = get_backbone("pixels", device="cpu")
    fresh = embed_source(src, bb, None, progress=False)
    return src, bb, fresh, EmbeddingCache(tmp_path / "cache")


def _tmp_files(root: Path):
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def _damage(world, how):
    src, bb, fresh, cache = world
    embed_source(src, bb, cache, progress=False)
    folder = cache.folder(bb.key)
    emb = next(folder.glob("emb-*.npy"))
    if how == "bitflip":
        data = bytearray(emb.read_bytes())
        data[-7] ^= 0x10  # one bit of one float of the last row
        emb.write_bytes(bytes(data))
    elif how == "truncated":
        emb.write_bytes(emb.read_bytes()[:100])
    elif how == "sha_truncated":
        sha = next(folder.glob("sha-*.npy"))
        sha.write_bytes(sha.read_bytes()[:60])
    elif how == "bad_sum":
        next(folder.glob("sum-*.json")).write_text("{not json")
    return emb


@pytest.mark.parametrize("how", ["bitflip", "truncated", "sha_truncated", "bad_sum"])
def test_finding7_damaged_cache_file_is_recomputed_with_a_warning(world, how):
    src, bb, fresh, cache = world
    emb = _damage(world, how)
    with pytest.warns(RuntimeWarning, match=r"embedding cache file .*(emb|sha|sum)-\d{6}\.(npy|json) is damaged"):
        X, rep = embed_source(src, bb, cache, progress=False, return_report=True)
    assert rep.n_computed == len(src)  # the damaged rows were computed again, never used
    np.testing.assert_array_equal(X, fresh)
    X2, rep2 = embed_source(src, bb, cache, progress=False, return_report=True)  # healed
    assert rep2.n_cached == len(src) and rep2.n_computed == 0
    np.testing.assert_array_equal(X2, fresh)
    assert not _tmp_files(cache.root)


def test_finding7_bitflip_in_a_chunk_is_never_used(world):
    src, bb, fresh, cache = world
    cache.put(bb.key, [it.sha256 for it in src.items], fresh)  # a chunk, not yet consolidated
    chunk = next(cache.folder(bb.key).glob("chunk-*.emb.npy"))
    data = bytearray(chunk.read_bytes())
    data[200] ^= 0x01
    chunk.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match=r"chunk-.*\.emb\.npy is damaged \(checksum mismatch\)"):
        rows, found = cache.lookup(bb.key, [it.sha256 for it in src.items])
    assert not found.any()


def test_finding7_damaged_meta_json_is_rewritten(world):
    src, bb, fresh, cache = world
    embed_source(src, bb, cache, progress=False)
    meta = cache.folder(bb.key) / "meta.json"
    meta.write_text('{"key": ')
    with pytest.warns(RuntimeWarning, match=r"meta\.json is damaged"):
        X, rep = embed_source(src, bb, cache, progress=False, return_report=True)
    np.testing.assert_array_equal(X, fresh)
    assert rep.n_cached == len(src)  # the rows themselves were intact and verified
    assert json.loads(meta.read_text())["dim"] == bb.dim


def test_finding7_cache_is_a_file_is_one_line_error(world, tmp_path):
    src, bb, fresh, _ = world
    (tmp_path / "cachefile").write_text("oops")
    with pytest.raises(CacheError) as ei:
        embed_source(src, bb, EmbeddingCache(tmp_path / "cachefile"), progress=False)
    msg = str(ei.value)
    assert "\n" not in msg and "cachefile is a file, not a folder" in msg and "move it away or delete it" in msg


def test_finding7_cache_is_a_file_through_the_cli(tmp_path):
    root = tmp_path / "imgs"
    for k, c in enumerate(("a", "b")):
        _source(root / c, n=3, seed=k)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = lambda *a: subprocess.run([sys.executable, "-m", "alworkbench.cli", *map(str, a)], capture_output=True,
                                    text=True, timeout=300, env=env)
    assert run("init", tmp_path / "p", "--images", root).returncode == 0
    cache = tmp_path / "p" / "cache"
    for p in cache.iterdir():
        p.unlink()
    cache.rmdir()
    cache.write_text("not a folder")
    r = run("embed", tmp_path / "p", "--quiet")
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("alwb: error:")]
    assert "Traceback" not in r.stderr and len(errors) == 1 and "cache is a file, not a folder" in errors[0]
    assert r.stderr.endswith(errors[0] + "\n")
    r = run("status", tmp_path / "p")  # status does not need the cache: still works (the scan index warns)
    assert r.returncode == 0 and "images: 6" in r.stdout, r.stderr


def _full_disk(monkeypatch, after: int = 0):
    """Make every cache file write fail with ENOSPC after ``after`` successful writes."""
    import alworkbench.embed.cache as cache_mod

    real = cache_mod.np.save
    calls = {"n": 0}

    def save(fh, arr, **kw):
        calls["n"] += 1
        if calls["n"] > after:
            fh.write(b"\x93NUMPY partial")  # something reached the temporary file before the disk filled up
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fh, arr, **kw)

    monkeypatch.setattr(cache_mod.np, "save", save)


@pytest.mark.parametrize("after", [0, 1, 2])
def test_finding7_full_disk_during_embed_is_one_line_and_leaves_no_tmp(world, monkeypatch, after):
    src, bb, fresh, cache = world
    _full_disk(monkeypatch, after)
    with pytest.raises(CacheError) as ei:
        embed_source(src, bb, cache, progress=False, chunk_size=4, batch_size=4)
    msg = str(ei.value)
    assert "\n" not in msg and "No space left on device" in msg and "free some space" in msg
    assert "embedding cache file" in msg and str(cache.folder(bb.key)) in msg
    assert not _tmp_files(cache.root)
    monkeypatch.undo()
    X = embed_source(src, bb, cache, progress=False)  # space again: resumes, right rows
    np.testing.assert_array_equal(X, fresh)
    assert not _tmp_files(cache.root)


def test_finding7_full_disk_on_a_real_tiny_tmpfs(world, tmp_path):
    src, bb, fresh, _ = world
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()}); the monkeypatched test covers it")
    try:
        big = get_backbone("randconv", device="cpu")  # 1024 floats per row: 10 rows > 64 kB with the files
        cache = EmbeddingCache(mnt / "cache")
        with pytest.raises(CacheError, match="No space left on device"):
            embed_source(src, big, cache, progress=False, chunk_size=2, batch_size=2)
        assert not _tmp_files(mnt)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_finding7_stale_tmp_files_of_killed_runs_are_removed(world):
    src, bb, fresh, cache = world
    embed_source(src, bb, cache, progress=False)
    folder = cache.folder(bb.key)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = folder / f".chunk-x.emb.npy.{dead}.{'0' * 32}.tmp"
    stale.write_bytes(b"x" * 100)
    live = folder / f".chunk-y.emb.npy.{os.getppid()}.{'1' * 32}.tmp"  # a writer that is still running
    live.write_bytes(b"y")
    old_style = folder / ".emb-000001.npy.abcdef.tmp"
    old_style.write_bytes(b"z")
    os.utime(old_style, (1, 1))
    embed_source(src, bb, cache, progress=False)
    assert not stale.exists() and not old_style.exists() and live.exists()
    live.unlink()


def test_finding7_cache_errors_are_alwb_errors():
    assert issubclass(CacheError, AlwbError)


# ------------------------------------------------------------------------------------------------ finding 9
_MEM_SCRIPT = textwrap.dedent("""
    import resource, sys, hashlib
    sys.path.insert(0, {repo!r})
    from alworkbench.data import ImageSource
    from alworkbench.embed import embed_source, get_backbone
    from alworkbench.types import Item
    bb = get_backbone("randconv", device="cpu")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    path = sys.argv[1]
    src = ImageSource("big", None, [Item(id="big.png", uri=path, sha256="x" * 64)], kind="folder")
    X, rep = embed_source(src, bb, None, progress=False, return_report=True)
    assert rep.n_computed == 1 and not rep.failed, rep.failed
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(base // 1024, peak // 1024)
""")


def test_finding9_huge_png_embedding_memory_is_bounded(tmp_path):
    # 13000 x 13000 RGB PNG (169 M pixels, under the default limit)
    path = tmp_path / "big.png"
    subprocess.run([sys.executable, "-c", "import sys; from PIL import Image; "
                    "Image.new('RGB', (13000, 13000), (90, 120, 200)).save(sys.argv[1], compress_level=1)",
                    str(path)], check=True, timeout=300)
    r = subprocess.run([sys.executable, "-c", _MEM_SCRIPT.format(repo=str(REPO)), str(path)], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    base_mb, peak_mb = map(int, r.stdout.split())
    frame_mb = 13000 * 13000 * 4 / 2**20  # Pillow keeps RGB as 4 bytes per pixel: 645 MB, the floor for a PNG
    print(f"baseline {base_mb} MB, peak {peak_mb} MB, one decoded frame {frame_mb:.0f} MB")
    assert peak_mb - base_mb < 1.2 * frame_mb, (base_mb, peak_mb)  # was 2234 MB over the baseline (3.5 frames)
