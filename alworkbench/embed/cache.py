"""On-disk embedding cache keyed by image content (sha256) and backbone key, and batched extraction.

Layout under ``root`` (one folder per backbone key)::

    <slug>-<hash of key>/meta.json                      {"key": ..., "dim": ...}
    <slug>-<hash of key>/emb-000003.npy + sha-000003.npy the consolidated store (read with mmap_mode="r")
    <slug>-<hash of key>/chunk-<uuid>.emb.npy + .sha.npy finished chunks not yet consolidated

Every file is written to a temporary name and renamed into place; a chunk counts only once its ``.sha.npy``
(written last) exists. An interrupted run therefore keeps every finished chunk, and a rerun computes only the
images whose sha256 is in neither the consolidated store nor a chunk. ``consolidate`` folds chunks into a new
generation of the store under a file lock, then removes what it folded.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

from ..errors import AlwbError, ImageLoadError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

_GEN_RE = re.compile(r"^emb-(\d{6})\.npy$")


@dataclass
class EmbedReport:
    """What :func:`embed_source` did. ``failed`` lists ``(item_id, reason)``; their rows are zeros."""

    n_items: int = 0
    n_cached: int = 0
    n_computed: int = 0
    failed: list = field(default_factory=list)
    seconds: float = 0.0
    ok: Optional[np.ndarray] = None  # bool per item: False where the image could not be read

    def to_dict(self) -> dict:
        return {"n_items": self.n_items, "n_cached": self.n_cached, "n_computed": self.n_computed,
                "failed": [list(f) for f in self.failed], "seconds": round(self.seconds, 3)}


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _slug(key: str) -> str:
    head = re.sub(r"[^A-Za-z0-9_.-]+", "_", key.split("|", 1)[0])[:40] or "backbone"
    return f"{head}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:16]}"


class _KeyStore:
    """The cache folder of one backbone key."""

    def __init__(self, folder: Path, key: str):
        self.folder = folder
        self.key = key

    # -- meta ------------------------------------------------------------------------------------
    def _meta_path(self) -> Path:
        return self.folder / "meta.json"

    def dim(self) -> Optional[int]:
        p = self._meta_path()
        if not p.exists():
            return None
        meta = json.loads(p.read_text(encoding="utf-8"))
        if meta.get("key") != self.key:
            raise AlwbError(f"embedding cache {self.folder} belongs to backbone key {meta.get('key')!r}, "
                            f"not {self.key!r}")
        return int(meta["dim"])

    def _ensure_meta(self, dim: int) -> None:
        known = self.dim()
        if known is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".meta.{uuid.uuid4().hex}.tmp"
            tmp.write_text(json.dumps({"key": self.key, "dim": int(dim)}), encoding="utf-8")
            os.replace(tmp, self._meta_path())
        elif known != dim:
            raise AlwbError(f"embedding cache {self.folder}: rows have dim {dim}, the cache holds dim {known}")

    # -- reading ---------------------------------------------------------------------------------
    def _generation(self) -> tuple[int, Optional[Path], Optional[Path]]:
        best = (-1, None, None)
        if not self.folder.is_dir():
            return best
        for p in self.folder.iterdir():
            m = _GEN_RE.match(p.name)
            if m:
                gen = int(m.group(1))
                sha = self.folder / f"sha-{gen:06d}.npy"
                if sha.exists() and gen > best[0]:
                    best = (gen, p, sha)
        return best

    def _chunks(self) -> list[tuple[Path, Path]]:
        if not self.folder.is_dir():
            return []
        out = []
        for sha in sorted(self.folder.glob("chunk-*.sha.npy")):
            emb = sha.with_name(sha.name[:-len(".sha.npy")] + ".emb.npy")
            if emb.exists():
                out.append((emb, sha))
        return out

    def sources(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(shas, embeddings)`` pairs: the consolidated store (memory-mapped) and every finished chunk."""
        out = []
        _gen, emb, sha = self._generation()
        if emb is not None:
            out.append((np.load(sha, allow_pickle=False), np.load(emb, mmap_mode="r")))
        for emb_p, sha_p in self._chunks():
            shas = np.load(sha_p, allow_pickle=False)
            arr = np.load(emb_p, mmap_mode="r")
            if len(shas) == len(arr):
                out.append((shas, arr))
        return out

    def lookup(self, shas: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Rows for ``shas`` (zeros where missing) and the found mask."""
        dim = self.dim()
        n = len(shas)
        found = np.zeros(n, dtype=bool)
        if dim is None:
            return np.zeros((n, 0), dtype=np.float32), found
        out = np.zeros((n, dim), dtype=np.float32)
        want: dict[str, list[int]] = {}
        for i, s in enumerate(shas):
            want.setdefault(s, []).append(i)
        for src_shas, src_emb in self.sources():
            dst, rows = [], []
            for r, s in enumerate(src_shas.tolist()):
                pos = want.get(s)
                if pos is not None:
                    for p in pos:
                        if not found[p]:
                            dst.append(p)
                            rows.append(r)
            if rows:
                rows_a = np.asarray(rows)
                order = np.argsort(rows_a, kind="stable")
                dst_a = np.asarray(dst)[order]
                out[dst_a] = np.asarray(src_emb[rows_a[order]], dtype=np.float32)
                found[dst_a] = True
        return out, found

    # -- writing ---------------------------------------------------------------------------------
    def add_chunk(self, shas: Sequence[str], emb: np.ndarray) -> None:
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        if emb.ndim != 2 or len(emb) != len(shas):
            raise ValueError(f"add_chunk: {len(shas)} sha(s) for embeddings of shape {emb.shape}")
        if not len(shas):
            return
        self._ensure_meta(emb.shape[1])
        stem = f"chunk-{uuid.uuid4().hex}"
        _atomic_save(self.folder / f"{stem}.emb.npy", emb)
        _atomic_save(self.folder / f"{stem}.sha.npy", np.asarray(list(shas), dtype=str))  # commit marker

    @contextlib.contextmanager
    def _lock(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "a+") as fh:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def consolidate(self) -> int:
        """Fold finished chunks into a new generation of the store; returns the number of rows stored."""
        with self._lock():
            chunks = self._chunks()
            gen, emb_p, sha_p = self._generation()
            if not chunks:
                return 0 if emb_p is None else len(np.load(sha_p, allow_pickle=False))
            parts_sha, parts_emb = [], []
            if emb_p is not None:
                parts_sha.append(np.load(sha_p, allow_pickle=False))
                parts_emb.append(np.load(emb_p, mmap_mode="r"))
            for e, s in chunks:
                parts_sha.append(np.load(s, allow_pickle=False))
                parts_emb.append(np.load(e, mmap_mode="r"))
            all_sha = np.concatenate(parts_sha).astype(str)
            _uniq, first = np.unique(all_sha, return_index=True)
            first.sort()
            dim = parts_emb[0].shape[1]
            merged = np.empty((len(first), dim), dtype=np.float32)
            offsets = np.cumsum([0] + [len(p) for p in parts_emb])
            for j, part in enumerate(parts_emb):
                sel = first[(first >= offsets[j]) & (first < offsets[j + 1])]
                if len(sel):
                    merged[np.searchsorted(first, sel)] = part[sel - offsets[j]]
            new = gen + 1
            _atomic_save(self.folder / f"emb-{new:06d}.npy", merged)
            _atomic_save(self.folder / f"sha-{new:06d}.npy", all_sha[first])
            del parts_emb
            for e, s in chunks:
                for p in (s, e):
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
            if emb_p is not None:
                for p in (sha_p, emb_p):
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
            return len(first)


class EmbeddingCache:
    """Embeddings on disk, keyed by image sha256 and :attr:`Backbone.key`."""

    def __init__(self, root: Union[str, os.PathLike]):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.root)!r})"

    def store(self, key: str) -> _KeyStore:
        return _KeyStore(self.root / _slug(key), key)

    def folder(self, key: str) -> Path:
        return self.root / _slug(key)

    def lookup(self, key: str, shas: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, found)``: rows ``(n, dim)`` float32 (zeros where not cached) and a bool mask."""
        return self.store(key).lookup(list(shas))

    def put(self, key: str, shas: Sequence[str], embeddings: np.ndarray) -> None:
        """Store one finished chunk (durable when this returns)."""
        self.store(key).add_chunk(list(shas), embeddings)

    def consolidate(self, key: str) -> int:
        return self.store(key).consolidate()

    def count(self, key: str) -> int:
        """Distinct images cached for ``key``."""
        seen: set = set()
        for shas, _emb in self.store(key).sources():
            seen.update(shas.tolist())
        return len(seen)

    def keys(self) -> list[str]:
        out = []
        if self.root.is_dir():
            for meta in sorted(self.root.glob("*/meta.json")):
                with contextlib.suppress(OSError, ValueError, KeyError):
                    out.append(json.loads(meta.read_text(encoding="utf-8"))["key"])
        return out


# ------------------------------------------------------------------------------------------------
# extraction
# ------------------------------------------------------------------------------------------------
_LOAD_ERRORS = (ImageLoadError, OSError, ValueError, SyntaxError)


class _ItemDataset:
    """torch Dataset over selected source rows: ``(row, tensor, "")`` or ``(row, None, reason)``."""

    def __init__(self, source, rows: Sequence[int], transform):
        self.source = source
        self.rows = list(rows)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        row = self.rows[i]
        item = self.source.items[row]
        try:
            im = self.source.load(item)
            return row, self.transform(im.convert("RGB")), ""
        except _LOAD_ERRORS as exc:
            reason = exc.reason if isinstance(exc, ImageLoadError) else f"{type(exc).__name__}: {exc}"
            return row, None, reason


def _collate(samples):
    import torch

    ok = [(r, t) for r, t, _ in samples if t is not None]
    bad = [(r, why) for r, t, why in samples if t is None]
    rows = [r for r, _ in ok]
    batch = torch.stack([t for _, t in ok]) if ok else None
    return rows, batch, bad


def _pixel_batches(source, backbone, rows: Sequence[int], batch_size: int):
    pixels = source.pixels
    for s in range(0, len(rows), batch_size):
        sel = np.asarray(rows[s:s + batch_size])
        yield sel.tolist(), backbone.transform_uint8_batch(np.asarray(pixels[sel])), []


def _loader_batches(source, backbone, rows: Sequence[int], batch_size: int, num_workers: int):
    from torch.utils.data import DataLoader

    ds = _ItemDataset(source, rows, backbone.transform)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=int(num_workers),
                        collate_fn=_collate, pin_memory=backbone.device.type == "cuda",
                        persistent_workers=False)
    yield from loader


