"""Label schema (what answers a project accepts) and the durable, append-only label store."""
from __future__ import annotations

from .schema import LabelSchema, ancestors, with_ancestors
from .store import LabelStore

__all__ = ["LabelSchema", "LabelStore", "ancestors", "with_ancestors"]
