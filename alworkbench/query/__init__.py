"""Query strategies (pure functions over embeddings and predicted probabilities; no torch).

>>> from alworkbench.query import select
>>> sel = select("default", 20, X_pool=emb, proba=proba, rng=0)   # sel.indices, sel.scores, sel.strategy
"""
from __future__ import annotations

from .strategies import (
    DEFAULT_MULTILABEL_STRATEGY,
    DEFAULT_STRATEGY,
    STRATEGIES,
    Selection,
    available_strategies,
    select,
)

__all__ = ["select", "Selection", "STRATEGIES", "available_strategies", "DEFAULT_STRATEGY",
           "DEFAULT_MULTILABEL_STRATEGY"]
