"""Taxonomy fields of a project's FiftyOne dataset: one field per level for the label, the ground truth and the
latest model's tree-consistent prediction (:mod:`alworkbench.labels.taxonomy`).

=================  ===========================================================================================
level_<k>          Classification: the final label's node at level k in the taxonomy as it is now; None for items
                   without a final label
gt_level_<k>       Classification: the ground truth's node at level k (when the source knows it)
pred_level_<k>     Classification(label, confidence): the latest model's top-down prediction at level k and that
                   node's probability (its leaves' probabilities summed)
=================  ===========================================================================================

A tag tree (multi-label, every node a tag) gets the same fields as Classifications: the tags at depth k of the final
tag set, of the ground truth (both closed under ancestors), and of the prediction (the tags decided present, p >= 0.5
of the tree-consistent probabilities, each with its probability).

Called by :func:`alworkbench.integrations.fiftyone_sync.sync`; FiftyOne is imported by the caller and passed in.
Writes are bulk ``set_values`` and only for fields whose values changed.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..labels.taxonomy import level_name


def level_fields(depth: int) -> list[str]:
    return [f"{p}{level_name(k)}" for p in ("", "gt_", "pred_") for k in range(1, depth + 1)]


def _raw_docs(fo, labels: list, conf: Optional[list]) -> Optional[list]:
    """The stored form of ``Classification(label[, confidence])`` as plain dicts (no mongoengine object per row:
    most of the cost of writing a 60k-row field), or None when this FiftyOne stores Classifications differently."""
    from bson import ObjectId

    probe = dict(fo.Classification(label="x", confidence=0.5).to_mongo())
    if set(probe) != {"_id", "_cls", "tags", "label", "confidence"} or probe["_cls"] != "Classification":
        return None
    if conf is None:
        return [None if lab is None else {"_id": ObjectId(), "_cls": "Classification", "tags": [], "label": lab}
                for lab in labels]
    return [None if lab is None else {"_id": ObjectId(), "_cls": "Classification", "tags": [], "label": lab,
                                      "confidence": float(c)} for lab, c in zip(labels, conf)]


def _write(fo, ds, name: str, labels: list, conf: Optional[list] = None) -> bool:
    """Set ``name`` to Classifications of ``labels`` (None: no label) unless it already holds exactly these."""
    schema = ds.get_field_schema()
    if name not in schema:
        ds.add_sample_field(name, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    elif conf is None and list(ds.values(f"{name}.label")) == labels:
        return False
    docs = _raw_docs(fo, labels, conf)
    if docs is not None:
        ds.set_values(name, docs, validate=False, progress=False)
        return True
    docs = [None if lab is None else (fo.Classification(label=lab) if conf is None else
                                      fo.Classification(label=lab, confidence=float(c)))
            for lab, c in zip(labels, conf if conf is not None else [None] * len(labels))]
    ds.set_values(name, docs, progress=False)
    return True


def sync_levels(fo, ds, project, states: dict, session=None) -> list[str]:
    """Write the level fields of a taxonomy project (nothing for flat classes); returns the fields written.

    ``states``: :func:`alworkbench.integrations.fiftyone_sync.label_states` (the final labels)."""
    tree = project.config.tree
    if tree is None:
        return []
    if tree.multilabel:
        return _sync_tag_levels(fo, ds, project, tree, states, session)
    ids = list(ds.values("alwb_id"))
    items = {it.id: it for it in project.source.items}

    def levels(sid):
        final = (states.get(sid) or {}).get("label")
        it = items.get(sid)
        gt = it.label if it is not None and it.label in tree.leaves else None
        return (list(tree.levels(final)) if final in tree.leaves else [None] * tree.depth,
                list(tree.levels(gt)) if gt is not None else [None] * tree.depth)

    written = _write_levels(fo, ds, tree, ids, levels, _write)
    pred = _new_predictions(ds, session, ids)
    if pred is not None:
        p, classes, version = pred
        paths = tree.predict_paths(p, classes)
        node_p = tree.node_proba(p, classes)
        for k in range(tree.depth):
            labels = [path[k] for path in paths]
            conf = [node_p[n][r] for r, n in enumerate(labels)]
            _write(fo, ds, "pred_" + level_name(k + 1), labels, conf)
            written.append("pred_" + level_name(k + 1))
        _predictions_written(ds, version)
    return written


def _write_levels(fo, ds, tree, ids: list, levels, write) -> list[str]:
    """The final and ground-truth level fields: ``levels(sid)`` gives one item's (final, truth) per level, ``write``
    sets one field (:func:`_write` or :func:`_write_tags`). Returns the fields that changed."""
    final_cols: list[list] = [[] for _ in range(tree.depth)]
    gt_cols: list[list] = [[] for _ in range(tree.depth)]
    for sid in ids:
        lv, glv = levels(sid)
        for k in range(tree.depth):
            final_cols[k].append(lv[k])
            gt_cols[k].append(glv[k])
    written: list[str] = []
    for k in range(tree.depth):
        if write(fo, ds, level_name(k + 1), final_cols[k]):
            written.append(level_name(k + 1))
        if write(fo, ds, "gt_" + level_name(k + 1), gt_cols[k]):
            written.append("gt_" + level_name(k + 1))
    return written


def _new_predictions(ds, session, ids: list):
    """``(proba in the dataset's row order, classes, model version)`` when the session has a model whose level
    predictions the dataset does not hold yet, else None."""
    got = session.predict_proba_all() if session is not None else None
    if got is None:
        return None
    item_ids, proba, classes = got
    version = int(session.model_version)
    if ds.info.get("level_predictions_version") == version and "pred_" + level_name(1) in ds.get_field_schema():
        return None
    row = {sid: r for r, sid in enumerate(item_ids)}
    order = np.fromiter((row[s] for s in ids), dtype=np.int64, count=len(ids))
    return np.asarray(proba)[order], classes, version


def _predictions_written(ds, version: int) -> None:
    ds.info["level_predictions_version"] = version
    ds.save()


def _write_tags(fo, ds, name: str, tag_lists: list, conf: Optional[list] = None) -> bool:
    """Set ``name`` to Classifications of each row's tags (None: no tag set) unless it already holds exactly these."""
    schema = ds.get_field_schema()
    if name not in schema:
        ds.add_sample_field(name, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classifications)
    elif conf is None and [None if v is None else list(v) for v in ds.values(f"{name}.classifications.label")] == \
            [None if v is None else list(v) for v in tag_lists]:
        return False
    docs = []
    for r, tags in enumerate(tag_lists):
        if tags is None:
            docs.append(None)
        elif conf is None:
            docs.append(fo.Classifications(classifications=[fo.Classification(label=t) for t in tags]))
        else:
            docs.append(fo.Classifications(classifications=[fo.Classification(label=t, confidence=float(c))
                                                            for t, c in zip(tags, conf[r])]))
    ds.set_values(name, docs, progress=False)
    return True


def _sync_tag_levels(fo, ds, project, tree, states: dict, session=None) -> list[str]:
    """A tag tree's level fields (see the module docstring)."""
    ids = list(ds.values("alwb_id"))
    truth = dict(zip((it.id for it in project.source.items), project.source.ground_truth()))

    def levels(sid):
        final = (states.get(sid) or {}).get("label")
        gt = truth.get(sid)
        gt = [gt] if isinstance(gt, str) else gt  # a single-label source used with tags: its class is its one tag
        return (tree.tag_levels(list(final)) if isinstance(final, (list, tuple)) else [None] * tree.depth,
                tree.tag_levels(list(gt)) if gt else [None] * tree.depth)

    written = _write_levels(fo, ds, tree, ids, levels, _write_tags)
    pred = _new_predictions(ds, session, ids)
    if pred is not None:
        p, classes, version = pred
        p = tree.consistent_tag_proba(p, classes)  # the session's already is; idempotent
        col = {t: j for j, t in enumerate(classes)}
        for k in range(tree.depth):
            nodes = [n for n in tree.tag_level_nodes(k + 1) if n in col]
            tags = [[n for n in nodes if p[r, col[n]] >= 0.5] for r in range(len(ids))]
            conf = [[p[r, col[n]] for n in t] for r, t in enumerate(tags)]
            _write_tags(fo, ds, "pred_" + level_name(k + 1), tags, conf)
            written.append("pred_" + level_name(k + 1))
        _predictions_written(ds, version)
    return written
