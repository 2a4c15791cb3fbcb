"""The notebook labelling widget: one anywidget view driving a :class:`~alworkbench.loop.session.Session`.

Every answer travels as ``{item_id, answer, client_seq}``; Python stores it with ``session.submit`` and only then
sends the acknowledgement together with the next image (one comm message). The view ignores keys while a
message is in flight, so an answer can never be recorded twice or for the wrong image.
"""
from __future__ import annotations

import base64
import concurrent.futures as cf
import io
import os
import threading
import weakref
from pathlib import Path
from typing import Any, Optional

import anywidget
import ipywidgets
import traitlets

from ..errors import AlwbError, NothingToUndoError, PoolExhaustedError
from ..types import Answer, RoundReport
from ._frontend import CSS, ESM
from .render import guideline_html, report_html

MAX_SIDE = 768          # images are downsized to at most this many pixels per side before sending
PIXELATED_BELOW = 64    # images smaller than this are upscaled with crisp, blocky pixels
SMALL_DISPLAY = 256     # small images are shown at an integer zoom up to about this many pixels
PREFETCH = 2            # upcoming images encoded ahead of time
SINGLE_KEYS = list("1234567890")
# tag keys: digits first, then letters that are not action keys (a accept, f flag, s skip, z undo)
TAG_KEYS = list("1234567890") + [c for c in "qwertyuiopghjklxcvbnm" if c not in "afsz"]


def headless() -> bool:
    """True when no person is looking: ``ALWB_HEADLESS=1`` (or ``0`` to force interactive); otherwise True
    unless the kernel was started by a Jupyter server (JupyterLab / Notebook set ``JPY_SESSION_NAME``) or
    VS Code. nbclient / nbconvert runs in CI count as headless."""
    flag = os.environ.get("ALWB_HEADLESS", "").strip().lower()
    if flag in ("1", "true", "yes"):
        return True
    if flag in ("0", "false", "no"):
        return False
    return not (os.environ.get("JPY_SESSION_NAME") or os.environ.get("VSCODE_PID"))


