"""What answers a project accepts: its classes (single-label) or tags (multi-label), and its guideline.

Tags may be hierarchical, written with ``/`` (``"animal/cat"``). Every ancestor of a declared tag is
implicitly a valid tag too (declaring ``"animal/cat"`` makes ``"animal"`` valid), so a person can answer
at the level of detail they are sure about.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from ..errors import AnswerError, ConfigError
from ..names import check_name
from ..types import Answer

SEP = "/"
ANSWER_KINDS = ("label", "tags", "skip", "flag")


def ancestors(tag: str) -> tuple[str, ...]:
    """The strict ancestors of a hierarchical tag, outermost first: ``"a/b/c"`` -> ``("a", "a/b")``."""
    parts = tag.split(SEP)
    return tuple(SEP.join(parts[:i]) for i in range(1, len(parts)))


def with_ancestors(tags: Sequence[str]) -> tuple[str, ...]:
    """The tags plus all their ancestors, sorted and without duplicates."""
    out: set[str] = set()
    for t in tags:
        out.add(t)
        out.update(ancestors(t))
    return tuple(sorted(out))


def _short_list(names: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _check_names(names: Sequence[str], key: str) -> tuple[str, ...]:
    if isinstance(names, str):
        raise ConfigError(f"{key}: expected a list of names, got the string {names!r}")
    out = tuple(names)
    if not out:
        raise ConfigError(f"{key}: the list is empty; give at least one name")
    seen: set[str] = set()
    for n in out:
        if not isinstance(n, str) or not n.strip():
            raise ConfigError(f"{key}: every name must be a non-empty string, got {n!r}")
        check_name(n, key)  # the one rule for what a class or tag name may be (alworkbench.names)
        if n in seen:
            raise ConfigError(f"{key}: name {n!r} is listed twice")
        seen.add(n)
    return out


class LabelSchema:
    """The classes or tags of a project and its labelling guideline.

    Exactly one of ``classes`` (single-label, at least 2) or ``tags`` (multi-label, at least 1) is given.
    """

    def __init__(self, classes: Optional[Sequence[str]] = None, tags: Optional[Sequence[str]] = None,
                 guideline_text: str = "", guideline_version: str = "1", taxonomy=None):
        if (classes is None) == (tags is None):
            raise ConfigError("a project needs exactly one of 'classes' (single-label) or 'tags' (multi-label)"
                              + (", not both" if classes is not None else ""))
        self.classes: Optional[tuple[str, ...]] = None if classes is None else _check_names(classes, "classes")
        self.tags: Optional[tuple[str, ...]] = None if tags is None else _check_names(tags, "tags")
        if self.classes is not None and len(self.classes) < 2:
            raise ConfigError(f"classes: a single-label project needs at least 2 classes, got {len(self.classes)}")
        #: an alworkbench.labels.taxonomy.Taxonomy whose leaves are the classes, or (multi-label) whose every node
        #: is a tag; None without a tree
        self.taxonomy = taxonomy
        if taxonomy is not None and getattr(taxonomy, "multilabel", False):
            if self.tags is None or set(self.tags) != set(taxonomy.nodes):
                raise ConfigError("a tag tree needs a multi-label project whose tags are its nodes")
        elif taxonomy is not None and (self.classes is None or set(self.classes) != set(taxonomy.leaves)):
            raise ConfigError("a taxonomy needs a single-label project whose classes are its leaves")
        self.guideline_text = str(guideline_text or "")
        self.guideline_version = str(guideline_version)
        # every declared tag plus its implicit ancestors
        self._allowed_tags = frozenset(with_ancestors(self.tags)) if self.tags is not None else frozenset()

    # -- shape ---------------------------------------------------------------------------------------
    @property
    def multilabel(self) -> bool:
        return self.tags is not None

    @property
    def names(self) -> tuple[str, ...]:
        """The declared classes (single-label) or tags (multi-label), in declaration order."""
        return self.tags if self.tags is not None else self.classes  # type: ignore[return-value]

    @property
    def allowed_tags(self) -> tuple[str, ...]:
        """Declared tags plus their implicit ancestors, sorted (empty for a single-label project)."""
        return tuple(sorted(self._allowed_tags))

    def ancestors(self, tag: str) -> tuple[str, ...]:
        return ancestors(tag)

    # -- validation ----------------------------------------------------------------------------------
    def validate(self, answer: Answer) -> Answer:
        """Return the answer (tags normalised: sorted, unique) or raise AnswerError saying what is allowed."""
        if not isinstance(answer, Answer):
            raise AnswerError(f"expected an Answer, got {type(answer).__name__}")
        if answer.kind not in ANSWER_KINDS:
            raise AnswerError(f"unknown answer kind {answer.kind!r}; allowed: {', '.join(ANSWER_KINDS)}")
        if answer.time_spent_s is not None and not answer.time_spent_s >= 0:
            raise AnswerError(f"time_spent_s must be >= 0 seconds, got {answer.time_spent_s!r}")
        if answer.kind in ("skip", "flag"):
            if answer.path:
                raise AnswerError(f"a {answer.kind!r} answer carries no taxonomy path, got {list(answer.path)}")
            return answer
        if answer.kind == "tags" and answer.path:
            raise AnswerError(f"a 'tags' answer carries no taxonomy path, got {list(answer.path)}")
        if answer.kind == "label":
            if self.multilabel:
                raise AnswerError("this is a multi-label project: answer with tags (Answer.of_tags), "
                                  f"not a single label {answer.label!r}")
            if answer.tags:
                raise AnswerError(f"a 'label' answer carries no tags, got {list(answer.tags)}")
            if answer.label not in self.classes:  # type: ignore[operator]
                raise AnswerError(f"unknown class {answer.label!r}; allowed: {_short_list(self.classes)}")
            return self._with_path(answer)
        # kind == "tags"
        if not self.multilabel:
            raise AnswerError("this is a single-label project: answer with one class (Answer.of_label), "
                              f"not tags {list(answer.tags)}")
        if answer.label is not None:
            raise AnswerError(f"a 'tags' answer carries no single label, got {answer.label!r}")
        if isinstance(answer.tags, str):
            raise AnswerError(f"tags must be a list of names, got the string {answer.tags!r}")
        tags = tuple(answer.tags)
        if not tags:
            raise AnswerError("empty tag set: choose at least one tag, or skip the item "
                              "(Answer.skip) if none applies or you are unsure")
        unknown = sorted({t for t in tags if t not in self._allowed_tags}, key=str)
        if unknown:
            raise AnswerError(f"unknown tag(s) {_short_list(unknown)}; allowed: {_short_list(self.allowed_tags)}")
        if self.taxonomy is not None:  # a tag tree: a chosen tag brings its ancestors, stored explicitly
            tags = self.taxonomy.close_tags(tags)
        normalised = tuple(sorted(set(tags)))
        return answer if normalised == answer.tags else dataclasses.replace(answer, tags=normalised)

    def _with_path(self, answer: Answer) -> Answer:
        """A label answer with its taxonomy path (ancestors, then the label) filled in; a path given by the caller
        must be exactly that one."""
        if self.taxonomy is None:
            if answer.path:
                raise AnswerError(f"this project has no taxonomy: a label carries no path, got {list(answer.path)}")
            return answer
        from .taxonomy import format_path

        path = self.taxonomy.path(answer.label)
        if answer.path and tuple(answer.path) != path:
            raise AnswerError(f"path {format_path(answer.path)!r} does not lead to {answer.label!r} in the taxonomy; "
                              f"its path is {format_path(path)!r}")
        return answer if tuple(answer.path) == path else dataclasses.replace(answer, path=path)

    def __repr__(self) -> str:
        kind = "tags" if self.multilabel else "classes"
        return f"LabelSchema({kind}={list(self.names)!r}, guideline_version={self.guideline_version!r})"

    def __eq__(self, other) -> bool:
        if not isinstance(other, LabelSchema):
            return NotImplemented
        return (self.classes, self.tags, self.guideline_text, self.guideline_version) == (
            other.classes, other.tags, other.guideline_text, other.guideline_version)

    __hash__ = None  # type: ignore[assignment]
