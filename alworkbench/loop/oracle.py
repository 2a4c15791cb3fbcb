"""A simulated annotator that answers from ground truth (for tests, benchmarks, headless notebooks)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..types import Answer


class Oracle:
    """Answers every item from the source's ground truth; ``noise`` flips a fraction of labels at random
    (to rehearse review and suspicious-label workflows); items without ground truth are skipped.

    A ground-truth class (or tag) that the project does not declare (the classes were renamed, or ``--classes``
    named a subset) is never submitted as a label: the item is answered with a flag whose note says which
    name, so the batch completes and later runs are not blocked. ``unknown_truth`` counts those names."""

    def __init__(self, session, noise: float = 0.0, seed: int = 0, *, name: Optional[str] = None,
                 confusion=None):
        """``name``: the annotator this oracle plays (default: the session's; it must match, since answers are
        recorded under the session's annotator). ``noise``: the share of answers replaced by a uniformly random
        other class. ``confusion``: instead of ``noise``, how this annotator errs: a mapping
        ``{true_class: {answered_class: probability}}`` (missing mass stays on the true class) or a square
        matrix (rows: true class, columns: answer, in the project's class order; rows sum to 1)."""
        self.session = session
        self.name = session.annotator if name is None else str(name)
        if self.name != session.annotator:
            raise ValueError(f"oracle {self.name!r} would answer as {session.annotator!r}: open its own session, "
                             f"project.session(annotator={self.name!r})")
        self.noise = float(noise)
        if not 0 <= self.noise <= 1:
            raise ValueError(f"noise must be in [0, 1], got {noise!r}")
        if confusion is not None and self.noise:
            raise ValueError("give either noise or confusion, not both")
        self.confusion = None if confusion is None else self._confusion_matrix(confusion)
        self._rng = np.random.default_rng(seed)
        self._gt = session.project.source.ground_truth()
        self.unknown_truth: dict[str, int] = {}

    def _confusion_matrix(self, confusion) -> np.ndarray:
        classes = list(self.session.classes)
        if self.session.multilabel:
            raise ValueError("a confusion matrix applies to single-label projects; use noise for tags")
        k = len(classes)
        if isinstance(confusion, dict):
            m = np.eye(k)
            for t, row in confusion.items():
                if t not in classes:
                    raise ValueError(f"confusion: unknown true class {t!r}; classes: {classes}")
                i = classes.index(t)
                for a, p in row.items():
                    if a not in classes:
                        raise ValueError(f"confusion[{t!r}]: unknown class {a!r}; classes: {classes}")
                    if a != t:
                        m[i, classes.index(a)] = float(p)
                rest = 1.0 - (m[i].sum() - m[i, i])
                if rest < -1e-9:
                    raise ValueError(f"confusion[{t!r}]: probabilities add up to more than 1")
                m[i, i] = max(rest, 0.0)
        else:
            m = np.asarray(confusion, dtype=float)
            if m.shape != (k, k):
                raise ValueError(f"confusion matrix must be {k}x{k} (the project's classes), got {m.shape}")
            if (m < 0).any() or not np.allclose(m.sum(axis=1), 1.0, atol=1e-6):
                raise ValueError("confusion matrix rows must be probabilities that sum to 1")
        return m

    def _allowed(self) -> set:
        schema = getattr(self.session, "schema", None)
        if self.session.multilabel and schema is not None and getattr(schema, "allowed_tags", None):
            return set(schema.allowed_tags)
        return set(self.session.classes)

    def _flag_unknown(self, names) -> Answer:
        for n in names:
            self.unknown_truth[n] = self.unknown_truth.get(n, 0) + 1
        kind = "tag" if self.session.multilabel else "class"
        shown = ", ".join(repr(n) for n in names)
        return Answer.flag(note=f"oracle: ground-truth {kind} {shown} is not in the project's "
                                f"{'tags' if self.session.multilabel else 'classes'}")

    def answer_for(self, item) -> Answer:
        truth = self._gt[self.session.index_of(item.id)]
        if truth is None:
            return Answer.skip()
        allowed = self._allowed()
        if self.session.multilabel:
            if isinstance(truth, str):
                truth = (truth,)
            known = [t for t in truth if t in allowed]
            if known:
                return Answer.of_tags(known)
            return self._flag_unknown([str(t) for t in truth]) if truth else Answer.skip()
        if str(truth) not in allowed:
            return self._flag_unknown([str(truth)])
        if self.confusion is not None:
            classes = list(self.session.classes)
            row = self.confusion[classes.index(str(truth))]
            return Answer.of_label(classes[int(self._rng.choice(len(classes), p=row / row.sum()))])
        if self.noise and self._rng.random() < self.noise:
            others = [c for c in self.session.classes if c != truth]
            truth = str(self._rng.choice(others))
        return Answer.of_label(str(truth))

    def summary(self) -> str:
        """One line about ground truth the project could not take (empty when there was none)."""
        if not self.unknown_truth:
            return ""
        n = sum(self.unknown_truth.values())
        names = ", ".join(f"{k!r} ({v})" for k, v in sorted(self.unknown_truth.items(), key=lambda kv: -kv[1])[:5])
        return (f"{n} item(s) flagged, not labelled: their ground truth {names} is not a project "
                f"{'tag' if self.session.multilabel else 'class'}: add it to "
                f"{'tags' if self.session.multilabel else 'classes'}: in alwb.yaml, or rename it in the source)")

    def label_batch(self, batch=None) -> int:
        """Answer every pending item of the current (or next) batch; returns how many were answered."""
        s = self.session
        if batch is None:
            batch = s.next_batch()
        n = 0
        for bi in s.pending():
            s.submit(bi.item.id, self.answer_for(bi.item))
            n += 1
        return n

    def run(self, rounds: int, retrain: bool = True, batch_size: Optional[int] = None) -> list:
        """Label ``rounds`` batches, retraining after each; returns the round reports."""
        reports = []
        for _ in range(rounds):
            self.label_batch(self.session.next_batch(batch_size))
            if retrain:
                reports.append(self.session.retrain())
        return reports
