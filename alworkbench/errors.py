"""Domain exceptions. Every message carries the numbers or names a person needs to act on it."""
from __future__ import annotations


class AlwbError(Exception):
    """Base class for every error alworkbench raises on purpose."""


class ConfigError(AlwbError, ValueError):
    """A project configuration key or value is wrong. The message is one line naming the key."""


class DatasetMissingError(AlwbError, FileNotFoundError):
    """A built-in dataset's files are not on this machine; the message says how to install them."""


class ImageLoadError(AlwbError):
    """One image could not be decoded; ``reason`` is short and human readable."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ManifestError(AlwbError, ValueError):
    """A CSV manifest is malformed (missing column, path escaping its root, ...)."""


class MissingWeightsError(AlwbError, RuntimeError):
    """Pretrained weights for a backbone cannot be loaded; names the file and how to get it."""


class MissingDependencyError(AlwbError, ImportError):
    """An optional dependency (torch, fiftyone, ipywidgets...) is needed for this call."""

    def __init__(self, package: str, extra: str, what: str):
        super().__init__(
            f"{what} needs the '{package}' package: pip install 'alworkbench[{extra}]'"
        )
        self.package = package
        self.extra = extra


class PoolExhaustedError(AlwbError):
    def __init__(self, n_available: int, n_requested: int):
        super().__init__(
            f"pool exhausted: {n_available} unlabelled item(s) available, {n_requested} requested"
        )
        self.n_available = n_available
        self.n_requested = n_requested


class NotFittedError(AlwbError, ValueError):
    """Raised by code that needs a fitted model before one exists."""


class AnswerError(AlwbError, ValueError):
    """An answer is invalid for this project (unknown class or tag, empty tag set, ...)."""


class DuplicateAnswerError(AnswerError):
    """The item was already answered in this round; the second answer is refused, not counted."""

    def __init__(self, sample_id: str, round_: int):
        super().__init__(f"item {sample_id!r} was already answered in round {round_}; refused")
        self.sample_id = sample_id
        self.round = round_


class UnknownItemError(AnswerError, KeyError):
    def __init__(self, sample_id: str, where: str = "the current batch"):
        super().__init__(f"item {sample_id!r} is not in {where}")
        self.sample_id = sample_id

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class NothingToUndoError(AlwbError):
    pass


class StoreError(AlwbError):
    pass


class FiftyOneUnavailableError(AlwbError, RuntimeError):
    """FiftyOne or the MongoDB it starts cannot be used. Labelling keeps working: the label store is independent."""


class CacheError(AlwbError):
    """An embedding-cache file or folder cannot be used or written. One line naming the file and what to do;
    a damaged file is recomputed with a warning instead (only what cannot be worked around raises this)."""
