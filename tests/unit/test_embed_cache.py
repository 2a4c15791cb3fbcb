"""Embedding cache + embed_source: alignment, resumability after an interruption or a kill, corrupt images."""
from __future__ import annotations

import hashlib
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
from alworkbench.types import Item  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _folder_source(root: Path, n: int = 12, corrupt: tuple = (), dup_of: dict = None) -> ImageSource:
    """n PNG files with distinct content; indices in ``corrupt`` hold garbage bytes; ``dup_of`` copies files."""
    rng = np.random.default_rng(0)
    items = []
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = root / f"img{i:03d}.png"
        if dup_of and i in dup_of:
            path.write_bytes((root / f"img{dup_of[i]:03d}.png").read_bytes())
        elif i in corrupt:
            path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 256, 200, dtype=np.uint8)))
        else:
            Image.fromarray((rng.random((20 + i, 24, 3)) * 255).astype(np.uint8), "RGB").save(path)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        items.append(Item(id=path.name, uri=str(path), sha256=sha, label=str(i % 3)))
    return ImageSource("test", str(root), items, kind="folder")


class Counting:
    """A real backbone whose forward() counts the images it embeds."""

    def __init__(self, backbone):
        self.inner = backbone
        self.n = 0
        real = backbone.forward

        def forward(batch):
            self.n += int(batch.shape[0])
            return real(batch)

        backbone.forward = forward


def test_embeds_every_item_aligned_and_reuses_cache(tmp_path):
    source = _folder_source(tmp_path / "imgs")
    bb = get_backbone("randconv", device="cpu")
    count = Counting(bb)
    cache = EmbeddingCache(tmp_path / "cache")
    X = embed_source(source, bb, cache, batch_size=5, progress=False)
    assert count.n == 12
    expected = bb.embed_images([source.load(it) for it in source.items])
    np.testing.assert_allclose(X, expected, rtol=1e-5, atol=1e-6)
    count.n = 0
    # second run: nothing computed, same rows, read from one consolidated memory-mappable file
    X2, report = embed_source(source, bb, cache, progress=False, return_report=True)
    assert count.n == 0 and report.n_cached == 12 and report.n_computed == 0
    np.testing.assert_array_equal(X, X2)
    folder = cache.folder(bb.key)
    assert len(list(folder.glob("emb-*.npy"))) == 1 and not list(folder.glob("chunk-*"))
    stored = np.load(next(folder.glob("emb-*.npy")), mmap_mode="r")
    assert isinstance(stored, np.memmap) and stored.shape == (12, bb.dim)
    # another backbone key does not see these rows
    px = get_backbone("pixels", device="cpu")
    assert cache.lookup(px.key, [it.sha256 for it in source.items])[1].sum() == 0
    assert set(cache.keys()) == {bb.key}


def test_interrupted_run_keeps_finished_chunks_and_rerun_computes_only_the_rest(tmp_path):
    source = _folder_source(tmp_path / "imgs", n=12)
    bb = get_backbone("pixels", device="cpu")
    count = Counting(bb)
    cache = EmbeddingCache(tmp_path / "cache")

    class Stop(Exception):
        pass

    def stop_after_two(done, total):
        if done >= 8:
            raise Stop

    with pytest.raises(Stop):
        embed_source(source, bb, cache, batch_size=2, chunk_size=4, progress=False, on_chunk=stop_after_two)
    assert count.n == 8
    assert cache.count(bb.key) == 8
    X, report = embed_source(source, bb, cache, batch_size=2, chunk_size=4, progress=False, return_report=True)
    assert count.n == 12  # only the 4 missing images were embedded
    assert report.n_cached == 8 and report.n_computed == 4
    fresh = embed_source(source, get_backbone("pixels", device="cpu"), None, progress=False)
    np.testing.assert_allclose(X, fresh, rtol=1e-6)


