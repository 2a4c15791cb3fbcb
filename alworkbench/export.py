"""Export the labelled set without FiftyOne: a CSV manifest or a class-folder tree.
(FiftyOne's own exporters live in alworkbench.integrations; they use the same output rules from here.)

Output rules (every exporter):

* Nothing outside ``out`` is written, and nothing is deleted that an alworkbench export did not write there.
* ``out`` may not be the project folder, a folder containing it, its ``cache/`` or ``fiftyone/`` folders, or the
  image source's folder (or one containing it): an export there could destroy the labels or the images.
* A non-empty ``out`` is refused unless ``overwrite=True`` (``--overwrite``; implied under ``DIR/exports/``,
  which holds only exports); then the files this project's previous export to ``out`` wrote (listed in
  ``DIR/.alwb-exports.json``, not in ``out``) are replaced and every other file is kept.
* The export is built in a temporary folder next to ``out`` and moved into place at the end, so a failed
  export leaves ``out`` as it was.
* Class names and item ids become folder and file names only through :mod:`alworkbench.names`; CSV cells go
  through :func:`alworkbench.names.csv_cell` (no spreadsheet formulas).

What is exported (every exporter): the FINAL label of each item (:func:`labelled_items`): the reviewer's, else
the consensus of the counted answers, else the single answer, else the gold answer. An item whose annotators
disagree without a majority (a tie) has no final label: it is left out and reported (``n_ties``, ``ties``) until a
reviewer decides. The CSV has the columns id, path, label (tags), annotator, round, answered_at (of the latest
answer), review_state (unreviewed / accepted / corrected), label_source (review / consensus / single / gold),
annotators (who answered, ``|``-separated) and source, the label's origin: human (a single answer), consensus,
review, gold or auto. A project with a taxonomy gets one more column per level (level_1, level_2, ...): the
label's node at that level in the taxonomy.

Auto labels (``auto_label`` records of confidence routing, :mod:`alworkbench.loop.routing`) are model labels, never
human ones: an item that any person answered, reviewed or gave a gold answer for is exported with its human/final
label (or left out as a tie, flag, skip) and its auto label is ignored (``n_auto_overridden``). The other auto
labels are exported only with ``include_auto=True`` (``alwb export --include-auto``): CSV rows with source ``auto``
and two more columns, confidence and model_version (empty for human labels); in the class-folder tree they go under
their own top folder (``auto/<class>/``, ``_auto/`` if a class is named auto) apart from the human labels. Without
it they are counted (``n_auto_left_out``) and left out.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Optional

from .data.sources import display_path
from .errors import AlwbError
from .names import csv_row, inside, safe_join, unique_components

FORMATS = ("csv", "folders")
#: per project: export folder -> the files the last export wrote there (what --overwrite may replace)
EXPORTS_RECORD = ".alwb-exports.json"


def _real(p) -> Path:
    return Path(os.path.realpath(os.fspath(p)))


def _source_root(project) -> Optional[Path]:
    """The folder holding the project's images (None for built-in datasets)."""
    s = project.config.source
    if s.kind == "builtin" or not s.path:
        return None
    p = Path(s.path).expanduser()
    if not p.is_absolute():
        p = project.dir / p
    return _real(p.parent if s.kind == "csv" else p)  # a manifest's paths resolve against its folder


def check_out(project, out, overwrite: bool = False) -> Path:
    """Validate an export destination (see the module docstring); returns it as an absolute path."""
    out = Path(os.path.abspath(Path(out).expanduser()))
    real = _real(out)
    pdir = _real(project.dir)
    hint = f"choose another folder, e.g. {pdir / 'exports' / 'NAME'}"
    if real == pdir:
        raise AlwbError(f"--out {out} is the project folder (alwb.yaml, labels.sqlite, cache/): {hint}")
    if inside(pdir, real):
        raise AlwbError(f"--out {out} contains the project folder {pdir}: {hint}")
    for sub in ("cache", "fiftyone", "labels.sqlite", "alwb.yaml"):
        if inside(real, pdir / sub):
            raise AlwbError(f"--out {out} is inside the project's {sub}: {hint}")
    if inside(real, pdir / "exports"):
        overwrite = True  # DIR/exports/ holds only alworkbench's exports
    root = _source_root(project)
    if root is not None and (real == root or inside(root, real)):
        raise AlwbError(f"--out {out} is or contains the image folder {root}: {hint}")
    if root is not None and inside(real, root) and not inside(real, pdir):
        raise AlwbError(f"--out {out} is inside the image folder {root} (the next scan would pick the exported "
                        f"copies up as new images): {hint}")
    if out.exists() and not overwrite:
        if out.is_dir():
            entries = sorted(e.name for e in os.scandir(out))
            if entries:
                raise AlwbError(f"--out {out} is not empty ({len(entries)} entries, e.g. {entries[0]!r}): choose an "
                                "empty or new folder, or pass --overwrite to replace a previous export there "
                                "(other files are kept)")
        else:
            raise AlwbError(f"--out {out} already exists: pass --overwrite to replace it, or choose another name")
    if out.exists() and not out.is_dir() and out.suffix.lower() != ".csv":
        raise AlwbError(f"--out {out} is a file, not a folder: choose a folder")
    return out


