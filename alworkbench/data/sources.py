"""Image sources: a folder tree, a CSV manifest, or a built-in dataset, all seen as one ``ImageSource``.

Every file source is probed at ingest (fully decoded, in a small thread pool) and de-duplicated by the sha256 of
its bytes, so what reaches the pool is exactly what ``load()`` can open; the rest is in ``source.report`` with a
short reason. With a ``scan_index`` (a project passes ``DIR/cache/scan.sqlite``) only new or changed files are
read again: the others are recognised by ``stat`` (size, mtime, inode). Built-in datasets keep their pixels in one
uint8 array (``source.pixels``), never as files.

Item ids (and class names taken from folder names) are always valid UTF-8 text: a file name whose bytes are not
UTF-8 (Python sees them as surrogate escapes) gets the id :func:`safe_id` gives, e.g. ``caf\\xe9.png`` for the
bytes ``caf\xe9.png``, while ``item.uri`` keeps the real path for loading.
"""
from __future__ import annotations

import csv
import dataclasses
import difflib
import functools
import gzip
import hashlib
import os
import re
import sys
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
from PIL import Image

from ..errors import AlwbError, ConfigError, DatasetMissingError, ManifestError, UnknownItemError
from ..types import DuplicateFile, IngestReport, Item, SkippedFile
from .loading import DEFAULT_MAX_PIXELS, is_image_name, load_image, probe_file
from .scan_index import ScanIndex, stat_key

from ..config import BUILTIN_DATASETS as BUILTIN_NAMES  # noqa: E402  (one list of built-in datasets)
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ENV = "ALWB_FASHION_MNIST_DIR"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DIGITS_TEST_FRACTION = 0.2  # the last 20% of sklearn's digits are the "test" split
_IGNORED_DIRS = frozenset({"__MACOSX", "__pycache__"})
_TAG_SPLIT = re.compile(r"[|;]")


