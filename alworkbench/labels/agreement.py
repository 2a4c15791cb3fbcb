"""Inter-annotator agreement: how far the people labelling a project agree with each other.

Every statistic comes from a maintained library, never from a formula written here:

* Cohen's kappa (two annotators): ``sklearn.metrics.cohen_kappa_score``;
* Fleiss' kappa (any number of raters, every item rated by the same number):
  ``statsmodels.stats.inter_rater.fleiss_kappa`` on the table from ``aggregate_raters``;
* Krippendorff's alpha (any number of raters, missing ratings allowed):
  ``krippendorff.alpha(..., level_of_measurement="nominal")``.

The libraries are imported inside the functions, so importing this module (and the package's core)
needs only numpy. scikit-learn is a core dependency; statsmodels and krippendorff are needed only
when :func:`agreement` is called.

Input is plain data, ``{item_id: {annotator: value}}`` where a value is a class name (single-label)
or a list/tuple of tag names (multi-label); a ``None`` value counts as "not rated". Output is plain,
JSON-serialisable dicts. A statistic that is undefined (no variance, too few items) is ``None``:
never NaN, never an exception.
"""
from __future__ import annotations

import itertools
import math
import warnings
from collections import Counter
from typing import Any, Hashable, Iterable, Mapping, Optional, Sequence

import numpy as np

__all__ = ["agreement", "consensus", "annotator_confusion"]

_SEQ = (list, tuple, set, frozenset)


# ---------------------------------------------------------------------------------------------
# helpers


