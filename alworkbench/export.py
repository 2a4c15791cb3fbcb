"""Export the labelled set without FiftyOne: a CSV manifest or a class-folder tree.
(FiftyOne's own exporters live in alworkbench.integrations.)"""
from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

from .errors import AlwbError

FORMATS = ("csv", "folders")


def _safe_name(name: str) -> str:
    bad = '<>:"/\\|?*\0'
    out = "".join("_" if c in bad else c for c in name).strip(" .")
    return out or "_"


def export(project, out: str | Path, fmt: str = "csv") -> dict:
    """Write the current labels; returns {"format", "path", "n_exported", "n_flagged", "n_skipped"}."""
    if fmt not in FORMATS:
        raise AlwbError(f"export format {fmt!r} is not supported; allowed: {', '.join(FORMATS)}")
    store = project.store
    src = project.source
    out = Path(out)
    answers = store.active_answers()
    multilabel = project.config.multilabel
    rows = []
    for it in src.items:
        ev = answers.get(it.id)
        if ev is None or ev["kind"] not in ("label", "tags"):
            continue
        rows.append((it, ev))
    flagged = sum(1 for e in answers.values() if e["kind"] == "flag")
    skipped = sum(1 for e in answers.values() if e["kind"] == "skip")
    if fmt == "csv":
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() != ".csv":
            out.mkdir(parents=True, exist_ok=True)
            out = out / "labels.csv"
        with open(out, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["id", "path", "tags" if multilabel else "label", "annotator", "round", "answered_at"])
            for it, ev in rows:
                value = "|".join(ev["value"]) if multilabel else ev["value"]
                path = it.uri if not it.uri.startswith("builtin://") else ""
                w.writerow([it.id, path, value, ev["annotator"], ev["round"], ev["created_at"]])
    else:
        if multilabel:
            raise AlwbError("a class-folder tree needs one class per image; this project uses tags: export csv")
        out.mkdir(parents=True, exist_ok=True)
        for it, ev in rows:
            d = out / _safe_name(ev["value"])
            d.mkdir(exist_ok=True)
            stem = _safe_name(it.id.replace("/", "__"))
            if it.uri.startswith("builtin://"):
                src.load(it).save(d / f"{Path(stem).stem}.png")
            else:
                target = d / stem
                if target.exists():
                    target.unlink()
                try:
                    os.link(it.uri, target)
                except OSError:  # other file system, or links not allowed
                    shutil.copy2(it.uri, target)
    return {"format": fmt, "path": str(out), "n_exported": len(rows), "n_flagged": flagged, "n_skipped": skipped}
