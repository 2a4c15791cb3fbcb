"""Confidence routing: auto-accept the model's label where its calibrated confidence has earned it.

Per class ``c``, a threshold ``t_c`` is chosen on the **out-of-fold, temperature-calibrated predictions of the human
labels** (each labelled item predicted by a head that did not see it; the session's own calibration folds when the
current model has them, else the same stable folds are fitted here). The rule is conservative, two conditions that
must both hold:

1. **Out-of-fold point precision with support.** Sort the out-of-fold items *predicted* ``c`` by confidence, most
   confident first; a cut after the k-th item (threshold = its confidence, ties kept together) is eligible once
   ``k >= routing.min_support``; walking down from the first eligible cut, every eligible cut must keep the point
   precision of "predicted c with confidence >= t" at or above ``routing.target_precision``; the deepest cut reached
   before the first one that falls below is the out-of-fold threshold.
2. **Expected precision on the pool.** Among the pool items predicted ``c`` above that threshold, most confident
   first, only as many are taken as keep the mean calibrated confidence (their expected precision under the
   calibration) at or above the target; ``t_c`` rises to the last one taken.

With ~100 labels per class, condition 1 alone is optimistic (an error rate of a few percent often leaves no error
among them: measured on Fashion-MNIST, bench/bench_routing.py); condition 2 guards it with the calibration, which is
fitted on all the out-of-fold predictions at once. A class whose first eligible cut already misses the target (or
with fewer than ``min_support`` predictions, or no pool item left by condition 2) gets no threshold and is never
auto-accepted. The Wilson interval (statsmodels) of the out-of-fold precision at the out-of-fold cut is reported
beside it (not used to choose).

:func:`auto_label` writes one ``auto_label`` record per accepted pool item (``{item_id, label, model_version,
threshold, confidence, target_precision, sampled}``): their own kind, never answer events. They are not training
labels unless ``routing.train_on_auto``; auto-labelled items leave the human queue; ``sampled`` items (a stable
``routing.review_sample`` share) wait in the review queue with reason ``auto``, and the reviewer's accept/correct is
the realised precision :func:`routing_report` shows with its Wilson interval.

**Multi-label projects** (one sigmoid per tag): each tag gets two thresholds by the same two conditions, one per
decision: *present* (out-of-fold items with p >= 0.5, most confident first; right when the person gave the tag)
and *absent* (p < 0.5, confidence 1 - p; right when the person did not). An item is auto-accepted only when every
tag's decision is confident (p >= its present threshold or p <= its absent threshold); its record's ``label`` is
the list of present tags (in the project's tag order), ``confidence`` and ``threshold`` those of its decision
closest to its threshold (as confidences: p for present, 1 - p for absent), ``tag_confidence`` every tag's
calibrated probability.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..errors import AlwbError, NotFittedError

AUTO_LABEL = "auto_label"
AUTO_REASON = "auto"


@dataclass
class Thresholds:
    """Per-class thresholds (None: never auto-accepted) and the out-of-fold evidence behind each."""

    classes: list
    thresholds: dict
    stats: dict = field(default_factory=dict)  # class -> {n_predicted, support, oof_precision, ci_low, ci_high}
    target_precision: float = 0.98
    min_support: int = 30
    n_oof: int = 0
    temperature: float = 1.0
    model_version: Optional[int] = None

    def to_dict(self) -> dict:
        return {"classes": list(self.classes), "thresholds": dict(self.thresholds), "stats": dict(self.stats),
                "target_precision": self.target_precision, "min_support": self.min_support, "n_oof": self.n_oof,
                "temperature": self.temperature, "model_version": self.model_version}


def choose_thresholds(proba: np.ndarray, y: np.ndarray, classes, target_precision: float = 0.98,
                      min_support: int = 30, pool_proba: Optional[np.ndarray] = None) -> Thresholds:
    """Thresholds from calibrated out-of-fold probabilities ``proba`` (n, k) and true class codes ``y`` (n,), by
    the rule in the module docstring (condition 2 only when ``pool_proba``, the pool's calibrated probabilities, is
    given)."""
    from ..labels.quality import wilson

    proba = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    pred = proba.argmax(axis=1) if len(proba) else np.zeros(0, np.int64)
    conf = proba.max(axis=1) if len(proba) else np.zeros(0)
    correct = pred == y
    out, stats = {}, {}
    for j, c in enumerate(classes):
        m = np.flatnonzero(pred == j)
        order = m[np.argsort(-conf[m], kind="stable")]
        cf, ok = conf[order], correct[order]
        k = np.arange(1, len(order) + 1)
        prec = np.cumsum(ok) / np.maximum(k, 1)
        cut_ok = np.r_[cf[1:] < cf[:-1], True] if len(cf) else np.zeros(0, bool)  # ties stay together
        best = None
        for pos in np.flatnonzero(cut_ok & (k >= int(min_support))):
            if prec[pos] < target_precision:
                break
            best = int(pos)
        st = {"n_predicted": int(len(order)), "support": 0, "oof_precision": None, "ci_low": None, "ci_high": None}
        if best is not None:
            n, kc = best + 1, int(ok[:best + 1].sum())
            lo, hi = wilson(kc, n)
            st.update(support=n, oof_precision=kc / n, ci_low=lo, ci_high=hi)
        t = None if best is None else float(cf[best])
        st["oof_threshold"] = t
        if t is not None and pool_proba is not None:
            t, st["pool_expected_precision"], st["pool_n"] = _pool_cut(pool_proba, j, t, target_precision)
        out[c] = t
        stats[c] = st
    return Thresholds(classes=list(classes), thresholds=out, stats=stats, target_precision=float(target_precision),
                      min_support=int(min_support), n_oof=int(len(y)))


def _pool_cut(pool_proba: np.ndarray, j: int, t: float, target: float) -> tuple:
    """(threshold, mean confidence, count): the deepest cut among pool items predicted ``j`` with confidence >= ``t``
    whose mean confidence stays >= ``target``; (None, None, 0) when even the most confident misses it."""
    p = np.asarray(pool_proba, dtype=np.float64)
    if not len(p):
        return t, None, 0
    return _conf_cut(p.max(axis=1)[p.argmax(axis=1) == j], t, target)


def _walk_cut(cf: np.ndarray, ok: np.ndarray, target: float, min_support: int) -> Optional[int]:
    """Condition 1 on one sorted (most confident first) list: the index of the deepest eligible cut (ties kept
    together, ``k >= min_support``) before the first eligible cut whose point precision falls below ``target``."""
    k = np.arange(1, len(cf) + 1)
    prec = np.cumsum(ok) / np.maximum(k, 1)
    cut_ok = np.r_[cf[1:] < cf[:-1], True] if len(cf) else np.zeros(0, bool)
    best = None
    for pos in np.flatnonzero(cut_ok & (k >= int(min_support))):
        if prec[pos] < target:
            break
        best = int(pos)
    return best


def _conf_cut(conf: np.ndarray, t: float, target: float) -> tuple:
    """Condition 2 on one list of pool confidences (of one decision): (threshold, mean confidence, count) of the
    deepest cut at or above ``t`` whose mean stays >= ``target``; (t, None, 0) with nothing above ``t``; (None,
    None, 0) when even the most confident misses the target."""
    cf = np.sort(conf[conf >= t])[::-1]
    if not len(cf):
        return t, None, 0
    mean = np.cumsum(cf) / np.arange(1, len(cf) + 1)
    cut_ok = np.r_[cf[1:] < cf[:-1], True]
    good = np.flatnonzero((mean >= target) & cut_ok)
    if not len(good):
        return None, None, 0
    k = int(good[-1])
    return max(float(cf[k]), t), float(mean[k]), k + 1


def choose_tag_thresholds(proba: np.ndarray, Y: np.ndarray, tags, target_precision: float = 0.98,
                          min_support: int = 30, pool_proba: Optional[np.ndarray] = None) -> Thresholds:
    """Multi-label: per tag a *present* and an *absent* threshold, each a confidence (p, resp. 1 - p) chosen by
    the two conditions of the module docstring from calibrated out-of-fold tag probabilities ``proba`` (n, T) and
    the human tag matrix ``Y`` (n, T). ``thresholds[tag] = {"present": c or None, "absent": c or None}``."""
    from ..labels.quality import wilson

    proba = np.asarray(proba, dtype=np.float64).reshape(-1, len(tags))
    Y = np.asarray(Y).astype(bool).reshape(-1, len(tags))
    pool = None if pool_proba is None else np.asarray(pool_proba, dtype=np.float64).reshape(-1, len(tags))
    out, stats = {}, {}
    for j, tag in enumerate(tags):
        out[tag], stats[tag] = {}, {}
        for side in ("present", "absent"):
            p = proba[:, j]
            m = np.flatnonzero(p >= 0.5) if side == "present" else np.flatnonzero(p < 0.5)
            conf = p[m] if side == "present" else 1.0 - p[m]
            right = Y[m, j] if side == "present" else ~Y[m, j]
            order = np.argsort(-conf, kind="stable")
            cf, ok = conf[order], right[order]
            best = _walk_cut(cf, ok, float(target_precision), int(min_support))
            st = {"n_predicted": int(len(m)), "support": 0, "oof_precision": None, "ci_low": None, "ci_high": None}
            if best is not None:
                n, kc = best + 1, int(ok[:best + 1].sum())
                lo, hi = wilson(kc, n)
                st.update(support=n, oof_precision=kc / n, ci_low=lo, ci_high=hi)
            t = None if best is None else float(cf[best])
            st["oof_threshold"] = t
            if t is not None and pool is not None and len(pool):
                q = pool[:, j]
                pc = q[q >= 0.5] if side == "present" else 1.0 - q[q < 0.5]
                t, st["pool_expected_precision"], st["pool_n"] = _conf_cut(pc, t, float(target_precision))
            out[tag][side] = t
            stats[tag][side] = st
    return Thresholds(classes=list(tags), thresholds=out, stats=stats, target_precision=float(target_precision),
                      min_support=int(min_support), n_oof=int(len(Y)))


def tag_decisions(proba: np.ndarray, th: Thresholds) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(accepted mask (n,), present (n, T) bool, confidence (n,) and threshold (n,) of each item's decision closest
    to its threshold) of calibrated tag probabilities ``proba`` under the per-tag thresholds ``th``."""
    p = np.asarray(proba, dtype=np.float64).reshape(-1, len(th.classes))
    present = p >= 0.5
    conf = np.where(present, p, 1.0 - p)
    thr = np.full(p.shape, np.inf)
    for j, tag in enumerate(th.classes):
        for side, col in (("present", present[:, j]), ("absent", ~present[:, j])):
            t = th.thresholds[tag].get(side)
            if t is not None:
                thr[col, j] = t
    sure = conf >= thr
    ok = sure.all(axis=1) if p.shape[1] else np.zeros(len(p), bool)
    if not p.shape[1]:
        return ok, present, np.zeros(len(p)), np.zeros(len(p))
    worst = np.argmin(conf - np.where(np.isfinite(thr), thr, 0.0), axis=1)  # the decision closest to its threshold
    rows = np.arange(len(p))
    return ok, present, conf[rows, worst], thr[rows, worst]


