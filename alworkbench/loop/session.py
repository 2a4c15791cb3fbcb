"""The round loop. Owns no UI: the notebook widget, the CLI and the simulated oracle all drive this class.

Thread model: one lock guards the session's small mutable state (current batch, model snapshot). Every fit runs on
the session's single worker thread (``retrain()`` submits to it and waits), outside the lock, on a snapshot of the
labelled data; the finished model is swapped in atomically only if it was trained on a newer snapshot of the store
than the current model, so ``next_batch``/``submit``/``predict`` never wait for a fit and versions grow with the
labelled set. When a model lands, the unanswered rest of the open batch is selected again with it (answered and
on-screen items stay), recorded as a new batch record that supersedes the old one.

Shown probabilities are calibrated (temperature scaling on out-of-fold predictions, :mod:`.calibration`); the
out-of-fold accuracy is reported with every model and drives the ``adaptive`` default strategy. Every model is
saved under ``models/`` with an appended store record, so reopening a project with no new answer restores it
instead of refitting.
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import threading
import time
import uuid
from dataclasses import replace
from typing import Callable, Optional, Sequence

import numpy as np

from ..errors import AlwbError, AnswerError, DuplicateAnswerError, NotFittedError, UnknownItemError
from ..types import Answer, Batch, BatchItem, Prediction, RoundReport
from .calibration import Calibration, apply_temperature, calibrate, chance_corrected

TOP_K = 3


class GuidelineChangedError(AnswerError):
    """The guideline changed since the annotator last acknowledged it; they must read it before answering."""


class QualificationError(AlwbError):
    """The annotator failed the qualification test and must re-read the guideline (acknowledge it) to retry, or
    the project has too few gold items for the test."""


def _release_at_exit(ref) -> None:
    s = ref()
    if s is not None:
        try:
            s.release()
        except Exception:  # the interpreter is going away: the lease returns the items anyway
            pass


class _Model:
    """A fitted head plus everything derived from it (immutable once built)."""

    def __init__(self, head, version: int, proba: np.ndarray, classes: list[str], multilabel: bool, *,
                 n_labels: int = 0, snapshot: int = 0, calibration: Optional[Calibration] = None, tree=None):
        self.head = head
        self.version = version
        if tree is not None and multilabel:
            # a tag tree: no tag more probable than its parent, so the decided tags (p >= 0.5) are closed under
            # ancestors and no prediction contradicts the tree (Taxonomy.consistent_tag_proba)
            proba = tree.consistent_tag_proba(proba, classes)
        self.proba = proba  # (n_items, n_classes) for every item of the project, calibrated
        self.classes = classes
        self.multilabel = multilabel
        if tree is not None and not multilabel:
            # a taxonomy: the leaf predicted top-down (alworkbench.labels.taxonomy), so it never contradicts the tree
            self.pred = tree.predict_leaves(proba, classes)
        else:
            self.pred = (proba >= 0.5) if multilabel else proba.argmax(axis=1)
        self.n_labels = int(n_labels)
        self.snapshot = int(snapshot)  # store events seen when the training data was read
        self.calibration = calibration or Calibration()
        self.train_idx: Optional[np.ndarray] = None  # item indices of the training rows (calibration.oof_proba's)

    @property
    def cv_accuracy(self) -> Optional[float]:
        return self.calibration.cv_accuracy

    @property
    def skill(self) -> Optional[float]:
        """Chance-corrected out-of-fold accuracy (single-label) or micro-F1 (multi-label); None when unmeasured.

        Single-label with SKILL_SOURCE "representative": measured on the labels chosen uniformly at random (a sample
        of the pool) once there are MIN_SKILL_LABELS of them; the accuracy on every label is biased low as soon as
        uncertainty sampling adds the hard items, which kept the adaptive default choosing at random long after the
        model was good (Fashion-MNIST), and the cold-start picks are the typical, easy items."""
        acc = self.calibration.cv_accuracy
        if SKILL_SOURCE == "representative" and self.random_accuracy is not None:
            acc = self.random_accuracy
        return chance_corrected(acc, len(self.classes), self.multilabel)

    @property
    def random_accuracy(self) -> Optional[float]:
        """Out-of-fold accuracy on the labels chosen uniformly at random, once there are MIN_SKILL_LABELS of them
        (the skill signal, and the figure the widget shows beside the cross-validated one); else None."""
        cal = self.calibration
        return cal.skill_accuracy if cal.skill_accuracy is not None and cal.n_skill >= MIN_SKILL_LABELS else None


# where the adaptive strategy's skill signal is measured: "representative" (out of fold, on the labels chosen
# uniformly at random) or "all" (out of fold on every label; the signal before, biased low under uncertainty
# sampling). On validation splits (bench/choose_adaptive.py --knob skill_source, bench/results/choose_skill_source.json;
# mean gap over the curve / worst round vs random, all vs representative): Fashion-MNIST (2 seeds) +2.06 / -0.07 vs
# +1.92 / -0.50 (labels to reach random@1000: 600 vs 550); photo crops (10 seeds) +1.84 / -1.84 vs +2.22 / -0.92;
# digits (5 seeds) +5.44 / +2.11 vs +5.29 / +2.59. By the criterion the thresholds were chosen with (the worst set's
# mean gap, then the worst round) representative wins narrowly: +1.92 / -0.92 against +1.84 / -1.84. Measuring on
# cold-start + random picks reached 500 on Fashion-MNIST but fell 1.1 points below random at 150 labels (the typical
# picks are easy: too much uncertainty too early).
SKILL_SOURCE = "representative"
MIN_SKILL_LABELS = 10


class Session:
    """One annotator's view of a project's active-learning loop.

    Parameters
    ----------
    project : alworkbench.project.Project
    annotator : name recorded with every answer (defaults to the config's ``annotator``).
    embeddings : optional precomputed matrix (rows aligned with the project's items); by default the
        project's cached embeddings.
    head_factory : callable returning a fresh, unfitted scikit-learn style classifier; by default built
        from the config's ``head`` section (a torch head).
    strategy : query strategy name (default: the config's ``query.strategy``).
    """

    def __init__(self, project, annotator: Optional[str] = None, *, embeddings: Optional[np.ndarray] = None,
                 head_factory: Optional[Callable] = None, strategy: Optional[str] = None,
                 batch_size: Optional[int] = None, seed: Optional[int] = None, warm_start: bool = True,
                 clock=None):
        self.project = project
        # a VirtualClock (alworkbench.loop.clock) in simulations: the worker waits at fixed points of each fit until
        # the simulated annotator's virtual time reaches them; None (the notebook, the CLI): real time
        self._clock = clock
        self.config = project.config
        self.annotator = annotator or self.config.annotator
        self.store = project.store
        self.schema = project.schema
        self.tree = getattr(self.schema, "taxonomy", None)  # alworkbench.labels.taxonomy.Taxonomy or None
        self.multilabel = self.config.multilabel
        self.classes: list[str] = list(self.config.tags if self.multilabel else self.config.classes)
        self.strategy = strategy or self.config.query.strategy
        self.batch_size = batch_size or self.config.query.batch_size
        self.seed = self.config.query.seed if seed is None else seed
        self._rng = np.random.default_rng(self.seed)
        self._guideline_seen = str(self.config.guideline.version)

        self.items = project.source.items
        self._index = {it.id: i for i, it in enumerate(self.items)}
        self.X = np.asarray(embeddings if embeddings is not None else project.embeddings())
        if len(self.X) != len(self.items):
            raise AlwbError(f"embeddings have {len(self.X)} rows but the project has {len(self.items)} items")
        self.eval_mask = project.eval_mask()
        ok = getattr(project, "embed_ok", None) if embeddings is None else None
        self.ok_mask = np.ones(len(self.items), bool) if ok is None else np.asarray(ok, bool)
        # items whose image failed at embed time have zero rows: never query, train on or evaluate them
        self.eval_mask &= self.ok_mask
        self._gt = project.source.ground_truth()
        if self.multilabel:  # a single-label source used with a tag vocabulary: its class is its one tag
            self._gt = [(g,) if isinstance(g, str) else g for g in self._gt]
            if self.tree is not None:  # a tag tree: a true tag implies its ancestors (as a stored answer does)
                tr = self.tree
                self._gt = [g if g is None else tr.close_tags([t for t in g if t in tr.nodes]) + tuple(
                    t for t in g if t not in tr.nodes) for g in self._gt]
        self._head_factory = head_factory or self._default_head_factory()

        self._lock = threading.RLock()
        # which items were handed out as random picks, followed incrementally along the batch log (_chosen_at_random)
        self._origins_lock = threading.Lock()
        self._origins: Optional[dict] = None
        self._model: Optional[_Model] = None
        self._batch: Optional[Batch] = None
        self._shown_at: dict[str, float] = {}
        self.show_suggestions = bool(getattr(getattr(self.config, "ui", None), "show_suggestions", True))
        self.reports: list[RoundReport] = [RoundReport.from_dict(r) for r in self._stored_reports()]
        self._executor = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="alwb-train")
        self._training = 0
        self._future: Optional[cf.Future] = None
        self._queued: Optional[cf.Future] = None
        self._listeners: list[Callable[[RoundReport], None]] = []
        self._stable_rounds = 0
        self._reselected_away: dict[tuple[int, str], tuple[BatchItem, Batch]] = {}
        # hidden gold placement has its own generator: turning gold on does not change what the strategy picks
        self._gold_rng = np.random.default_rng([int(self.seed), 0x601D])
        self._closed = False
        self._quality_cache = None
        import atexit
        import weakref

        # a kernel shut down (or a script ending) gives its open batch's unanswered items back to the pool; a
        # killed kernel's items return when the batch's lease (quality.lease_s) runs out
        atexit.register(_release_at_exit, weakref.ref(self))
        self._warn_unknown_labels()
        self.restored = False
        # the fit that rebuilds the model on opening (labels answered since the last stored model, by anyone):
        # its report is a kept round report like any other, so a front end can show it
        self.opening_fit: Optional[cf.Future] = None
        if warm_start and self._n_labelled() > 0:
            # the last model, if nothing was answered since it was trained; else rebuild it without blocking
            self.restored = self._restore_model()
            if not self.restored:
                self.opening_fit = self.retrain_async()

    # ------------------------------------------------------------------ helpers
    def _warn_unknown_labels(self) -> None:
        """Labels whose class or tag is no longer in the config are kept in the store but left out of training
        and selection; say so once, naming the command that maps them (``alwb classes rename``)."""
        import warnings

        from ..classes import mismatch_message, unknown_labels

        try:
            unknown = unknown_labels(self.project)
        except AlwbError:
            return
        if unknown:
            warnings.warn(mismatch_message(self.project, unknown), UserWarning, stacklevel=3)

    def _default_head_factory(self) -> Callable:
        from ..head import make_head_factory

        # seeded per session (simulate's --seeds vary the head's initialisation too), never the global RNG
        return make_head_factory({**vars(self.config.head), "random_state": int(self.seed)}, multilabel=self.multilabel)

    def _n_labelled(self) -> int:
        return len(self.labels())

    def index_of(self, item_id: str) -> int:
        try:
            return self._index[item_id]
        except KeyError:
            raise UnknownItemError(item_id, "this project") from None

    @property
    def model_version(self) -> int:
        m = self._model
        if m is not None:
            return m.version
        if hasattr(self.store, "model_version"):
            return int(self.store.model_version())
        return int(self.store.get_meta("model_version", 0) or 0)

    @property
    def model_info(self) -> Optional[dict]:
        """What the current model is: version, labels it was trained on, cross-validated accuracy, temperature."""
        m = self._model
        if m is None:
            return None
        rounds = [r.round for r in self.reports if r.model_version == m.version]
        return {"version": m.version, "n_labels": m.n_labels, "cv_accuracy": m.cv_accuracy,
                "temperature": m.calibration.temperature, "n_folds": m.calibration.n_folds,
                "skill_accuracy": m.calibration.skill_accuracy, "n_skill": m.calibration.n_skill,
                "random_accuracy": m.random_accuracy, "skill": m.skill, "round": rounds[-1] if rounds else None}

    def _stored_reports(self) -> list[dict]:
        if hasattr(self.store, "reports"):
            return list(self.store.reports())
        return list(self.store.get_meta("reports", []) or [])

    def _append_report(self, report: RoundReport) -> None:
        if hasattr(self.store, "append_report"):
            self.store.append_report(report.to_dict())
        else:  # pragma: no cover - older store
            self.store.set_meta("reports", [r.to_dict() for r in self.reports])

    @property
    def model(self):
        """The current fitted head, or None before the first retrain."""
        m = self._model
        return m.head if m is not None else None

    @property
    def is_training(self) -> bool:
        return self._training > 0

    def on_report(self, callback: Callable[[RoundReport], None]) -> None:
        """Call ``callback(report)`` (from the training thread) after each retrain."""
        self._listeners.append(callback)

    # ------------------------------------------------------------------ labels (derived from the store)
    def quality(self):
        """The project's quality state (gold, qualification, review, consensus), derived from the store now."""
        from ..labels.quality import QualityView

        # derived state is rebuilt only when the store (or the config) changed: labels(), pool and selection ask
        # for it several times per answer
        cfg = self.config
        key = (self.store.stamp(), id(cfg), repr(cfg.quality), repr(getattr(cfg, "routing", None)),
               tuple(cfg.tags or cfg.classes or ()))
        cached = self._quality_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        view = QualityView(self.store, self.config)
        self._quality_cache = (key, view)
        return view

    def labels(self, *, auto: Optional[bool] = None) -> dict:
        """The labels trained on: item id -> class (single-label) or tuple of tags (multi-label). Per item: the
        reviewer's label, else the consensus of the answers that count (a tie waits for review), else the one
        answer, else the gold answer (not for held-out items). Answers of annotators who have not passed a
        required qualification test are kept but left out. Model labels from confidence routing (``auto_label``
        records) come last, only when ``auto`` is true (default: the config's ``routing.train_on_auto``)."""
        view = self.quality()
        out = view.final_labels(include_gold=False)
        for sid, v in view.gold.items():
            i = self._index.get(sid)
            if sid not in out and i is not None and not self.eval_mask[i]:
                out[sid] = v
        if auto is None:
            auto = bool(getattr(getattr(self.config, "routing", None), "train_on_auto", False))
        if auto:
            from .routing import auto_ids

            for sid, r in auto_ids(self.store).items():
                v = r["label"]
                out.setdefault(sid, tuple(sorted(v)) if isinstance(v, list) else v)
        return out

    def auto_label(self, *, dry_run: bool = False, item_ids: Optional[Sequence[str]] = None) -> dict:
        """Confidence routing (:mod:`.routing`): accept the model's label for unlabelled pool items whose calibrated
        confidence reaches their class's threshold (chosen on out-of-fold predictions of the human labels to reach
        ``routing.target_precision``; multi-label: every tag's present/absent decision past its threshold), as
        ``auto_label`` records; a ``routing.review_sample`` share of them waits
        in the review queue. ``item_ids`` restricts it to those pool items (the new images of an ingest). Returns
        what was accepted (nothing is written with ``dry_run``)."""
        from .routing import auto_label

        return auto_label(self, dry_run=dry_run, item_ids=item_ids)

    def _gold_ids(self) -> set[str]:
        from ..labels.quality import GOLD

        ids: dict[str, bool] = {}
        for r in self.store.records(GOLD):
            ids[r["item_id"]] = not r.get("removed")
        return {s for s, on in ids.items() if on}

    def coverage(self) -> dict[str, int]:
        return self.store.counts(self.classes, self.multilabel)

    def pool_indices(self) -> np.ndarray:
        """Indices of items that may still be queried (not held out, not answered, not waiting unanswered in
        another annotator's open batch)."""
        answered = self.store.answered_ids() | self.store.reserved_ids(self.annotator) | self._gold_ids()
        if hasattr(self.store, "records"):
            from .routing import AUTO_LABEL

            answered |= {r["item_id"] for r in self.store.records(AUTO_LABEL)}  # routed: not for the human queue
        mask = ~self.eval_mask & self.ok_mask
        for sid in answered:
            i = self._index.get(sid)
            if i is not None:
                mask[i] = False
        return np.flatnonzero(mask)

    # ------------------------------------------------------------------ batches
    @property
    def current_batch(self) -> Optional[Batch]:
        return self._batch

    def _batch_from_record(self, rec: dict) -> Batch:
        """A stored batch as a Batch. Items no longer in the project (an image deleted or renamed since the batch
        was chosen) are dropped with a one-line warning and labelling carries on; a batch with nothing left has
        no pending item, so it counts as closed."""
        items, missing = [], []
        preds = rec.get("predictions") or [None] * len(rec["item_ids"])
        scores = rec.get("scores") or [None] * len(rec["item_ids"])
        for sid, sc, pr in zip(rec["item_ids"], scores, preds):
            i = self._index.get(sid)
            if i is None:
                missing.append(sid)
                continue
            pred = pr
            if isinstance(pr, dict):
                pred = Prediction(top=tuple((str(c), float(p)) for c, p in pr["top"]), model_version=pr["model_version"])
            items.append(BatchItem(item=self.items[i], score=sc, prediction=pred))
        if missing:
            import warnings

            shown = ", ".join(repr(m) for m in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            warnings.warn(f"batch {rec['batch_id']}: {len(missing)} item(s) no longer in this project were dropped "
                          f"({shown}); {len(items)} item(s) remain", UserWarning, stacklevel=3)
        return Batch(round=rec["round"], strategy=rec["strategy"], model_version=rec["model_version"],
                     items=items, batch_id=rec["batch_id"])

    def pending(self) -> list[BatchItem]:
        """Items of the current batch without an active answer in the batch's round, in batch order."""
        b = self._batch
        if b is None:
            return []
        done = self.store.answered_ids(round=b.round)  # also answers given under a batch this one superseded
        return [bi for bi in b.items if bi.item.id not in done]

    def next_batch(self, n: Optional[int] = None) -> Batch:
        """The open batch if it still has unanswered items (also after a restart), else a newly selected one.

        While a qualification test is required (``quality.qualification_items``) and not passed, the batch is the
        test: that many gold items, scored when the last one is answered. A failed test raises
        QualificationError until the guideline is acknowledged again. An open batch that was released (its
        kernel closed) or whose lease ran out is resumed only if nobody took its items meanwhile."""
        from ..labels.quality import QUALIFICATION_STRATEGY

        with self._lock:
            if self._batch is None:
                rec = self.store.open_batch(annotator=self.annotator)
                if rec is not None:
                    self._batch = self._resume(rec, self._batch_from_record(rec))
            if self._batch is not None and self.pending():
                return self._batch
            if self._batch is not None and self._batch.strategy == QUALIFICATION_STRATEGY:
                self._score_qualification(self._batch)
            if self.needs_qualification():
                return self._qualification_batch()
            return self._new_batch(n or self.batch_size)

    def _resume(self, rec: dict, b: Batch) -> Optional[Batch]:
        """The open batch found in the store at restart. One that was released (its kernel closed) or whose lease
        ran out holds its items again only if nobody took them meanwhile: it is renewed as a new batch record
        (same round, same items, superseding it), so other annotators see it held again; else None (a new batch
        is selected)."""
        if rec["strategy"].startswith(("queue:", "undo:", "gold:")) or self.store.batch_holds(rec["batch_id"]):
            return b
        self._batch = b
        try:
            pend = [x for x in self.pending()]
        finally:
            self._batch = None
        if not pend:
            return b
        taken = self.store.answered_ids() | self.store.reserved_ids(self.annotator)
        if any(x.item.id in taken for x in pend):
            return None
        pending_ids = {x.item.id for x in pend}
        keep = [x.item.id for x in b.items if x.item.id not in pending_ids]
        renewed = self.store.create_batch(self.annotator, b.strategy, b.model_version,
                                          [(x.item.id, x.score, x.prediction) for x in pend], len(pend),
                                          round=b.round, supersedes=b.batch_id, keep=keep)
        if renewed is None or len(renewed["item_ids"]) != len(b.items):
            return None  # someone took an item at this very moment: select anew
        return self._batch_from_record(renewed)

    # ------------------------------------------------------------------ qualification and gold
    def needs_qualification(self) -> bool:
        """True while a qualification test is required and this annotator has not passed one."""
        return int(self.config.quality.qualification_items) > 0 and self.quality().qualified(self.annotator) is not True

    def qualification_status(self) -> dict:
        """{required, qualified, passed, score, correct, n, pass_mark, may_retry, attempts} for this annotator."""
        view = self.quality()
        last = view.qualification(self.annotator)
        attempts = sum(1 for q in view.qualifications if q.get("annotator") == self.annotator)
        return {"required": view.qualification_required(), "qualified": view.qualified(self.annotator),
                "passed": None if last is None else bool(last.get("passed")),
                "score": None if last is None else last.get("score"),
                "correct": None if last is None else last.get("correct"), "n": None if last is None else last.get("n"),
                "pass_mark": float(self.config.quality.pass_mark), "may_retry": view.may_retry(self.annotator),
                "attempts": attempts}

    def _qualification_batch(self) -> Batch:
        from collections import Counter

        from ..labels.quality import QUALIFICATION_STRATEGY

        q = self.config.quality
        view = self.quality()
        last = view.qualification(self.annotator)
        if not view.may_retry(self.annotator):
            raise QualificationError(
                f"qualification test failed: {last.get('correct')} of {last.get('n')} correct "
                f"({float(last.get('score') or 0):.0%}), the pass mark is {float(q.pass_mark):.0%}. Read the guideline "
                "again and acknowledge it (acknowledge_guideline(), or the button in the labeller) to retry")
        n = int(q.qualification_items)
        gold = [s for s in view.gold if s in self._index and self.ok_mask[self._index[s]]]
        if len(gold) < n:
            raise QualificationError(
                f"the qualification test needs {n} gold items but this project has {len(gold)}: add gold with "
                "`alwb gold import DIR FILE.csv` (id,label) or promote reviewed items (`alwb gold promote DIR`), "
                "or set quality.qualification_items lower")
        seen = Counter(e["sample_id"] for e in view.gold_events if e["annotator"] == self.annotator)
        order = sorted(gold, key=lambda sid: (seen[sid], float(self._gold_rng.random())))
        cands = [(sid, None, None) for sid in order]  # no suggestion: the test measures the person
        rec = self.store.create_batch(self.annotator, QUALIFICATION_STRATEGY, self.model_version, cands, n,
                                      allow_answered=True)
        if rec is None or len(rec["item_ids"]) < n:
            raise QualificationError("the gold items for the qualification test wait in other annotators' batches; "
                                     "retry in a moment")
        self._batch = self._batch_from_record(rec)
        return self._batch

    def _score_qualification(self, b: Batch) -> Optional[dict]:
        """Score a completed qualification batch once (an appended ``qualification`` record)."""
        from ..labels.quality import QUALIFICATION, _value, gold_answer_correct

        view = self.quality()
        if any(r.get("batch_id") == b.batch_id for r in view.qualifications):
            return None
        evs = {e["sample_id"]: e for e in view.gold_events
               if e["batch_id"] == b.batch_id and e["annotator"] == self.annotator}
        ids = [x.item.id for x in b.items]
        correct = sum(1 for sid in ids if sid in evs and gold_answer_correct(_value(evs[sid]), view.gold.get(sid)))
        n = len(ids)
        score = correct / n if n else 0.0
        rec = {"annotator": self.annotator, "batch_id": b.batch_id, "n": n, "correct": correct, "score": score,
               "pass_mark": float(self.config.quality.pass_mark), "passed": score >= float(self.config.quality.pass_mark),
               "guideline_version": self.guideline_version,
               "wrong": [sid for sid in ids if sid not in evs or not gold_answer_correct(_value(evs[sid]),
                                                                                         view.gold.get(sid))]}
        self.store.append_record(QUALIFICATION, rec)
        return rec

    def quality_notice(self) -> Optional[str]:
        """A one-line notice when this annotator's rolling known-answer accuracy fell below the pass mark."""
        return self.quality().below_pass_mark(self.annotator)

    def _hidden_gold(self, n: int, model) -> list:
        """Gold items to hide in an ordinary batch of ``n``: about ``quality.gold_rate`` of the batch, the ones
        this annotator answered least, at random places; shown with the model's suggestion like any item."""
        rate = float(self.config.quality.gold_rate)
        if rate <= 0 or n <= 0:
            return []
        gold = sorted(s for s in self._gold_ids() if s in self._index and self.ok_mask[self._index[s]])
        if not gold:
            return []
        expected = n * rate / (1.0 - rate)
        g = int(expected) + int(self._gold_rng.random() < expected - int(expected))
        if g <= 0:
            return []
        from collections import Counter

        seen = Counter(e["sample_id"] for e in self.store.active_events(gold=True) if e["annotator"] == self.annotator)
        order = sorted(gold, key=lambda sid: (seen[sid], float(self._gold_rng.random())))[:g]
        return [(int(self._gold_rng.integers(0, n + 1)), sid, None, self._prediction(model, self._index[sid]))
                for sid in order]

    def _overlap_candidates(self, n: int) -> list[str]:
        """Items that go to several annotators (``quality.overlap_share`` of all, fixed by a stable hash): those
        answered by others but by fewer than ``quality.overlap_k`` annotators and not by this one, oldest first;
        at most half a batch."""
        q = self.config.quality
        if float(q.overlap_share) <= 0:
            return []
        from ..labels.quality import stable_unit

        view = self.quality()
        out = []
        for sid, answers in view.answers.items():
            if self.annotator in answers or len(answers) >= int(q.overlap_k) or sid not in self._index:
                continue
            if stable_unit("overlap", sid) < float(q.overlap_share):
                out.append((min(e["id"] for e in answers.values()), sid))
        return [sid for _, sid in sorted(out)][:max(1, n // 2)]

    def _new_batch(self, n: int) -> Batch:
        pool = self.pool_indices()
        if len(pool) == 0:
            from ..errors import PoolExhaustedError

            raise PoolExhaustedError(0, n)
        model = self._model
        chosen, scores, strategy = self._select(pool, min(n, len(pool)), model)
        overlap = self._overlap_candidates(len(chosen))
        gold = self._hidden_gold(len(chosen), model)
        return self._save_batch(chosen, scores, strategy, model, overlap=overlap, gold=gold)

    def _select(self, pool: np.ndarray, n: int, model: Optional[_Model]) -> tuple[np.ndarray, list, str]:
        """Run the query strategy on ``pool`` (indices into items) with ``model``; (chosen indices, scores, name).

        Cold start and every diversity step see the labelled items, so a second cold start (the batch opened
        while the first model trains) spreads into what the first did not cover."""
        from ..query import select

        labelled = self.labels()
        lab_idx = np.array([self._index[s] for s in labelled if s in self._index and (
            self.multilabel or labelled[s] in self.classes)], dtype=np.int64)
        strategy = self.strategy
        if model is None:
            # no model yet -> cold start (representative images) or random, as configured; the adaptive default with
            # labelled items decides itself (query.strategies.ADAPTIVE_NO_MODEL: seeded cold start, or as for its
            # weakest model)
            from ..query.strategies import resolve_strategy

            adaptive = resolve_strategy(self.strategy, self.multilabel) == "adaptive"
            if self.strategy == "random" or self.config.query.cold_start == "random":
                strategy = "random"
            elif not (adaptive and len(lab_idx)):
                strategy = "cold_start"
        kwargs = dict(X_pool=self.X[pool], multilabel=self.multilabel, classes=self.classes, rng=self._rng,
                      cold_start=self.config.query.cold_start)
        if model is not None:
            kwargs["proba"] = model.proba[pool]
            kwargs["model"] = model.head
            kwargs["model_skill"] = model.skill
        if len(lab_idx):
            kwargs["X_labelled"] = self.X[lab_idx]
            if not self.multilabel:
                kwargs["y_labelled"] = np.array([self.classes.index(labelled[self.items[i].id]) for i in lab_idx])
        sel = select(strategy, n, **kwargs)
        chosen = pool[np.asarray(sel.indices, dtype=np.int64)]
        scores = [None if s is None or not np.isfinite(s) else float(s) for s in np.asarray(sel.scores, dtype=float)] \
            if sel.scores is not None else [None] * len(chosen)
        return chosen, scores, getattr(sel, "strategy", strategy)

    def _prediction(self, model: Optional[_Model], i: int) -> Optional[Prediction]:
        if model is None or not self.show_suggestions:
            return None
        p = model.proba[i]
        order = np.argsort(-p, kind="stable")[:TOP_K]
        if self.tree is not None and not self.multilabel:  # the suggestion is the tree-consistent (top-down) leaf
            lead = int(model.pred[i])
            order = [lead] + [int(j) for j in np.argsort(-p, kind="stable") if j != lead][:TOP_K - 1]
        return Prediction(top=tuple((model.classes[j], float(p[j])) for j in order), model_version=model.version)

    def _save_batch(self, idx: Sequence[int], scores: list, strategy: str, model: Optional[_Model],
                    round: Optional[int] = None, supersedes: Optional[str] = None, keep: Sequence[str] = (),
                    allow_answered: bool = False, overlap: Sequence[str] = (), gold: Sequence = ()) -> Batch:
        """Hand this annotator the chosen items as a batch. The store does it in one transaction with every other
        writer: items answered meanwhile (unless ``allow_answered``: review queue, undo) or waiting in another
        annotator's open batch are dropped, and the round is assigned there. ``supersedes``/``keep``: a new
        selection replacing the open batch (same ``round``), its ``keep`` items first. If another annotator took
        every chosen item, the selection runs again on what is left."""
        from ..errors import PoolExhaustedError

        version = model.version if model is not None else self.model_version
        cands = [(self.items[int(i)].id, s, self._prediction(model, int(i))) for i, s in zip(idx, scores)]
        n_want = len(cands)
        if overlap:
            cands = [(sid, None, self._prediction(model, self._index[sid])) for sid in overlap] + cands
        rec = self.store.create_batch(self.annotator, strategy, version, cands, n_want, round=round,
                                      supersedes=supersedes, keep=keep, allow_answered=allow_answered,
                                      overlap=overlap, overlap_k=int(self.config.quality.overlap_k), gold=gold)
        if rec is None:
            if supersedes is not None:
                return self._batch  # nothing to replace the open selection with: it stays as it is
            if allow_answered:
                raise AlwbError(f"none of the {len(cands)} item(s) can be queued: each waits unanswered in "
                                "another annotator's open batch")
            tries = getattr(self, "_taken_retries", 0)
            if tries >= 5:
                raise PoolExhaustedError(len(self.pool_indices()), len(cands))
            self._taken_retries = tries + 1
            # every session of the project starts from the same seed, so another annotator's selection on the same
            # pool is this one: go on with a stream of this annotator's own, or the retries keep colliding with it
            import zlib

            self._rng = np.random.default_rng([int(self.seed), zlib.crc32(self.annotator.encode("utf-8")),
                                               int(self._rng.integers(2**31))])
            try:
                return self._new_batch(max(1, len(cands)))  # a fresh pool without what the others took
            finally:
                self._taken_retries = tries
        for _ in range(3):  # another annotator took some chosen items meanwhile: top the batch up, same round
            short = n_want + len(gold) - len(rec["item_ids"])
            if short <= 0 or supersedes is not None or allow_answered or not hasattr(self, "_select"):
                break
            mine = set(rec["item_ids"])
            pool = np.array([i for i in self.pool_indices() if self.items[int(i)].id not in mine], dtype=np.int64)
            if len(pool) == 0:
                break
            more, more_scores, _ = self._select(pool, min(short, len(pool)), model)
            extra = [(self.items[int(i)].id, sc, self._prediction(model, int(i))) for i, sc in zip(more, more_scores)]
            topped = self.store.create_batch(self.annotator, strategy, version, extra, len(extra), round=rec["round"],
                                             supersedes=rec["batch_id"], keep=rec["item_ids"])
            if topped is None:
                continue
            rec = topped
        self._batch = self._batch_from_record(rec)
        return self._batch

    def enqueue(self, item_ids: Sequence[str], reason: str = "review") -> Batch:
        """Push chosen items (a FiftyOne view, a selection) into the queue as the next batch.

        Items may already be labelled: a new answer supersedes the old one (both stay in the store)."""
        ids = list(dict.fromkeys(item_ids))
        if not ids:
            raise AlwbError("nothing to enqueue: the view or selection is empty")
        idx = [self.index_of(s) for s in ids]
        with self._lock:
            model = self._model
            b = self._save_batch(idx, [None] * len(idx), f"queue:{reason}", model, allow_answered=True)
            queued = [x.item.id for x in b.items]
            if len(queued) < len(ids):
                import warnings

                warnings.warn(f"{len(ids) - len(queued)} of {len(ids)} item(s) were not queued: they wait "
                              "unanswered in another annotator's open batch", UserWarning, stacklevel=2)
            self.store.record_enqueue(queued, round=b.round, reason=reason, annotator=self.annotator)
            return b

    def answer_items(self, answers, reason: str = "review") -> list[int]:
        """Answer exactly these items now (``{item_id: Answer}``: labels known from elsewhere, a scripted
        annotator): they are queued as one batch (:meth:`enqueue`) and each answer is submitted, durable when this
        returns. Returns the event ids, in order."""
        self.enqueue(list(answers), reason=reason)
        return [self.submit(sid, a) for sid, a in answers.items()]

    # ------------------------------------------------------------------ answers
    @property
    def guideline_version(self) -> str:
        return str(self.config.guideline.version)

    @property
    def guideline_text(self) -> str:
        return self.config.guideline.text

    def _ack_key(self) -> str:
        return f"guideline_ack:{self.annotator}"

    def guideline_acknowledged(self) -> bool:
        """False when the guideline changed since this annotator last acknowledged it. A first-time annotator
        (nothing acknowledged yet) may answer: their first answer records the current version as read, and the
        UI shows them the guideline when it opens."""
        ack = self.store.acknowledged_guideline(self.annotator)
        return ack is None or str(ack) == self.guideline_version

    def acknowledge_guideline(self) -> None:
        """Record (appended, never overwritten) that this annotator read the current guideline version."""
        self.store.acknowledge_guideline(self.annotator, self.guideline_version)

    def reload_guideline(self) -> bool:
        """Re-read the config; True when the guideline version changed."""
        old = self._guideline_seen
        self.config = self.project.reload_config()
        self._guideline_seen = self.guideline_version
        self.schema = self.project.schema
        tree = getattr(self.schema, "taxonomy", None)
        if tree is None or set(tree.nodes if tree.multilabel else tree.leaves) == set(self.classes):
            # a reorganised tree over the same classes (a tag tree: the same tags)
            self.tree = tree
        return self.guideline_version != old

    def mark_shown(self, item_id: str) -> None:
        """Record when an item was put in front of the annotator (for time spent)."""
        self._shown_at.setdefault(item_id, time.time())

    def show_next(self, prefer: Optional[str] = None) -> tuple[Optional[BatchItem], Optional[Batch]]:
        """Atomically pick the item to put on screen (``prefer`` if it is pending, else the first pending item) and
        mark it shown, so a model landing at that moment cannot re-select it away. Returns (item, its batch);
        (None, batch) when the open batch has nothing pending."""
        with self._lock:
            pend = self.pending()
            bi = next((x for x in pend if x.item.id == prefer), None) if prefer is not None else None
            if bi is None and pend:
                bi = pend[0]
            if bi is not None:
                self.mark_shown(bi.item.id)
            return bi, self._batch

    def _checked(self, answer: Answer) -> Answer:
        """An answer as the schema normalises it, once the annotator has read the current guideline."""
        if not isinstance(answer, Answer):
            raise AnswerError(f"expected an alworkbench.Answer, got {type(answer).__name__}")
        answer = self.schema.validate(answer)
        if not self.guideline_acknowledged():
            raise GuidelineChangedError(
                f"the guideline changed to version {self.guideline_version}; read it and call "
                "acknowledge_guideline() before answering")
        return answer

    def submit(self, item_id: str, answer: Answer) -> int:
        """Store an answer for an item of the current batch. Durable when this returns."""
        answer = self._checked(answer)
        with self._lock:
            b = self._batch
            if b is None:
                raise UnknownItemError(item_id, "a batch (call next_batch() first)")
            bi = next((x for x in b.items if x.item.id == item_id), None)
            chosen_by = b
            if bi is None:
                # an item re-selected away when a newer model landed: a client that still shows it may answer it
                # (recorded with the batch that chose it)
                bi, chosen_by = self._reselected_away.get((b.round, item_id), (None, b))
            if bi is None:
                raise UnknownItemError(item_id, f"batch {b.batch_id}")
            shown = self._shown_at.pop(item_id, None)
            if answer.time_spent_s is None and shown is not None:
                answer = replace(answer, time_spent_s=round(time.time() - shown, 3))
            pred = bi.prediction
            strategy = chosen_by.strategy
            if not strategy.startswith("gold:") and item_id in self._gold_ids():
                from ..labels.quality import HIDDEN_GOLD_STRATEGY

                strategy = HIDDEN_GOLD_STRATEGY  # scored against the known answer, not counted as a new label
            eid = self.store.record(item_id, answer, round=b.round, annotator=self.annotator,
                                    batch_id=chosen_by.batch_id, model_version=chosen_by.model_version,
                                    strategy=strategy, score=bi.score,
                                    prediction=pred, shown_at=shown)
            if self.store.acknowledged_guideline(self.annotator) is None:
                self.acknowledge_guideline()
            return eid

    def undo(self) -> dict:
        """Undo this annotator's latest answer; if it belongs to the open batch the item is pending again. The answers
        of a qualification test that was already scored stay (NothingToUndoError)."""
        from ..errors import NothingToUndoError

        with self._lock:
            scored = {r.get("batch_id") for r in self.store.records("qualification")
                      if r.get("annotator") == self.annotator}
            if scored:
                mine = [e for e in self.store.active_events() if e["annotator"] == self.annotator]
                if mine and mine[-1]["batch_id"] in scored:
                    raise NothingToUndoError("the qualification test was scored: its answers stay (answer the next "
                                             "item, or ask a reviewer to correct a label)")
            ev = self.store.undo(annotator=self.annotator)
            b = self._batch
            sid = ev["sample_id"]
            if b is not None and sid in self._index and all(x.item.id != sid for x in b.items):
                # the undone answer was from an earlier batch: the open batch is replaced (same round) by one
                # with that item first, then the pending rest; the items answered so far stay in it
                pend = self.pending()
                done = {x.item.id for x in pend}
                keep = [x.item.id for x in b.items if x.item.id not in done]
                strategy = b.strategy if b.strategy.startswith("undo:") else f"undo:{b.strategy}"
                self._save_batch([self._index[sid]] + [self._index[x.item.id] for x in pend],
                                 [None] + [x.score for x in pend], strategy, self._model, round=b.round,
                                 supersedes=b.batch_id, keep=keep, allow_answered=True)
            return ev

    def change_answer(self, event_id: int, answer: Answer) -> int:
        """Change one of this annotator's earlier answers (from the history): a new answer event that supersedes it
        (the old one is undone by an appended undo event, in the same transaction; nothing is overwritten). Answers on
        gold items (a qualification test, hidden gold) cannot be changed. Returns the new event's id."""
        answer = self._checked(answer)
        with self._lock:
            return self.store.supersede(int(event_id), answer, annotator=self.annotator)

    # ------------------------------------------------------------------ model
    def predict(self, item_id: str) -> Optional[Prediction]:
        return self._prediction(self._model, self.index_of(item_id))

    def predict_tree(self, item_id: str) -> Optional[dict]:
        """A taxonomy project's tree-consistent prediction for one item: {"path": the top-down predicted path (one
        node per level), "p": {node: probability (its leaves' summed)}, "model_version"} (a tag tree: "path" lists the
        tags decided present, closed under ancestors, and "p" every tag's probability); None without a taxonomy,
        a model, or when suggestions are off."""
        m = self._model
        if self.tree is None or m is None or not self.show_suggestions:
            return None
        if self.multilabel:  # a tag tree: the tags decided present (closed under ancestors) and every tag's probability
            row = m.proba[self.index_of(item_id)]
            return {"path": [t for t, v in zip(m.classes, row) if v >= 0.5],
                    "p": {t: round(float(v), 4) for t, v in zip(m.classes, row)}, "model_version": m.version}
        row = m.proba[self.index_of(item_id)][None, :]
        node_p = self.tree.node_proba(row, m.classes)
        return {"path": list(self.tree.predict_paths(row, m.classes)[0]),
                "p": {n: round(float(v[0]), 4) for n, v in node_p.items()}, "model_version": m.version}

    def predict_proba_all(self):
        """(item_ids, proba (n_items, n_classes), classes) from the current model, or None before one exists."""
        m = self._model
        if m is None:
            return None
        return [it.id for it in self.items], m.proba, list(m.classes)

    def _chosen_at_random(self, ids: Sequence[str]) -> np.ndarray:
        """For each item id: was it last handed out as a uniform random pick (the random strategy, or the random
        share of an adaptive batch: no score)? Those are a sample of the pool; cold-start picks are the typical
        (easy) items and uncertainty picks the hard ones, and items labelled outside a batch are of unknown origin."""
        from ..query import strategies as st

        random_strategies = frozenset({"random"} | ({"adaptive"} if st.ADAPTIVE_WEAK == "random" else set()))
        with self._origins_lock:
            o = self._origins
            if o is None or o["random_strategies"] != random_strategies:
                o = self._origins = {"random_strategies": random_strategies, "pos": 0, "at_random": {},
                                     "by_batch": {}}
            # only the batches saved since the last call are read: the log is append-only, so what was worked out
            # for the older ones still holds (a project's whole log is read once per session)
            new, o["pos"] = self.store.batch_origins(o["pos"])
            at_random, by_batch = o["at_random"], o["by_batch"]
            for b in new:  # oldest first: the latest record of an item wins
                plain = b["strategy"] in random_strategies
                # a re-selection keeps answered and on-screen items of the batch it supersedes: chosen there
                kept = by_batch.get(b["supersedes"] or "", {})
                mine = by_batch[b["batch_id"]] = {}
                for iid, sc in zip(b["item_ids"], b["scores"]):
                    mine[iid] = at_random[iid] = kept[iid] if iid in kept else (plain and sc is None)
            return np.fromiter((at_random.get(i, False) for i in ids), dtype=bool, count=len(ids))

    def _training_data(self):
        """(item indices, targets) of the current human labels; labels of classes no longer in the project are
        left out (``alwb classes`` explains and maps them)."""
        labelled = self.labels()
        ids = [s for s in labelled if s in self._index and self.ok_mask[self._index[s]]]
        if not self.multilabel:
            ids = [s for s in ids if labelled[s] in self.classes]
        idx = np.array([self._index[s] for s in ids], dtype=np.int64)
        if self.multilabel:
            y = np.zeros((len(ids), len(self.classes)), dtype=np.int64)
            for r, s in enumerate(ids):
                for t in labelled[s]:
                    if t in self.classes:
                        y[r, self.classes.index(t)] = 1
        else:
            y = np.array([labelled[s] for s in ids], dtype=object)
        return idx, y

    def _evaluate(self, model: _Model) -> tuple[Optional[float], int]:
        ev = np.flatnonzero(self.eval_mask)
        if len(ev) == 0:
            return None, 0
        if self.multilabel:
            from sklearn.metrics import f1_score

            Y = np.zeros((len(ev), len(self.classes)), dtype=np.int64)
            for r, i in enumerate(ev):
                for t in (self._gt[i] or ()):
                    if t in self.classes:
                        Y[r, self.classes.index(t)] = 1
            return float(f1_score(Y, model.pred[ev], average="micro", zero_division=0)), len(ev)
        from sklearn.metrics import accuracy_score

        truth = [self._gt[i] for i in ev]
        pred = [model.classes[j] for j in model.pred[ev]]
        return float(accuracy_score(truth, pred)), len(ev)

    def retrain(self, timeout: Optional[float] = None) -> RoundReport:
        """Fit on every current label and wait: the fit runs on the session's one worker, after any fit already
        queued there, so a blocking retrain can never be overtaken by an older background fit. Under a virtual
        clock, virtual time runs on until the fit (and any fit queued before it) is over."""
        fut = self.retrain_async()
        if self._clock is not None:
            self._clock.drain()
        return fut.result(timeout)

    def _tick(self, step: str) -> None:
        """A point of a fit where, under a virtual clock, the worker waits for virtual time to catch up (never
        called with the lock held)."""
        if self._clock is not None:
            self._clock.checkpoint(step)

    def _add_training(self, delta: int) -> None:
        with self._lock:
            self._training += delta

    def _current_round(self) -> int:
        """The round whose answers a retrain requested now is about (the open batch's, else the latest)."""
        return self._batch.round if self._batch is not None else self.store.last_round()

    def _notify(self, report: RoundReport) -> None:
        for cb in list(self._listeners):
            cb(report)

    def _snapshot(self) -> int:
        """A number that grows with every store event (answers, undos, enqueues) of any annotator, and with every
        auto label when ``routing.train_on_auto`` trains on them."""
        n = int(self.store.n_events())
        if getattr(getattr(self.config, "routing", None), "train_on_auto", False) and hasattr(self.store, "records"):
            from .routing import AUTO_LABEL

            n += len(self.store.records(AUTO_LABEL))
        return n

    def _fit_head(self, idx: np.ndarray, y, prev: Optional[_Model]):
        head = self._head_factory()
        warm = prev.head if prev is not None else None
        params = head.get_params() if hasattr(head, "get_params") else {}
        if warm is not None and "warm_start_from" in params:
            head.set_params(warm_start_from=warm)
        if self.multilabel:
            target = y
            head.fit(self.X[idx], target)
        else:
            target = np.array([self.classes.index(v) for v in y], dtype=np.int64)
            head.fit(self.X[idx], target)
        return head, target

    def _full_proba(self, head) -> tuple[np.ndarray, list[str]]:
        proba = np.asarray(head.predict_proba(self.X), dtype=np.float32)
        if self.multilabel:
            return proba, list(self.classes)
        classes = [self.classes[int(c)] for c in head.classes_]
        if len(classes) < len(self.classes):
            # the head only knows the classes seen so far: widen to the project's classes (zeros elsewhere)
            full = np.zeros((len(proba), len(self.classes)), dtype=np.float32)
            for j, c in enumerate(classes):
                full[:, self.classes.index(c)] = proba[:, j]
            proba = full
        return proba, list(self.classes)

    def _retrain(self, round_: int) -> RoundReport:
        """Fit, land, re-select, then calibrate and report. The model lands (and the open batch is re-selected
        with it) as soon as it is fitted and has scored the pool, with the previous model's temperature; the
        out-of-fold calibration (stable folds, each warm-started from the previous round's fold head) follows on
        the same worker and updates the shown probabilities before the report goes out."""
        t0 = time.perf_counter()
        with self._lock:
            snapshot = self._snapshot()  # read before the labels: the model has seen at least this much
            idx, y = self._training_data()
            prev = self._model
        if len(idx) == 0:
            raise NotFittedError("no labels yet: answer some items before retraining")
        if prev is not None and prev.snapshot >= snapshot and self.reports:
            return self.reports[-1]  # nothing new since the current model: no refit, no new version
        head, target = self._fit_head(idx, y, prev)
        t_fit = time.perf_counter()
        raw, classes = self._full_proba(head)
        T_prev = prev.calibration.temperature if prev is not None else 1.0
        landed = _Model(head, 0, apply_temperature(raw, T_prev, self.multilabel), classes, self.multilabel,
                        n_labels=len(idx), snapshot=snapshot, tree=self.tree,
                        calibration=Calibration(temperature=T_prev) if prev is None else replace(
                            prev.calibration, oof_proba=None))
        t_score = time.perf_counter()
        self._tick("land")
        with self._lock:
            cur = self._model
            if cur is not None and cur.snapshot >= snapshot:
                # a model trained on a newer snapshot already landed: this one is older, discard it
                return self.reports[-1] if self.reports else self._report_for(cur, round_, None, 0, {}, None)
            landed.version = self._record_model(landed, round_)
            stability = None
            if cur is not None and cur.pred.shape == landed.pred.shape:
                pool = ~self.eval_mask
                same = (cur.pred[pool] == landed.pred[pool])
                stability = float(same.all(axis=1).mean() if self.multilabel else same.mean())
            self._model = landed
        n_re = self._reselect(landed)
        t_select = time.perf_counter()
        # out-of-fold predictions of the human labels: the accuracy shown, the skill signal, routing's thresholds;
        # ui.calibrate decides only whether the fitted temperature is applied to the shown probabilities
        from .calibration import stable_folds

        ids = [self.items[i].id for i in idx]
        cal = calibrate(self._head_factory, self.X[idx], target, self.multilabel, len(self.classes),
                        seed=int(self.seed), warm_from=head, folds=stable_folds(ids),
                        warm_fold_heads=prev.calibration.fold_heads if prev is not None else None)
        if not self.config_calibrate:
            # ui.calibrate: false shows the head's own probabilities; the cross-validation still runs, or the
            # adaptive default would lose its skill signal and sample at random for ever
            cal = replace(cal, temperature=1.0, ece_after=cal.ece_before)
        if self.tree is not None and self.multilabel and cal.oof_proba is not None and cal.cv_accuracy is not None:
            # a tag tree: cross-validated micro-F1 of the decisions the model makes (tree-consistent)
            from sklearn.metrics import f1_score

            o = self.tree.consistent_tag_proba(cal.oof_proba, self.classes) >= 0.5
            cal = replace(cal, cv_accuracy=float(f1_score(np.asarray(target), o.astype(int), average="micro",
                                                           zero_division=0)))
        if not self.multilabel and cal.oof_proba is not None and cal.usable is not None:
            rep = cal.usable & self._chosen_at_random(ids)
            if rep.any():
                o = cal.oof_proba[rep]
                cal = replace(cal, skill_accuracy=float((o.argmax(axis=1) == np.asarray(target)[rep]).mean()),
                              n_skill=int(rep.sum()))
        model = _Model(head, landed.version, apply_temperature(raw, cal.temperature, self.multilabel), classes,
                       self.multilabel, n_labels=len(idx), snapshot=snapshot, calibration=cal, tree=self.tree)
        model.train_idx = idx
        self._tick("calibrated")
        with self._lock:
            if self._model is landed:
                self._model = model
        self._record_calibration(model)
        t_cal = time.perf_counter()
        acc, n_eval = self._evaluate(model)
        levels = self._levels(model, target) if self.tree is not None else None
        timings = {"fit": t_fit - t0, "score": t_score - t_fit, "select": t_select - t_score,
                   "to_selection": t_select - t0, "calibrate": t_cal - t_select, "total": time.perf_counter() - t0}
        with self._lock:
            report = self._report_for(model, round_, acc, n_eval, timings, stability, reselected=n_re)
            report.levels = levels
            self.reports.append(report)
            self._append_report(report)
        return report

    def _levels(self, model: _Model, target=None) -> list[dict]:
        """Taxonomy projects: per level, held-out accuracy of the tree-consistent predictions against ground truth
        (the items ``accuracy`` is measured on), out-of-fold accuracy on the human labels (the rows
        ``cv_accuracy`` is measured on) and coverage of the human labels."""
        tree = self.tree
        if self.multilabel:
            return self._tag_levels(model, target)
        ev = np.flatnonzero(self.eval_mask)
        held = tree.level_accuracy([self._gt[i] for i in ev], tree.predict_paths(model.proba[ev], model.classes))
        n_eval = sum(1 for i in ev if self._gt[i] is not None and self._gt[i] in tree.leaves)
        cal = model.calibration
        cv: list = [None] * tree.depth
        n_cv = 0
        if cal.oof_proba is not None and cal.usable is not None and target is not None and cal.cv_accuracy is not None:
            rows = np.flatnonzero(cal.usable)
            o = cal.oof_proba[rows]
            o = o / np.clip(o.sum(axis=1, keepdims=True), 1e-12, None)
            truth = [self.classes[int(c)] for c in np.asarray(target)[rows]]
            cv = tree.level_accuracy(truth, tree.predict_paths(o, self.classes))
            n_cv = len(rows)
        labelled = [v for v in self.labels().values() if isinstance(v, str)]
        cover = tree.level_counts(labelled)
        from ..labels.taxonomy import level_name

        return [{"level": k, "name": level_name(k), "accuracy": held[k - 1], "n_eval": n_eval if held[k - 1] is not None
                 else 0, "cv_accuracy": cv[k - 1], "n_cv": n_cv if cv[k - 1] is not None else 0,
                 "coverage": cover[k - 1]} for k in range(1, tree.depth + 1)]

    def _tag_levels(self, model: _Model, target=None) -> list[dict]:
        """A tag tree: per level (the tags at that depth), held-out micro-F1 of the tree-consistent decisions against
        ground truth, out-of-fold micro-F1 on the human labels and coverage of the human labels (the entries keep the
        single-label keys: ``accuracy`` holds the report's metric, micro_f1)."""
        tree = self.tree
        ev = np.flatnonzero(self.eval_mask)
        truth = [self._gt[i] for i in ev]
        held = tree.tag_level_f1(truth, model.pred[ev], model.classes)
        n_eval = sum(1 for t in truth if t is not None)
        cal = model.calibration
        cv: list = [None] * tree.depth
        n_cv = 0
        if cal.oof_proba is not None and target is not None and cal.cv_accuracy is not None:
            rows = np.arange(len(cal.oof_proba)) if cal.usable is None else np.flatnonzero(cal.usable)
            o = tree.consistent_tag_proba(cal.oof_proba[rows], self.classes) >= 0.5
            Y = np.asarray(target)[rows]
            cv = tree.tag_level_f1([[self.classes[j] for j in np.flatnonzero(y)] for y in Y], o, self.classes)
            n_cv = len(rows)
        cover = tree.tag_level_counts([v for v in self.labels().values() if isinstance(v, (list, tuple))])
        from ..labels.taxonomy import level_name

        return [{"level": k, "name": level_name(k), "accuracy": held[k - 1], "n_eval": n_eval if held[k - 1] is not None
                 else 0, "cv_accuracy": cv[k - 1], "n_cv": n_cv if cv[k - 1] is not None else 0,
                 "coverage": cover[k - 1]} for k in range(1, tree.depth + 1)]

    def _record_calibration(self, model: _Model) -> None:
        if hasattr(self.store, "append_record"):
            self.store.append_record("calibration", {"version": model.version, **model.calibration.to_dict()})

    def _report_for(self, model: _Model, round_: int, acc, n_eval: int, timings: dict, stability,
                    reselected: int = 0) -> RoundReport:
        st = self.config.stopping
        if timings:
            self._stable_rounds = self._stable_rounds + 1 if (stability is not None and stability >= st.stability) else 0
        should_stop = self._stable_rounds >= st.patience
        return RoundReport(
            round=round_, model_version=model.version, n_labels=model.n_labels,
            labels_per_class=self.coverage(), accuracy=acc,
            metric="micro_f1" if self.multilabel else "accuracy", n_eval=n_eval, timings=timings,
            stability=stability, should_stop=should_stop,
            stop_reason=(f"predictions stable (>= {st.stability:.0%} unchanged) for {self._stable_rounds} "
                         f"round(s)" if should_stop else ""),
            cv_accuracy=model.cv_accuracy, temperature=float(model.calibration.temperature),
            annotator=self.annotator, snapshot=model.snapshot, reselected=reselected)

    @property
    def config_calibrate(self) -> bool:
        return bool(getattr(getattr(self.config, "ui", None), "calibrate", True))

    # ------------------------------------------------------------------ model persistence
    def _models_dir(self):
        return self.project.dir / "models"

    def _record_model(self, model: _Model, round_: int) -> int:
        """Save the fitted head (numpy arrays, no pickle) and append a model record; returns the new version."""
        path = None
        state = model.head.get_state() if hasattr(model.head, "get_state") else None
        if state is not None:
            d = self._models_dir()
            d.mkdir(parents=True, exist_ok=True)
            path = d / f"model-s{model.snapshot}-{uuid.uuid4().hex[:8]}.npz"
            arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
            meta = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
            tmp = path.with_suffix(".tmp.npz")
            try:
                np.savez(tmp, __meta__=np.array(json.dumps(meta)), **arrays)
                tmp.replace(path)
            except OSError:
                tmp.unlink(missing_ok=True)
                path = None  # the model still works in memory; reopening will refit
        info = {"snapshot": model.snapshot, "n_labels": model.n_labels, "round": round_,
                "annotator": self.annotator, "path": None if path is None else path.name,
                "head": type(model.head).__name__, "dim": int(self.X.shape[1]), "classes": list(model.classes),
                "temperature": float(model.calibration.temperature)}  # until its calibration record follows
        if hasattr(self.store, "append_model"):
            return int(self.store.append_model(info))
        version = max(self.model_version, 0) + 1  # pragma: no cover - older store
        self.store.set_meta("model_version", version)
        return version

    def _restore_model(self) -> bool:
        """Load the latest saved model if no store event happened since it was trained; True when restored."""
        rec = self.store.latest_model() if hasattr(self.store, "latest_model") else None
        if not rec or not rec.get("path") or rec.get("snapshot") != self._snapshot():
            return False
        if rec.get("dim") != int(self.X.shape[1]) or rec.get("classes") != list(self.classes):
            return False
        probe = self._head_factory()
        if not hasattr(type(probe), "from_state"):
            return False
        path = self._models_dir() / rec["path"]
        try:
            with np.load(path, allow_pickle=False) as z:
                state = {k: z[k] for k in z.files if k != "__meta__"}
                state.update(json.loads(str(z["__meta__"])))
            head = type(probe).from_state(state)
            raw, classes = self._full_proba(head)
        except (OSError, ValueError, KeyError):
            return False  # a missing or damaged file: refit instead
        c = self.store.latest_model_summary() or rec
        cal = Calibration(temperature=float(c.get("temperature") or 1.0), cv_accuracy=c.get("cv_accuracy"),
                          n_folds=int(c.get("n_folds") or 0), n_used=int(c.get("n_used") or 0),
                          ece_before=c.get("ece_before"), ece_after=c.get("ece_after"),
                          skill_accuracy=c.get("skill_accuracy"), n_skill=int(c.get("n_skill") or 0))
        proba = apply_temperature(raw, cal.temperature, self.multilabel)
        with self._lock:
            self._model = _Model(head, int(rec["version"]), proba, classes, self.multilabel,
                                 n_labels=int(rec.get("n_labels") or 0), snapshot=int(rec["snapshot"]),
                                 calibration=cal, tree=self.tree)
        return True

    # ------------------------------------------------------------------ fresh selections
    def _reselect(self, model: _Model) -> int:
        """Select the unanswered, not yet shown rest of the open batch again with ``model`` (called by the worker
        right after the model landed). Answered items, items already on screen and the first pending item stay; the new selection is
        recorded as its own batch record (strategy, model version, scores) superseding the old one. The strategy
        runs outside the lock, so answering never waits for it. Returns how many items were chosen again."""

        def plan(b: Batch):
            pend = self.pending()
            pending_ids = {x.item.id for x in pend}
            # the first pending item stays too: it is the one on screen or about to be (after a kernel restart the
            # in-memory "shown" marks are gone, but the person saw it before)
            first = pend[0].item.id if pend else None
            gold = self._gold_ids()  # hidden gold stays where it was put
            stay = [x.item.id for x in b.items
                    if x.item.id not in pending_ids or x.item.id in self._shown_at or x.item.id == first
                    or x.item.id in gold]
            return stay, len(b.items) - len(stay)

        with self._lock:
            b = self._batch
            if b is None or b.strategy.startswith(("queue:", "undo:", "gold:")) or b.model_version >= model.version \
                    or self._model is not model:
                return 0
            stay, n = plan(b)
            if n <= 0:
                return 0
            stay_idx = {self._index[i] for i in stay if i in self._index}
            pool = np.array([i for i in self.pool_indices() if int(i) not in stay_idx], dtype=np.int64)
        if len(pool) == 0:
            return 0
        chosen, scores, strategy = self._select(pool, min(n, len(pool)), model)
        self._tick("reselect")
        with self._lock:
            if self._batch is not b or self._model is not model:
                return 0  # the batch or the model changed meanwhile: the next landing re-selects
            stay, n = plan(b)  # the person may have answered or seen more items meanwhile
            keep_set = set(stay)
            pick = [(int(i), sc) for i, sc in zip(chosen, scores) if self.items[int(i)].id not in keep_set][:max(n, 0)]
            if not pick:
                return 0
            pend = self.pending()
            self._save_batch([i for i, _ in pick], [sc for _, sc in pick], strategy, model, round=b.round,
                             supersedes=b.batch_id, keep=stay)
            for x in pend:
                if x.item.id not in keep_set:
                    self._reselected_away[(b.round, x.item.id)] = (x, b)
            return len(pick)

    def retrain_async(self) -> cf.Future:
        """Retrain in the background. While one fit runs, further requests coalesce into one follow-up fit that
        has not started yet, so the newest answers are always included in the model that comes last."""
        with self._lock:
            q = self._queued
            if q is not None and not q.running() and not q.done():
                return q  # a follow-up fit is waiting: it will snapshot the labels when it starts
            self._training += 1  # counts as training from the moment it is requested
            round_ = self._current_round()  # the batch just finished, not the one opened after this call
            clock = self._clock
            requested_at = clock.request() if clock is not None else None

            def job():
                try:
                    if clock is not None:
                        clock.begin(requested_at)
                    try:
                        report = self._retrain(round_)
                    finally:
                        if clock is not None:
                            clock.end()
                finally:
                    self._add_training(-1)
                self._notify(report)  # listeners see is_training already False
                return report

            fut = self._executor.submit(job)
            if self._future is not None and not self._future.done():
                self._queued = fut
            else:
                self._future = fut
            return fut

    def wait(self, timeout: Optional[float] = None) -> None:
        """Block until background training has finished, including fits requested meanwhile (for scripts and
        tests); re-raises the error of a failed fit. Under a virtual clock, virtual time runs on until then."""
        if self._clock is not None:
            self._clock.drain()
        seen: set[int] = set()
        while True:
            with self._lock:
                futs = [f for f in (self._future, self._queued) if f is not None and id(f) not in seen]
            if not futs:
                return
            for f in futs:
                f.result(timeout=timeout)
                seen.add(id(f))

    def release(self) -> bool:
        """Give the unanswered items of this annotator's open batch back to the pool (other annotators may get
        them); answers stay. True when a batch was released."""
        with self._lock:
            b = self._batch
            if b is None or b.strategy.startswith("gold:") or not self.pending():
                return False
            self.store.release_batch(b.batch_id, reason=f"session of {self.annotator} closed")
            self._batch = None
            return True

    def review(self):
        """A reviewer's view of this project (alworkbench.loop.review.ReviewSession), with this session's model
        for suggestions."""
        from .review import ReviewSession

        return ReviewSession(self)

    def close(self) -> None:
        """Wait for the running fit, then release the open batch's unanswered items to the pool."""
        if self._clock is not None:
            self._clock.drain()
        self._executor.shutdown(wait=True)
        if not self._closed:
            self._closed = True
            try:
                self.release()
            except AlwbError:  # a closed or read-only store: the lease returns the items
                pass

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Session(project={self.project.name!r}, annotator={self.annotator!r}, "
                f"labelled={self._n_labelled()}, model_version={self.model_version})")