def _finite(x: Any) -> Optional[float]:
    """A library result as a plain float, or None when it is NaN/inf/missing."""
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _quiet(fn, *args, **kwargs) -> Optional[float]:
    """Call a statistic; warnings (divide by zero, undefined metric) are swallowed and an undefined
    result (NaN, or the library refusing degenerate data with ValueError/ZeroDivisionError) is None."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            try:
                return _finite(fn(*args, **kwargs))
            except (ValueError, ZeroDivisionError, FloatingPointError):
                return None


def _mean(values: Iterable[Optional[float]]) -> Optional[float]:
    vs = [v for v in values if v is not None]
    return float(sum(vs) / len(vs)) if vs else None


def _sort_key(x: Any) -> tuple[str, str]:
    return (type(x).__name__, str(x))


def _norm_value(value: Any, multilabel: bool) -> Any:
    if multilabel:
        if isinstance(value, str):  # a single tag written without a list
            value = (value,)
        if not isinstance(value, _SEQ):
            raise ValueError(f"multi-label ratings must be lists/tuples of tag names, got {value!r}")
        return tuple(sorted(set(value), key=_sort_key))
    if isinstance(value, _SEQ):
        raise ValueError(f"single-label ratings must be one class name, got {value!r} "
                         "(pass multilabel=True for tag sets)")
    return value


def _clean(ratings: Mapping[Hashable, Mapping[Hashable, Any]], multilabel: bool) -> dict:
    """Items with at least two non-None ratings, values normalised (tag sets as sorted tuples)."""
    out: dict = {}
    for item, by_annotator in ratings.items():
        rs = {a: _norm_value(v, multilabel) for a, v in (by_annotator or {}).items() if v is not None}
        if len(rs) >= 2:
            out[item] = rs
    return out


def _categories(classes: Sequence[Any], items: Mapping, multilabel: bool) -> list:
    """The declared classes, then (sorted) any value seen in the ratings but not declared."""
    cats = list(dict.fromkeys(classes))
    known = set(cats)
    seen: set = set()
    for rs in items.values():
        for v in rs.values():
            seen.update(v if multilabel else (v,))
    return cats + sorted(seen - known, key=_sort_key)


def _modal_count(items: Mapping) -> Optional[int]:
    """The most common number of raters per item (ties: the larger number)."""
    counts = Counter(len(rs) for rs in items.values())
    if not counts:
        return None
    return max(counts, key=lambda m: (counts[m], m))


def _binary(v: Any, cat: Any, multilabel: bool) -> int:
    return int(cat in v) if multilabel else int(v == cat)


class _Libs:
    """The three libraries, imported on first use."""

    def __init__(self):
        try:
            from sklearn.metrics import cohen_kappa_score
            from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa
            import krippendorff
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(
                f"agreement statistics need scikit-learn, statsmodels and krippendorff ({e}); "
                "install them with: pip install scikit-learn statsmodels krippendorff") from e
        self.cohen_kappa_score = cohen_kappa_score
        self.fleiss_kappa = fleiss_kappa
        self.aggregate_raters = aggregate_raters
        self.krippendorff = krippendorff


def _cohen(libs: _Libs, ya: Sequence[int], yb: Sequence[int]) -> Optional[float]:
    if len(ya) < 2:
        return None
    return _quiet(libs.cohen_kappa_score, list(ya), list(yb))


def _fleiss(libs: _Libs, rows: Sequence[Sequence[int]], n_cat: int) -> Optional[float]:
    """rows: one row per item, each with the same number (>= 2) of integer codes in [0, n_cat)."""
    if len(rows) < 2:
        return None
    data = np.asarray(rows, dtype=int)
    table, _ = libs.aggregate_raters(data, n_cat=n_cat)
    return _quiet(libs.fleiss_kappa, table, method="fleiss")


def _alpha(libs: _Libs, matrix: np.ndarray) -> Optional[float]:
    """matrix: (annotators, items), float codes with NaN for "not rated"."""
    if matrix.size == 0:
        return None
    return _quiet(libs.krippendorff.alpha, reliability_data=matrix, level_of_measurement="nominal")


# ---------------------------------------------------------------------------------------------
# public API


def agreement(ratings: Mapping[Hashable, Mapping[Hashable, Any]], classes: Sequence[Any],
              multilabel: bool = False) -> dict:
    """Inter-annotator agreement over ``ratings`` (``{item_id: {annotator: value}}``).

    Only items with at least two (non-None) ratings count. Returns::

        {"n_items", "n_annotators", "annotators", "percent_agreement", "cohen_kappa",
         "pairwise_cohen": [{"a", "b", "n", "kappa"}, ...], "fleiss_kappa", "fleiss_n_items",
         "fleiss_raters", "krippendorff_alpha", "per_class": {class: {"n", "krippendorff_alpha",
         "fleiss_kappa"}}, "method"}

    * ``percent_agreement``: share of items on which all raters gave the same value (same tag set).
    * ``cohen_kappa``: only when exactly two annotators rated the counted items (then every counted
      item is rated by both); ``pairwise_cohen`` lists every annotator pair with >= 2 items in common.
    * ``fleiss_kappa``: statsmodels requires every item to have the same number of raters, so it is
      computed on the items rated by the modal number of raters (``fleiss_raters``; ties -> the larger
      number), ``fleiss_n_items`` of them.
    * ``krippendorff_alpha``: nominal, all counted items, missing ratings allowed.
    * ``per_class``: one-vs-rest (rating recoded 1 if it is / contains the class, else 0); ``n`` is the
      number of items on which any rater used the class. Values seen but not in ``classes`` are listed
      after the declared classes.
    * Multi-label: the overall kappas and alpha are the means of the per-tag one-vs-rest values that
      are defined (per pair for ``pairwise_cohen``).

    Undefined statistics are None (never NaN); library warnings are suppressed.
    """
    items = _clean(ratings, multilabel)
    cats = _categories(classes, items, multilabel)
    code = {c: i for i, c in enumerate(cats)}
    annotators = sorted({a for rs in items.values() for a in rs}, key=_sort_key)
    a_index = {a: i for i, a in enumerate(annotators)}
    item_ids = list(items)
    n_items = len(item_ids)

    result: dict = {
        "n_items": n_items,
        "n_annotators": len(annotators),
        "annotators": annotators,
        "percent_agreement": None,
        "cohen_kappa": None,
        "pairwise_cohen": [],
        "fleiss_kappa": None,
        "fleiss_n_items": 0,
        "fleiss_raters": None,
        "krippendorff_alpha": None,
        "per_class": {},
        "method": "",
    }
    if n_items:
        same = sum(len(set(rs.values())) == 1 for rs in items.values())
        result["percent_agreement"] = float(same / n_items)

    libs = _Libs()
    m = _modal_count(items)
    fleiss_items = [i for i in item_ids if len(items[i]) == m] if m else []
    result["fleiss_raters"] = m
    result["fleiss_n_items"] = len(fleiss_items) if len(fleiss_items) >= 2 else 0

    # annotator pairs with at least two items in common (in annotator order), and those items
    pair_items = {}
    for a, b in itertools.combinations(annotators, 2):
        common = [i for i in item_ids if a in items[i] and b in items[i]]
        if len(common) >= 2:
            pair_items[(a, b)] = common

    def binary_of(cat):
        return lambda v: _binary(v, cat, multilabel)

    def stats_for(recode, n_cat):
        """(alpha, fleiss, {pair: kappa}) for one recoding of the values into integer codes."""
        mat = np.full((len(annotators), n_items), np.nan)
        for j, i in enumerate(item_ids):
            for a, v in items[i].items():
                mat[a_index[a], j] = recode(v)
        alpha = _alpha(libs, mat)
        fleiss = _fleiss(libs, [[recode(v) for v in items[i].values()] for i in fleiss_items], n_cat)
        pairs = {(a, b): _cohen(libs, [recode(items[i][a]) for i in common],
                                [recode(items[i][b]) for i in common])
                 for (a, b), common in pair_items.items()}
        return alpha, fleiss, pairs

    per_class_pairs = {}
    for c in cats:
        rec = binary_of(c)
        n_c = sum(any(rec(v) for v in rs.values()) for rs in items.values())
        alpha, fleiss, pairs = stats_for(rec, 2)
        result["per_class"][c] = {"n": int(n_c), "krippendorff_alpha": alpha, "fleiss_kappa": fleiss}
        per_class_pairs[c] = pairs

    if multilabel:
        pc = result["per_class"]
        result["krippendorff_alpha"] = _mean(v["krippendorff_alpha"] for v in pc.values())
        result["fleiss_kappa"] = _mean(v["fleiss_kappa"] for v in pc.values())
        result["pairwise_cohen"] = [
            {"a": a, "b": b, "n": len(common), "kappa": _mean(per_class_pairs[c][(a, b)] for c in cats)}
            for (a, b), common in pair_items.items()]
        how = "mean over tags of the one-vs-rest "
        result["method"] = (
            f"multi-label; cohen_kappa/pairwise_cohen: {how}sklearn.metrics.cohen_kappa_score; "
            f"fleiss_kappa: {how}statsmodels fleiss_kappa on the items rated by exactly {m} raters; "
            f"krippendorff_alpha: {how}krippendorff.alpha (nominal, missing allowed); "
            "per_class: one-vs-rest per tag")
    else:
        alpha, fleiss, pairs = stats_for(lambda v: code[v], len(cats))
        result["krippendorff_alpha"] = alpha
        result["fleiss_kappa"] = fleiss
        result["pairwise_cohen"] = [{"a": a, "b": b, "n": len(pair_items[(a, b)]), "kappa": k}
                                    for (a, b), k in pairs.items()]
        result["method"] = (
            "cohen_kappa/pairwise_cohen: sklearn.metrics.cohen_kappa_score; "
            f"fleiss_kappa: statsmodels fleiss_kappa on the items rated by exactly {m} raters; "
            "krippendorff_alpha: krippendorff.alpha (nominal, missing allowed); "
            "per_class: one-vs-rest per class")
    if len(annotators) == 2 and result["pairwise_cohen"]:
        result["cohen_kappa"] = result["pairwise_cohen"][0]["kappa"]
    return result


def consensus(values: Sequence[Any], multilabel: bool = False) -> tuple[Any, bool]:
    """Majority vote over the raters' values; returns ``(winner, is_tie)``. ``None`` values are ignored.

    Single-label: the most common value; a tie for first place gives ``(None, True)``.
    Multi-label: a tag is kept when more than half of the raters chose it; a tag chosen by exactly
    half of them is a tie, ``(None, True)``; otherwise the kept tags as a sorted tuple.
    No values: ``(None, False)``.
    """
    vals = [_norm_value(v, multilabel) for v in values if v is not None]
    if not vals:
        return None, False
    if multilabel:
        n = len(vals)
        counts = Counter(t for v in vals for t in v)
        if any(2 * k == n for k in counts.values()):
            return None, True
        return tuple(sorted((t for t, k in counts.items() if 2 * k > n), key=_sort_key)), False
    ranked = Counter(vals).most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return None, True
    return ranked[0][0], False


def annotator_confusion(ratings: Mapping[Hashable, Mapping[Hashable, Any]], a: Hashable, b: Hashable,
                        classes: Sequence[Any], multilabel: bool = False) -> dict:
    """Confusion matrix of annotator ``a`` (rows) against annotator ``b`` (columns) on the items both
    rated (single-label only). Returns ``{"labels", "matrix", "n"}``; ``labels`` are ``classes`` then
    any other value either of them used."""
    if multilabel:
        raise ValueError("annotator_confusion is for single-label projects; "
                         "for multi-label, compare tags one at a time with agreement(...)['per_class']")
    ya, yb = [], []
    for by_annotator in ratings.values():
        va, vb = (by_annotator or {}).get(a), (by_annotator or {}).get(b)
        if va is None or vb is None:
            continue
        if isinstance(va, _SEQ) or isinstance(vb, _SEQ):
            raise ValueError("annotator_confusion is for single-label ratings, but a rating is a tag "
                             f"set ({va!r} / {vb!r}); multi-label agreement is per tag (agreement(...))")
        ya.append(va)
        yb.append(vb)
    labels = list(dict.fromkeys(classes))
    labels += sorted(set(ya + yb) - set(labels), key=_sort_key)
    if not ya:
        return {"labels": labels, "matrix": [[0] * len(labels) for _ in labels], "n": 0}
    from sklearn.metrics import confusion_matrix

    code = {c: i for i, c in enumerate(labels)}
    mat = confusion_matrix([code[v] for v in ya], [code[v] for v in yb], labels=list(range(len(labels))))
    return {"labels": labels, "matrix": [[int(x) for x in row] for row in mat], "n": len(ya)}