def _current_model(session):
    """The session's model covering every current answer (waits for background fits; refits when stale)."""
    session.wait()
    model = session._model
    if model is None or model.snapshot < session._snapshot():
        if not session.labels(auto=False):
            raise NotFittedError("no human labels yet: label some items and retrain before routing")
        session.retrain()
        model = session._model
    if model is None:
        raise NotFittedError("no model: retrain before routing")
    return model


def _oof(session, model) -> tuple[np.ndarray, np.ndarray, float]:
    """(calibrated out-of-fold probabilities of the human labels, their class codes, temperature T' to apply to the
    model's shown probabilities so they are on the same calibration)."""
    from .calibration import EPS, apply_temperature, calibrate, stable_folds

    human = session.labels(auto=False)
    classes = list(session.classes)
    if session.multilabel:
        return _oof_tags(session, model, human, classes)
    cal = model.calibration
    idx = getattr(model, "train_idx", None)
    if cal.oof_proba is not None and idx is not None and len(idx) == len(cal.oof_proba):
        ids = [session.items[int(i)].id for i in idx]
        keep = np.array([s in human and human[s] in classes for s in ids], dtype=bool)
        oof, T, t_shift = cal.oof_proba[keep], float(cal.temperature), 1.0
        y = np.array([classes.index(human[s]) for s, k in zip(ids, keep) if k], dtype=np.int64)
    else:  # a restored model or calibration switched off: the same stable folds, fitted now
        ids = [s for s in human if s in session._index and session.ok_mask[session._index[s]] and human[s] in classes]
        idx = np.array([session._index[s] for s in ids], dtype=np.int64)
        y = np.array([classes.index(human[s]) for s in ids], dtype=np.int64)
        c = calibrate(session._head_factory, session.X[idx], y, False, len(classes), seed=int(session.seed),
                      warm_from=model.head, folds=stable_folds(ids))
        if c.oof_proba is None:
            raise NotFittedError(f"too few human labels ({len(ids)}) for out-of-fold predictions: label more")
        oof, T = c.oof_proba, float(c.temperature)
        t_shift = T / float(model.calibration.temperature or 1.0)
    oof = oof / np.clip(oof.sum(axis=1, keepdims=True), EPS, None)
    return apply_temperature(oof, T), y, t_shift


