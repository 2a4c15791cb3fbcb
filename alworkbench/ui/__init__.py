"""The notebook UI (the only package that imports anywidget / ipywidgets / IPython).

``from alworkbench.ui import Workbench; Workbench.open("projects/quickstart", annotator="ann")``
"""
from __future__ import annotations

__all__ = ["Workbench", "encode_image", "headless"]


def __getattr__(name):  # lazy, so `import alworkbench.ui` stays cheap until the widget is used
    if name in __all__:
        from . import workbench

        return getattr(workbench, name)
    raise AttributeError(f"module 'alworkbench.ui' has no attribute {name!r}")
