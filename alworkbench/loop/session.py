"""The round loop. Owns no UI: the notebook widget, the CLI and the simulated oracle all drive this class.

Thread model: one lock guards the session's small mutable state (current batch, model snapshot). Training runs
outside the lock on a snapshot of the labelled data, in a single background worker thread; the finished model is
swapped in atomically, so ``next_batch``/``submit``/``predict`` never wait for a fit.
"""
from __future__ import annotations

import concurrent.futures as cf
import threading
import time
import uuid
from dataclasses import replace
from typing import Callable, Optional, Sequence

import numpy as np

from ..errors import AlwbError, AnswerError, DuplicateAnswerError, NotFittedError, UnknownItemError
from ..types import Answer, Batch, BatchItem, Prediction, RoundReport

TOP_K = 3


class GuidelineChangedError(AnswerError):
    """The guideline changed since the annotator last acknowledged it; they must read it before answering."""


class _Model:
    """A fitted head plus everything derived from it (immutable once built)."""

    def __init__(self, head, version: int, proba: np.ndarray, classes: list[str], multilabel: bool):
        self.head = head
        self.version = version
        self.proba = proba  # (n_items, n_classes) for every item of the project
        self.classes = classes
        self.multilabel = multilabel
        self.pred = (proba >= 0.5) if multilabel else proba.argmax(axis=1)


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
                 batch_size: Optional[int] = None, seed: Optional[int] = None, warm_start: bool = True):
        self.project = project
        self.config = project.config
        self.annotator = annotator or self.config.annotator
        self.store = project.store
        self.schema = project.schema
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
        self._head_factory = head_factory or self._default_head_factory()

        self._lock = threading.RLock()
        self._model: Optional[_Model] = None
        self._batch: Optional[Batch] = None
        self._shown_at: dict[str, float] = {}
        self.reports: list[RoundReport] = [RoundReport(**r) for r in self.store.get_meta("reports", [])]
        self._executor = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="alwb-train")
        self._training = 0
        self._future: Optional[cf.Future] = None
        self._queued: Optional[cf.Future] = None
        self._listeners: list[Callable[[RoundReport], None]] = []
        self._stable_rounds = 0
        if warm_start and self._n_labelled() > 0:
            self.retrain_async()  # rebuild the model after a restart without blocking the caller

    # ------------------------------------------------------------------ helpers
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
        return m.version if m is not None else int(self.store.get_meta("model_version", 0) or 0)

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
    def labels(self) -> dict:
        """Current human labels: item id -> class (single-label) or tuple of tags (multi-label)."""
        return self.store.tag_sets() if self.multilabel else self.store.labels()

    def coverage(self) -> dict[str, int]:
        return self.store.counts(self.classes, self.multilabel)

    def pool_indices(self) -> np.ndarray:
        """Indices of items that may still be queried (not held out, not answered)."""
        answered = self.store.answered_ids()
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
        items = []
        preds = rec.get("predictions") or [None] * len(rec["item_ids"])
        scores = rec.get("scores") or [None] * len(rec["item_ids"])
        for sid, sc, pr in zip(rec["item_ids"], scores, preds):
            pred = pr
            if isinstance(pr, dict):
                pred = Prediction(top=tuple((str(c), float(p)) for c, p in pr["top"]), model_version=pr["model_version"])
            items.append(BatchItem(item=self.items[self.index_of(sid)], score=sc, prediction=pred))
        return Batch(round=rec["round"], strategy=rec["strategy"], model_version=rec["model_version"],
                     items=items, batch_id=rec["batch_id"])

    def pending(self) -> list[BatchItem]:
        """Unanswered items of the current batch, in batch order."""
        b = self._batch
        if b is None:
            return []
        done = self.store.answered_ids(batch_id=b.batch_id)
        return [bi for bi in b.items if bi.item.id not in done]

    def next_batch(self, n: Optional[int] = None) -> Batch:
        """The open batch if it still has unanswered items (also after a restart), else a newly selected one."""
        with self._lock:
            if self._batch is None:
                rec = self.store.open_batch()
                if rec is not None:
                    self._batch = self._batch_from_record(rec)
            if self._batch is not None and self.pending():
                return self._batch
            return self._new_batch(n or self.batch_size)

    def _new_batch(self, n: int) -> Batch:
        from ..query import select

        pool = self.pool_indices()
        if len(pool) == 0:
            from ..errors import PoolExhaustedError

            raise PoolExhaustedError(0, n)
        n = min(n, len(pool))
        model = self._model
        labelled = self.labels()
        lab_idx = np.array([self._index[s] for s in labelled if s in self._index], dtype=np.int64)
        strategy = self.strategy
        if model is None:
            # round 0: no model yet -> cold start (representative images) or random, as configured
            strategy = "random" if (self.strategy == "random" or self.config.query.cold_start == "random") else "cold_start"
        kwargs = dict(X_pool=self.X[pool], multilabel=self.multilabel, classes=self.classes, rng=self._rng)
        if model is not None:
            kwargs["proba"] = model.proba[pool]
            kwargs["model"] = model.head
        if len(lab_idx):
            kwargs["X_labelled"] = self.X[lab_idx]
            if not self.multilabel:
                y = np.array([self.classes.index(labelled[self.items[i].id]) for i in lab_idx])
                kwargs["y_labelled"] = y
        sel = select(strategy, n, **kwargs)
        chosen = pool[np.asarray(sel.indices, dtype=np.int64)]
        scores = [None if s is None or not np.isfinite(s) else float(s) for s in np.asarray(sel.scores, dtype=float)] \
            if sel.scores is not None else [None] * len(chosen)
        return self._save_batch(chosen, scores, sel.strategy if hasattr(sel, "strategy") else strategy, model)

    def _prediction(self, model: Optional[_Model], i: int) -> Optional[Prediction]:
        if model is None:
            return None
        p = model.proba[i]
        order = np.argsort(-p, kind="stable")[:TOP_K]
        return Prediction(top=tuple((model.classes[j], float(p[j])) for j in order), model_version=model.version)

    def _save_batch(self, idx: Sequence[int], scores: list, strategy: str, model: Optional[_Model]) -> Batch:
        round_ = self.store.last_round() + 1
        batch_id = f"r{round_}-{uuid.uuid4().hex[:8]}"
        preds = [self._prediction(model, int(i)) for i in idx]
        items = [BatchItem(item=self.items[int(i)], score=s, prediction=p) for i, s, p in zip(idx, scores, preds)]
        version = model.version if model is not None else self.model_version
        self.store.save_batch(batch_id, round_, strategy, version, [bi.item.id for bi in items], scores, preds)
        self._batch = Batch(round=round_, strategy=strategy, model_version=version, items=items, batch_id=batch_id)
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
            b = self._save_batch(idx, [None] * len(idx), f"queue:{reason}", model)
            self.store.record_enqueue(ids, round=b.round, reason=reason, annotator=self.annotator)
            return b

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
        ack = self.store.get_meta(self._ack_key())
        return ack is None or str(ack) == self.guideline_version

    def acknowledge_guideline(self) -> None:
        self.store.set_meta(self._ack_key(), self.guideline_version)

    def reload_guideline(self) -> bool:
        """Re-read the config; True when the guideline version changed."""
        old = self._guideline_seen
        self.config = self.project.reload_config()
        self._guideline_seen = self.guideline_version
        self.schema = self.project.schema
        return self.guideline_version != old

    def mark_shown(self, item_id: str) -> None:
        """Record when an item was put in front of the annotator (for time spent)."""
        self._shown_at.setdefault(item_id, time.time())

    def submit(self, item_id: str, answer: Answer) -> int:
        """Store an answer for an item of the current batch. Durable when this returns."""
        if not isinstance(answer, Answer):
            raise AnswerError(f"expected an alworkbench.Answer, got {type(answer).__name__}")
        answer = self.schema.validate(answer)
        if not self.guideline_acknowledged():
            raise GuidelineChangedError(
                f"the guideline changed to version {self.guideline_version}; read it and call "
                "acknowledge_guideline() before answering")
        with self._lock:
            b = self._batch
            if b is None:
                raise UnknownItemError(item_id, "a batch (call next_batch() first)")
            bi = next((x for x in b.items if x.item.id == item_id), None)
            if bi is None:
                raise UnknownItemError(item_id, f"batch {b.batch_id}")
            shown = self._shown_at.pop(item_id, None)
            if answer.time_spent_s is None and shown is not None:
                answer = replace(answer, time_spent_s=round(time.time() - shown, 3))
            pred = bi.prediction
            eid = self.store.record(item_id, answer, round=b.round, annotator=self.annotator, batch_id=b.batch_id,
                                    model_version=b.model_version, strategy=b.strategy, score=bi.score,
                                    prediction=pred, shown_at=shown)
            if self.store.get_meta(self._ack_key()) is None:
                self.acknowledge_guideline()
            return eid

    def undo(self) -> dict:
        """Undo this annotator's latest answer; if it belongs to the open batch the item is pending again."""
        with self._lock:
            ev = self.store.undo(annotator=self.annotator)
            b = self._batch
            if b is not None and ev.get("batch_id") != b.batch_id:
                # the undone answer was from an earlier batch: bring that item back as a one-item batch
                rest = [self.index_of(x.item.id) for x in self.pending()]
                self._save_batch([self.index_of(ev["sample_id"])] + rest, [None] * (1 + len(rest)),
                                 f"undo:{b.strategy}", self._model)
            return ev

    # ------------------------------------------------------------------ model
    def predict(self, item_id: str) -> Optional[Prediction]:
        return self._prediction(self._model, self.index_of(item_id))

    def predict_proba_all(self):
        """(item_ids, proba (n_items, n_classes), classes) from the current model, or None before one exists."""
        m = self._model
        if m is None:
            return None
        return [it.id for it in self.items], m.proba, list(m.classes)

    def _training_data(self):
        labelled = self.labels()
        ids = [s for s in labelled if s in self._index and self.ok_mask[self._index[s]]]
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

    def retrain(self) -> RoundReport:
        """Fit a fresh head on every current label, score the whole pool, evaluate; blocking."""
        with self._lock:
            round_ = self._current_round()
        self._add_training(1)
        try:
            report = self._retrain(round_)
        finally:
            self._add_training(-1)
        self._notify(report)
        return report

    def _add_training(self, delta: int) -> None:
        with self._lock:
            self._training += delta

    def _current_round(self) -> int:
        """The round whose answers a retrain requested now is about (the open batch's, else the latest)."""
        return self._batch.round if self._batch is not None else self.store.last_round()

    def _notify(self, report: RoundReport) -> None:
        for cb in list(self._listeners):
            cb(report)

    def _retrain(self, round_: int) -> RoundReport:
        t0 = time.perf_counter()
        with self._lock:
            idx, y = self._training_data()
            prev = self._model
        if len(idx) == 0:
            raise NotFittedError("no labels yet: answer some items before retraining")
        head = self._head_factory()
        if self.multilabel:
            head.fit(self.X[idx], y)
            classes = list(self.classes)
        else:
            head.fit(self.X[idx], np.array([self.classes.index(v) for v in y]))
            classes = [self.classes[int(c)] for c in head.classes_]
        t_fit = time.perf_counter()
        proba = np.asarray(head.predict_proba(self.X), dtype=np.float32)
        if not self.multilabel and len(classes) < len(self.classes):
            # the head only knows the classes seen so far: widen to the project's classes (zeros elsewhere)
            full = np.zeros((len(proba), len(self.classes)), dtype=np.float32)
            for j, c in enumerate(classes):
                full[:, self.classes.index(c)] = proba[:, j]
            proba, classes = full, list(self.classes)
        t_score = time.perf_counter()
        with self._lock:
            version = max(self.model_version, prev.version if prev else 0) + 1
        model = _Model(head, version, proba, classes, self.multilabel)
        acc, n_eval = self._evaluate(model)
        stability = None
        if prev is not None and prev.pred.shape == model.pred.shape:
            pool = ~self.eval_mask
            same = (prev.pred[pool] == model.pred[pool])
            stability = float(same.all(axis=1).mean() if self.multilabel else same.mean())
        with self._lock:
            self._model = model
            self.store.set_meta("model_version", version)
            st = self.config.stopping
            self._stable_rounds = self._stable_rounds + 1 if (stability is not None and stability >= st.stability) else 0
            should_stop = self._stable_rounds >= st.patience
            report = RoundReport(
                round=round_, model_version=version, n_labels=len(idx),
                labels_per_class=self.coverage(), accuracy=acc,
                metric="micro_f1" if self.multilabel else "accuracy", n_eval=n_eval,
                timings={"fit": t_fit - t0, "score": t_score - t_fit, "total": time.perf_counter() - t0},
                stability=stability, should_stop=should_stop,
                stop_reason=(f"predictions stable (>= {st.stability:.0%} unchanged) for {self._stable_rounds} "
                             f"round(s)" if should_stop else ""))
            self.reports.append(report)
            self.store.set_meta("reports", [r.to_dict() for r in self.reports])
        return report

    def retrain_async(self) -> cf.Future:
        """Retrain in the background. While one fit runs, further requests coalesce into one follow-up fit that
        has not started yet, so the newest answers are always included in the model that comes last."""
        with self._lock:
            q = self._queued
            if q is not None and not q.running() and not q.done():
                return q  # a follow-up fit is waiting: it will snapshot the labels when it starts
            self._training += 1  # counts as training from the moment it is requested
            round_ = self._current_round()  # the batch just finished, not the one opened after this call

            def job():
                try:
                    report = self._retrain(round_)
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
        tests); re-raises the error of a failed fit."""
        seen: set[int] = set()
        while True:
            with self._lock:
                futs = [f for f in (self._future, self._queued) if f is not None and id(f) not in seen]
            if not futs:
                return
            for f in futs:
                f.result(timeout=timeout)
                seen.add(id(f))

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def __repr__(self) -> str:
        return (f"Session(project={self.project.name!r}, annotator={self.annotator!r}, "
                f"labelled={self._n_labelled()}, model_version={self.model_version})")