def _oof_tags(session, model, human: dict, tags: list) -> tuple[np.ndarray, np.ndarray, float]:
    """Multi-label :func:`_oof`: (calibrated out-of-fold tag probabilities of the human labels, their tag matrix,
    temperature shift for the model's shown probabilities)."""
    from .calibration import apply_temperature, calibrate, stable_folds

    def matrix(ids):
        Y = np.zeros((len(ids), len(tags)), dtype=np.int64)
        for r, sid in enumerate(ids):
            for t in human[sid]:
                if t in tags:
                    Y[r, tags.index(t)] = 1
        return Y

    cal = model.calibration
    idx = getattr(model, "train_idx", None)
    if cal.oof_proba is not None and idx is not None and len(idx) == len(cal.oof_proba):
        ids = [session.items[int(i)].id for i in idx]
        keep = np.array([sid in human for sid in ids], dtype=bool)
        oof, T, t_shift = cal.oof_proba[keep], float(cal.temperature), 1.0
        Y = matrix([sid for sid, k in zip(ids, keep) if k])
    else:  # a restored model or calibration switched off: the same stable folds, fitted now
        ids = [sid for sid in human if sid in session._index and session.ok_mask[session._index[sid]]]
        idx = np.array([session._index[sid] for sid in ids], dtype=np.int64)
        Y = matrix(ids)
        c = calibrate(session._head_factory, session.X[idx], Y, True, len(tags), seed=int(session.seed),
                      warm_from=model.head, folds=stable_folds(ids))
        if c.oof_proba is None:
            raise NotFittedError(f"too few human labels ({len(ids)}) for out-of-fold predictions: label more")
        oof, T = c.oof_proba, float(c.temperature)
        t_shift = T / float(model.calibration.temperature or 1.0)
    return apply_temperature(oof, T, True), Y, t_shift


