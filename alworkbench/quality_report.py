"""The quality report in a notebook (and its text form for ``alwb quality``): per annotator, agreement, review.

Compute first, display second: :meth:`alworkbench.labels.quality.QualityView.report` computes the report dict;
:func:`format_quality_report` renders it as a text table; :func:`quality_report` does both in a notebook and draws
accuracy over time per annotator and the confusion between two annotators (:mod:`alworkbench.plots`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

REASON_WORDS = {"flag": "flagged", "disagreement": "annotators disagree", "chosen": "chosen by the reviewer"}


def reason_text(reason: str) -> str:
    """``sample:ana`` -> ``sampled from ana's answers``; ``flag`` -> ``flagged``."""
    if reason.startswith("sample:"):
        return f"sampled from {reason.split(':', 1)[1]}'s answers"
    return REASON_WORDS.get(reason, reason)


def jsonable(obj: Any) -> Any:
    """``obj`` with tuples as lists, NumPy scalars as Python numbers and NaN / infinity as None (valid JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def quality_view(project_or_session):
    """A fresh :class:`QualityView` of a Session, a Project or a project folder."""
    from .labels.quality import QualityView

    obj = project_or_session
    if hasattr(obj, "quality") and callable(obj.quality):  # a Session
        return obj.quality()
    if isinstance(obj, (str, Path)):
        from .project import Project

        obj = Project.open(obj)
    return QualityView(obj.store, obj.config)


# ---------------------------------------------------------------------------------------------- text
def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.0%}"


def _num(x: Optional[float], digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _with_ci(acc: Optional[float], ci: Sequence[Optional[float]], n: int) -> str:
    if acc is None or not n:
        return "-"
    lo, hi = (list(ci) + [None, None])[:2]
    interval = f" [{lo:.0%}-{hi:.0%}]" if lo is not None and hi is not None else ""
    return f"{acc:.0%}{interval} n={n}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1, indent: str = "  ") -> list[str]:
    """Text columns: the first ``left`` columns left-aligned, the others right-aligned."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]

    def line(cells):
        return indent + "  ".join(str(c).ljust(w) if i < left else str(c).rjust(w)
                                  for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(headers)] + [line(r) for r in rows]


