"""The notebook labelling widget: one anywidget view driving a :class:`~alworkbench.loop.session.Session`.

Every answer travels as ``{item_id, answer, client_seq}``; Python stores it with ``session.submit`` and only then
sends the acknowledgement together with the next image (one comm message). The view ignores keys while a
message is in flight, so an answer can never be recorded twice or for the wrong image.

The same widget runs the quality loop's two screens: the qualification test (a batch of gold items without
suggestions, its result, and a retry after re-reading the guideline) and, with ``mode="review"``, the reviewer's
queue (:class:`~alworkbench.loop.review.ReviewSession`): accept, or correct with a reason. Every decision is the
core's; the widget only shows what the session and the review session computed.
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
from ..keymap import ACTION_KEYS, SINGLE_KEYS, TAG_KEYS, class_keys  # noqa: F401 - the key lists are re-exported
from ..labels.quality import QUALIFICATION_STRATEGY
from ..loop.session import QualificationError
from ..loop.stats import budget_progress, item_details, pace, stats_text
from ..types import Answer, RoundReport
from ._frontend import CSS, ESM
from .history import HistoryMixin, thumbnail
from .render import (answer_text, guideline_html, qualification_result_text, report_html, review_reason_text,
                     value_text)

MAX_SIDE = 768          # images are downsized to at most this many pixels per side before sending
FULL_SIDE = 4096        # 1:1 and zoom beyond the display copy: the image at up to this many pixels per side
PIXELATED_BELOW = 64    # images smaller than this are upscaled with crisp, blocky pixels
SMALL_DISPLAY = 256     # small images are shown at an integer zoom up to about this many pixels
PREFETCH = 2            # upcoming images encoded ahead of time
# keys the reviewer's screen keeps for itself (a accept, n skip, r: none of them a class key there)
REVIEW_ACTION_KEYS = frozenset("anr")
MODES = ("label", "review")


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


def original_size(uri: str, loaded_size) -> tuple[int, int]:
    """The size of the file as stored (upright: EXIF rotations swap the sides), read from its header only; the
    loaded size for built-in datasets or when the header cannot be read."""
    if str(uri).startswith("builtin://"):
        return tuple(loaded_size)
    from PIL import Image

    try:
        with Image.open(uri) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112)
    except Exception:  # noqa: BLE001 - the details line then shows the loaded size
        return tuple(loaded_size)
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def encode_image(img, max_side: int = MAX_SIDE, orig_size=None) -> dict:
    """PIL image -> ``{src: data URL, w, h, orig_w, orig_h, display_w, display_h, pixelated, thumb}``; never more
    than ``max_side`` pixels per side (PNG for small images and transparent ones, JPEG for large photographs).
    ``orig_size``: the file's own size when ``img`` was already decoded smaller."""
    from PIL import Image

    alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if alpha:
        img = img.convert("RGBA")     # transparency is kept: the stage shows a checkerboard behind it
    elif img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    w, h = img.size
    orig = tuple(orig_size) if orig_size else (w, h)
    if max(w, h) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)   # a display copy; the original is untouched
        w, h = img.size
    buf = io.BytesIO()
    if alpha:
        img.save(buf, format="PNG", compress_level=1)
        mime = "image/png"
    elif max(w, h) <= 256:
        img.save(buf, format="PNG", optimize=False)
        mime = "image/png"
    else:
        img.save(buf, format="JPEG", quality=88)
        mime = "image/jpeg"
    out = {"src": f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii"),
           "w": w, "h": h, "orig_w": orig[0], "orig_h": orig[1], "pixelated": max(w, h) < PIXELATED_BELOW,
           "display_w": None, "display_h": None, "thumb": thumbnail(img)}
    if max(w, h) < SMALL_DISPLAY:
        zoom = max(1, SMALL_DISPLAY // max(w, h))
        out["display_w"], out["display_h"] = w * zoom, h * zoom
    return out


def encode_full(img, max_side: int = FULL_SIDE) -> dict:
    """The image at full resolution (at most ``max_side`` per side) for 1:1 and zoom: ``{src, w, h}``."""
    out = encode_image(img, max_side=max_side)
    return {"src": out["src"], "w": out["w"], "h": out["h"]}


def _jsonable(v):
    """Tag tuples (the core's normal form) as lists, for the synced state."""
    if isinstance(v, (list, tuple)):
        return [str(x) for x in v]
    return v


def _answer_from_msg(a: Any, time_spent_s: Any) -> Answer:
    if not isinstance(a, dict):
        raise AlwbError(f"malformed answer message: expected an object, got {type(a).__name__}")
    kind = a.get("kind")
    spent = None
    if isinstance(time_spent_s, (int, float)) and time_spent_s >= 0:
        spent = round(float(time_spent_s), 3)
    if kind == "label":
        path = a.get("path")  # the taxonomy tree sends the leaf's path; the schema checks it against the tree
        path = tuple(str(p) for p in path) if isinstance(path, list) else ()
        return Answer.of_label(str(a.get("label")), time_spent_s=spent, path=path)
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


def taxonomy_state(schema) -> dict:
    """The ``taxonomy`` trait: the project's class tree for the tree labeller (roots, children, paths, leaves, depth
    and the level keys 1-9/0), or {} for flat classes."""
    tree = getattr(schema, "taxonomy", None)
    if tree is None:
        return {}
    return {**tree.to_json(), "keys": SINGLE_KEYS}


class _OpenDescriptor:
    """``Workbench.open(DIR, ...)`` opens a project (a class-level call); on an instance, ``open()`` stays the
    ipywidgets method that opens the widget's comm (ipywidgets calls it from ``__init__``)."""

    def __get__(self, obj, objtype=None):
        if obj is None:
            return objtype.open_project
        return ipywidgets.Widget.open.__get__(obj, objtype)


class Workbench(HistoryMixin, anywidget.AnyWidget):
    """Label a project's images in JupyterLab, one batch after another, with the model retraining behind you.

    >>> from alworkbench.ui import Workbench
    >>> Workbench.open("projects/quickstart", annotator="ann")        # doctest: +SKIP

    Keys (while the widget has focus; click it once): 1-9/0 pick a class (or toggle a tag, then Enter),
    ``/`` filters long class lists, ``a`` accepts the model's suggestion, ``s`` skips, ``f`` flags for review
    with an optional note, ``z`` / Backspace undoes the last answer (repeatable), ``y`` redoes, ``h`` opens the
    answer history (arrows + Enter change an earlier answer), ``+`` / ``-`` / wheel zoom, ``=`` 1:1, ``i`` hides the
    details, ``?`` lists every key. Class keys come from ``ui.keys`` in alwb.yaml (:mod:`alworkbench.keymap`).
    No key pressed in the widget reaches JupyterLab's shortcuts.

    The header shows the open batch's round and place ("round 4 · item 3 of 20"), the labels in the store and the
    current model ("model v3 · trained on 60 labels · cross-validated accuracy 71%"); the round summary names the
    same model line. ``ui: {show_suggestions: false}`` in alwb.yaml hides every prediction and disables ``a``.

    Qualification (``quality.qualification_items`` > 0): until the annotator passed, the batches are the test
    ("Qualification test: item 2 of 5", no suggestions); its result follows the last answer. After a failed test
    the guideline is shown with "I have read the guideline — retry" (Enter or ``r``), which acknowledges the
    guideline and starts a new test. A warning line shows ``session.quality_notice()`` after each answer.

    ``mode="review"``: the reviewer's queue, one entry at a time (image, who answered what and their notes, why it
    is queued, the consensus, the model's suggestion). Enter or ``a`` accepts; a class key (a tag key toggles)
    starts a correction whose reason box takes focus, Enter there saves it, Escape cancels; ``n`` / Right arrow
    skips to the next entry without deciding.
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
    annotators = traitlets.List().tag(sync=True)         # the project's known annotators
    action_keys = traitlets.Dict().tag(sync=True)        # key -> what it does (the ? overlay lists them)
    history = traitlets.Dict().tag(sync=True)            # the answer history panel (ui/history.py)
    full_res = traitlets.Dict().tag(sync=True)           # the shown image at full resolution (1:1, zoom)
    ui_mode = traitlets.Unicode("label").tag(sync=True)   # "label" (the labeller) or "review" (the reviewer)
    quality = traitlets.Dict().tag(sync=True)              # qualification result / block, accuracy notice
    review = traitlets.Dict().tag(sync=True)               # reviewer mode: the entry shown and the queue length
    taxonomy = traitlets.Dict().tag(sync=True)             # a project's class tree (empty: flat classes)

    def __init__(self, session, *, retrain: bool = True, mode: str = "label", **kwargs):
        if mode not in MODES:
            raise AlwbError(f"unknown Workbench mode {mode!r}; expected 'label' or 'review'")
        self.session = session
        self.project = session.project
        self._retrain_enabled = bool(retrain) and mode == "label"
        self._ui_lock = threading.RLock()
        self._encoder = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="alwb-encode")
        self._pusher = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="alwb-prefetch")
        self._closing = False
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
        self._qual: Optional[dict] = None     # the qualification result / block / error on screen
        self._notice: Optional[str] = None    # session.quality_notice() after the latest answer
        self._review_session = None
        self._review_entry: Optional[dict] = None
        self._review_ids: list[str] = []      # the queue as last computed (for the prefetch)
        self._review_skipped: list[str] = []  # entries passed over with n / Right arrow, in order
        self._review_seq = 0
        self._history_init()
        self.reviews_log: list[dict] = []     # reviewer mode: what this widget stored (item_id, action, record id)
        schema = session.schema
        multi = bool(schema.multilabel)
        names = list(schema.names)
        keys = class_keys(names, getattr(getattr(session.config, "ui", None), "keys", None) or {}, multilabel=multi)
        choices = [{"name": n, "key": k} for n, k in zip(names, keys)]
        if mode == "review":  # the reviewer's action keys are never class keys (those tags are picked by click)
            choices = [{**c, "key": "" if c["key"] in REVIEW_ACTION_KEYS else c["key"]} for c in choices]
        super().__init__(mode="multi" if multi else "single", choices=choices, annotator=session.annotator,
                         ui_mode=mode, action_keys=dict(ACTION_KEYS), **kwargs)
        self.add_class("alwb-labeller" if mode == "label" else "alwb-reviewer")
        self.taxonomy = taxonomy_state(schema)
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
            self._push_annotators()
            if mode == "review":
                self._review_session = session.review()
                self._review_show()
                self._push_progress()
            else:
                self._start()
                self._update_notice()
                self._after_show()   # the images ahead are prepared from the start, not after the first answer

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def open_project(cls, directory, annotator: Optional[str] = None, *, images: Optional[str] = None,
             retrain: bool = True, mode: str = "label", **init_kwargs) -> "Workbench":
        """Open the project in ``directory`` (creating it from ``images`` when it has no alwb.yaml yet) and
        return a widget at the first unanswered image of the open batch (``mode="review"``: at the first entry
        of the review queue, reviewed by ``annotator``)."""
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
        return cls(project.session(annotator=annotator), retrain=retrain, mode=mode)

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
        # a first-time annotator (nothing acknowledged yet) reads the guideline before the first answer
        first_time = prev is None and bool((s.guideline_text or "").strip())
        self.guideline = {"version": s.guideline_version, "html": guideline_html(s.guideline_text),
                          "acknowledged": bool(s.guideline_acknowledged()) and not first_time,
                          "first_time": first_time, "previous": None if prev is None else str(prev)}

    def _push_annotators(self) -> None:
        """The project's known annotators (the view asks before adding a new one: a typo is not a new person)."""
        known = set(self.session.store.annotators())
        known.add(self.session.annotator)
        self.annotators = sorted(known)

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
        # the out-of-fold accuracy on the labels chosen at random: the cross-validated figure over every label is
        # biased low once uncertainty sampling has added the hard items, this one is not (the session says from when)
        skill = info.get("random_accuracy")
        n_skill = int(info.get("n_skill") or 0)
        return {"version": v, "n_labels": int(info.get("n_labels") or 0),
                "cv_accuracy": None if cv is None else float(cv),
                "cv_metric": "micro-F1" if s.multilabel else "accuracy",
                "random_accuracy": None if skill is None else float(skill),
                "n_random": n_skill if skill is not None else 0,
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
        n_labels = len(s.labels())
        self.progress = {
            "labelled": n_labels, "pool_size": n_items - n_eval,
            "coverage": {str(k): int(v) for k, v in s.coverage().items()},
            "model_version": model["version"] if model else int(s.model_version), "model": model,
            "training": bool(s.is_training), "show_suggestions": self.show_suggestions,
            "round": b.round if b is not None else 0, "status": self._status or self._train_error,
            "stats": self._stats(n_labels),
        }
        self._push_report()

    def _stats(self, n_labels: int) -> dict:
        """The annotator's pace and the progress toward ``label_budget``, as the core computes them."""
        s = self.session
        try:
            p = pace(s.store.answer_times(s.annotator))
        except AlwbError:
            p = pace([])
        budget = budget_progress(n_labels, getattr(s.config, "label_budget", None), p["mean_s"])
        return {**p, "budget": budget, "text": stats_text(p, budget)}

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

    def _load_for_display(self, item, max_side: int = MAX_SIDE):
        """(image, original size): the item decoded for the screen at about ``max_side`` pixels (JPEGs are decoded
        at reduced scale: several times faster for camera photos), transparency kept. The file is never changed."""
        img = self.project.source.load(item, max_side=max_side, keep_alpha=True)
        return img, original_size(item.uri, img.size)

    def _encode_item(self, item) -> dict:
        img, orig = self._load_for_display(item)
        return encode_image(img, orig_size=orig)

    def _image_future(self, item) -> cf.Future:
        fut = self._encoded.get(item.id)
        if fut is None:
            fut = self._encoder.submit(self._encode_item, item)
            self._encoded[item.id] = fut
        return fut

    def _in_qualification(self) -> bool:
        """Is the open batch a qualification test (gold items, no suggestions)?"""
        b = self.session.current_batch
        return b is not None and b.strategy == QUALIFICATION_STRATEGY

    def _suggestions(self, item_id: str) -> dict:
        """The item's top predictions and the model that made them (nothing when suggestions are off, and none in a
        qualification test: it measures the person)."""
        if not self.show_suggestions:
            return {"prediction": [], "model_version": None, "model": None, "suggestions": False}
        if self._in_qualification():
            return {"prediction": [], "model_version": None, "model": None, "suggestions": True}
        model = self._model_state()
        pred = self.session.predict(item_id)
        if pred is not None and (model is None or model["version"] != pred.model_version):
            model = self._model_state()  # a model landed in between: describe the one that predicted
        return {"prediction": [] if pred is None else [[str(c), float(p)] for c, p in pred.top],
                "model_version": None if pred is None else pred.model_version,
                "model": model if pred is not None else None, "suggestions": True}

    def _tree_hint(self, item_id: str) -> Optional[dict]:
        """Taxonomy projects: the session's tree-consistent prediction (path, node probabilities) for the tree
        labeller to mark; None when there is none to show (no model, suggestions off, a qualification test)."""
        if not self.taxonomy or self._in_qualification():
            return None
        return self.session.predict_tree(item_id)

    def _item_state(self, bi, position: int, batch_size: int, round_: int, redo: bool) -> dict:
        img = self._image_future(bi.item).result()
        self._shown_seq += 1
        b = self.session.current_batch
        details = item_details(bi.item, (img.get("orig_w") or img["w"], img.get("orig_h") or img["h"]),
                               strategy=b.strategy if b is not None else "", score=bi.score,
                               model_version=b.model_version if b is not None else 0)
        return {"item_id": bi.item.id, "shown_seq": str(self._shown_seq), **img, "details": details,
                "position": position, "batch_size": batch_size, "round": round_, "redo": redo,
                **self._suggestions(bi.item.id), "tree_hint": self._tree_hint(bi.item.id), "preselect": [], "status": "",
                "qualification": self._in_qualification()}

    def _start(self) -> None:
        self._open_next_batch(start=True)
        self._show_next()

    def _open_next_batch(self, start: bool = False) -> None:
        """``session.next_batch()``, with what it says shown in the widget: the end of the pool, a finished
        qualification test (its result; after a failure the guideline and the retry), or why there is no test."""
        s = self.session
        was_test = self._in_qualification()
        try:
            s.next_batch()
        except PoolExhaustedError as e:
            self._status = f"nothing left to label ({e})" if start else f"all items are answered: {e}"
            return
        except QualificationError as e:
            self._qualification_stopped(e)
            return
        if was_test and not self._in_qualification():
            # the last answer completed the test and next_batch scored it: passed, ordinary batches follow
            self._qual = {"result": s.qualification_status(), "blocked": False, "error": ""}
            self._push_quality()

    def _qualification_stopped(self, exc: QualificationError) -> None:
        st = self.session.qualification_status()
        failed = st["passed"] is False and not st["may_retry"]
        self._qual = {"result": st if failed else None, "blocked": failed, "error": "" if failed else str(exc)}
        self._status = ("qualification test failed: read the guideline, then retry" if failed
                        else "no qualification test can start (see below)")
        self._push_quality()

    def _push_quality(self) -> None:
        q = self._qual or {}
        st = q.get("result")
        blocked = bool(q.get("blocked"))
        result = None
        if st is not None:
            result = {k: st.get(k) for k in ("passed", "score", "correct", "n", "pass_mark", "attempts")}
            result["text"] = qualification_result_text(st)
        self.quality = {"result": result, "blocked": blocked, "error": str(q.get("error") or ""),
                        "guideline_html": guideline_html(self.session.guideline_text) if blocked else "",
                        "guideline_version": self.session.guideline_version, "notice": self._notice or ""}

    def _update_notice(self) -> None:
        """The session's accuracy notice (None unless the rolling known-answer accuracy is below the pass mark).
        Not shown during a qualification test: it would tell right from wrong answer by answer."""
        notice = None if (self.ui_mode != "label" or self._in_qualification()) else self.session.quality_notice()
        if notice != self._notice or not self.quality:
            self._notice = notice
            self._push_quality()

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
        self._push_history()

    def _finish_batch(self) -> None:
        s = self.session
        if self._retrain_enabled and not self._in_qualification() and s.labels():
            self._train_error = ""
            fut = s.retrain_async()
            self._train_future = fut
            fut.add_done_callback(self._on_train_done)
        self._open_next_batch()

    def _after_show(self) -> None:
        """Encode the next images ahead of time and let the browser decode them (after the ack is sent)."""
        if self.ui_mode == "review":
            self._review_after_show()
            return
        pending = [bi for bi in self.session.pending() if bi.item.id != self._current_id][:PREFETCH]
        futs = [(bi.item.id, self._image_future(bi.item)) for bi in pending]
        if not futs:
            self.prefetch = []
            return
        # never wait here: this runs on the kernel's message thread, and a key pressed meanwhile would wait for the
        # encoding of an image two answers ahead. The browser gets the next image when it is ready.
        item_id, fut = futs[0]
        if fut.done():
            self._set_prefetch(item_id, fut)
        else:
            fut.add_done_callback(lambda f, i=item_id: self._schedule_prefetch(i, f))

    def _schedule_prefetch(self, item_id: str, fut: cf.Future) -> None:
        if self._closing:
            return
        try:
            self._pusher.submit(self._prefetch_ready, item_id, fut)
        except RuntimeError:   # the widget closed meanwhile
            pass

    def _set_prefetch(self, item_id: str, fut: cf.Future) -> None:
        try:
            self.prefetch = [fut.result()["src"]]
        except Exception as e:  # noqa: BLE001 - an unreadable image shows its error when it becomes current
            self._status = f"could not prepare an upcoming image: {e}"

    def _prefetch_ready(self, item_id: str, fut: cf.Future) -> None:
        """An upcoming image finished encoding after the answer was acknowledged: hand it to the browser to decode,
        if it is still the next one. Runs on its own thread (the encoder's callback must not wait for the UI lock:
        the message thread may hold it while it waits for the encoder)."""
        with self._ui_lock:
            if self._closing or self.ui_mode != "label":
                return
            nxt = [bi.item.id for bi in self.session.pending() if bi.item.id != self._current_id][:1]
            if nxt == [item_id]:
                self._set_prefetch(item_id, fut)

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
                    elif kind == "full_res":
                        reply["info"] = self._handle_full_res(content)
                    elif kind in ("history", "history_open", "history_close", "redo"):
                        reply["info"] = self._handle_history(kind, content)
                        shown = kind != "history"
                    elif kind == "ack_guideline":
                        self.session.acknowledge_guideline()
                        self._push_guideline()
                        reply["info"] = f"guideline version {self.session.guideline_version} acknowledged"
                    elif kind == "qualification_retry":
                        reply["info"] = self._handle_qualification_retry()
                        shown = True
                    elif kind in ("review_accept", "review_correct", "review_skip"):
                        reply["info"] = self._handle_review(kind, content)
                        shown = True
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
                if self.ui_mode == "label":
                    with self.hold_sync():   # after the next image went out: the notice never delays it
                        self._update_notice()

    def _handle_answer(self, content: dict) -> str:
        item_id = content.get("item_id")
        if self._current_id is None or item_id != self._current_id:
            raise AlwbError(f"answer for item {item_id!r} refused: the widget shows {self._current_id!r} "
                            "(stale message)")
        if self.ui_mode != "label":
            raise AlwbError("this is the reviewer's screen: accept or correct, answers are given in the labeller")
        self._check_guideline_file()
        if content.get("via") == "accept":
            if not self.show_suggestions:
                raise AlwbError("suggestions are turned off for this project (ui.show_suggestions: false): "
                                "pick the class yourself")
            if not self.item.get("prediction"):
                raise AlwbError("no model suggestion for this image yet: pick the class yourself")
        answer = _answer_from_msg(content.get("answer"), content.get("time_spent_s"))
        if self._changing is not None:
            return self._handle_change(answer)
        eid = self.session.submit(item_id, answer)
        self._redo.clear()
        recorded = answer_text({"kind": answer.kind, "note": answer.note,
                                "value": list(answer.tags) if answer.kind == "tags" else answer.label})
        if self.guideline.get("first_time"):
            self._push_guideline()   # a first answer given without the view (the session recorded the guideline read)
        self.answers_log.append({"item_id": item_id, "kind": answer.kind, "label": answer.label,
                                 "tags": list(answer.tags), "note": answer.note, "event_id": eid})
        if self._qual is not None and not self._qual.get("blocked"):
            self._qual = None  # a passed test's result stays up until the first ordinary answer
            self._push_quality()
        self._show_next()
        return f"recorded: {recorded} \u2014 z to undo"

    def _handle_full_res(self, content: dict) -> str:
        """The shown image at full resolution for 1:1 / zoom (encoded on demand; the display copy stays small)."""
        item_id = content.get("item_id")
        if self.ui_mode == "review":
            cur = self._review_entry
            if item_id is None or cur is None or item_id != cur["item_id"]:
                return ""   # another entry is shown by now
            item, seq = self._review_session.item(item_id), (self.review or {}).get("shown_seq")
        else:
            if item_id is None or item_id != self._current_id:
                return ""   # another image is shown by now
            item, seq = self.session.items[self.session.index_of(item_id)], self.item.get("shown_seq")
        full = self._encoder.submit(lambda: encode_full(self._load_for_display(item, FULL_SIDE)[0])).result()
        self.full_res = {"item_id": item_id, "shown_seq": seq, **full}
        return ""

    def _handle_qualification_retry(self) -> str:
        """After a failed test: acknowledge the guideline (read again) and start a new test. After an error (no
        test could start, e.g. the gold items wait in other batches): try again."""
        q = self._qual or {}
        if not q.get("blocked") and not q.get("error"):
            raise AlwbError("there is no qualification test to retry")
        s = self.session
        if q.get("blocked"):
            s.acknowledge_guideline()
            self._push_guideline()
        self._qual, self._status, self._front = None, "", None
        self._push_quality()
        self._open_next_batch(start=True)
        self._show_next()
        if self._qual is not None:
            return ""
        if self._in_qualification():
            return (f"guideline version {s.guideline_version} acknowledged: a new qualification test starts"
                    if q.get("blocked") else "the qualification test starts")
        return ""

    def _handle_undo(self) -> str:
        if self.ui_mode != "label":
            raise AlwbError("nothing to undo on the reviewer's screen: a review is corrected by another review")
        q = self._qual or {}
        if q.get("blocked") or q.get("result") is not None:
            raise AlwbError("the qualification test was scored: its answers cannot be undone"
                            + ("; read the guideline and retry" if q.get("blocked") else ""))
        if self._changing is not None:
            raise AlwbError("you are changing an earlier answer: pick the new answer, or Esc to go back")
        try:
            ev = self.session.undo()
        except NothingToUndoError as e:
            raise AlwbError(str(e)) from None
        self._redo.append(ev)   # y gives it again
        self._front = ev["sample_id"]
        self.answers_log.append({"item_id": ev["sample_id"], "kind": "undo", "event_id": ev["id"]})
        self._show_next()
        if ev["kind"] == "flag" and ev.get("note") and self.item.get("item_id") == ev["sample_id"]:
            self.item = {**self.item, "earlier_note": ev["note"]}   # the note comes back with the image
        # never the item id: for a folder-tree source it names the class folder (it would give the answer away)
        return f"undone: {answer_text(ev)} \u2014 answer this image again (y redoes)"

    def _on_annotator(self, change) -> None:
        name = str(change["new"]).strip()
        if not name:
            self.annotator = change["old"]
            return
        with self._ui_lock, self.hold_sync():
            self.session.annotator = name
            self._push_guideline()
            self._push_annotators()
            if self.ui_mode == "review":
                self._review_session = self.session.review()
                self._review_skipped = []
                self._review_show()
            else:
                self._update_notice()
            self._push_progress()

    # ------------------------------------------------------------------ reviewer mode
    def _entry_state(self, entry: dict) -> dict:
        """One queue entry as the view shows it (plain JSON: tag tuples as lists, texts rendered here)."""
        rs = self._review_session
        img = self._image_future(rs.item(entry["item_id"])).result()
        sugg = []
        if self.show_suggestions:
            sugg = [[str(c), float(p)] for c, p in (entry.get("suggestion") or [])]
        answers = [{"annotator": a["annotator"], "kind": a["kind"], "value": _jsonable(a["value"]),
                    "note": a.get("note") or "", "text": answer_text(a)} for a in entry["answers"]]
        cons = entry.get("consensus")
        return {"item_id": entry["item_id"], **img, "reasons": list(entry["reasons"]),
                "reasons_text": [review_reason_text(r) for r in entry["reasons"]], "answers": answers,
                "consensus": _jsonable(cons), "consensus_text": "" if cons is None else value_text(cons),
                "tie": bool(entry.get("tie")), "suggestion": sugg, "suggestions": self.show_suggestions}

    def _review_show(self) -> bool:
        """Recompute the queue from the store and show its first entry that was not skipped (after every entry
        was skipped once, the first again: returns True then)."""
        rs = self._review_session
        q = rs.queue()
        self._review_ids = [e["item_id"] for e in q]
        entry = next((e for e in q if e["item_id"] not in self._review_skipped), None)
        wrapped = entry is None and bool(q)
        if wrapped:
            self._review_skipped = []
            entry = q[0]
        self._review_seq += 1
        state = {"reviewer": rs.reviewer, "shown_seq": str(self._review_seq), "queue_length": len(q),
                 "multilabel": bool(self.session.multilabel)}
        if entry is None:
            self._review_entry = None
            self.review = {**state, "entry": None, "position": 0,
                           "empty": "The review queue is empty: nothing to review (n looks again)."}
        else:
            self._review_entry = entry
            self.review = {**state, "entry": self._entry_state(entry),
                           "position": self._review_ids.index(entry["item_id"]) + 1, "empty": ""}
        return wrapped

    def _review_after_show(self) -> None:
        """Encode the entry that comes after the shown one and let the browser decode it."""
        cur = self._review_entry
        if cur is None:
            self.prefetch = []
            return
        rest = [i for i in self._review_ids if i != cur["item_id"] and i not in self._review_skipped]
        keep = {cur["item_id"], *rest[:1]}
        for k in [k for k in self._encoded if k not in keep]:
            del self._encoded[k]
        if not rest:
            self.prefetch = []
            return
        try:
            self.prefetch = [self._image_future(self._review_session.item(rest[0])).result()["src"]]
        except Exception as e:  # noqa: BLE001 - an unreadable image shows its error when it becomes current
            self._status = f"could not prepare an upcoming image: {e}"

    def _handle_review(self, kind: str, content: dict) -> str:
        if self.ui_mode != "review":
            raise AlwbError("review actions need the reviewer's screen: Workbench(session, mode='review')")
        rs = self._review_session
        cur = self._review_entry
        item_id = content.get("item_id")
        if (cur is None and item_id is not None) or (cur is not None and item_id != cur["item_id"]):
            raise AlwbError(f"review of item {item_id!r} refused: the widget shows "
                            f"{None if cur is None else cur['item_id']!r} (stale message)")
        if kind == "review_skip":
            if cur is None:
                self._review_show()
                return "" if self._review_entry is None else "new entries arrived in the review queue"
            self._review_skipped.append(item_id)
            wrapped = self._review_show()
            return ("every entry was skipped once: back to the first" if wrapped
                    else f"skipped {item_id} (still in the queue)")
        if kind == "review_accept":
            rid = rs.accept(item_id, reason=str(content.get("reason") or ""))
            self.reviews_log.append({"item_id": item_id, "action": "accept", "record_id": rid})
            info = f"accepted {item_id}"
        else:
            a = content.get("answer")
            if not isinstance(a, dict):
                raise AlwbError("malformed correction message: expected an answer object")
            if self.session.multilabel:
                value = [str(t) for t in (a.get("tags") or [])]
                if not value:
                    raise AlwbError("choose at least one tag for the correction")
            else:
                value = str(a.get("label") or "")
                if not value:
                    raise AlwbError("choose the class for the correction first")
            rid = rs.correct(item_id, value, str(content.get("reason") or ""))
            self.reviews_log.append({"item_id": item_id, "action": "correct", "value": value,
                                     "reason": str(content.get("reason")), "record_id": rid})
            info = f"corrected {item_id} to {value_text(value)}"
        self._review_skipped = [x for x in self._review_skipped if x != item_id]
        self._review_show()
        return info

    def _refresh_review_suggestion(self) -> None:
        cur = self._review_entry
        if cur is None or not self.show_suggestions:
            return
        try:
            pred = self.session.predict(cur["item_id"])
        except AlwbError:
            return
        if pred is None:
            return
        shown = dict(self.review)
        entry = dict(shown.get("entry") or {})
        if entry.get("item_id") != cur["item_id"]:
            return
        entry["suggestion"] = [[str(c), float(p)] for c, p in pred.top]
        self.review = {**shown, "entry": entry}

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
                new = {**cur, **self._suggestions(self._current_id), "tree_hint": self._tree_hint(self._current_id)}
                ids = [bi.item.id for bi in b.items] if b is not None else []
                if self._current_id in ids:
                    new.update(position=ids.index(self._current_id) + 1, batch_size=len(ids), round=b.round)
                self.item = new
            # start encoding the newly selected upcoming images (no waiting here: this may be the fit's thread)
            for bi in [bi for bi in s.pending() if bi.item.id != self._current_id][:PREFETCH]:
                self._image_future(bi.item)
            if self.ui_mode == "review":
                self._refresh_review_suggestion()
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
        self._closing = True
        for name in ("_encoder", "_pusher"):
            ex = getattr(self, name, None)   # absent when __init__ refused its arguments
            if ex is not None:
                ex.shutdown(wait=False)
        super().close()

    def __repr__(self) -> str:
        if self.ui_mode == "review":
            cur = self._review_entry
            return (f"Workbench({self.session!r}, mode='review', showing="
                    f"{None if cur is None else cur['item_id']!r})")
        return f"Workbench({self.session!r}, showing={self._current_id!r})"