def auto_ids(store) -> dict[str, dict]:
    """item id -> its (latest) auto_label record."""
    return {r["item_id"]: r for r in store.records(AUTO_LABEL)}


def auto_label(session, *, dry_run: bool = False, item_ids=None) -> dict:
    """Auto-accept unlabelled pool items whose calibrated top prediction reaches its class threshold: one
    ``auto_label`` record each (none with ``dry_run``). ``item_ids`` restricts the pool to those items (incremental
    ingest routes only the new images; condition 2 is then measured on them). Returns {thresholds, n_pool, n_auto,
    n_sampled, per_class, item_ids, pool_ids, dry_run}."""
    from ..labels.quality import stable_unit
    from .calibration import apply_temperature

    model = _current_model(session)
    r = session.config.routing
    oof, y, t_shift = _oof(session, model)
    reserved = session.store.reserved_ids()  # items waiting in anyone's open batch stay with the person
    only = None if item_ids is None else set(item_ids)
    pool = np.array([i for i in session.pool_indices() if session.items[int(i)].id not in reserved
                     and (only is None or session.items[int(i)].id in only)], dtype=np.int64)
    proba = model.proba[pool] if len(pool) else np.zeros((0, len(session.classes)), np.float32)
    if t_shift != 1.0 and len(pool):
        proba = apply_temperature(proba, t_shift, session.multilabel)
    if session.multilabel:
        return _auto_tags(session, model, r, oof, y, pool, proba, dry_run)
    th = choose_thresholds(oof, y, session.classes, float(r.target_precision), int(r.min_support), pool_proba=proba)
    th.model_version, th.temperature = int(model.version), float(model.calibration.temperature)
    pred = proba.argmax(axis=1) if len(pool) else np.zeros(0, np.int64)
    conf = proba.max(axis=1) if len(pool) else np.zeros(0)
    cls = list(model.classes)
    out_ids, per_class, n_sampled = [], {c: 0 for c in cls}, 0
    rows = []
    for i, j, p in zip(pool, pred, conf):
        c = cls[int(j)]
        t = th.thresholds.get(c)
        if t is None or p < t:
            continue
        sid = session.items[int(i)].id
        sampled = bool(stable_unit(AUTO_LABEL, sid) < float(r.review_sample))
        rows.append({"item_id": sid, "label": c, "model_version": int(model.version), "threshold": float(t),
                     "confidence": float(p), "target_precision": float(r.target_precision), "sampled": sampled})
        out_ids.append(sid)
        per_class[c] += 1
        n_sampled += sampled
    if not dry_run and rows:
        _append_all(session.store, rows)
    return {"thresholds": th.to_dict(), "n_pool": int(len(pool)), "n_auto": len(rows), "n_sampled": n_sampled,
            "per_class": per_class, "item_ids": out_ids, "pool_ids": [session.items[int(i)].id for i in pool],
            "dry_run": bool(dry_run),
            "model_version": int(model.version)}


