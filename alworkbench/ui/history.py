"""The labeller's answer history (a mixin of :class:`~alworkbench.ui.workbench.Workbench`): the annotator's latest
answers from the store (thumbnail, answer, annotator, time), a jump back to any of them to change it (a new answer
event that supersedes the old one, never an overwrite: ``Session.change_answer``), and redo after undo.

Messages (JS -> Python): ``{type: "history", open}`` shows / hides the panel (the kernel fills it only while it is
open), ``{type: "history_open", event_id}`` shows that answer's image to change it, ``{type: "history_close"}``
goes back to the batch, ``{type: "redo"}`` gives the last undone answer again. The synced ``history`` trait holds
``{open, entries: [{event_id, name, text, annotator, at, thumb, changing}], changing}``.
"""
from __future__ import annotations

import base64
import io
from typing import Optional

from ..errors import AlwbError
from ..loop.stats import display_name, item_details
from ..types import Answer, BatchItem
from .render import answer_text

HISTORY_SIZE = 12   # answers listed in the panel
THUMB_SIDE = 56     # thumbnail size in pixels (longest side)


def thumbnail(img) -> str:
    """A small JPEG data URL of a PIL image (for the history panel)."""
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA", "P"):
        rgba = img.convert("RGBA")
        t = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        t.alpha_composite(rgba)
    else:
        t = img.copy()
    t.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    t.convert("RGB").save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def answer_of_event(ev: dict, time_spent_s: Optional[float] = None) -> Answer:
    """The answer an event recorded, to give it again (redo)."""
    kind, value = ev["kind"], ev.get("value")
    if kind == "label":
        return Answer.of_label(str(value), time_spent_s=time_spent_s)
    if kind == "tags":
        return Answer.of_tags([str(t) for t in (value or ())], time_spent_s=time_spent_s)
    if kind == "flag":
        return Answer.flag(str(ev.get("note") or ""), time_spent_s=time_spent_s)
    return Answer.skip(time_spent_s=time_spent_s)


def _text(ev: dict) -> str:
    return answer_text({"kind": ev["kind"], "value": ev.get("value"), "note": ev.get("note")})


class HistoryMixin:
    """History panel, change an earlier answer, redo. Needs ``session``, ``project``, ``item``, ``history``,
    ``_current_id``, ``_front``, ``_image_future``, ``_item_state``, ``_show_next`` from the Workbench."""

    def _history_init(self) -> None:
        self._history_open = False
        self._redo: list[dict] = []             # undone answers, latest last (cleared by a new answer)
        self._changing: Optional[dict] = None   # the answer event being changed (its image is shown)
        self._resume: Optional[str] = None      # the batch item that was shown before the jump back
        self._thumbs: dict[str, str] = {}

    def _thumb(self, item_id: str) -> str:
        t = self._thumbs.get(item_id)
        if t is None:
            fut = self._encoded.get(item_id)
            if fut is not None and fut.done() and fut.exception() is None and fut.result().get("thumb"):
                t = fut.result()["thumb"]
            else:
                t = thumbnail(self.project.source.load(self._item_by_id(item_id)))
            self._thumbs[item_id] = t
        return t

    def _item_by_id(self, item_id: str):
        s = self.session
        return s.items[s.index_of(item_id)]

    def _push_history(self) -> None:
        if not self._history_open:
            if self.history.get("open") or self._changing is not None:
                self.history = {"open": False, "entries": [], "changing": self._changing_state()}
            return
        s = self.session
        entries = []
        for ev in s.store.recent_answers(s.annotator, HISTORY_SIZE):
            try:
                thumb = self._thumb(ev["sample_id"])
            except Exception:  # noqa: BLE001 - an unreadable image keeps its row, without a thumbnail
                thumb = ""
            entries.append({"event_id": int(ev["id"]), "name": display_name(self._item_by_id(ev["sample_id"])),
                            "text": _text(ev), "annotator": ev["annotator"], "at": float(ev["created_at"]),
                            "thumb": thumb,
                            "changing": self._changing is not None and self._changing["id"] == ev["id"]})
        self.history = {"open": True, "entries": entries, "changing": self._changing_state()}

    def _changing_state(self) -> Optional[dict]:
        ev = self._changing
        if ev is None:
            return None
        return {"event_id": int(ev["id"]), "text": _text(ev), "at": float(ev["created_at"])}

    def _handle_history(self, kind: str, content: dict) -> str:
        if self.ui_mode != "label":
            raise AlwbError("the answer history belongs to the labeller, not the reviewer's screen")
        if kind == "history":
            self._history_open = bool(content.get("open"))
            self._push_history()
            return ""
        if kind == "history_close":
            if self._changing is None:
                return ""
            self._changing, self._front = None, self._resume
            self._show_next()
            return "change cancelled: back to the batch"
        if kind == "redo":
            return self._handle_redo()
        # history_open: show that answer's image, to change it
        eid = int(content.get("event_id"))
        ev = next((e for e in self.session.store.recent_answers(self.session.annotator, HISTORY_SIZE * 4)
                   if int(e["id"]) == eid), None)
        if ev is None:
            raise AlwbError("that answer cannot be changed here any more (undone or changed meanwhile)")
        if self._changing is None:
            self._resume = self._current_id
        self._changing = ev
        item = self._item_by_id(ev["sample_id"])
        state = self._item_state(BatchItem(item=item, score=ev.get("score"), prediction=None), 0, 0,
                                 int(ev["round"]), False)
        self._current_id = item.id
        orig = (state.get("orig_w") or state["w"], state.get("orig_h") or state["h"])
        details = item_details(item, orig, strategy=ev.get("strategy") or "", score=ev.get("score"),
                               model_version=int(ev.get("model_version") or 0))
        self.item = {**state, "details": details, "change": self._changing_state(),
                     "earlier_note": ev.get("note") or "" if ev["kind"] == "flag" else ""}
        self._push_history()
        return f"changing your answer \u201c{_text(ev)}\u201d: pick the new answer (Esc goes back)"

    def _handle_change(self, answer: Answer) -> str:
        ev = self._changing
        new_id = self.session.change_answer(int(ev["id"]), answer)
        self.answers_log.append({"item_id": ev["sample_id"], "kind": answer.kind, "label": answer.label,
                                 "tags": list(answer.tags), "note": answer.note, "event_id": new_id,
                                 "supersedes": int(ev["id"])})
        self._changing, self._front = None, self._resume
        self._redo.clear()
        self._show_next()
        new = answer_text({"kind": answer.kind, "note": answer.note,
                           "value": list(answer.tags) if answer.kind == "tags" else answer.label})
        return f"changed: {_text(ev)} \u2192 {new} (the earlier answer stays in the log, superseded)"

    def _handle_redo(self) -> str:
        if self._changing is not None:
            raise AlwbError("finish or cancel the change first (Esc)")
        if not self._redo:
            raise AlwbError("nothing to redo: redo gives back an answer you just undid")
        ev = self._redo[-1]
        if ev["sample_id"] != self._current_id:
            self._redo.clear()
            raise AlwbError("nothing to redo: another image was answered since the undo")
        self.session.submit(ev["sample_id"], answer_of_event(ev))
        self._redo.pop()
        if self._redo:
            self._front = self._redo[-1]["sample_id"]   # the answer undone before it is next to redo
        self._show_next()
        return f"redone: {_text(ev)} \u2014 z to undo"