def test_killed_process_keeps_finished_chunks(tmp_path):
    """SIGKILL in the middle of a run (no cleanup at all): the chunks on disk survive and are reused."""
    source_dir = tmp_path / "imgs"
    source = _folder_source(source_dir, n=12)
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_embed_cache import _folder_source
        from pathlib import Path
        from alworkbench.embed import EmbeddingCache, embed_source, get_backbone
        source = _folder_source(Path({str(source_dir)!r}), n=12)
        def kill(done, total):
            if done >= 8:
                os.kill(os.getpid(), signal.SIGKILL)
        embed_source(source, get_backbone("pixels", device="cpu"), EmbeddingCache({str(tmp_path / "cache")!r}),
                     batch_size=2, chunk_size=4, progress=False, on_chunk=kill)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    cache = EmbeddingCache(tmp_path / "cache")
    bb = get_backbone("pixels", device="cpu")
    assert cache.count(bb.key) == 8
    count = Counting(bb)
    X = embed_source(source, bb, cache, batch_size=2, chunk_size=4, progress=False)
    assert count.n == 4
    assert np.abs(X).sum(axis=1).min() > 0


def test_corrupt_image_is_skipped_with_a_reason(tmp_path):
    source = _folder_source(tmp_path / "imgs", n=6, corrupt=(2,))
    bb = get_backbone("pixels", device="cpu")
    cache = EmbeddingCache(tmp_path / "cache")
    with pytest.warns(RuntimeWarning, match="skipped 1 of 6"):
        X, report = embed_source(source, bb, cache, batch_size=4, progress=False, return_report=True)
    assert [f[0] for f in report.failed] == ["img002.png"] and report.failed[0][1]
    assert (X[2] == 0).all() and (np.abs(X[[0, 1, 3, 4, 5]]).sum(axis=1) > 0).all()
    assert report.ok.tolist() == [True, True, False, True, True, True]
    assert cache.count(bb.key) == 5  # the failure is not cached: a rerun tries again


def test_duplicate_content_is_embedded_once(tmp_path):
    source = _folder_source(tmp_path / "imgs", n=5, dup_of={4: 1})
    assert source.items[4].sha256 == source.items[1].sha256
    bb = get_backbone("pixels", device="cpu")
    count = Counting(bb)
    X = embed_source(source, bb, EmbeddingCache(tmp_path / "cache"), progress=False)
    assert count.n == 4
    np.testing.assert_array_equal(X[4], X[1])


def test_pixels_fast_path_matches_the_dataloader_path(tmp_path):
    rng = np.random.default_rng(3)
    pixels = (rng.random((37, 28, 28)) * 255).astype(np.uint8)
    items = [Item(id=f"toy/train/{i}", uri=f"builtin://toy/train/{i}",
                  sha256=hashlib.sha256(pixels[i].tobytes()).hexdigest()) for i in range(len(pixels))]
    source = ImageSource("toy", None, items, kind="builtin", pixels=pixels)
    bb = get_backbone("randconv", device="cpu")
    fast = embed_source(source, bb, EmbeddingCache(tmp_path / "a"), batch_size=16, progress=False)
    slow = embed_source(source, bb, EmbeddingCache(tmp_path / "b"), batch_size=16, progress=False,
                        use_pixels=False)
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-5)


def test_dataloader_worker_processes(tmp_path):
    source = _folder_source(tmp_path / "imgs", n=8)
    bb = get_backbone("pixels", device="cpu")
    X = embed_source(source, bb, EmbeddingCache(tmp_path / "cache"), batch_size=3, num_workers=2, progress=False)
    np.testing.assert_allclose(X, bb.embed_images([source.load(it) for it in source.items]), rtol=1e-6)


def test_consolidate_merges_generations(tmp_path):
    cache = EmbeddingCache(tmp_path)
    key = "k|test"
    cache.put(key, ["a", "b"], np.ones((2, 3)))
    assert cache.consolidate(key) == 2
    cache.put(key, ["c"], np.full((1, 3), 2.0))
    cache.put(key, ["a"], np.full((1, 3), 9.0))  # a re-put of a known sha keeps the first row
    assert cache.consolidate(key) == 3
    rows, found = cache.lookup(key, ["c", "a", "zz", "b"])
    assert found.tolist() == [True, True, False, True]
    np.testing.assert_array_equal(rows, [[2, 2, 2], [1, 1, 1], [0, 0, 0], [1, 1, 1]])
    files = sorted(p.name for p in cache.folder(key).iterdir() if not p.name.startswith("."))
    assert files == ["emb-000001.npy", "meta.json", "sha-000001.npy", "sum-000001.json"]
    with pytest.raises(Exception, match="dim 4"):
        cache.put(key, ["d"], np.ones((1, 4)))