def _auto_tags(session, model, r, oof, Y, pool, proba, dry_run: bool) -> dict:
    """The multi-label part of :func:`auto_label` (every tag decision confident, see the module docstring)."""
    from ..labels.quality import stable_unit

    tags = list(session.classes)
    tree = getattr(session, "tree", None)
    if tree is not None and oof is not None and len(oof):
        # a tag tree: thresholds are chosen on the same tree-consistent probabilities the model decides with
        oof = tree.consistent_tag_proba(oof, tags)
    th = choose_tag_thresholds(oof, Y, tags, float(r.target_precision), int(r.min_support), pool_proba=proba)
    th.model_version, th.temperature = int(model.version), float(model.calibration.temperature)
    ok, present, conf, thr = tag_decisions(proba, th) if len(pool) else (np.zeros(0, bool),) * 4
    rows, out_ids, per_tag, n_sampled = [], [], {t: 0 for t in tags}, 0
    for k in np.flatnonzero(ok):
        sid = session.items[int(pool[k])].id
        label = [t for j, t in enumerate(tags) if present[k, j]]
        sampled = bool(stable_unit(AUTO_LABEL, sid) < float(r.review_sample))
        rows.append({"item_id": sid, "label": label, "model_version": int(model.version),
                     "threshold": float(thr[k]), "confidence": float(conf[k]),
                     "target_precision": float(r.target_precision), "sampled": sampled,
                     "tag_confidence": {t: float(proba[k, j]) for j, t in enumerate(tags)}})
        out_ids.append(sid)
        for t in label:
            per_tag[t] += 1
        n_sampled += sampled
    if not dry_run and rows:
        _append_all(session.store, rows)
    return {"thresholds": th.to_dict(), "n_pool": int(len(pool)), "n_auto": len(rows), "n_sampled": n_sampled,
            "per_class": per_tag, "item_ids": out_ids, "pool_ids": [session.items[int(i)].id for i in pool],
            "dry_run": bool(dry_run), "model_version": int(model.version), "multilabel": True}


def _append_all(store, rows: list) -> None:
    """Append every record in one write transaction (all or nothing; one commit for tens of thousands of items)."""
    if not all(hasattr(store, a) for a in ("_conn", "_write", "_insert_record")):
        for rec in rows:  # pragma: no cover - another store
            store.append_record(AUTO_LABEL, rec)
        return
    for rec in rows:
        store._encode_record(AUTO_LABEL, rec)  # validate all before taking the write lock
    conn = store._conn()
    with store._write(conn):
        for rec in rows:
            store._insert_record(conn, AUTO_LABEL, rec)


