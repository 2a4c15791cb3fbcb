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
