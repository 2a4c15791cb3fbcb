"""Reviewer mode: check other people's answers, accept them or correct them with a reason.

The queue (:meth:`alworkbench.labels.quality.QualityView.review_queue`) holds flagged items with their notes,
items where annotators disagree (ties included) and a sample of each annotator's answers (the rate follows the
annotator's tier). Every decision is an appended ``review`` record: a correction supersedes the answers (the
final label used for training and export becomes the reviewer's), it never deletes them. A review covers the
answers that existed when it was made; a later answer on the item opens it for review again.
"""
from __future__ import annotations

from typing import Optional

from ..errors import AlwbError, AnswerError
from ..labels.quality import REVIEW, QualityView, _norm, value_fields
from ..types import Answer


class ReviewError(AlwbError):
    """A review action that cannot be taken (nothing to accept, no reason for a correction, unknown item)."""


class ReviewSession:
    """The review queue of a project for one reviewer (``session.annotator``), with the session's model for
    suggestions. ``queue()`` is recomputed from the store on every call, so several reviewers (and annotators)
    can work at once; an item reviewed by someone else meanwhile leaves the queue."""

    def __init__(self, session, reviewer: Optional[str] = None):
        self.session = session
        self.reviewer = reviewer or session.annotator
        self.store = session.store
        self.multilabel = session.multilabel

    def view(self) -> QualityView:
        return QualityView(self.store, self.session.config)

    def queue(self) -> list[dict]:
        """Entries waiting for review, most urgent first; each with the answers (who, what, note), the reasons
        it is queued (``flag``, ``disagreement``, ``sample:<annotator>``) and the model's suggestion."""
        out = []
        for entry in self.view().review_queue(self.reviewer):
            pred = None
            try:
                pred = self.session.predict(entry["item_id"])
            except AlwbError:
                pass
            out.append({**entry, "suggestion": None if pred is None else [[c, p] for c, p in pred.top]})
        return out

    def item(self, item_id: str):
        return self.session.items[self.session.index_of(item_id)]

    def _entry(self, item_id: str, view: QualityView) -> dict:
        for e in view.review_queue(self.reviewer):
            if e["item_id"] == item_id:
                return e
        st = view.item_state(item_id) if item_id in view.answers else None
        if st is None:
            raise ReviewError(f"item {item_id!r} has no answer to review")
        if st["review"] is not None:
            raise ReviewError(f"item {item_id!r} was already reviewed ({st['review_state']} by "
                              f"{st['review'].get('reviewer')}); it is not in the queue")
        # not queued (not sampled): a reviewer may still review it on purpose
        return {"item_id": item_id, "reasons": ["chosen"], "answers": [
            {"annotator": w, "kind": e["kind"], "value": _norm(e["value"]) if e["kind"] in ("label", "tags") else None,
             "note": e["note"], "event_id": e["id"], "at": e["created_at"]} for w, e in sorted(st["answers"].items())],
            "consensus": st["consensus"], "tie": st["tie"]}

    def _write(self, entry: dict, action: str, value, reason: str) -> int:
        pred = None
        try:
            pred = self.session.predict(entry["item_id"])
        except AlwbError:
            pass
        rec = {"item_id": entry["item_id"], "reviewer": self.reviewer, "action": action,
               **value_fields(value, self.multilabel), "reason": str(reason or ""), "reasons": list(entry["reasons"]),
               "answers": {a["annotator"]: {"event_id": a["event_id"], "kind": a["kind"],
                                            "value": list(a["value"]) if isinstance(a["value"], tuple) else a["value"],
                                            "at": a["at"]} for a in entry["answers"]},
               "last_event_id": max((a["event_id"] for a in entry["answers"]), default=0),
               "suggestion": None if pred is None else [[c, p] for c, p in pred.top]}
        return self.store.append_record(REVIEW, rec)

    def accept(self, item_id: str, reason: str = "") -> int:
        """Accept the answer on the item (all counted answers agree). Flags, disagreements and ties have no single
        answer to accept: correct them with the right label instead. Returns the review record id."""
        view = self.view()
        entry = self._entry(item_id, view)
        values = {a["value"] for a in entry["answers"] if a["value"] is not None}
        if len(values) != 1:
            what = ("the annotators disagree" if len(values) > 1 else
                    "it was flagged or skipped without an answer")
            raise ReviewError(f"cannot accept {item_id!r}: {what}; correct it with the right "
                              f"{'tags' if self.multilabel else 'label'} and a reason")
        return self._write(entry, "accept", next(iter(values)), reason)

    def correct(self, item_id: str, answer, reason: str) -> int:
        """Replace the answers' label by ``answer`` (an Answer, a class name or a tag list) with a ``reason``
        (required). The old answers stay in the store; the review record supersedes them."""
        if not str(reason or "").strip():
            raise ReviewError("a correction needs a reason (what was wrong), for the annotator and the record")
        if not isinstance(answer, Answer):
            answer = Answer.of_tags(answer) if self.multilabel else Answer.of_label(answer)
        try:
            answer = self.session.schema.validate(answer)
        except AnswerError as exc:
            raise ReviewError(str(exc)) from None
        if answer.kind not in ("label", "tags"):
            raise ReviewError("a correction gives a label (single-label) or tags (multi-label), not a skip or flag")
        value = answer.label if answer.kind == "label" else tuple(answer.tags)
        view = self.view()
        entry = self._entry(item_id, view)
        return self._write(entry, "correct", value, reason)

    def __len__(self) -> int:
        return len(self.view().review_queue(self.reviewer))

    def __repr__(self) -> str:
        return f"ReviewSession(reviewer={self.reviewer!r}, queued={len(self)})"