def routing_report(store, config=None) -> dict:
    """Auto labels so far and the realised precision of the reviewed ones (a reviewer's accept is correct, a
    correction to another class is wrong), with Wilson intervals, per class and overall."""
    from ..labels.quality import REVIEW, _norm, _record_value, wilson

    autos = auto_ids(store)
    reviews: dict[str, dict] = {}
    for rv in store.records(REVIEW):
        if rv["item_id"] in autos and AUTO_REASON in (rv.get("reasons") or ()):
            reviews[rv["item_id"]] = rv
    per: dict[str, dict] = {}
    tot = {"auto": 0, "sampled": 0, "reviewed": 0, "correct": 0}
    for sid, a in autos.items():
        key = ",".join(a["label"]) if isinstance(a["label"], list) else a["label"]  # a tag set: its tags joined
        d = per.setdefault(key, {"auto": 0, "sampled": 0, "reviewed": 0, "correct": 0})
        rv = reviews.get(sid)
        for x in (d, tot):
            x["auto"] += 1
            x["sampled"] += bool(a.get("sampled"))
            if rv is not None:
                x["reviewed"] += 1
                x["correct"] += _record_value(rv) == _norm(a["label"])

    def fin(x):
        lo, hi = wilson(x["correct"], x["reviewed"])
        return {**x, "precision": (x["correct"] / x["reviewed"]) if x["reviewed"] else None, "ci_low": lo,
                "ci_high": hi}

    target = None if config is None else float(config.routing.target_precision)
    return {"per_class": {c: fin(x) for c, x in sorted(per.items())}, "overall": fin(tot),
            "target_precision": target}


def format_report(res: dict, rep: Optional[dict] = None) -> str:
    """Lines for ``alwb route``: thresholds per class, what was (or would be) auto-accepted, realised precision."""
    th = res["thresholds"]
    verb = "would auto-accept" if res["dry_run"] else "auto-accepted"
    if res.get("multilabel"):
        return _format_tags(res, rep, verb)
    lines = [f"model v{res['model_version']}, target precision {th['target_precision']:.3f} (out-of-fold on "
             f"{th['n_oof']} human labels, min support {th['min_support']}): {verb} {res['n_auto']} of "
             f"{res['n_pool']} pool item(s); {res['n_sampled']} sampled for review"]
    for c in th["classes"]:
        t, st = th["thresholds"].get(c), th["stats"].get(c, {})
        if t is None:
            why = "the pool's calibrated confidences" if st.get("oof_threshold") is not None else \
                f"{st.get('n_predicted', 0)} out-of-fold prediction(s)"
            lines.append(f"  {c}: no threshold (never auto-accepted; {why} miss the target)")
        else:
            exp = st.get("pool_expected_precision")
            lines.append(f"  {c}: threshold {t:.3f} (out-of-fold precision {st['oof_precision']:.3f} "
                         f"[{st['ci_low']:.3f}, {st['ci_high']:.3f}] on {st['support']}"
                         + (f"; expected on the pool {exp:.3f}" if exp is not None else "") + ") -> "
                         f"{res['per_class'].get(c, 0)}")
    return "\n".join(lines + _realised_lines(rep))


def _format_tags(res: dict, rep: Optional[dict], verb: str) -> str:
    th = res["thresholds"]
    lines = [f"model v{res['model_version']}, target precision {th['target_precision']:.3f} per tag decision "
             f"(out-of-fold on {th['n_oof']} human labels, min support {th['min_support']}): {verb} "
             f"{res['n_auto']} of {res['n_pool']} pool item(s) (every tag decided confidently); "
             f"{res['n_sampled']} sampled for review"]
    for tag in th["classes"]:
        parts = []
        for side in ("present", "absent"):
            t, st = th["thresholds"][tag].get(side), th["stats"][tag][side]
            parts.append(f"{side}: none ({st['n_predicted']} predicted)" if t is None else
                         f"{side} >= {t:.3f} (oof precision {st['oof_precision']:.3f} on {st['support']})")
        lines.append(f"  {tag}: " + "; ".join(parts) + f" -> tagged on {res['per_class'].get(tag, 0)}")
    return "\n".join(lines + _realised_lines(rep))


def _realised_lines(rep: Optional[dict]) -> list:
    lines: list = []
    if rep is not None:
        o = rep["overall"]
        if o["reviewed"]:
            lines.append(f"realised precision of reviewed auto labels: {o['precision']:.3f} [{o['ci_low']:.3f}, "
                         f"{o['ci_high']:.3f}] ({o['correct']} of {o['reviewed']}; {o['auto']} auto label(s) in all)")
        else:
            lines.append(f"realised precision: none of {o['auto']} auto label(s) reviewed yet")
    return lines