def _files_under(d: Path) -> list[str]:
    out = []
    for base, dirs, files in os.walk(d):
        for f in files:
            out.append(os.path.relpath(os.path.join(base, f), d))
    return sorted(out)


def staged_export(project, out, overwrite: bool, write: Callable[[Path], dict], fmt: str) -> dict:
    """Run ``write(tmpdir)`` into a fresh folder next to ``out``, then move its files into ``out`` under the
    rules above. ``write`` returns the result dict (its "path" is rewritten to ``out``)."""
    out = check_out(project, out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.alwb-export-", dir=out.parent))
    try:
        res = write(tmp)
        files = _files_under(tmp)
        _commit(tmp, out, _previous_files(project, out))
        _remember(project, out, fmt, files)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)  # our own temporary folder only
    res["path"] = str(out)
    return res


def _record(project) -> dict:
    try:
        data = json.loads((Path(project.dir) / EXPORTS_RECORD).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _previous_files(project, out: Path) -> list[str]:
    entry = _record(project).get(str(_real(out)), {})
    files = entry.get("files", []) if isinstance(entry, dict) else []
    return [str(f) for f in files if isinstance(f, str)]


def _remember(project, out: Path, fmt: str, files: list[str]) -> None:
    import time

    data = _record(project)
    data[str(_real(out))] = {"format": fmt, "files": files, "at": time.time()}
    target = Path(project.dir) / EXPORTS_RECORD
    fd, tmp = tempfile.mkstemp(prefix=f".{EXPORTS_RECORD}.", suffix=".tmp", dir=project.dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, ensure_ascii=False)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _commit(tmp: Path, out: Path, previous: list[str]) -> None:
    if out.is_dir() and not any(os.scandir(out)):
        out.rmdir()
    if not out.exists():
        os.rename(tmp, out)
        return
    # --overwrite into a non-empty folder: drop what the previous export wrote, keep everything else
    emptied: set[Path] = set()
    for rel in previous:
        p = out / rel
        if inside(p.parent, out) and (p.is_file() or p.is_symlink()):
            p.unlink()
            emptied.update(q for q in p.parents if q != out and inside(q, out))
    for d in sorted(emptied, key=lambda q: len(q.parts), reverse=True):
        try:
            d.rmdir()  # only if now empty
        except OSError:
            pass
    for rel in _files_under(tmp):
        dest = out / rel
        if not inside(dest.parent, out):  # cannot happen: names are sanitised; never write outside out
            raise AlwbError(f"refusing to write {dest}: it is outside {out}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_dir() and not dest.is_symlink():
            raise AlwbError(f"cannot write {dest}: a folder of that name is in the way; move it or choose "
                            "another --out")
        os.replace(tmp / rel, dest)


#: label_source (quality.QualityView) -> the origin written to the ``source`` column / ``label_origin`` field
ORIGIN = {"single": "human", "consensus": "consensus", "review": "review", "gold": "gold"}
ORIGINS = ("human", "consensus", "review", "gold", "auto")


def origin_of(label_source: Optional[str]) -> Optional[str]:
    """``human`` / ``consensus`` / ``review`` / ``gold`` for a final label's label_source (None otherwise)."""
    return ORIGIN.get(label_source) if label_source else None


def auto_records(store) -> dict[str, dict]:
    """item id -> its latest auto_label record (empty for a store without records)."""
    if not hasattr(store, "records"):
        return {}
    from .loop.routing import auto_ids

    return auto_ids(store)


class Labelled:
    """What an export writes: ``rows`` of (item, row) with the FINAL label of each item (the reviewer's, else the
    consensus of the counted answers, else the single answer, else the gold answer; see
    :mod:`alworkbench.labels.quality`), and the items left out: ``ties`` (annotators disagree without a majority:
    they wait for review), ``flagged`` and ``skipped`` (no label answer), ``not_counted`` (only answers of
    annotators who have not passed a required qualification test).

    Each row: ``value`` (class, or sorted tag tuple), ``source`` (review / consensus / single / gold),
    ``review_state`` (unreviewed / accepted / corrected; "" for gold-only items), ``annotators`` (who answered,
    sorted), and ``annotator`` / ``round`` / ``answered_at`` of the latest answer ("" for gold-only items),
    ``origin`` (human / consensus / review / gold), ``confidence`` and ``model_version`` ("").

    ``auto``: (item, row) for the auto labels of items no person answered, reviewed or gave a gold answer for (row
    as above with source and origin ``auto``, the record's ``confidence`` and ``model_version``); they are not in
    ``rows``. ``auto_overridden``: auto labels of items a person did touch (the human side wins)."""

    def __init__(self):
        self.rows: list[tuple] = []
        self.auto: list[tuple] = []
        self.auto_overridden: int = 0
        self.ties: list[str] = []
        self.flagged: list[str] = []
        self.skipped: list[str] = []
        self.not_counted: list[str] = []


def labelled_items(project, view=None) -> Labelled:
    """The final label of every item of ``project`` that has one, and the items left out (see :class:`Labelled`)."""
    from .labels.quality import QualityView

    view = view if view is not None else QualityView(project.store, project.config)
    out = Labelled()
    autos = auto_records(project.store)
    for it in project.source.items:
        sid = it.id
        if sid not in view.answers and sid not in view.gold and sid not in view.reviews:
            a = autos.get(sid)
            if a is not None:
                out.auto.append((it, {
                    "value": a["label"], "source": "auto", "origin": "auto", "review_state": "", "annotators": [],
                    "annotator": "", "round": "", "answered_at": "", "confidence": float(a["confidence"]),
                    "model_version": a.get("model_version", "")}))
            continue
        if sid in autos:
            out.auto_overridden += 1
        st = view.item_state(sid)
        answers = st["answers"]
        if st["final"] is None:
            kinds = {e["kind"] for e in answers.values()}
            if st["tie"]:
                out.ties.append(sid)
            elif "flag" in kinds:
                out.flagged.append(sid)
            elif kinds & {"label", "tags"}:
                out.not_counted.append(sid)
            elif "skip" in kinds:
                out.skipped.append(sid)
            continue
        latest = max(answers.values(), key=lambda e: e["id"]) if answers else None
        out.rows.append((it, {
            "value": st["final"], "source": st["source"], "origin": origin_of(st["source"]),
            "confidence": "", "model_version": "",
            "review_state": st["review_state"] if answers else "",
            "annotators": sorted(answers), "annotator": latest["annotator"] if latest else "",
            "round": latest["round"] if latest else "", "answered_at": latest["created_at"] if latest else ""}))
    return out


def _labelled_rows(project) -> Labelled:
    from .classes import check_labels_match

    check_labels_match(project)  # labels whose class was renamed: one line naming `alwb classes rename`
    return labelled_items(project)


CSV_COLUMNS = ("id", "path", "label", "annotator", "round", "answered_at", "review_state", "label_source", "annotators",
               "source")
#: extra columns of an export with ``include_auto`` (empty for human labels)
AUTO_COLUMNS = ("confidence", "model_version")


def _level_cells(tree, row) -> list[str]:
    """A taxonomy project's level columns: the label's path in the taxonomy as it is now (a leaf moved in the tree
    since it was answered is exported where it is now; the path stored with the answer stays in the store, and
    ``alwb status`` counts such labels); a path shorter than the tree is carried down (the leaf stands for itself)."""
    if getattr(tree, "multilabel", False):  # a tag tree: the tags at each depth, '|'-joined as the tags column
        return ["|".join(ts) for ts in tree.tag_levels(list(row["value"] or ()))]
    try:
        return list(tree.levels(row["value"]))
    except KeyError:  # a label the taxonomy no longer has (alwb classes explains it): no levels
        return [""] * tree.depth


def _write_csv(f, rows, multilabel: bool, include_auto: bool = False, tree=None) -> None:
    w = csv.writer(f)
    w.writerow(["tags" if (multilabel and c == "label") else c for c in CSV_COLUMNS]
               + (list(AUTO_COLUMNS) if include_auto else []) + (tree.level_names() if tree is not None else []))
    for it, row in rows:
        value = "|".join(row["value"]) if multilabel else row["value"]
        path = display_path(it.uri) if not it.uri.startswith("builtin://") else ""  # valid UTF-8 (issue 9 #4)
        cells = [it.id, path, value, row["annotator"], row["round"], row["answered_at"], row["review_state"],
                 row["source"], "|".join(row["annotators"]), row["origin"]]
        if include_auto:
            cells += [row["confidence"], row["model_version"]]
        if tree is not None:
            cells += _level_cells(tree, row)
        w.writerow(csv_row(cells))


def _write_folders(project, rows, d: Path) -> None:
    src = project.source
    folder = unique_components([*project.config.classes, *(row["value"] for _, row in rows)])
    by_class: dict[str, list] = {}
    for it, row in rows:
        by_class.setdefault(row["value"], []).append(it)
    for label, items in by_class.items():
        cdir = safe_join(d, folder[label])
        cdir.mkdir(exist_ok=True)
        stems = [it.id.replace("/", "__") + (".png" if it.uri.startswith("builtin://") else "") for it in items]
        files = unique_components(stems)
        for it, stem in zip(items, stems):
            target = cdir / files[stem]
            if not inside(target.parent, d):
                raise AlwbError(f"refusing to write {target}: it is outside the export folder")
            if it.uri.startswith("builtin://"):
                src.load(it).save(target, format="PNG")
            else:
                try:
                    os.link(it.uri, target)
                except OSError:  # other file system, or links not allowed
                    shutil.copy2(it.uri, target)


def _auto_top(project, rows) -> str:
    """The top folder of the auto labels in a class-folder tree: ``auto``, or ``_auto`` (``__auto``, ...) when a class
    folder would have that name (compared without case)."""
    used = {n.lower() for n in unique_components([*project.config.classes, *(r["value"] for _, r in rows)]).values()}
    name = "auto"
    while name.lower() in used:
        name = "_" + name
    return name


def export(project, out: str | Path, fmt: str = "csv", *, overwrite: bool = False, include_auto: bool = False) -> dict:
    """Write the final labels (review > consensus > single answer > gold; ties are left out and reported); returns
    {"format", "path", "n_exported", "n_flagged", "n_skipped", "n_ties", "ties", "n_not_counted", "by_source",
    "by_origin", "n_auto", "n_auto_left_out", "n_auto_overridden", "auto_folder"}.

    ``out``: for ``csv`` a ``.csv`` file or a folder (gets ``labels.csv``); for ``folders`` a folder with one
    sub-folder per class. See the module docstring for what ``out`` may be and what ``overwrite`` does.
    ``include_auto``: also export the auto labels of items no person touched (source ``auto``; CSV columns
    confidence and model_version; in a folder tree under ``auto_folder``, apart from the human labels); without it
    they are only counted in ``n_auto_left_out``. ``n_exported`` counts every exported row, ``n_auto`` the auto
    ones."""
    if fmt not in FORMATS:
        raise AlwbError(f"export format {fmt!r} is not supported; allowed: {', '.join(FORMATS)}")
    multilabel = project.config.multilabel
    if fmt == "folders" and multilabel:
        raise AlwbError("a class-folder tree needs one class per image; this project uses tags: export csv")
    out = Path(out)
    lab = _labelled_rows(project)
    rows = lab.rows
    auto_rows = lab.auto if include_auto else []
    auto_top = _auto_top(project, rows) if (fmt == "folders" and auto_rows) else None
    res = {"format": fmt, "path": str(out), "n_exported": len(rows) + len(auto_rows), "n_flagged": len(lab.flagged),
           "n_skipped": len(lab.skipped), "n_ties": len(lab.ties), "ties": lab.ties[:100],
           "n_not_counted": len(lab.not_counted),
           "by_source": {k: sum(1 for _, r in rows if r["source"] == k)
                         for k in ("review", "consensus", "single", "gold")},
           "by_origin": {k: sum(1 for _, r in rows + auto_rows if r["origin"] == k) for k in ORIGINS},
           "n_auto": len(auto_rows), "n_auto_left_out": 0 if include_auto else len(lab.auto),
           "n_auto_overridden": lab.auto_overridden, "auto_folder": auto_top}
    if fmt == "csv" and out.suffix.lower() == ".csv":
        out = check_out(project, out, overwrite)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        try:
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
                _write_csv(f, rows + auto_rows, multilabel, include_auto, project.config.tree)
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        res["path"] = str(out)
        return res

    def write(d: Path) -> dict:
        if fmt == "csv":
            with open(d / "labels.csv", "w", newline="", encoding="utf-8") as f:
                _write_csv(f, rows + auto_rows, multilabel, include_auto, project.config.tree)
        else:
            _write_folders(project, rows, d)
            if auto_rows:
                (d / auto_top).mkdir()
                _write_folders(project, auto_rows, d / auto_top)
        return res

    res = staged_export(project, out, overwrite, write, fmt)
    if fmt == "csv":
        res["path"] = str(Path(res["path"]) / "labels.csv")
    return res