def format_quality_report(report: dict, *, max_items: int = 10) -> str:
    """The report of :meth:`QualityView.report` as text: annotators, agreement, review states, the open queue."""
    out: list[str] = []
    settings = report.get("settings") or {}
    anns = report.get("annotators") or []
    out.append(f"annotators: {len(anns)} (accuracy on known answers with 95% Wilson intervals; "
               f"pass mark {_pct(settings.get('pass_mark'))})")
    if anns:
        rows = []
        for a in anns:
            qualified = {True: "yes", False: "no", None: "-"}[a.get("qualified")]
            if a.get("counted") is False:
                qualified += " (not counted)"
            rows.append([a["annotator"], str(a.get("answers", 0)),
                         _with_ci(a.get("gold_accuracy"), a.get("gold_ci") or (), a.get("gold_answers") or 0),
                         _with_ci(a.get("accuracy"), a.get("accuracy_ci") or (), a.get("known_answers") or 0),
                         _pct(a.get("rolling_accuracy")),
                         f"{a.get('tier') or '-'} ({_pct(a.get('review_sample'))} reviewed)",
                         "-" if a.get("review_acceptance") is None else
                         f"{a['review_acceptance']:.0%} of {a.get('reviewed', 0)}",
                         _num(a.get("median_seconds"), 1), _num(a.get("images_per_minute"), 1), qualified])
        out += _table(["annotator", "answers", "gold accuracy", "known-answer accuracy", "rolling", "tier",
                       "review acceptance", "median s/image", "images/min", "qualified"], rows)
    ag = report.get("agreement") or {}
    n_items = ag.get("n_items") or 0
    out.append("")
    if not n_items:
        out.append("agreement: no item was answered by two or more annotators yet "
                   f"(overlap share {_pct((report.get('overlap') or {}).get('share'))})")
    else:
        who = ", ".join(map(str, ag.get("annotators") or []))
        out.append(f"agreement on {n_items} item(s) answered by 2+ annotators ({who}): "
                   f"{_pct(ag.get('percent_agreement'))} identical")
        pairs = ag.get("pairwise_cohen") or []
        rows = [["overall", str(n_items), _num(ag.get("cohen_kappa")), _num(ag.get("fleiss_kappa")),
                 _num(ag.get("krippendorff_alpha"))]]
        for name, pc in (ag.get("per_class") or {}).items():
            rows.append([str(name), str(pc.get("n", 0)), "", _num(pc.get("fleiss_kappa")),
                         _num(pc.get("krippendorff_alpha"))])
        out += _table(["class", "items", "Cohen", "Fleiss", "Krippendorff"], rows)
        if pairs:
            out.append("  Cohen's kappa per pair: " + ", ".join(
                f"{p['a']}-{p['b']} {_num(p.get('kappa'))} ({p.get('n')} items)" for p in pairs))
        if ag.get("fleiss_n_items"):
            out.append(f"  Fleiss' kappa on the {ag['fleiss_n_items']} item(s) rated by exactly "
                       f"{ag.get('fleiss_raters')} annotators; per class: one-vs-rest")
    states = report.get("review_states") or {}
    out.append("")
    out.append("review states: " + ", ".join(f"{states.get(s, 0)} {s}"
                                             for s in ("unreviewed", "accepted", "corrected")))
    q = report.get("review_queue") or {}
    out.append(f"review queue: {q.get('n', 0)} open ({q.get('flag', 0)} flagged, {q.get('disagreement', 0)} "
               f"disagreements, {q.get('sample', 0)} sampled)")
    for it in (q.get("items") or [])[:max_items]:
        out.append(f"  {it['item_id']}: {'; '.join(reason_text(r) for r in it.get('reasons') or [])}")
    if q.get("n", 0) > max_items:
        out.append(f"  ... and {q['n'] - max_items} more (alwb review DIR)")
    g = report.get("gold") or {}
    sources = f" (sources: {', '.join(g['sources'])})" if g.get("sources") else ""
    out.append(f"gold: {g.get('n', 0)} item(s){sources}")
    if settings:
        out.append(f"settings: review sample {_pct(settings.get('review_sample'))}, hidden gold "
                   f"{_pct(settings.get('gold_rate'))}, qualification test {settings.get('qualification_items', 0)} "
                   f"item(s)")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- notebook
def _busiest_pair(report: dict) -> Optional[tuple[str, str]]:
    pairs = (report.get("agreement") or {}).get("pairwise_cohen") or []
    if not pairs:
        return None
    best = max(pairs, key=lambda p: p.get("n") or 0)
    return best["a"], best["b"]


def quality_report(project_or_session, plot: bool = True, *, pair: Optional[tuple[str, str]] = None,
                   out: Optional[str | Path] = None, show: bool = True) -> dict:
    """The quality report of a project (a Session, a Project or a project folder) as a JSON-able dict (the same
    as ``alwb quality DIR --json``).

    With ``plot=True`` it also draws accuracy over time per annotator (cumulative and rolling known-answer
    accuracy vs number of comparisons, with the pass mark) and, for single-label projects, the confusion between
    two annotators (``pair``, default: the pair with the most items in common). In IPython the text table and the
    figures are displayed (``show``); ``out`` (a folder) also saves them as ``accuracy.png`` and
    ``confusion.png``."""
    view = quality_view(project_or_session)
    report = jsonable(view.report())
    ipython = None
    if show:
        try:
            from IPython import get_ipython
            from IPython.display import display

            ipython = display if get_ipython() is not None else None
        except ImportError:
            ipython = None
    if ipython is not None:
        print(format_quality_report(report))
    if not plot:
        return report
    from .plots import plot_annotator_accuracy, plot_annotator_confusion

    figs = {"accuracy": plot_annotator_accuracy(view).figure}
    pair = pair or _busiest_pair(report)
    if pair is not None and not view.multilabel:
        figs["confusion"] = plot_annotator_confusion(view, *pair).figure
    if out is not None:
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        for name, fig in figs.items():
            fig.savefig(d / f"{name}.png", dpi=100)
    if ipython is not None:
        for fig in figs.values():
            ipython(fig)
    return report
