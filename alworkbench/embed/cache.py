"""On-disk embedding cache keyed by image content (sha256) and backbone key, and batched extraction.

Layout under ``root`` (one folder per backbone key)::

    <slug>-<hash of key>/meta.json                      {"key": ..., "dim": ...}
    <slug>-<hash of key>/emb-000003.npy + sha-000003.npy the consolidated store (read with mmap_mode="r")
                         sum-000003.json                 its checksums (sha256 of each file's bytes, shapes)
    <slug>-<hash of key>/chunk-<uuid>.emb.npy + .sha.npy finished chunks not yet consolidated
                         chunk-<uuid>.sum.json           their checksums, written last: the commit marker

Every file is written to a temporary name (``.<name>.<pid>.<random>.tmp``, always removed, also when the write
fails) and renamed into place. An interrupted run therefore keeps every finished chunk, and a rerun computes only
the images whose sha256 is in neither the consolidated store nor a chunk. ``consolidate`` folds chunks into a new
generation of the store under a file lock, then removes what it folded. Temporary files of runs that were killed
are removed when the folder is next opened.

Every data file is checked against its checksum when read: a damaged file (truncated, bit flip, unreadable) is
removed with a one-line warning naming it, and its rows are computed again; it is never used. What cannot be
worked around (``cache`` is a file, the disk is full, no permission) raises :class:`~alworkbench.errors.CacheError`,
one line naming the file and what to do. Files written before checksums existed are checked for shape only.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import time
import uuid
import warnings

from ..data.scan_index import _alive as _pid_alive
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

from ..errors import AlwbError, CacheError, ImageLoadError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

_GEN_RE = re.compile(r"^emb-(\d{6})\.npy$")
_TMP_RE = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{32}\.tmp$")
_LEGACY_TMP_AGE_S = 3600  # temporary files without a pid (older versions) are removed after an hour


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


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")


def _write_error(path: Path, exc: OSError) -> CacheError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "the disk is full: free some space and rerun (finished chunks are kept)"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        what = "no permission to write there: fix the folder's permissions or move the project"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST):
        what = f"a file is in the way of the folder {path.parent}: move it away or delete it"
    else:
        what = "check the disk and rerun"
    return CacheError(f"cannot write embedding cache file {path}: {exc.strerror or exc}; {what}")


def _atomic_write(path: Path, write: Callable) -> str:
    """Write through ``write(fh)`` to a temporary file, fsync, rename into place; returns the sha256 of the bytes.
    The temporary file is removed whatever happens."""
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        digest = _file_sha256(tmp)
        os.replace(tmp, path)
        return digest
    except OSError as exc:
        raise _write_error(path, exc) from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _atomic_save(path: Path, array: np.ndarray) -> str:
    return _atomic_write(path, lambda fh: np.save(fh, array, allow_pickle=False))


def _atomic_json(path: Path, obj) -> str:
    data = json.dumps(obj, indent=1).encode("utf-8")
    return _atomic_write(path, lambda fh: fh.write(data))


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _slug(key: str) -> str:
    head = re.sub(r"[^A-Za-z0-9_.-]+", "_", key.split("|", 1)[0])[:40] or "backbone"
    return f"{head}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:16]}"


class _Damaged(Exception):
    def __init__(self, path: Path, why: str):
        super().__init__(f"{path}: {why}")
        self.path, self.why = path, why


class _KeyStore:
    """The cache folder of one backbone key."""

    def __init__(self, folder: Path, key: str):
        self.folder = folder
        self.key = key
        self._check_root()
        self._clean_stale_tmp()

    def _check_root(self) -> None:
        root = self.folder.parent
        for p in (root, self.folder):
            if p.exists() and not p.is_dir():
                raise CacheError(f"embedding cache {p} is a file, not a folder: move it away or delete it (the "
                                 "cache is rebuilt by the next `alwb embed`)")

    def _clean_stale_tmp(self) -> None:
        """Remove temporary files left by runs that were killed (their process is gone)."""
        if not self.folder.is_dir():
            return
        now = time.time()
        for p in self.folder.glob(".*.tmp"):
            m = _TMP_RE.match(p.name)
            try:
                if m is not None:
                    pid = int(m.group(1))
                    if pid != os.getpid() and _pid_alive(pid):
                        continue
                elif now - p.stat().st_mtime < _LEGACY_TMP_AGE_S:
                    continue
                p.unlink()
            except OSError:
                pass

    def _warn_damaged(self, paths: Sequence[Path], why: str, n_rows: Optional[int]) -> None:
        rows = f"its {n_rows} row(s) are computed again" if n_rows else "its rows are computed again"
        warnings.warn(f"embedding cache file {paths[0]} is damaged ({why}): removed, {rows}", RuntimeWarning,
                      stacklevel=4)
        for p in paths:
            with contextlib.suppress(OSError):
                p.unlink()

    # -- meta ------------------------------------------------------------------------------------
    def _meta_path(self) -> Path:
        return self.folder / "meta.json"

    def dim(self) -> Optional[int]:
        p = self._meta_path()
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CacheError(f"cannot read embedding cache file {p}: {exc.strerror or exc}; fix its permissions "
                             "or delete it") from exc
        try:
            meta = json.loads(text)
            key, dim = meta["key"], int(meta["dim"])
            if not isinstance(key, str) or dim < 1:
                raise ValueError("bad values")
        except (ValueError, KeyError, TypeError) as exc:
            warnings.warn(f"embedding cache file {p} is damaged ({type(exc).__name__}): removed, rewritten from "
                          "the backbone", RuntimeWarning, stacklevel=3)
            with contextlib.suppress(OSError):
                p.unlink()
            return None
        if key != self.key:
            raise CacheError(f"embedding cache {self.folder} belongs to backbone key {key!r}, not {self.key!r}: "
                             "move the folder away or delete it")
        return dim

    def _ensure_meta(self, dim: int) -> None:
        known = self.dim()
        if known is None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _write_error(self.folder / "meta.json", exc) from exc
            _atomic_json(self._meta_path(), {"key": self.key, "dim": int(dim)})
        elif known != dim:
            raise CacheError(f"embedding cache {self.folder}: rows have dim {dim}, the cache holds dim {known}; "
                             "move the folder away or delete it")

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

    @staticmethod
    def _sum_path(emb: Path) -> Path:
        m = _GEN_RE.match(emb.name)
        if m:
            return emb.with_name(f"sum-{m.group(1)}.json")
        return emb.with_name(emb.name[:-len(".emb.npy")] + ".sum.json")

    def _load_pair(self, emb_p: Path, sha_p: Path, dim: Optional[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(shas, embeddings)`` of one generation or chunk, verified; raises ``_Damaged``."""
        sum_p = self._sum_path(emb_p)
        sums = None
        if sum_p.exists():
            try:
                sums = json.loads(sum_p.read_text(encoding="utf-8"))
                want_emb, want_sha = str(sums["emb"]), str(sums["sha"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise _Damaged(sum_p, f"unreadable checksum file: {type(exc).__name__}") from exc
            for p, want in ((emb_p, want_emb), (sha_p, want_sha)):
                try:
                    got = _file_sha256(p)
                except OSError as exc:
                    raise _Damaged(p, f"unreadable: {exc.strerror or exc}") from exc
                if got != want:
                    raise _Damaged(p, "checksum mismatch")
        try:
            shas = np.load(sha_p, allow_pickle=False)
            emb = np.load(emb_p, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise _Damaged(emb_p, f"unreadable: {str(exc).splitlines()[0][:80] or type(exc).__name__}") from exc
        if emb.ndim != 2 or shas.ndim != 1 or len(shas) != len(emb) or (dim is not None and emb.shape[1] != dim):
            raise _Damaged(emb_p, f"shape {emb.shape} does not match {len(shas)} sha(s) of dim {dim}")
        if emb.dtype != np.float32 or shas.dtype.kind != "U":
            raise _Damaged(emb_p, f"unexpected dtypes {emb.dtype}/{shas.dtype}")
        return shas, emb

    def sources(self, dim: Optional[int] = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(shas, embeddings)`` pairs: the consolidated store (memory-mapped) and every finished chunk, each
        verified against its checksum; damaged ones are removed with a warning (their rows are recomputed)."""
        if dim is None:
            dim = self.dim()
        out = []
        _gen, emb, sha = self._generation()
        pairs = ([(emb, sha)] if emb is not None else []) + self._chunks()
        for emb_p, sha_p in pairs:
            try:
                out.append(self._load_pair(emb_p, sha_p, dim))
            except _Damaged as exc:
                n = None
                with contextlib.suppress(Exception):
                    n = len(np.load(sha_p, allow_pickle=False))
                self._warn_damaged([exc.path, emb_p, sha_p, self._sum_path(emb_p)], exc.why, n)
        return out

    def lookup(self, shas: Sequence[str], dim: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
        """Rows for ``shas`` (zeros where missing) and the found mask. ``dim``: the backbone's, used when
        ``meta.json`` is missing or was damaged."""
        known = self.dim()
        if known is not None and dim is not None and known != dim:
            raise CacheError(f"embedding cache {self.folder}: the backbone gives dim {dim}, the cache holds dim "
                             f"{known}; move the folder away or delete it")
        if known is None and dim is not None and (self._generation()[1] is not None or self._chunks()):
            self._ensure_meta(dim)  # meta.json was missing or damaged: rewrite it (the rows are verified below)
        dim = known if known is not None else dim
        n = len(shas)
        found = np.zeros(n, dtype=bool)
        if dim is None:
            return np.zeros((n, 0), dtype=np.float32), found
        out = np.zeros((n, dim), dtype=np.float32)
        want: dict[str, list[int]] = {}
        for i, s in enumerate(shas):
            want.setdefault(s, []).append(i)
        for src_shas, src_emb in self.sources(dim):
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
    def _write_pair(self, emb_p: Path, sha_p: Path, emb: np.ndarray, shas: np.ndarray) -> None:
        d_emb = _atomic_save(emb_p, emb)
        d_sha = _atomic_save(sha_p, shas)
        _atomic_json(self._sum_path(emb_p), {"emb": d_emb, "sha": d_sha, "rows": int(len(emb)),
                                             "dim": int(emb.shape[1])})  # commit marker

    def add_chunk(self, shas: Sequence[str], emb: np.ndarray) -> None:
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        if emb.ndim != 2 or len(emb) != len(shas):
            raise ValueError(f"add_chunk: {len(shas)} sha(s) for embeddings of shape {emb.shape}")
        if not len(shas):
            return
        self._ensure_meta(emb.shape[1])
        stem = f"chunk-{uuid.uuid4().hex}"
        emb_p, sha_p = self.folder / f"{stem}.emb.npy", self.folder / f"{stem}.sha.npy"
        try:
            self._write_pair(emb_p, sha_p, emb, np.asarray(list(shas), dtype=str))
        except CacheError:
            for p in (emb_p, sha_p):  # an incomplete chunk is not kept
                with contextlib.suppress(OSError):
                    p.unlink()
            raise

    @contextlib.contextmanager
    def _lock(self):
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fh = open(self.folder / ".lock", "a+")
        except OSError as exc:
            raise _write_error(self.folder / ".lock", exc) from exc
        with fh:
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
            dim = self.dim()
            gen, emb_p, sha_p = self._generation()
            pairs = ([(emb_p, sha_p)] if emb_p is not None else []) + self._chunks()
            parts_sha, parts_emb, folded = [], [], []
            for e, s in pairs:
                try:
                    sh, em = self._load_pair(e, s, dim)
                except _Damaged as exc:
                    self._warn_damaged([exc.path, e, s, self._sum_path(e)], exc.why, None)
                    continue
                parts_sha.append(sh)
                parts_emb.append(em)
                folded.append((e, s))
            if not parts_sha:
                return 0
            if len(folded) == 1 and emb_p is not None and folded[0][0] == emb_p and self._sum_path(emb_p).exists():
                return len(parts_sha[0])  # nothing to fold
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
            new_emb, new_sha = self.folder / f"emb-{new:06d}.npy", self.folder / f"sha-{new:06d}.npy"
            try:
                self._write_pair(new_emb, new_sha, merged, all_sha[first])
            except CacheError:
                for p in (new_emb, new_sha):  # the chunks stay: nothing is lost
                    with contextlib.suppress(OSError):
                        p.unlink()
                raise
            del parts_emb
            for e, s in folded:
                for p in (self._sum_path(e), s, e):
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

    def lookup(self, key: str, shas: Sequence[str], dim: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, found)``: rows ``(n, dim)`` float32 (zeros where not cached) and a bool mask."""
        return self.store(key).lookup(list(shas), dim)

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
                with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                    out.append(json.loads(meta.read_text(encoding="utf-8"))["key"])
        return out


# ------------------------------------------------------------------------------------------------
# extraction
# ------------------------------------------------------------------------------------------------
_LOAD_ERRORS = (ImageLoadError, OSError, ValueError, SyntaxError)


def load_bound(backbone) -> Optional[int]:
    """The ``bound`` images are decoded with for ``backbone`` (see ``load_image``): 4x the largest size its
    preprocessing resizes or crops to, so the integer pre-shrink of a huge image never reaches the final size.
    A backbone can set ``load_bound`` itself."""
    if hasattr(backbone, "load_bound"):
        return backbone.load_bound
    sizes = []
    for step in getattr(getattr(backbone, "transform", None), "transforms", ()) or ():
        size = getattr(step, "size", None)
        if isinstance(size, int):
            sizes.append(size)
        elif isinstance(size, (list, tuple)) and size and all(isinstance(v, int) for v in size):
            sizes.append(max(size))
    return 4 * max(sizes) if sizes else None


class _ItemDataset:
    """torch Dataset over selected source rows: ``(row, tensor, "")`` or ``(row, None, reason)``."""

    def __init__(self, source, rows: Sequence[int], transform, bound: Optional[int] = None):
        self.source = source
        self.rows = list(rows)
        self.transform = transform
        self.bound = bound

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        row = self.rows[i]
        item = self.source.items[row]
        try:
            im = self.source.load(item, bound=self.bound) if self.bound else self.source.load(item)
            if im.mode != "RGB":
                im = im.convert("RGB")
            return row, self.transform(im), ""
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

    ds = _ItemDataset(source, rows, backbone.transform, load_bound(backbone))
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
    X, found, todo, first_of = plan_rows(cache, key, shas, backbone.dim)
    report.n_cached = int(found.sum())

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
        fill_duplicates(X, found, shas, first_of, failed_rows)
    finish_report(report, items, failed_rows, n, t0)
    return (X, report) if return_report else X


def plan_rows(cache: Optional["EmbeddingCache"], key: str, shas: Sequence[str], dim: int):
    """What an embedding run must compute: ``(X, found, todo, first_of)``. ``X`` holds the cached rows (zeros
    elsewhere), ``found`` marks them; ``todo`` is one row per distinct missing sha (its first occurrence, recorded in
    ``first_of``), so an image that appears twice is computed once. Shared by the local and the Ray path."""
    n = len(shas)
    if cache is not None:
        X, found = cache.lookup(key, shas, dim)
        if X.shape[1] != dim:
            X, found = np.zeros((n, dim), dtype=np.float32), np.zeros(n, dtype=bool)
    else:
        X, found = np.zeros((n, dim), dtype=np.float32), np.zeros(n, dtype=bool)
    todo: list[int] = []
    first_of: dict[str, int] = {}
    for i in np.flatnonzero(~found).tolist():
        if shas[i] not in first_of:
            first_of[shas[i]] = i
            todo.append(i)
    return X, found, todo, first_of


def fill_duplicates(X: np.ndarray, found: np.ndarray, shas: Sequence[str], first_of: dict, failed_rows: dict) -> None:
    """Duplicates (same sha) get the row computed for their first occurrence, or its failure reason."""
    for i in np.flatnonzero(~found).tolist():
        src = first_of[shas[i]]
        if src in failed_rows:
            if i != src:
                failed_rows[i] = failed_rows[src]
        elif i != src:
            X[i] = X[src]


def finish_report(report, items, failed_rows: dict, n: int, t0: float) -> None:
    """Fill ``report`` (ok mask, failed ids with reasons, seconds) and warn once about unreadable images; shared by
    the local and the Ray paths."""
    ok = np.ones(n, dtype=bool)
    ok[list(failed_rows)] = False
    report.failed = [(items[r].id, failed_rows[r]) for r in sorted(failed_rows)]
    report.ok = ok
    report.seconds = time.perf_counter() - t0
    if report.failed:
        first_id, first_reason = report.failed[0]
        warnings.warn(f"embedding skipped {len(report.failed)} of {n} image(s) that could not be read "
                      f"(their rows are zeros), e.g. {first_id}: {first_reason}", RuntimeWarning, stacklevel=3)
