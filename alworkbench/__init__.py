"""alworkbench: a Jupyter-native active-learning workbench for images.

The core (config, data, labels, query, loop) imports no torch, ipywidgets or FiftyOne at import time.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .types import Answer, Batch, BatchItem, IngestReport, Item, Prediction, RoundReport  # noqa: E402

__all__ = ["Answer", "Batch", "BatchItem", "IngestReport", "Item", "Prediction", "RoundReport",
           "Project", "Session", "__version__"]


def __getattr__(name):  # lazy: keep `import alworkbench` light
    if name == "Project":
        from .project import Project
        return Project
    if name == "Session":
        from .loop.session import Session
        return Session
    raise AttributeError(f"module 'alworkbench' has no attribute {name!r}")
