"""HTML/SVG snippets for the widget: the guideline (markdown) and the round summary (labels per class and the
held-out accuracy curve). Pure functions of plain data; no widget imports."""
from __future__ import annotations

import html
import re
from typing import Optional, Sequence

from ..types import RoundReport


def _inline(text: str) -> str:
    t = html.escape(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", t)
    t = re.sub(r"(?<![*\w])\*([^*]+)\*(?!\w)", r"<em>\1</em>", t)
    return t


def guideline_html(markdown: str) -> str:
    """A small, safe markdown subset (headings, bullet and numbered lists, bold, italic, code, paragraphs);
    raw HTML in the guideline is shown as text, never executed."""
    if not markdown or not markdown.strip():
        return ""
    out: list[str] = []
    para: list[str] = []
    list_tag: Optional[str] = None

    def flush_para():
        if para:
            out.append("<p>" + _inline(" ".join(para)) + "</p>")
            para.clear()

    def close_list():
        nonlocal list_tag
        if list_tag:
            out.append(f"</{list_tag}>")
            list_tag = None

    for raw in markdown.splitlines():
        line = raw.rstrip()
        m_head = re.match(r"^(#{1,6})\s+(.*)$", line)
        m_ul = re.match(r"^\s*[-*+]\s+(.*)$", line)
        m_ol = re.match(r"^\s*\d+[.)]\s+(.*)$", line)
        if not line.strip():
            flush_para()
            close_list()
        elif m_head:
            flush_para()
            close_list()
            level = min(6, len(m_head.group(1)) + 2)  # keep headings small inside the widget
            out.append(f"<h{level}>{_inline(m_head.group(2))}</h{level}>")
        elif m_ul or m_ol:
            flush_para()
            tag = "ul" if m_ul else "ol"
            if list_tag != tag:
                close_list()
                out.append(f"<{tag}>")
                list_tag = tag
            out.append("<li>" + _inline((m_ul or m_ol).group(1)) + "</li>")
        else:
            close_list()
            para.append(line.strip())
    flush_para()
    close_list()
    return "\n".join(out)


def accuracy_svg(reports: Sequence[RoundReport], width: int = 320, height: int = 150) -> str:
    """An inline SVG line chart of the held-out metric against the number of labels (empty without GT)."""
    pts = [(r.n_labels, r.accuracy) for r in reports if r.accuracy is not None]
    if not pts:
        return ""
    metric = reports[-1].metric.replace("_", "-")
    pad_l, pad_b, pad_t, pad_r = 36, 24, 10, 10
    xs = [p[0] for p in pts]
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1

    def X(v):
        return pad_l + (v - x0) / (x1 - x0) * (width - pad_l - pad_r)

    def Y(v):
        return pad_t + (1.0 - v) * (height - pad_t - pad_b)

    poly = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in pts)
    dots = "".join(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="2.5" style="fill:var(--jp-brand-color1,#1976d2)"><title>{x} labels: '
                   f'{y:.3f}</title></circle>' for x, y in pts)
    grid = "".join(f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{Y(g):.1f}" y2="{Y(g):.1f}" style="stroke:var(--jp-border-color2,#ddd)"/>'
                   f'<text x="{pad_l - 4}" y="{Y(g) + 3:.1f}" font-size="9" text-anchor="end" style="fill:var(--jp-ui-font-color2,#666)">'
                   f'{g:g}</text>' for g in (0.0, 0.25, 0.5, 0.75, 1.0))
    axis = (f'<text x="{(pad_l + width - pad_r) / 2:.0f}" y="{height - 4}" font-size="10" text-anchor="middle" '
            f'style="fill:var(--jp-ui-font-color1,#444)">labels ({x0 if x0 >= 0 else 0}\u2013{x1})</text>')
    return (f'<svg class="alwb-curve" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="held-out {metric} by number of labels">'
            f'{grid}<polyline fill="none" style="stroke:var(--jp-brand-color1,#1976d2)" stroke-width="2" points="{poly}"/>{dots}{axis}'
            f'<text x="{pad_l + 4}" y="{pad_t + 10}" font-size="10" style="fill:var(--jp-ui-font-color1,#444)">held-out {metric}</text></svg>')


def percent(x: Optional[float]) -> str:
    return f"{100 * x:.0f}%"


def model_line(version: int, n_labels: int, cv_accuracy: Optional[float], multilabel: bool = False) -> str:
    """``model v3 · trained on 38 labels · cross-validated accuracy 71%``: the same words in the header and the
    round summary, so a person can match them."""
    out = f"model v{int(version)} \u00b7 trained on {int(n_labels)} labels"
    metric = "micro-F1" if multilabel else "accuracy"
    if cv_accuracy is None:
        return out + " \u00b7 not cross-validated yet"
    return out + f" \u00b7 cross-validated {metric} {percent(cv_accuracy)}"


def report_html(reports: Sequence[RoundReport], names: Sequence[str] = (), *, model_version: Optional[int] = None,
                open_round: Optional[int] = None, n_store_labels: Optional[int] = None) -> str:
    """The round summary of the current model (``model_version``; else the latest report): the round whose
    answers trained it, the model line (version, labels it was trained on, cross-validated accuracy), held-out
    metric, labels per class (as a small table) and the learning curve; with ``open_round`` /
    ``n_store_labels``, a line saying which round is open now and how many labels the store holds."""
    if not reports:
        return ""
    r = reports[-1]
    if model_version is not None:
        r = next((x for x in reversed(reports) if x.model_version == model_version), r)
    metric = r.metric.replace("_", "-")
    multilabel = r.metric != "accuracy"
    head = (f"<div class='alwb-report-title' data-round='{int(r.round)}' data-model-version='{int(r.model_version)}' "
            f"data-n-labels='{int(r.n_labels)}'><strong>Round {r.round}</strong> \u2192 "
            f"<span class='alwb-report-model'>{html.escape(model_line(r.model_version, r.n_labels, r.cv_accuracy, multilabel))}</span>")
    if r.accuracy is not None:
        head += f" \u00b7 held-out {metric} <strong class='alwb-acc'>{r.accuracy:.3f}</strong> (n={r.n_eval})"
    fit = r.timings.get("total")
    if fit is not None:
        head += f" \u00b7 trained in {fit:.1f} s"
    if r.should_stop:
        head += f" \u00b7 <em>{html.escape(r.stop_reason or 'stopping rule met')}</em>"
    head += "</div>"
    now = []
    if open_round is not None:
        now.append(f"round {int(open_round)} open")
    if n_store_labels is not None:
        now.append(f"{int(n_store_labels)} labels in the store")
    if now:
        head += "<div class='alwb-report-now'>now: " + " \u00b7 ".join(now) + "</div>"
    order = list(names) or list(r.labels_per_class)
    cells = "".join(f"<td title='{html.escape(str(n))}'>{html.escape(str(n))}</td>" for n in order)
    counts = "".join(f"<td>{int(r.labels_per_class.get(n, 0))}</td>" for n in order)
    table = (f"<table class='alwb-report-table'><tr><th>class</th>{cells}</tr>"
             f"<tr><th>labels</th>{counts}</tr></table>")
    return (f"<div class='alwb-report-box'>{head}<div style='display:flex;gap:16px;align-items:flex-start;"
            f"flex-wrap:wrap'>{table}{accuracy_svg(reports)}</div>{levels_html(r.levels, r.metric)}</div>")


def levels_html(levels, metric: str = "accuracy") -> str:
    """A taxonomy project's per-level table in the round summary: held-out and cross-validated accuracy and how
    many nodes of each level have labels (``RoundReport.levels``); "" for flat classes. A tag tree's levels hold
    micro-F1 (``metric``)."""
    if not levels:
        return ""

    def pct(x):
        return "–" if x is None else f"{x:.3f}"

    rows = "".join(
        f"<tr data-level='{int(lv['level'])}'><th>{html.escape(str(lv['name']))}</th>"
        f"<td class='alwb-level-acc'>{pct(lv.get('accuracy'))}</td><td class='alwb-level-cv'>{pct(lv.get('cv_accuracy'))}</td>"
        f"<td>{sum(1 for v in (lv.get('coverage') or {}).values() if v)}/{len(lv.get('coverage') or {})}</td>"
        f"<td class='alwb-level-cov'>{html.escape(' · '.join(f'{n} {c}' for n, c in (lv.get('coverage') or {}).items()))}"
        "</td></tr>" for lv in levels)
    return ("<table class='alwb-report-table alwb-report-levels'><tr><th>level</th>"
            f"<th>held-out {'micro-F1' if metric == 'micro_f1' else 'accuracy'}</th>"
            f"<th>cross-validated</th><th>nodes labelled</th><th>labels per node</th></tr>{rows}</table>")


# ---------------------------------------------------------------------------------------------- the quality loop
def value_text(value) -> str:
    """A class name, or a tag set as ``even + round`` (the empty set as ``no tags``)."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " + ".join(str(v) for v in value) if value else "no tags"
    return str(value)


def answer_text(answer: dict) -> str:
    """One answer of a review queue entry (without the annotator's name): ``3``, ``flagged: “blurry”``, ``skipped``."""
    kind = answer.get("kind")
    note = str(answer.get("note") or "").strip()
    if kind == "flag":
        return "flagged for review" + (f": \u201c{note}\u201d" if note else " (no note)")
    if kind == "skip":
        return "skipped"
    text = value_text(answer.get("value"))
    return text + (f" (note: \u201c{note}\u201d)" if note else "")


def review_reason_text(reason: str) -> str:
    """Why an item is in the review queue, in words (``flag``, ``disagreement``, ``sample:<annotator>``)."""
    if reason == "flag":
        return "flagged by an annotator"
    if reason == "disagreement":
        return "the annotators disagree"
    if reason.startswith("sample:"):
        return f"sampled from {reason[len('sample:'):]}'s answers"
    if reason == "chosen":
        return "chosen by the reviewer"
    return reason


def qualification_result_text(status: dict) -> str:
    """``Qualification test passed: 3 of 3 correct (100%); the pass mark is 95%.`` from
    ``Session.qualification_status()``."""
    correct, n = status.get("correct"), status.get("n")
    score, mark = status.get("score"), status.get("pass_mark")
    passed = status.get("passed")
    word = "passed" if passed else "failed"
    out = f"Qualification test {word}: {correct} of {n} correct"
    if score is not None:
        out += f" ({percent(float(score))})"
    if mark is not None:
        out += f"; the pass mark is {percent(float(mark))}"
    return out + "."