def encode_image(img, max_side: int = MAX_SIDE) -> dict:
    """PIL image -> ``{src: data URL, w, h, display_w, display_h, pixelated}``; never more than ``max_side``
    pixels per side (PNG for small images, JPEG for large photographs)."""
    from PIL import Image

    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    w, h = img.size
    if max(w, h) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        w, h = img.size
    buf = io.BytesIO()
    if max(w, h) <= 256:
        img.save(buf, format="PNG", optimize=False)
        mime = "image/png"
    else:
        img.save(buf, format="JPEG", quality=88)
        mime = "image/jpeg"
    out = {"src": f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii"),
           "w": w, "h": h, "pixelated": max(w, h) < PIXELATED_BELOW, "display_w": None, "display_h": None}
    if max(w, h) < SMALL_DISPLAY:
        zoom = max(1, SMALL_DISPLAY // max(w, h))
        out["display_w"], out["display_h"] = w * zoom, h * zoom
    return out


def _answer_from_msg(a: Any, time_spent_s: Any) -> Answer:
    if not isinstance(a, dict):
        raise AlwbError(f"malformed answer message: expected an object, got {type(a).__name__}")
    kind = a.get("kind")
    spent = None
    if isinstance(time_spent_s, (int, float)) and time_spent_s >= 0:
        spent = round(float(time_spent_s), 3)
    if kind == "label":
        return Answer.of_label(str(a.get("label")), time_spent_s=spent)
    if kind == "tags":
        tags = a.get("tags") or []
        if not tags:
            raise AlwbError("empty tag set: choose at least one tag, or skip the item")
        return Answer.of_tags([str(t) for t in tags], time_spent_s=spent)
    if kind == "skip":
        return Answer.skip(time_spent_s=spent)
    if kind == "flag":
        return Answer.flag(str(a.get("note") or ""), time_spent_s=spent)
    raise AlwbError(f"unknown answer kind {kind!r}; expected label, tags, skip or flag")


class _OpenDescriptor:
    """``Workbench.open(DIR, ...)`` opens a project (a class-level call); on an instance, ``open()`` stays the
    ipywidgets method that opens the widget's comm (ipywidgets calls it from ``__init__``)."""

    def __get__(self, obj, objtype=None):
        if obj is None:
            return objtype.open_project
        return ipywidgets.Widget.open.__get__(obj, objtype)


class Workbench(anywidget.AnyWidget):
    """Label a project's images in JupyterLab, one batch after another, with the model retraining behind you.

    >>> from alworkbench.ui import Workbench
    >>> Workbench.open("projects/quickstart", annotator="ann")        # doctest: +SKIP

    Keys (while the widget has focus; click it once): 1-9/0 pick a class (or toggle a tag, then Enter),
    ``/`` filters long class lists, ``a`` accepts the model's suggestion, ``s`` skips, ``f`` flags for review
    with an optional note, ``z`` / Backspace undoes the last answer (repeatable).

    The header shows the open batch's round and place ("round 4 · item 3 of 20"), the labels in the store and the
    current model ("model v3 · trained on 60 labels · cross-validated accuracy 71%"); the round summary names the
    same model line. ``ui: {show_suggestions: false}`` in alwb.yaml hides every prediction and disables ``a``.
    """

    _esm = ESM
    _css = CSS

    mode = traitlets.Unicode("single").tag(sync=True)
    choices = traitlets.List().tag(sync=True)
    item = traitlets.Dict().tag(sync=True)
    ack = traitlets.Dict().tag(sync=True)
    progress = traitlets.Dict().tag(sync=True)
    guideline = traitlets.Dict().tag(sync=True)
    report_html = traitlets.Unicode("").tag(sync=True)
    prefetch = traitlets.List().tag(sync=True)
    annotator = traitlets.Unicode("").tag(sync=True)

    def __init__(self, session, *, retrain: bool = True, **kwargs):
        self.session = session
        self.project = session.project
        self._retrain_enabled = bool(retrain)
        self._ui_lock = threading.RLock()
        self._encoder = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="alwb-encode")
        self._encoded: dict[str, cf.Future] = {}
        self._current_id: Optional[str] = None
        self._front: Optional[str] = None     # an undone item to show before the rest of the batch
        self._shown_seq = 0
        self._train_future: Optional[cf.Future] = None
        self._train_error = ""
        self._status = ""
        self._reports_seen = len(session.reports)
        self._report_key: Optional[tuple] = None  # what the shown round summary was rendered from
        self._cfg_mtime = self._config_mtime()
        self.answers_log: list[dict] = []  # what this widget stored, in order (item_id, kind, value, event id)
        schema = session.schema
        multi = bool(schema.multilabel)
        names = list(schema.names)
        keys = TAG_KEYS if multi else SINGLE_KEYS
        super().__init__(
            mode="multi" if multi else "single",
            choices=[{"name": n, "key": keys[i] if i < len(keys) else ""} for i, n in enumerate(names)],
            annotator=session.annotator, **kwargs)
        self.add_class("alwb-labeller")
        self.on_msg(self._on_msg)
        self.observe(self._on_annotator, names="annotator")
        ref = weakref.WeakMethod(self._on_report_thread)

        def listener(report, _ref=ref):
            m = _ref()
            if m is not None:
                m(report)

        session.on_report(listener)
        with self._ui_lock, self.hold_sync():
            self._push_guideline()
            self._start()

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def open_project(cls, directory, annotator: Optional[str] = None, *, images: Optional[str] = None,
             retrain: bool = True, **init_kwargs) -> "Workbench":
        """Open the project in ``directory`` (creating it from ``images`` when it has no alwb.yaml yet) and
        return a widget at the first unanswered image of the open batch."""
        from ..config import CONFIG_FILENAME
        from ..project import Project

        d = Path(directory).expanduser()
        if (d / CONFIG_FILENAME).exists():
            project = Project.open(d)
        elif images is not None:
            project = Project.init(d, images, **init_kwargs)
        else:
            raise AlwbError(f"{d / CONFIG_FILENAME} does not exist: pass images='digits' (or a folder / CSV) "
                            "to create the project, or run `alwb init` first")
        return cls(project.session(annotator=annotator), retrain=retrain)

    open = _OpenDescriptor()

    # ------------------------------------------------------------------ state pushed to the view
    def _config_mtime(self) -> float:
        try:
            return self.project.config_path.stat().st_mtime
        except (OSError, AttributeError):
            return 0.0

    def _check_guideline_file(self) -> None:
        m = self._config_mtime()
        if m != self._cfg_mtime:
            self._cfg_mtime = m
            self.session.reload_guideline()
            self._push_guideline()

    def _push_guideline(self) -> None:
        s = self.session
        prev = None
        try:
            prev = s.store.get_meta(f"guideline_ack:{s.annotator}")
        except AlwbError:
            prev = None
        self.guideline = {"version": s.guideline_version, "html": guideline_html(s.guideline_text),
                          "acknowledged": bool(s.guideline_acknowledged()),
                          "previous": None if prev is None else str(prev)}

    @property
    def show_suggestions(self) -> bool:
        """False when the project's config says ``ui: {show_suggestions: false}``: no predictions are shown and
        the accept key does nothing."""
        return bool(getattr(self.session, "show_suggestions", True))

    def _model_state(self) -> Optional[dict]:
        """The current model as the header and the suggestions show it (version, labels it was trained on,
        cross-validated accuracy, the round whose answers trained it); None before the first model."""
        s = self.session
        info = getattr(s, "model_info", None)
        if not info:
            return None
        v = int(info["version"])
        cv = info.get("cv_accuracy")
        return {"version": v, "n_labels": int(info.get("n_labels") or 0),
                "cv_accuracy": None if cv is None else float(cv),
                "cv_metric": "micro-F1" if s.multilabel else "accuracy",
                "round": next((r.round for r in reversed(s.reports) if r.model_version == v), None)}

    def _push_progress(self) -> None:
        s = self.session
        b = s.current_batch
        n_items = len(s.items)
        try:
            n_eval = int(s.eval_mask.sum())
        except AttributeError:
            n_eval = 0
        model = self._model_state()
        self.progress = {
            "labelled": len(s.labels()), "pool_size": n_items - n_eval,
            "coverage": {str(k): int(v) for k, v in s.coverage().items()},
            "model_version": model["version"] if model else int(s.model_version), "model": model,
            "training": bool(s.is_training), "show_suggestions": self.show_suggestions,
            "round": b.round if b is not None else 0, "status": self._status or self._train_error,
        }
        self._push_report()

    def _push_report(self) -> None:
        """Render the round summary again when what it shows changed: a new report, the current model, the open
        round or the number of labels in the store (the same figures as the header)."""
        s = self.session
        reports = list(s.reports)
        if not reports:
            return
        p = self.progress or {}
        model = p.get("model") or {}
        key = (len(reports), model.get("version"), p.get("round"), p.get("labelled"))
        if key == self._report_key:
            return
        self._report_key = key
        self.report_html = report_html(reports, s.classes, model_version=model.get("version"),
                                       open_round=p.get("round") or None, n_store_labels=p.get("labelled"))

    def _image_future(self, item) -> cf.Future:
        fut = self._encoded.get(item.id)
        if fut is None:
            fut = self._encoder.submit(lambda it=item: encode_image(self.project.source.load(it)))
            self._encoded[item.id] = fut
        return fut

    def _suggestions(self, item_id: str) -> dict:
        """The item's top predictions and the model that made them (nothing when suggestions are off)."""
        if not self.show_suggestions:
            return {"prediction": [], "model_version": None, "model": None, "suggestions": False}
        model = self._model_state()
        pred = self.session.predict(item_id)
        if pred is not None and (model is None or model["version"] != pred.model_version):
            model = self._model_state()  # a model landed in between: describe the one that predicted
        return {"prediction": [] if pred is None else [[str(c), float(p)] for c, p in pred.top],
                "model_version": None if pred is None else pred.model_version,
                "model": model if pred is not None else None, "suggestions": True}

    def _item_state(self, bi, position: int, batch_size: int, round_: int, redo: bool) -> dict:
        img = self._image_future(bi.item).result()
        self._shown_seq += 1
        return {"item_id": bi.item.id, "shown_seq": str(self._shown_seq), **img,
                "position": position, "batch_size": batch_size, "round": round_, "redo": redo,
                **self._suggestions(bi.item.id), "preselect": [], "status": ""}

    def _start(self) -> None:
        try:
            self.session.next_batch()
        except PoolExhaustedError as e:
            self._status = f"nothing left to label ({e})"
        self._show_next()

    def _show_next(self) -> None:
        """Show the undone item (if any) or the first unanswered item of the open batch; at the end of a batch
        start retraining in the background and open the next batch at once."""
        s = self.session
        if s.current_batch is not None and not self._status and not s.pending():
            self._finish_batch()
        prefer, self._front = self._front, None
        # pick and mark shown in one step: a model landing now re-selects the rest of the batch, never this item
        nxt, b = s.show_next(prefer)
        redo = nxt is not None and prefer is not None and nxt.item.id == prefer
        if nxt is None:
            self._current_id = None
            self._shown_seq += 1
            self.item = {"item_id": None, "shown_seq": str(self._shown_seq),
                         "status": self._status or "nothing to label", "prediction": [],
                         "suggestions": self.show_suggestions}
            self.prefetch = []
        else:
            ids = [bi.item.id for bi in b.items]
            self._current_id = nxt.item.id
            self.item = self._item_state(nxt, ids.index(nxt.item.id) + 1, len(ids), b.round, redo)
            keep = {bi.item.id for bi in s.pending()}
            for k in [k for k in self._encoded if k not in keep]:
                del self._encoded[k]
        self._push_progress()

    def _finish_batch(self) -> None:
        s = self.session
        if self._retrain_enabled and s.labels():
            self._train_error = ""
            fut = s.retrain_async()
            self._train_future = fut
            fut.add_done_callback(self._on_train_done)
        try:
            s.next_batch()
        except PoolExhaustedError as e:
            self._status = f"all items are answered: {e}"

    def _after_show(self) -> None:
        """Encode the next images ahead of time and let the browser decode them (after the ack is sent)."""
        pending = [bi for bi in self.session.pending() if bi.item.id != self._current_id][:PREFETCH]
        futs = [self._image_future(bi.item) for bi in pending]
        srcs = []
        for f in futs:
            try:
                srcs.append(f.result()["src"])
            except Exception as e:  # an unreadable image shows its error when it becomes current
                self._status = f"could not prepare an upcoming image: {e}"
        self.prefetch = srcs[:1]

    # ------------------------------------------------------------------ messages from the view
    def _on_msg(self, _widget, content, _buffers) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        with self._ui_lock:
            if kind == "poll":
                self._check_reports()
                with self.hold_sync():
                    self._push_progress()
                return
            if kind == "hello":
                with self.hold_sync():
                    self._check_guideline_file()
                    self._push_progress()
                return
            reply = {"view": content.get("view"), "client_seq": content.get("client_seq"), "ok": True,
                     "error": "", "info": ""}
            shown = False
            with self.hold_sync():
                try:
                    if kind == "answer":
                        reply["info"] = self._handle_answer(content)
                        shown = True
                    elif kind == "undo":
                        reply["info"] = self._handle_undo()
                        shown = True
                    elif kind == "ack_guideline":
                        self.session.acknowledge_guideline()
                        self._push_guideline()
                        reply["info"] = f"guideline version {self.session.guideline_version} acknowledged"
                    else:
                        raise AlwbError(f"unknown message type {kind!r}")
                except (AlwbError, ValueError, KeyError) as e:
                    reply.update(ok=False, error=str(e))
                    self._push_progress()
                except Exception as e:  # noqa: BLE001 - never leave the view waiting for an acknowledgement
                    reply.update(ok=False, error=f"not stored ({type(e).__name__}: {e}); the answer was not "
                                                 "recorded, try again")
                    self._push_progress()
                self._check_reports()
                self.ack = reply
            if shown:
                self._after_show()

    def _handle_answer(self, content: dict) -> str:
        item_id = content.get("item_id")
        if self._current_id is None or item_id != self._current_id:
            raise AlwbError(f"answer for item {item_id!r} refused: the widget shows {self._current_id!r} "
                            "(stale message)")
        self._check_guideline_file()
        if content.get("via") == "accept":
            if not self.show_suggestions:
                raise AlwbError("suggestions are turned off for this project (ui.show_suggestions: false): "
                                "pick the class yourself")
            if not self.item.get("prediction"):
                raise AlwbError("no model suggestion for this image yet: pick the class yourself")
        answer = _answer_from_msg(content.get("answer"), content.get("time_spent_s"))
        eid = self.session.submit(item_id, answer)
        self.answers_log.append({"item_id": item_id, "kind": answer.kind, "label": answer.label,
                                 "tags": list(answer.tags), "note": answer.note, "event_id": eid})
        self._show_next()
        return ""

    def _handle_undo(self) -> str:
        try:
            ev = self.session.undo()
        except NothingToUndoError as e:
            raise AlwbError(str(e)) from None
        self._front = ev["sample_id"]
        self.answers_log.append({"item_id": ev["sample_id"], "kind": "undo", "event_id": ev["id"]})
        self._show_next()
        value = ev.get("value")
        what = ev["kind"] if value is None else f"{ev['kind']} {value}"
        return f"undone: {what} for {ev['sample_id']}"

    def _on_annotator(self, change) -> None:
        name = str(change["new"]).strip()
        if not name:
            self.annotator = change["old"]
            return
        with self._ui_lock, self.hold_sync():
            self.session.annotator = name
            self._push_guideline()
            self._push_progress()

    # ------------------------------------------------------------------ training results
    def _on_train_done(self, fut: cf.Future) -> None:
        exc = fut.exception()
        if exc is not None:
            self._train_error = f"retraining failed: {exc}"
            with self._ui_lock, self.hold_sync():
                self._push_progress()

    def _on_report_thread(self, report: RoundReport) -> None:
        # called from the training thread: trait updates go out on the comm (ipykernel's iopub is thread-safe)
        with self._ui_lock, self.hold_sync():
            self._check_reports()
            self._push_progress()  # the session calls listeners after the fit stopped counting as running

    def _check_reports(self) -> None:
        s = self.session
        reports = s.reports
        if len(reports) != self._reports_seen:
            self._reports_seen = len(reports)
            cur = self.item
            b = s.current_batch
            if self._current_id is not None and cur.get("item_id") == self._current_id:
                # a new model arrived while this image is shown: refresh its suggestions in place, and its place
                # in the batch (the unanswered rest of the batch was selected again with the new model; the
                # shown item stays in it)
                new = {**cur, **self._suggestions(self._current_id)}
                ids = [bi.item.id for bi in b.items] if b is not None else []
                if self._current_id in ids:
                    new.update(position=ids.index(self._current_id) + 1, batch_size=len(ids), round=b.round)
                self.item = new
            # start encoding the newly selected upcoming images (no waiting here: this may be the fit's thread)
            for bi in [bi for bi in s.pending() if bi.item.id != self._current_id][:PREFETCH]:
                self._image_future(bi.item)
            self._push_progress()  # the header's model and the summary change together

    # ------------------------------------------------------------------ headless use
    def label_with_oracle(self, rounds: int = 1, noise: float = 0.0, seed: int = 0,
                          wait: bool = True) -> list[RoundReport]:
        """Let a simulated annotator answer ``rounds`` batches from the ground truth, through exactly the
        message path a browser uses (for CI and headless notebook runs). Returns the new round reports."""
        from ..loop.oracle import Oracle

        oracle = Oracle(self.session, noise=noise, seed=seed)
        n0 = len(self.session.reports)
        seq = 0
        for _ in range(int(rounds)):
            round_ = self.session.current_batch.round if self.session.current_batch else None
            while self._current_id is not None:
                b = self.session.current_batch
                if b is None or b.round != round_:
                    break
                bi = next(x for x in b.items if x.item.id == self._current_id)
                a = oracle.answer_for(bi.item)
                seq += 1
                msg = {"type": "answer", "item_id": self._current_id, "view": "oracle", "client_seq": seq,
                       "answer": {"kind": a.kind, "label": a.label, "tags": list(a.tags), "note": a.note}}
                self._on_msg(self, msg, [])
                if not self.ack.get("ok"):
                    raise AlwbError(f"the oracle's answer was refused: {self.ack.get('error')}")
            if wait:
                self.wait()
        return list(self.session.reports[n0:])

    def wait(self, timeout: Optional[float] = None) -> None:
        """Block until background retraining has finished, then refresh the view."""
        self.session.wait(timeout)
        with self._ui_lock, self.hold_sync():
            self._check_reports()
            self._push_progress()

    def close(self) -> None:
        self._encoder.shutdown(wait=False)
        super().close()

    def __repr__(self) -> str:
        return f"Workbench({self.session!r}, showing={self._current_id!r})"