def safe_id(text: str) -> str:
    """``text`` as valid UTF-8 text: undecodable file-name bytes (surrogate escapes) become ``\\xNN``.

    Deterministic, and the identity for any name that is already valid UTF-8.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no file system decoding produced
        return text.encode("utf-8", "backslashreplace").decode("ascii")
    return raw.decode("utf-8", "backslashreplace")


def display_path(path: str) -> str:
    """A path for messages and text files (CSV, JSON): :func:`safe_id` of it."""
    return safe_id(os.fspath(path))


def natural_key(text: str) -> tuple:
    """Sort key that orders "2" before "10" and ignores case first: ("class 2", "class 10", "Dog", "cat")."""
    parts = re.split(r"(\d+)", text)
    return tuple((0, int(p), p) if p.isdigit() else (1, p.casefold(), p) for p in parts if p != "")


def natural_sorted(values: Iterable[str]) -> list[str]:
    return sorted(values, key=natural_key)


class ImageSource:
    """The images of a project, in a fixed order, with what ingest found (ground truth, skips, duplicates).

    ``items[i]`` is the i-th image; ``pixels`` (built-in sources only) is the aligned uint8 ``N x H x W`` array.
    """

    def __init__(self, name: str, root: Optional[str], items: Sequence[Item], *, kind: str,
                 report: Optional[IngestReport] = None, classes: Optional[list[str]] = None,
                 tags: Optional[list[str]] = None, pixels: Optional[np.ndarray] = None,
                 max_pixels: Optional[int] = DEFAULT_MAX_PIXELS):
        self.name = name
        self.root = root
        self.kind = kind
        self.items: list[Item] = list(items)
        self.report = report if report is not None else IngestReport(n_images=len(self.items))
        self.classes = classes
        self.tags = tags
        self.pixels = pixels
        self.max_pixels = max_pixels
        if pixels is not None and len(pixels) != len(self.items):
            raise AlwbError(f"{name}: {len(pixels)} pixel rows for {len(self.items)} items")
        self._index = {item.id: i for i, item in enumerate(self.items)}
        if len(self._index) != len(self.items):
            raise AlwbError(f"{name}: {len(self.items) - len(self._index)} duplicate item id(s)")

    # ---------------------------------------------------------------- container protocol
    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def __repr__(self) -> str:
        labels = f", {len(self.classes)} classes" if self.classes else ""
        tags = f", {len(self.tags)} tags" if self.tags else ""
        return f"<ImageSource {self.name!r} ({self.kind}): {len(self)} images{labels}{tags}>"

    def index_of(self, item_id: str) -> int:
        try:
            return self._index[item_id]
        except KeyError:
            raise UnknownItemError(item_id, f"image source {self.name!r}") from None

    def item(self, item_id: str) -> Item:
        return self.items[self.index_of(item_id)]

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]

    # ---------------------------------------------------------------- data
    def load(self, item: Union[Item, str], *, max_side: Optional[int] = None,
             bound: Optional[int] = None, keep_alpha: bool = False) -> Image.Image:
        """The item's image as RGB (built-ins from memory, files through ``load_image``).

        ``bound``: huge files are shrunk by an integer factor while decoding, keeping the long side >= ``bound``
        (see ``load_image``); built-in images are small and returned as they are. ``keep_alpha``: a file with
        transparency comes back as RGBA (for display).
        """
        item_id = item if isinstance(item, str) else item.id
        if self.pixels is not None:
            im = Image.fromarray(self.pixels[self.index_of(item_id)], "L").convert("RGB")
            if max_side is not None and max(im.size) > max_side:
                im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            return im
        uri = item.uri if isinstance(item, Item) else self.item(item_id).uri
        return load_image(uri, max_side=max_side, max_pixels=self.max_pixels, bound=bound, keep_alpha=keep_alpha)

    def ground_truth(self) -> list[Union[str, tuple[str, ...], None]]:
        """Per item (aligned with ``items``): the tag tuple for tag sources, else the label, else None."""
        if self.tags is not None:
            return [item.tags for item in self.items]
        return [item.label for item in self.items]

    def has_ground_truth(self) -> bool:
        return any(gt is not None for gt in self.ground_truth())

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_folder(cls, path: Union[str, os.PathLike], *, progress: Optional[bool] = None,
                    workers: Optional[int] = None, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
                    scan_index: Union[str, os.PathLike, None] = None) -> "ImageSource":
        """Scan a folder: ``root/<class>/**/image`` (labelled) or ``root/image`` (flat, unlabelled)."""
        root = Path(os.path.abspath(os.fspath(path)))
        if not root.exists():
            raise ConfigError(f"image folder does not exist: {root}")
        if not root.is_dir():
            raise ConfigError(f"not a folder: {root}")
        candidates: list[tuple[str, str, Optional[str]]] = []  # (relative id, absolute path, label)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _IGNORED_DIRS)
            rel_dir = os.path.relpath(dirpath, root)
            parts = [] if rel_dir == "." else rel_dir.split(os.sep)
            label = unicodedata.normalize("NFC", safe_id(parts[0])) if parts else None
            for fname in sorted(filenames):
                if fname.startswith(".") or not is_image_name(fname):
                    continue
                rel = "/".join(parts + [fname])
                candidates.append((safe_id(rel), os.path.join(dirpath, fname), label, None, rel))
        candidates.sort(key=lambda c: c[0])
        candidates, clashes = _unique_ids(candidates)
        items, report = _ingest(candidates, progress=progress, workers=workers, max_pixels=max_pixels,
                                desc=f"scanning {safe_id(root.name)}", scan_index=scan_index)
        report.skipped[:0] = clashes
        labels = {item.label for item in items if item.label is not None}
        return cls(safe_id(root.name), str(root), items, kind="folder", report=report,
                   classes=natural_sorted(labels) if labels else None, max_pixels=max_pixels)

    @classmethod
    def from_csv(cls, path: Union[str, os.PathLike], root: Union[str, os.PathLike, None] = None, *,
                 progress: Optional[bool] = None, workers: Optional[int] = None,
                 max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
                 scan_index: Union[str, os.PathLike, None] = None) -> "ImageSource":
        """Read a manifest with a ``path`` column and optional ``label`` and ``tags`` (``a|b`` or ``a;b``)."""
        csv_path = Path(os.path.abspath(os.fspath(path)))
        if not csv_path.is_file():
            raise ConfigError(f"CSV manifest does not exist: {csv_path}")
        base = Path(os.path.abspath(os.fspath(root))) if root is not None else csv_path.parent
        if not base.is_dir():
            raise ConfigError(f"manifest root is not a folder: {base}")
        real_base = os.path.realpath(base)
        try:
            with open(csv_path, newline="", encoding="utf-8-sig") as fh:
                reader = csv.reader(fh)
                header = next(reader, None)
                if header is None:
                    raise ManifestError(f"{csv_path.name}: empty file, expected a header row with a 'path' column")
                columns = [h.strip().lower() for h in header]
                if "path" not in columns:
                    found = ", ".join(repr(h) for h in header) or "none"
                    raise ManifestError(f"{csv_path.name}: no 'path' column (columns found: {found})")
                rows = list(reader)
        except UnicodeDecodeError as exc:
            raise ManifestError(f"{csv_path.name}: not UTF-8 text (byte {exc.start})") from exc
        except csv.Error as exc:
            raise ManifestError(f"{csv_path.name}: malformed CSV ({exc})") from exc
        col = {name: columns.index(name) for name in ("path", "label", "tags") if name in columns}

        skipped: list[SkippedFile] = []
        candidates: list[tuple[str, str, Optional[str], Optional[tuple[str, ...]]]] = []
        seen_rows: dict[str, int] = {}
        tag_vocab: set[str] = set()
        for rowno, row in enumerate(rows, start=2):  # row 1 is the header
            if not any(cell.strip() for cell in row):
                continue
            def cell(name: str, row: list[str] = row) -> str:
                return row[col[name]].strip() if name in col and col[name] < len(row) else ""

            raw = cell("path")
            if not raw:
                skipped.append(SkippedFile(f"{csv_path.name}:{rowno}", "empty path"))
                continue
            if "\x00" in raw:  # no file system allows it; os.path would raise ValueError
                skipped.append(SkippedFile(f"{csv_path.name}:{rowno}", "path contains a NUL byte"))
                continue
            if "\x00" in cell("label") or "\x00" in cell("tags"):
                skipped.append(SkippedFile(f"{csv_path.name}:{rowno}", "label or tags contain a NUL byte"))
                continue
            target = Path(raw) if os.path.isabs(raw) else base / raw
            absolute = os.path.normpath(os.path.abspath(target))
            if not _inside(os.path.realpath(absolute), real_base):
                skipped.append(SkippedFile(raw, "path escapes manifest root"))
                continue
            if not os.path.exists(absolute):
                skipped.append(SkippedFile(raw, "file not found"))
                continue
            rel = Path(os.path.relpath(absolute, base)).as_posix()
            if rel in seen_rows:
                skipped.append(SkippedFile(raw, f"listed twice in manifest (first at row {seen_rows[rel]})"))
                continue
            seen_rows[rel] = rowno
            label = unicodedata.normalize("NFC", cell("label")) or None
            tags = None
            if "tags" in col:
                parsed = sorted({unicodedata.normalize("NFC", t.strip()) for t in _TAG_SPLIT.split(cell("tags"))}
                                - {""})
                tags = tuple(parsed) if parsed else None
                tag_vocab.update(parsed)
            candidates.append((safe_id(rel), absolute, label, tags, rel))

        candidates, clashes = _unique_ids(candidates)
        skipped.extend(clashes)
        items, report = _ingest(candidates, progress=progress, workers=workers, max_pixels=max_pixels,
                                desc=f"scanning {csv_path.name}", scan_index=scan_index)
        report.skipped[:0] = skipped
        labels = {item.label for item in items if item.label is not None}
        return cls(csv_path.stem, str(base), items, kind="csv", report=report,
                   classes=natural_sorted(labels) if labels else None,
                   tags=natural_sorted(tag_vocab) if "tags" in col and tag_vocab else None,
                   max_pixels=max_pixels)

    @classmethod
    def builtin(cls, name: str, limit: Optional[int] = None) -> "ImageSource":
        """``"digits"`` (sklearn, 1,797 8x8) or ``"fashion-mnist"`` (Debian package, 70,000 28x28), in memory."""
        key = str(name).strip().lower()
        if key not in BUILTIN_NAMES:
            raise ConfigError(_unknown_builtin(str(name)))
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ConfigError(f"source.limit must be a positive integer, got {limit!r}")
        if key == "digits":
            pixels, labels, splits, classes = _digits()
        else:
            pixels, labels, splits, classes = _fashion_mnist(fashion_mnist_dir())
        local_index = np.zeros(len(labels), dtype=np.int64)  # index within the split, used in the item id
        for split in ("train", "test"):
            mask = splits == split
            local_index[mask] = np.arange(int(mask.sum()))
        keep = _stratified_subset(labels, splits, limit) if limit is not None else np.arange(len(labels))
        pixels = pixels[keep]
        digests = _row_digests(pixels)
        split_of, local_of, label_of = splits[keep].tolist(), local_index[keep].tolist(), labels[keep].tolist()
        items = [
            Item(id=f"{key}/{sp}/{k}", uri=f"builtin://{key}/{sp}/{k}", sha256=digest, label=classes[lab], split=sp)
            for sp, k, lab, digest in zip(split_of, local_of, label_of, digests)
        ]
        pixels = np.ascontiguousarray(pixels)
        pixels.setflags(write=False)
        return cls(key, None, items, kind="builtin", report=IngestReport(n_images=len(items)),
                   classes=list(classes), pixels=pixels)


# ------------------------------------------------------------------------------------------- dispatcher


def open_source(spec: Any, *, base_dir: Union[str, os.PathLike, None] = None, progress: Optional[bool] = None,
                limit: Optional[int] = None, scan_index: Union[str, os.PathLike, None] = None) -> ImageSource:
    """Open a source from ``"digits"``, ``"fashion-mnist"``, a folder path, a ``.csv`` path, a dict
    ``{kind: builtin|folder|csv, dataset|path: ..., limit: ..., root: ...}`` or a config ``SourceConfig``.

    Relative paths resolve against ``base_dir`` (the project folder) when given, else the working directory.
    ``scan_index``: where to keep the incremental-scan index of a folder / CSV source (see ``scan_index.py``).
    """
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        spec = dataclasses.asdict(spec)
    if isinstance(spec, (str, os.PathLike)):
        text = os.fspath(spec)
        if text.strip().lower() in BUILTIN_NAMES:
            return ImageSource.builtin(text, limit=limit)
        path = _resolve(text, base_dir)
        if not path.exists():
            hint = difflib.get_close_matches(text.strip().lower(), BUILTIN_NAMES, n=1)
            extra = f" (did you mean the built-in dataset {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"source: path does not exist: {path}{extra}")
        if limit is not None:
            raise ConfigError("source.limit applies to built-in datasets only")
        if path.is_file() and path.suffix.lower() == ".csv":
            return ImageSource.from_csv(path, progress=progress, scan_index=scan_index)
        if path.is_dir():
            return ImageSource.from_folder(path, progress=progress, scan_index=scan_index)
        raise ConfigError(f"source: {path} is neither a folder nor a .csv manifest")
    if not isinstance(spec, Mapping):
        raise ConfigError(f"source must be a dataset name, a path or a mapping, got {type(spec).__name__}")
    spec = {k: v for k, v in spec.items() if v is not None}
    kind = spec.get("kind") or ("builtin" if "dataset" in spec else None)
    if kind is None and "path" in spec:
        kind = "csv" if str(spec["path"]).lower().endswith(".csv") else "folder"
    lim = spec.get("limit", limit)
    if kind == "builtin":
        if "dataset" not in spec:
            raise ConfigError(f"source.dataset is required for kind 'builtin' (one of: {', '.join(BUILTIN_NAMES)})")
        return ImageSource.builtin(spec["dataset"], limit=lim)
    if kind in ("folder", "csv"):
        if "path" not in spec:
            raise ConfigError(f"source.path is required for kind {kind!r}")
        if lim is not None:
            raise ConfigError("source.limit applies to built-in datasets only")
        path = _resolve(str(spec["path"]), base_dir)
        if not path.exists():
            raise ConfigError(f"source.path does not exist: {path}")
        if kind == "folder":
            if not path.is_dir():
                raise ConfigError(f"source.path is not a folder: {path}")
            return ImageSource.from_folder(path, progress=progress, scan_index=scan_index)
        root = _resolve(str(spec["root"]), base_dir) if "root" in spec else None
        return ImageSource.from_csv(path, root=root, progress=progress, scan_index=scan_index)
    raise ConfigError(f"source.kind must be one of builtin, folder, csv; got {kind!r}")


# ------------------------------------------------------------------------------------------- internals


def _resolve(text: str, base_dir: Union[str, os.PathLike, None]) -> Path:
    path = Path(os.path.expanduser(text))
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return Path(os.path.abspath(path))


def _inside(real_path: str, real_root: str) -> bool:
    try:
        return os.path.commonpath([real_path, real_root]) == real_root
    except ValueError:  # different drives on Windows
        return False


def _show_progress(progress: Optional[bool]) -> bool:
    if progress is not None:
        return bool(progress)
    stream = sys.stderr
    return bool(getattr(stream, "isatty", None) and stream.isatty())


def _unique_ids(candidates: Sequence[tuple]) -> tuple[list[tuple], list[SkippedFile]]:
    """Keep one candidate per id. Two names can only share an id when one of them was escaped (not UTF-8):
    the name that is its own id wins, the escaped one is skipped with a reason."""
    by_id: dict[str, list[tuple]] = {}
    for cand in candidates:
        by_id.setdefault(cand[0], []).append(cand)
    if all(len(v) == 1 for v in by_id.values()):
        return list(candidates), []
    keep: list[tuple] = []
    skipped: list[SkippedFile] = []
    for cand in candidates:
        group = by_id[cand[0]]
        if len(group) == 1:
            keep.append(cand)
            continue
        winner = next((c for c in group if c[4] == c[0]), group[0])
        if cand is winner:
            keep.append(cand)
        else:
            skipped.append(SkippedFile(cand[0], "file name is not valid UTF-8 and its escaped form names another "
                                                "file"))
    return keep, skipped


def _ingest(candidates: Sequence[tuple], *, progress: Optional[bool], workers: Optional[int],
            max_pixels: Optional[int], desc: str, scan_index: Union[str, os.PathLike, None] = None
            ) -> tuple[list[Item], IngestReport]:
    """Probe and hash every candidate ``(id, abspath, label, tags, raw name)`` (in id order); drop bad files and
    copies. With ``scan_index``, files whose ``stat`` matches the index are not read again."""
    from tqdm.auto import tqdm

    n_workers = workers if workers is not None else max(2, min(4, os.cpu_count() or 2))
    probe = functools.partial(probe_file, max_pixels=max_pixels)
    index = ScanIndex(scan_index, max_pixels=max_pixels) if scan_index is not None else None
    results: list[Optional[tuple[Optional[str], Optional[str]]]] = [None] * len(candidates)
    stats: list[Optional[tuple]] = [None] * len(candidates)
    todo: list[int] = []
    for k, cand in enumerate(candidates):
        if index is not None:
            try:
                stats[k] = stat_key(os.stat(cand[1]))
            except OSError:
                stats[k] = None
            if stats[k] is not None:
                hit = index.lookup(cand[1], stats[k])
                if hit is not None:
                    results[k] = hit
                    continue
        todo.append(k)
    with tqdm(total=len(todo), desc=desc, unit="img", disable=not _show_progress(progress) or not todo,
              leave=False) as bar:
        if len(todo) <= 1 or n_workers <= 1:
            for k in todo:
                results[k] = probe(candidates[k][1])
                bar.update(1)
        else:
            with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="alwb-ingest") as pool:
                for k, res in zip(todo, pool.map(probe, [candidates[k][1] for k in todo])):
                    results[k] = res
                    bar.update(1)
    if index is not None:
        for k in todo:
            if stats[k] is not None:
                index.record(candidates[k][1], stats[k], results[k])
        index.save()
    report = IngestReport()
    items: list[Item] = []
    first_by_hash: dict[str, str] = {}
    for cand, (digest, reason) in zip(candidates, results):
        rel, absolute, label = cand[0], cand[1], cand[2]
        tags = cand[3] if len(cand) > 3 else None
        if reason is not None:
            report.skipped.append(SkippedFile(rel, reason))
            continue
        if digest is None:  # unreachable: probe_file hashes whatever it could read
            report.skipped.append(SkippedFile(rel, "cannot read file"))
            continue
        if digest in first_by_hash:
            report.duplicates.append(DuplicateFile(rel, first_by_hash[digest], digest))
            continue
        first_by_hash[digest] = rel
        items.append(Item(id=rel, uri=absolute, sha256=digest, label=label, tags=tags))
    report.n_images = len(items)
    return items, report


def _unknown_builtin(name: str) -> str:
    hint = difflib.get_close_matches(name.strip().lower(), BUILTIN_NAMES, n=1)
    extra = f"; did you mean {hint[0]!r}?" if hint else ""
    return f"unknown built-in dataset {name!r} (available: {', '.join(BUILTIN_NAMES)}){extra}"


def _row_digests(pixels: np.ndarray) -> list[str]:
    flat = np.ascontiguousarray(pixels).reshape(len(pixels), -1)
    sha = hashlib.sha256
    return [sha(row).hexdigest() for row in flat]


def _stratified_subset(labels: np.ndarray, splits: np.ndarray, limit: int) -> np.ndarray:
    """Deterministic subset of ``limit`` rows: splits in proportion, classes round-robin, earliest rows first."""
    n = len(labels)
    if limit >= n:
        return np.arange(n)
    chosen = []
    split_names = [s for s in ("train", "test") if (splits == s).any()]
    sizes = {s: int((splits == s).sum()) for s in split_names}
    quotas = {s: int(round(limit * sizes[s] / n)) for s in split_names}
    quotas[split_names[0]] += limit - sum(quotas.values())  # rounding remainder goes to train
    for s in split_names:
        idx = np.flatnonzero(splits == s)
        lab = labels[idx]
        rank = np.empty(len(idx), dtype=np.int64)  # position of each row within its class
        for c in np.unique(lab):
            members = np.flatnonzero(lab == c)
            rank[members] = np.arange(len(members))
        order = np.lexsort((idx, rank))  # all classes' first rows, then their second rows, ...
        chosen.append(idx[order[: quotas[s]]])
    return np.sort(np.concatenate(chosen))


def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0)).astype(np.uint8)
    labels = np.asarray(bunch.target, dtype=np.int64)
    n = len(labels)
    n_test = int(round(n * DIGITS_TEST_FRACTION))
    splits = np.array(["train"] * (n - n_test) + ["test"] * n_test)
    return pixels, labels, splits, tuple(str(c) for c in range(10))


def fashion_mnist_dir() -> Path:
    return Path(os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR)


def _idx_file(folder: Path, stem: str) -> Optional[Path]:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _fashion_mnist(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    files = {}
    for split, stems in FASHION_MNIST_FILES.items():
        for stem in stems:
            found = _idx_file(folder, stem)
            if found is None:
                raise DatasetMissingError(
                    f"Fashion-MNIST not found in {folder}: run `sudo apt-get install dataset-fashion-mnist` "
                    f"or set {FASHION_MNIST_ENV}")
            files[stem] = found
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files.values())
    return _load_fashion_mnist(stamp)


@functools.lru_cache(maxsize=2)
def _load_fashion_mnist(stamp: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    paths = {Path(p).name.removesuffix(".gz"): Path(p) for p, _mtime, _size in stamp}
    all_pixels, all_labels, all_splits = [], [], []
    for split, (img_stem, lab_stem) in FASHION_MNIST_FILES.items():
        images = _read_idx(paths[img_stem], ndim=3)
        labels = _read_idx(paths[lab_stem], ndim=1)
        if len(images) != len(labels):
            raise AlwbError(f"Fashion-MNIST {split}: {len(images)} images but {len(labels)} labels")
        if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
            raise AlwbError(f"Fashion-MNIST {split}: label {int(labels.max())} out of range 0..9")
        all_pixels.append(images)
        all_labels.append(labels.astype(np.int64))
        all_splits.append(np.full(len(labels), split))
    pixels = np.concatenate(all_pixels)
    pixels.setflags(write=False)
    return pixels, np.concatenate(all_labels), np.concatenate(all_splits), FASHION_MNIST_CLASSES


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse an IDX file (uint8 data): 4-byte magic 0x0000_08_<ndim>, big-endian dims, then the bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise AlwbError(f"cannot read {path}: {exc}") from exc
    if len(data) < 4 + 4 * ndim or data[:2] != b"\x00\x00" or data[2] != 0x08 or data[3] != ndim:
        raise AlwbError(f"{path} is not a {ndim}-D uint8 IDX file (header {data[:4].hex()})")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims))
    payload = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if payload.size != expected:
        raise AlwbError(f"{path}: {payload.size} data bytes, header says {dims} = {expected}")
    return payload.reshape(dims)
