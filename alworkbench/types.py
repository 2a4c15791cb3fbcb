"""Plain data passed between the layers. No heavy imports here (numpy only)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal, Optional

AnswerKind = Literal["label", "tags", "skip", "flag"]


@dataclass(frozen=True)
class Item:
    """One image in a project's pool.

    ``id`` is stable across runs: for files it is derived from the path relative to the source root,
    for built-in datasets ``"<dataset>/<split>/<index>"``. ``sha256`` is the content hash (used by the
    embedding cache and duplicate detection). ``label``/``tags`` hold ground truth when the source
    knows it (folder tree, CSV column, built-in dataset); they are never shown to the annotator.
    """

    id: str
    uri: str  # absolute file path, or "builtin://<dataset>/<split>/<index>"
    sha256: str
    label: Optional[str] = None
    tags: Optional[tuple[str, ...]] = None
    split: Optional[str] = None  # "train" / "test" when the source defines one


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


@dataclass(frozen=True)
class DuplicateFile:
    path: str
    duplicate_of: str
    sha256: str


@dataclass
class IngestReport:
    n_images: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    duplicates: list[DuplicateFile] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "n_images": self.n_images,
            "skipped": [dataclasses.asdict(s) for s in self.skipped],
            "duplicates": [dataclasses.asdict(d) for d in self.duplicates],
        }


@dataclass(frozen=True)
class Answer:
    """What a person (or the simulated oracle) said about one item."""

    kind: AnswerKind
    label: Optional[str] = None
    tags: tuple[str, ...] = ()
    note: str = ""
    time_spent_s: Optional[float] = None
    #: taxonomy projects: the label's ancestors and the label itself, root first (filled in by LabelSchema)
    path: tuple[str, ...] = ()

    @classmethod
    def of_label(cls, label: str, **kw) -> "Answer":
        return cls("label", label=label, **kw)

    @classmethod
    def of_tags(cls, tags, **kw) -> "Answer":
        return cls("tags", tags=tuple(sorted(set(tags))), **kw)

    @classmethod
    def skip(cls, **kw) -> "Answer":
        return cls("skip", **kw)

    @classmethod
    def flag(cls, note: str = "", **kw) -> "Answer":
        return cls("flag", note=note, **kw)


@dataclass(frozen=True)
class Prediction:
    """The model's view of one item, as shown to the annotator."""

    top: tuple[tuple[str, float], ...]  # (class or tag, probability), best first
    model_version: int


@dataclass(frozen=True)
class BatchItem:
    item: Item
    score: Optional[float]  # the query score that chose it (None for random / cold start)
    prediction: Optional[Prediction]


@dataclass
class Batch:
    round: int
    strategy: str
    model_version: int
    items: list[BatchItem]
    batch_id: str = ""

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class RoundReport:
    round: int
    model_version: int
    n_labels: int
    labels_per_class: dict[str, int]
    accuracy: Optional[float]  # held-out accuracy (single-label) or micro-F1 (multi-label), None w/o GT
    metric: str  # "accuracy" or "micro_f1"
    n_eval: int
    timings: dict[str, float]  # seconds: fit, score, select, total
    stability: Optional[float] = None  # fraction of pool predictions unchanged since the previous model
    should_stop: bool = False
    stop_reason: str = ""
    cv_accuracy: Optional[float] = None  # out-of-fold accuracy (micro-F1) on the human labels
    temperature: float = 1.0  # calibration temperature applied to every shown / used probability
    annotator: str = ""
    snapshot: int = 0  # label-store events the model saw (a newer model always has a larger snapshot)
    reselected: int = 0  # unanswered items of the open batch chosen again with this model
    #: taxonomy projects: one entry per level, {"level", "name", "accuracy", "n_eval", "cv_accuracy", "n_cv",
    #: "coverage": {node: human labels}} (alworkbench.loop.session.Session._levels); None for flat classes
    levels: Optional[list] = None

    @classmethod
    def from_dict(cls, d: dict) -> "RoundReport":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
