"""What the labeller shows about the work itself: the annotator's pace (images per minute, median seconds per
image, from the time recorded with every answer), progress toward the project's ``label_budget`` with a time
estimate, and an item's details (a file name that never names a ground-truth folder, its size, and the strategy,
score and model version that chose it). Pure functions of plain data."""
from __future__ import annotations

import statistics
from pathlib import PurePosixPath
from typing import Optional, Sequence

from ..types import Item

#: the pace is measured over this many latest answers (the annotator's current speed, not their first day's)
PACE_WINDOW = 50


def pace(times: Sequence[float], window: int = PACE_WINDOW) -> dict:
    """``times``: seconds per answer, newest first. ``{n, per_minute, median_s, mean_s}`` over the latest
    ``window`` answers (None figures before the first timed answer)."""
    t = [float(x) for x in list(times)[:window] if x is not None and x >= 0]
    if not t:
        return {"n": 0, "per_minute": None, "median_s": None, "mean_s": None}
    mean = sum(t) / len(t)
    return {"n": len(t), "per_minute": None if mean <= 0 else 60.0 / mean, "median_s": statistics.median(t),
            "mean_s": mean}


def budget_progress(labelled: int, budget: Optional[int], mean_s: Optional[float]) -> Optional[dict]:
    """Progress toward ``label_budget``: ``{budget, labelled, fraction, remaining, eta_s}`` (``eta_s``: the
    remaining labels at this annotator's pace; None before a pace is known). None without a budget."""
    if not budget:
        return None
    remaining = max(0, int(budget) - int(labelled))
    return {"budget": int(budget), "labelled": int(labelled), "fraction": min(1.0, int(labelled) / int(budget)),
            "remaining": remaining, "eta_s": None if mean_s is None else remaining * float(mean_s)}


def duration_text(seconds: Optional[float]) -> str:
    """``45 s``, ``12 min``, ``3 h 20 min``."""
    if seconds is None:
        return ""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    m = int(round(s / 60))
    if m < 60:
        return f"{m} min"
    return f"{m // 60} h {m % 60:02d} min"


def stats_text(p: dict, budget: Optional[dict]) -> str:
    """``8.5 images/min · median 6.2 s per image · 85 of 300 labels (28%) · about 25 min left at this pace``."""
    parts = []
    if p.get("per_minute") is not None:
        parts.append(f"{p['per_minute']:.1f} images/min \u00b7 median {p['median_s']:.1f} s per image")
    else:
        parts.append("pace: after your first answer")
    if budget is not None:
        parts.append(f"{budget['labelled']} of {budget['budget']} labels ({100 * budget['fraction']:.0f}%)")
        if budget["remaining"] == 0:
            parts.append("label budget reached")
        elif budget["eta_s"] is not None:
            parts.append(f"about {duration_text(budget['eta_s'])} left at this pace")
    return " \u00b7 ".join(parts)


def display_name(item: Item) -> str:
    """The image's file name only: never a folder (in a folder tree the folder is the class: the answer). Built-in
    datasets: ``digits #17``."""
    uri = str(item.uri)
    if uri.startswith("builtin://"):
        parts = uri[len("builtin://"):].split("/")
        return f"{parts[0]} #{parts[-1]}"
    return PurePosixPath(uri.replace("\\", "/")).name


def strategy_text(strategy: str) -> str:
    """The query strategy in words (an undo's re-opened batch keeps its strategy)."""
    s = strategy[len("undo:"):] if strategy.startswith("undo:") else strategy
    return s or "unknown"


def item_details(item: Item, size: Sequence[int], *, strategy: str, score: Optional[float],
                 model_version: int) -> dict:
    """What the details line shows: ``{name, width, height, strategy, score, model_version, text}``."""
    w, h = int(size[0]), int(size[1])
    why = f"chosen by {strategy_text(strategy)}"
    if score is not None:
        why += f" (score {float(score):.3g})"
    why += f" with model v{int(model_version)}" if model_version else " before the first model"
    name = display_name(item)
    return {"name": name, "width": w, "height": h, "strategy": strategy_text(strategy),
            "score": None if score is None else float(score), "model_version": int(model_version),
            "text": f"{name} \u00b7 {w}\u00d7{h} px \u00b7 {why}"}
