"""Label schema (what answers a project accepts) and the durable, append-only label store."""
from __future__ import annotations

from .schema import LabelSchema, ancestors, with_ancestors
from .store import LabelStore, is_postgres_url, open_store

__all__ = ["LabelSchema", "LabelStore", "is_postgres_url", "open_store", "ancestors", "with_ancestors"]
