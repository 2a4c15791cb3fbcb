"""Edges of the workbench that need optional packages (FiftyOne). Nothing here is imported by the core, and
importing this package does not import FiftyOne: the functions below load it when called."""
from __future__ import annotations

_SYNC = ("connect", "dataset_name", "get_dataset", "delete_dataset", "materialize_images", "sync", "SyncReport",
         "write_predictions", "prediction_runs", "write_embeddings", "ensure_views", "send_to_queue",
         "item_ids_of", "launch_app", "export")
_ANALYSIS = ("coverage", "CoverageTable", "model_errors", "ErrorReport", "out_of_fold_proba",
             "suspicious_labels", "SuspiciousReport", "embeddings_visualization", "EmbeddingMap")

__all__ = list(_SYNC + _ANALYSIS) + ["review", "Review"]


def __getattr__(name):
    if name in _SYNC:
        from . import fiftyone_sync

        return getattr(fiftyone_sync, name)
    if name in _ANALYSIS:
        from . import fiftyone_analysis

        return getattr(fiftyone_analysis, name)
    if name in ("review", "Review"):
        from . import fiftyone_review as _review

        return getattr(_review, name)
    raise AttributeError(f"module 'alworkbench.integrations' has no attribute {name!r}")
