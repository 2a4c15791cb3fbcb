"""A simulated annotator that answers from ground truth (for tests, benchmarks, headless notebooks)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..types import Answer


class Oracle:
    """Answers every item from the source's ground truth; ``noise`` flips a fraction of labels at random
    (to rehearse review and suspicious-label workflows); items without ground truth are skipped."""

    def __init__(self, session, noise: float = 0.0, seed: int = 0):
        self.session = session
        self.noise = float(noise)
        self._rng = np.random.default_rng(seed)
        self._gt = session.project.source.ground_truth()

    def answer_for(self, item) -> Answer:
        truth = self._gt[self.session.index_of(item.id)]
        if truth is None:
            return Answer.skip()
        if self.session.multilabel:
            if isinstance(truth, str):
                truth = (truth,)
            truth = [t for t in truth if t in self.session.classes]
            return Answer.of_tags(truth) if truth else Answer.skip()
        if self.noise and self._rng.random() < self.noise:
            others = [c for c in self.session.classes if c != truth]
            truth = str(self._rng.choice(others))
        return Answer.of_label(str(truth))

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
