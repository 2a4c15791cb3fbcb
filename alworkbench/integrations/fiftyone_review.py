"""One call after a round: sync the project to FiftyOne, compute coverage, model errors and suspicious labels,
and (optionally) open the App on them. FiftyOne is imported only when this is called."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional


@dataclass
class Review:
    """What :func:`review` computed; ``app`` is the FiftyOne App session when one was launched."""

    sync: Any
    coverage: Any
    errors: Optional[Any]
    suspicious: Optional[Any]
    views: list[str]
    app: Any = None
    skipped: Optional[dict] = None  # analysis -> why it was not run (e.g. too few labels)

    def __str__(self) -> str:
        lines = [f"FiftyOne dataset synced: {self.sync}", f"coverage: {self.coverage.n_labelled} labelled, "
                 f"{self.coverage.n_unlabelled} unlabelled"]
        if self.errors is not None:
            lines.append(f"model errors ({self.errors.mode}): accuracy {self.errors.accuracy:.3f} on {self.errors.n}, "
                         f"{len(self.errors.mistake_ids)} mistakes -> view '{self.errors.view}'")
        if self.suspicious is not None:
            lines.append(f"suspicious labels: {len(self.suspicious.ids)} -> view '{self.suspicious.view}'")
        for k, why in (self.skipped or {}).items():
            lines.append(f"{k}: not run ({why})")
        lines.append(f"saved views: {', '.join(self.views)}")
        return "\n".join(lines)


def review(project, session=None, *, launch: bool = False, port: int = 5151, address: str = "127.0.0.1",
           top: int = 25, cv: int = 5) -> Review:
    """Sync, then coverage + model errors + suspicious labels as saved views; ``launch=True`` opens the App
    (bound to ``address``) on the project's dataset. Analyses that need more labels than exist are reported in
    ``skipped`` with the reason instead of failing the call."""
    from ..errors import AlwbError
    from . import fiftyone_analysis as foa
    from . import fiftyone_sync as fos

    rep_sync = fos.sync(project, session)
    cov = foa.coverage(project, session)
    skipped: dict = {}
    errors = suspicious = None
    try:
        errors = foa.model_errors(project, session, cv=cv)
    except AlwbError as e:  # e.g. fewer labels than folds and no model yet
        skipped["model_errors"] = str(e)
    try:
        suspicious = foa.suspicious_labels(project, session, top=top, cv=cv)
    except AlwbError as e:
        skipped["suspicious_labels"] = str(e)
    ds = fos.get_dataset(project)
    views = fos.ensure_views(ds)
    views = sorted(set(views) | set(ds.list_saved_views()))
    app = fos.launch_app(project, session, port=port, address=address, sync_first=False) if launch else None
    return Review(sync=rep_sync, coverage=cov, errors=errors, suspicious=suspicious, views=views, app=app,
                  skipped=skipped or None)