def embed_source(source, backbone, cache: Optional[EmbeddingCache], batch_size: int = 64, num_workers: int = 0,
                 progress: bool = True, chunk_size: int = 2048,
                 on_chunk: Optional[Callable[[int, int], None]] = None, return_report: bool = False,
                 use_pixels: bool = True):
    """Embeddings for every item of ``source`` (rows aligned with ``source.items``), computing only what
    ``cache`` lacks.

    Images are read through ``source.load`` and ``backbone.transform`` in a torch DataLoader (``num_workers``
    processes); built-in sources with ``.pixels`` take a batched fast path with identical preprocessing.
    Each ``chunk_size`` computed rows are saved as one chunk file; ``on_chunk(n_done, n_todo)`` is called after
    each. If the run stops (exception, Ctrl-C), rows already computed are saved before the error propagates, so
    a rerun only computes the rest. Images that fail to load are skipped with a reason (their rows are zeros,
    a warning says how many); ``return_report=True`` returns ``(X, EmbedReport)``.
    """
    import time

    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    items = source.items
    n = len(items)
    shas = [it.sha256 for it in items]
    key = backbone.key
    report = EmbedReport(n_items=n)
    if cache is not None:
        X, found = cache.lookup(key, shas)
        if X.shape[1] != backbone.dim:
            X = np.zeros((n, backbone.dim), dtype=np.float32)
            found = np.zeros(n, dtype=bool)
    else:
        X, found = np.zeros((n, backbone.dim), dtype=np.float32), np.zeros(n, dtype=bool)
    report.n_cached = int(found.sum())

    # one computation per distinct missing sha
    todo: list[int] = []
    first_of: dict[str, int] = {}
    for i in np.flatnonzero(~found).tolist():
        if shas[i] not in first_of:
            first_of[shas[i]] = i
            todo.append(i)

    failed_rows: dict[int, str] = {}
    if todo:
        fast = use_pixels and getattr(source, "pixels", None) is not None
        batches = (_pixel_batches(source, backbone, todo, batch_size) if fast
                   else _loader_batches(source, backbone, todo, batch_size, num_workers))
        buf_rows: list[int] = []
        buf_emb: list[np.ndarray] = []
        done = 0

        def flush():
            nonlocal buf_rows, buf_emb
            if not buf_rows:
                return
            emb = np.concatenate(buf_emb)
            X[buf_rows] = emb
            if cache is not None:
                cache.put(key, [shas[r] for r in buf_rows], emb)
            buf_rows, buf_emb = [], []

        bar = tqdm(total=len(todo), disable=not progress, unit="img", desc=f"embed {backbone.name}",
                   leave=False)
        try:
            for rows, batch, bad in batches:
                for r, why in bad:
                    failed_rows[r] = why
                if rows:
                    buf_emb.append(backbone.forward(batch))
                    buf_rows.extend(rows)
                    report.n_computed += len(rows)
                done += len(rows) + len(bad)
                bar.update(len(rows) + len(bad))
                if len(buf_rows) >= chunk_size:
                    flush()
                    if on_chunk is not None:
                        on_chunk(done, len(todo))
            flush()
            if on_chunk is not None and done and done % chunk_size:
                on_chunk(done, len(todo))
        finally:
            try:
                flush()  # keep what was computed, even when interrupted
            finally:
                bar.close()
        if cache is not None:
            cache.consolidate(key)
        # duplicates (same sha) get the row computed for their first occurrence
        for i in np.flatnonzero(~found).tolist():
            src = first_of[shas[i]]
            if src in failed_rows:
                if i != src:
                    failed_rows[i] = failed_rows[src]
            elif i != src:
                X[i] = X[src]
    ok = np.ones(n, dtype=bool)
    ok[list(failed_rows)] = False
    report.failed = [(items[r].id, failed_rows[r]) for r in sorted(failed_rows)]
    report.ok = ok
    report.seconds = time.perf_counter() - t0
    if report.failed:
        first_id, first_reason = report.failed[0]
        warnings.warn(f"embedding skipped {len(report.failed)} of {n} image(s) that could not be read "
                      f"(their rows are zeros), e.g. {first_id}: {first_reason}", RuntimeWarning, stacklevel=2)
    return (X, report) if return_report else X
