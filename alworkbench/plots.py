"""Matplotlib renderings of what the core computed (learning curves, coverage). Compute first, display second."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np


def _figure(figsize):
    """A figure of its own (matplotlib's object API with the Agg canvas): pyplot's backend and its list of open
    figures are never touched, so plotting from here changes nothing for other code in the kernel. In a notebook,
    show it with ``display(ax.figure)`` (or pass ``ax=`` from your own ``plt.subplots()``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def plot_learning_curves(result: dict, out: Optional[str | Path] = None, ax=None, title: Optional[str] = None):
    """Mean ± std held-out accuracy vs number of labels, one line per strategy (from simulate()'s result)."""
    own = ax is None
    if own:
        fig, ax = _figure((7, 4.5))
    for strat, by_seed in result["results"].items():
        curves = list(by_seed.values())
        n = min(len(c) for c in curves)
        x = np.array([curves[0][i]["n_labels"] for i in range(n)])
        acc = np.array([[c[i]["accuracy"] for i in range(n)] for c in curves])
        m, s = acc.mean(0), acc.std(0)
        style = dict(lw=2.2) if strat == "default" else dict(lw=1.4, ls="--" if strat == "random" else "-")
        ax.plot(x, m, label=strat, **style)
        ax.fill_between(x, m - s, m + s, alpha=0.15)
    ax.set_xlabel("labelled images")
    ax.set_ylabel("held-out accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or f"{result['dataset']} ({result['backbone']} features, {len(result['seeds'])} seeds)")
    if own:
        fig.tight_layout()
        if out:
            fig.savefig(out, dpi=110)
    return ax


def plot_round_reports(reports, ax=None, out: Optional[str | Path] = None):
    """Learning curve of a labelling session from its RoundReports."""
    own = ax is None
    if own:
        fig, ax = _figure((5, 3))
    pts = [(r.n_labels, r.accuracy) for r in reports if r.accuracy is not None]
    if pts:
        x, y = zip(*pts)
        ax.plot(x, y, marker="o")
    ax.set_xlabel("labels")
    ax.set_ylabel(reports[-1].metric if reports else "accuracy")
    ax.grid(alpha=0.3)
    if own:
        fig.tight_layout()
        if out:
            fig.savefig(out, dpi=100)
    return ax


def plot_coverage(counts: dict, ax=None, out: Optional[str | Path] = None):
    own = ax is None
    if own:
        fig, ax = _figure((6, 0.3 * len(counts) + 1))
    names = list(counts)
    ax.barh(names, [counts[n] for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("labelled")
    if own:
        fig.tight_layout()
        if out:
            fig.savefig(out, dpi=100)
    return ax


def plot_annotator_accuracy(view, annotators=None, ax=None, out: Optional[str | Path] = None):
    """Known-answer accuracy over time per annotator (from a QualityView): cumulative (solid) and rolling over
    ``quality.window`` comparisons (dashed) vs the number of comparisons (gold, qualification test, sampled
    reviews), with the pass mark as a horizontal line."""
    own = ax is None
    if own:
        fig, ax = _figure((7, 4))
    names = list(annotators) if annotators is not None else view.annotators()
    colors = [f"C{i % 10}" for i in range(len(names))]
    drawn = 0
    for name, color in zip(names, colors):
        series = view.accuracy_series(name)
        if not series:
            continue
        x = [s["n"] for s in series]
        ax.plot(x, [s["cumulative"] for s in series], color=color, lw=2, label=f"{name} cumulative")
        ax.plot(x, [s["rolling"] for s in series], color=color, lw=1.2, ls="--",
                label=f"{name} rolling ({int(view.q.window)})")
        drawn += 1
    mark = float(view.q.pass_mark)
    ax.axhline(mark, color="0.3", lw=1, ls=":", label=f"pass mark {mark:.0%}")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("known-answer comparisons (gold, qualification, sampled reviews)")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    if not drawn:
        ax.text(0.5, 0.5, "no known-answer comparisons yet", transform=ax.transAxes, ha="center", va="center")
    ax.legend(fontsize="small", loc="lower right")
    ax.set_title("annotator accuracy on known answers")
    if own:
        fig.tight_layout()
        if out:
            fig.savefig(out, dpi=100)
    return ax


def plot_annotator_confusion(view, a: str, b: str, ax=None, out: Optional[str | Path] = None):
    """The confusion between annotators ``a`` (rows) and ``b`` (columns) on the items both answered (from a
    QualityView; single-label projects), with the counts written in the cells."""
    from .errors import AlwbError

    if view.multilabel:
        raise AlwbError("the confusion between annotators is for single-label projects; for tags, see the "
                        "per-tag agreement in the report")
    conf = view.confusion(a, b)
    labels, mat = conf["labels"], np.asarray(conf["matrix"], dtype=np.int64)
    own = ax is None
    if own:
        side = 1.5 + 0.45 * len(labels)
        fig, ax = _figure((side + 1, side))
    im = ax.imshow(mat, cmap="Blues", vmin=0, vmax=max(1, int(mat.max(initial=0))))
    ax.set_xticks(range(len(labels)), labels=[str(x) for x in labels], rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels=[str(x) for x in labels])
    top = mat.max(initial=0)
    for i in range(mat.shape[0]):
        for j in range(mat.shape[1]):
            if mat[i, j]:
                ax.text(j, i, str(int(mat[i, j])), ha="center", va="center", fontsize="small",
                        color="white" if mat[i, j] > top / 2 else "black")
    ax.set_xlabel(f"{b}")
    ax.set_ylabel(f"{a}")
    ax.set_title(f"{a} vs {b} on {conf['n']} item(s) both answered")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if own:
        fig.tight_layout()
        if out:
            fig.savefig(out, dpi=100)
    return ax
