"""Error analysis on the project's FiftyOne dataset: coverage, model errors, suspicious labels, an embedding map.

Compute first, display second: every function returns a plain dataclass (numbers, ids, names of the saved
views it created); ``.plot()`` draws it with matplotlib and the App shows the saved views.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import AlwbError
from .fiftyone_sync import _import_fiftyone, _names, get_dataset, prediction_docs, sync

MIN_OOF_LABELS = 6


def _dataset(project, session, dataset):
    if dataset is not None:
        return dataset
    sync(project, session)
    return get_dataset(project)


def _F():
    from fiftyone import ViewField as F

    return F


def _count(view, path: str) -> dict[str, int]:
    return {str(k): int(v) for k, v in view.count_values(path).items() if k is not None}


# ----------------------------------------------------------------------------------------------- coverage
@dataclass
class CoverageTable:
    """Labelled vs unlabelled per class (or tag). ``unlabelled_predicted`` counts unlabelled pool items by the
    latest model's prediction (None before a model exists); ``ground_truth`` counts the pool by ground truth
    when the source has it."""

    names: list[str]
    labelled: list[int]
    unlabelled_predicted: Optional[list[int]]
    ground_truth: Optional[list[int]]
    n_labelled: int
    n_unlabelled: int
    view: str = "coverage_gaps"
    gaps: list[str] = field(default_factory=list)

    def rows(self) -> list[dict]:
        out = []
        for i, n in enumerate(self.names):
            out.append({"name": n, "labelled": self.labelled[i],
                        "unlabelled_predicted": None if self.unlabelled_predicted is None
                        else self.unlabelled_predicted[i],
                        "ground_truth": None if self.ground_truth is None else self.ground_truth[i]})
        return out

    def __str__(self) -> str:
        lines = [f"{'class':<16}{'labelled':>10}{'unlab.(pred)':>14}{'pool GT':>10}"]
        for r in self.rows():
            up = "-" if r["unlabelled_predicted"] is None else r["unlabelled_predicted"]
            gt = "-" if r["ground_truth"] is None else r["ground_truth"]
            lines.append(f"{r['name'][:15]:<16}{r['labelled']:>10}{up:>14}{gt:>10}")
        lines.append(f"{self.n_labelled} labelled, {self.n_unlabelled} unlabelled; least covered: "
                     f"{', '.join(self.gaps) or '-'} (saved view {self.view!r})")
        return "\n".join(lines)

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(max(5, 0.6 * len(self.names) + 2), 3.5))
        x = np.arange(len(self.names))
        ax.bar(x - 0.2, self.labelled, width=0.4, label="labelled")
        if self.unlabelled_predicted is not None:
            ax.bar(x + 0.2, self.unlabelled_predicted, width=0.4, label="unlabelled (predicted class)", alpha=0.7)
        ax.set_xticks(x, self.names, rotation=45 if len(self.names) > 8 else 0, ha="right")
        ax.set_ylabel("items")
        ax.set_title(f"Coverage: {self.n_labelled} labelled, {self.n_unlabelled} unlabelled")
        ax.legend()
        return ax


def coverage(project, session=None, dataset=None) -> CoverageTable:
    """Per class/tag: labelled count, unlabelled pool count by predicted class, pool count by ground truth.
    Saves the view ``coverage_gaps``: unlabelled items predicted as one of the least-covered classes."""
    ds = _dataset(project, session, dataset)
    F = _F()
    names = _names(project)
    multilabel = bool(project.config.multilabel)
    lab_path = "label.classifications.label" if multilabel else "label.label"
    pred_path = "predictions.classifications.label" if multilabel else "predictions.label"
    gt_path = "ground_truth.classifications.label" if multilabel else "ground_truth.label"
    labelled_view = ds.match(F("label_status") == "labelled")
    pool = ds.match((F("label_status") == "unlabelled") & (F("holdout") == False))  # noqa: E712
    lab = _count(labelled_view, lab_path)
    schema = ds.get_field_schema()
    pred = _count(pool, pred_path) if "predictions" in schema else None
    gt_counts = _count(ds.match(F("holdout") == False), gt_path)  # noqa: E712
    has_gt = bool(gt_counts)
    labelled = [lab.get(n, 0) for n in names]
    order = np.argsort(labelled, kind="stable")
    median = float(np.median(labelled)) if labelled else 0.0
    gaps = [names[i] for i in order if labelled[i] < median or labelled[i] == 0][:max(1, len(names) // 3)]
    if pred is not None and gaps:
        gap_view = pool.match(F(pred_path.rsplit(".", 1)[0] + ".label").is_in(gaps)) if not multilabel else \
            pool.filter_labels("predictions", F("label").is_in(gaps))
        if not multilabel:
            gap_view = gap_view.sort_by(F("predictions.uncertainty"), reverse=True)
    else:
        gap_view = pool
    ds.save_view("coverage_gaps", gap_view, overwrite=True)
    return CoverageTable(names=names, labelled=labelled,
                         unlabelled_predicted=None if pred is None else [pred.get(n, 0) for n in names],
                         ground_truth=[gt_counts.get(n, 0) for n in names] if has_gt else None,
                         n_labelled=len(labelled_view), n_unlabelled=len(pool), gaps=gaps)


# ----------------------------------------------------------------------------------------------- out of fold
def _labelled_arrays(project, ds, X: np.ndarray):
    """(item ids, row indices, y) of the labelled samples, in dataset order."""
    F = _F()
    view = ds.match(F("label_status") == "labelled")
    ids = view.values("alwb_id")
    idx = np.asarray(view.values("alwb_index"), dtype=np.int64)
    names = _names(project)
    if project.config.multilabel:
        tags = view.values("label.classifications.label")
        y = np.zeros((len(ids), len(names)), dtype=np.int64)
        for r, ts in enumerate(tags):
            for t in ts or ():
                if t in names:
                    y[r, names.index(t)] = 1
    else:
        y = np.asarray(view.values("label.label"), dtype=object)
    return ids, idx, y


def out_of_fold_proba(X: np.ndarray, y, classes: Sequence[str], *, multilabel: bool = False, estimator=None,
                      cv: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold class probabilities (n, len(classes)) for labelled items with scikit-learn's
    ``cross_val_predict``: each item is predicted by a model that never saw it. ``estimator`` is a
    scikit-learn estimator or a zero-argument factory (e.g. the project's head factory); default a
    standardised LogisticRegression on the embeddings."""
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.asarray(X, dtype=np.float32)
    classes = [str(c) for c in classes]
    if len(X) < MIN_OOF_LABELS:
        raise AlwbError(f"out-of-fold predictions need at least {MIN_OOF_LABELS} labelled items, got {len(X)}")
    if callable(estimator) and not hasattr(estimator, "fit"):
        estimator = estimator()
    if estimator is None:
        base = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5))
        estimator = OneVsRestClassifier(base) if multilabel else base
    estimator = clone(estimator)
    if multilabel:
        Y = np.asarray(y)
        folds = KFold(n_splits=min(cv, len(X)), shuffle=True, random_state=seed)
        return np.asarray(cross_val_predict(estimator, X, Y, cv=folds, method="predict_proba"), dtype=np.float32)
    y = np.asarray([str(v) for v in y])
    present, counts = np.unique(y, return_counts=True)
    if len(present) < 2:
        raise AlwbError(f"out-of-fold predictions need at least 2 classes among the labels, got {list(present)}")
    k = int(max(2, min(cv, counts.max(), len(X) // 2)))
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    yi = np.searchsorted(present, y)
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        warnings.filterwarnings("ignore", message=".*Number of classes in training fold.*")
        p = np.asarray(cross_val_predict(estimator, X, yi, cv=folds, method="predict_proba"), dtype=np.float32)
    full = np.zeros((len(X), len(classes)), dtype=np.float32)
    for j, c in enumerate(present):
        if c in classes:
            full[:, classes.index(c)] = p[:, j]
    return full


def write_oof(project, ds, X: np.ndarray, *, estimator=None, cv: int = 5, seed: int = 0,
              field_name: str = "oof_predictions"):
    """Compute out-of-fold predictions for the labelled samples and write them (with logits) to ``field_name``;
    returns (labelled view, item ids, proba)."""
    fo = _import_fiftyone()
    F = _F()
    ids, idx, y = _labelled_arrays(project, ds, X)
    names = _names(project)
    multilabel = bool(project.config.multilabel)
    proba = out_of_fold_proba(X[idx], y, names, multilabel=multilabel, estimator=estimator, cv=cv, seed=seed)
    view = ds.match(F("label_status") == "labelled")
    if field_name in ds.get_field_schema():
        ds.delete_sample_field(field_name)
    view.set_values(field_name, prediction_docs(fo, proba, names, multilabel, logits=True), progress=False)
    return view, ids, proba


def _embeddings(project, session, ds) -> np.ndarray:
    X = getattr(session, "X", None) if session is not None else None
    return np.asarray(X if X is not None else project.embeddings())


# ----------------------------------------------------------------------------------------------- errors
@dataclass
class ErrorReport:
    """How the model errs. ``mode`` is "holdout" (latest model vs held-out ground truth) or "out_of_fold"
    (cross-validated predictions vs the human labels)."""

    mode: str
    eval_key: str
    pred_field: str
    gt_field: str
    n: int
    accuracy: float
    classes: list[str]
    confusion: np.ndarray
    report: dict[str, Any]
    mistake_ids: list[str]
    view: str = "mistakes"

    def __str__(self) -> str:
        worst = sorted(((v.get("f1-score", 0.0), k) for k, v in self.report.items()
                        if k in self.classes and isinstance(v, dict)))[:3]
        w = ", ".join(f"{k} (F1 {f:.2f})" for f, k in worst)
        return (f"{self.mode}: {self.pred_field} vs {self.gt_field} on {self.n} items: accuracy "
                f"{self.accuracy:.3f}, {len(self.mistake_ids)} mistakes (saved view {self.view!r}); weakest: {w}")

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(1 + 0.45 * len(self.classes),) * 2)
        ax.imshow(self.confusion, cmap="Blues")
        ax.set_xticks(range(len(self.classes)), self.classes, rotation=45, ha="right")
        ax.set_yticks(range(len(self.classes)), self.classes)
        ax.set_xlabel(f"predicted ({self.pred_field})")
        ax.set_ylabel(f"truth ({self.gt_field})")
        for (i, j), v in np.ndenumerate(self.confusion):
            if v:
                ax.text(j, i, int(v), ha="center", va="center", fontsize=7,
                        color="white" if v > self.confusion.max() / 2 else "black")
        ax.set_title(f"{self.mode}: accuracy {self.accuracy:.3f} on {self.n}")
        return ax


def model_errors(project, session=None, dataset=None, *, mode: str = "auto", estimator=None, cv: int = 5,
                 seed: int = 0) -> ErrorReport:
    """Evaluate with FiftyOne's ``evaluate_classifications``: the latest model on held-out ground truth when
    it exists (``mode="holdout"``), else out-of-fold predictions on the human labels (``mode="out_of_fold"``).
    Saves the view ``mistakes``. Multi-label projects are evaluated per tag with scikit-learn."""
    ds = _dataset(project, session, dataset)
    F = _F()
    names = _names(project)
    multilabel = bool(project.config.multilabel)
    if mode not in ("auto", "holdout", "out_of_fold"):
        raise AlwbError(f"mode {mode!r} is not one of auto, holdout, out_of_fold")
    schema = ds.get_field_schema()
    holdout = ds.match((F("holdout") == True) & F("ground_truth").exists())  # noqa: E712
    if "predictions" in schema:
        holdout = holdout.match(F("predictions").exists())
    n_hold = len(holdout) if "predictions" in schema else 0
    if mode == "holdout" and n_hold == 0:
        raise AlwbError("no held-out items with ground truth and predictions: sync after a retrain, "
                        "or use mode='out_of_fold'")
    if mode == "holdout" or (mode == "auto" and n_hold > 0):
        view, pred_field, gt_field, eval_key, kind = holdout, "predictions", "ground_truth", "eval_holdout", "holdout"
    else:
        view, _, _ = write_oof(project, ds, _embeddings(project, session, ds), estimator=estimator, cv=cv, seed=seed)
        pred_field, gt_field, eval_key, kind = "oof_predictions", "label", "eval_oof", "out_of_fold"
    if multilabel:
        return _multilabel_errors(ds, view, names, pred_field, gt_field, kind)
    if eval_key in ds.list_evaluations():
        ds.delete_evaluation(eval_key)
    results = view.evaluate_classifications(pred_field, gt_field=gt_field, eval_key=eval_key, classes=names,
                                            progress=False)
    confusion = np.asarray(results.confusion_matrix(classes=names))
    report = results.report(classes=names)
    mistakes = view.match(F(eval_key) == False)  # noqa: E712
    ds.save_view("mistakes", mistakes, overwrite=True)
    n = len(view)
    acc = float(np.trace(confusion) / max(1, confusion.sum()))
    return ErrorReport(mode=kind, eval_key=eval_key, pred_field=pred_field, gt_field=gt_field, n=n, accuracy=acc,
                       classes=names, confusion=confusion, report=report, mistake_ids=mistakes.values("alwb_id"))


def _multilabel_errors(ds, view, names, pred_field, gt_field, kind) -> ErrorReport:
    from sklearn.metrics import classification_report, f1_score

    ids = view.values("alwb_id")

    def onehot(rows):
        Y = np.zeros((len(rows), len(names)), dtype=np.int64)
        for r, ts in enumerate(rows):
            for t in ts or ():
                if t in names:
                    Y[r, names.index(t)] = 1
        return Y

    Yt = onehot(view.values(f"{gt_field}.classifications.label"))
    Yp = onehot(view.values(f"{pred_field}.classifications.label"))
    wrong = [s for s, a, b in zip(ids, Yt, Yp) if (a != b).any()]
    ds.save_view("mistakes", ds.select_by("alwb_id", wrong), overwrite=True)
    # per tag 2x2 counts [[tn, fp], [fn, tp]] stacked as (n_tags, 2, 2)
    conf = np.stack([[[((Yt[:, j] == 0) & (Yp[:, j] == 0)).sum(), ((Yt[:, j] == 0) & (Yp[:, j] == 1)).sum()],
                      [((Yt[:, j] == 1) & (Yp[:, j] == 0)).sum(), ((Yt[:, j] == 1) & (Yp[:, j] == 1)).sum()]]
                     for j in range(len(names))])
    report = classification_report(Yt, Yp, target_names=names, output_dict=True, zero_division=0)
    acc = float(f1_score(Yt, Yp, average="micro", zero_division=0))
    return ErrorReport(mode=kind, eval_key="", pred_field=pred_field, gt_field=gt_field, n=len(ids), accuracy=acc,
                       classes=list(names), confusion=conf, report=report, mistake_ids=wrong)


# ----------------------------------------------------------------------------------------------- suspicious
@dataclass
class SuspiciousReport:
    """Human labels that out-of-fold predictions disagree with, most suspicious first (FiftyOne Brain
    mistakenness; hardness from the same logits), plus the least unique (near-duplicate) items."""

    ids: list[str]
    labels: list[Any]
    predicted: list[Any]
    mistakenness: list[float]
    hardness: list[float]
    least_unique_ids: list[str]
    n_labelled: int
    view: str = "suspicious"

    def rows(self) -> list[dict]:
        return [{"id": i, "label": lab, "predicted": p, "mistakenness": m, "hardness": h}
                for i, lab, p, m, h in zip(self.ids, self.labels, self.predicted, self.mistakenness, self.hardness)]

    def __str__(self) -> str:
        head = [f"{len(self.ids)} suspicious of {self.n_labelled} labels (saved view {self.view!r}):"]
        for r in self.rows()[:10]:
            head.append(f"  {r['id']:<28} label {r['label']!s:<10} predicted {r['predicted']!s:<10} "
                        f"mistakenness {r['mistakenness']:.3f}")
        return "\n".join(head)


def suspicious_labels(project, session=None, dataset=None, *, top: int = 25, threshold: float = 0.5,
                      estimator=None, cv: int = 5, seed: int = 0, uniqueness: bool = True) -> SuspiciousReport:
    """Rank human labels by FiftyOne Brain ``compute_mistakenness`` (logits of out-of-fold predictions) and
    ``compute_hardness``; ``compute_uniqueness`` on the embedding field finds near-duplicates. Saves the view
    ``suspicious``: labelled items whose mistakenness exceeds ``threshold``, worst first, at most ``top``."""
    import fiftyone.brain as fob

    ds = _dataset(project, session, dataset)
    F = _F()
    multilabel = bool(project.config.multilabel)
    view, _, _ = write_oof(project, ds, _embeddings(project, session, ds), estimator=estimator, cv=cv, seed=seed)
    fob.compute_mistakenness(view, "oof_predictions", label_field="label", mistakenness_field="mistakenness",
                             use_logits=not multilabel, progress=False)
    if not multilabel:
        fob.compute_hardness(view, "oof_predictions", hardness_field="hardness", progress=False)
    least_unique: list[str] = []
    if uniqueness and "embedding" in ds.get_field_schema():
        fob.compute_uniqueness(ds, uniqueness_field="uniqueness", embeddings="embedding", progress=False)
        least_unique = ds.sort_by("uniqueness").limit(top).values("alwb_id")
    ranked = view.match(F("mistakenness") > threshold).sort_by("mistakenness", reverse=True).limit(top)
    ds.save_view("suspicious", ranked, overwrite=True)
    lab_path = "label.classifications.label" if multilabel else "label.label"
    pred_path = "oof_predictions.classifications.label" if multilabel else "oof_predictions.label"
    hard = ranked.values("hardness") if not multilabel else [float("nan")] * len(ranked)
    return SuspiciousReport(ids=ranked.values("alwb_id"), labels=ranked.values(lab_path),
                            predicted=ranked.values(pred_path),
                            mistakenness=[float(v) for v in ranked.values("mistakenness")],
                            hardness=[float("nan") if v is None else float(v) for v in hard],
                            least_unique_ids=least_unique, n_labelled=len(view))


# ----------------------------------------------------------------------------------------------- embedding map
@dataclass
class EmbeddingMap:
    """2-D coordinates of every sample (FiftyOne Brain ``compute_visualization``), colourable by label."""

    ids: list[str]
    points: np.ndarray
    labels: list[Optional[str]]
    method: str
    brain_key: str

    def plot(self, ax=None, s: float = 6.0):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5.5, 5))
        labs = np.asarray([lab if lab is not None else "unlabelled" for lab in self.labels], dtype=object)
        un = labs == "unlabelled"
        ax.scatter(self.points[un, 0], self.points[un, 1], s=s * 0.5, c="lightgrey", label="unlabelled")
        for name in sorted(set(labs[~un].tolist())):
            m = labs == name
            ax.scatter(self.points[m, 0], self.points[m, 1], s=s * 2, label=str(name))
        ax.set_title(f"Embeddings ({self.method}, brain key {self.brain_key!r})")
        ax.legend(fontsize=7, markerscale=2, loc="best", ncol=2)
        return ax


def embeddings_visualization(project, session=None, dataset=None, *, method: str = "pca",
                             brain_key: Optional[str] = None, seed: int = 0) -> EmbeddingMap:
    """2-D map of the embedding field with ``compute_visualization`` (``pca`` or ``tsne`` offline; ``umap``
    only when umap-learn is installed). Registered under ``brain_key`` (default ``viz_<method>``) so the App's
    Embeddings panel shows it; recomputed on each call."""
    import fiftyone.brain as fob

    if method not in ("pca", "tsne", "umap"):
        raise AlwbError(f"visualization method {method!r} is not one of pca, tsne, umap")
    if method == "umap" and importlib.util.find_spec("umap") is None:
        raise AlwbError("method='umap' needs umap-learn (pip install umap-learn); use method='pca' or 'tsne'")
    ds = _dataset(project, session, dataset)
    if "embedding" not in ds.get_field_schema():
        raise AlwbError("the dataset has no 'embedding' field: sync(project, session) with embeddings=True first")
    key = brain_key or f"viz_{method}"
    if key in ds.list_brain_runs():
        ds.delete_brain_run(key)
    kw = {"seed": seed, "verbose": False} if method in ("tsne", "umap") else {}
    if method == "tsne":  # t-SNE first reduces with PCA to 50 dims; fewer when the data is smaller
        first = ds.first()["embedding"]
        kw["pca_dims"] = int(min(50, len(first), len(ds)))
        kw["perplexity"] = float(min(30.0, max(2.0, (len(ds) - 1) / 3)))
    results = fob.compute_visualization(ds, embeddings="embedding", brain_key=key, method=method, num_dims=2,
                                        progress=False, **kw)
    lab_path = "label.classifications.label" if project.config.multilabel else "label.label"
    labs = ds.values(lab_path)
    if project.config.multilabel:
        labs = ["+".join(v) if v else None for v in labs]
    return EmbeddingMap(ids=ds.values("alwb_id"), points=np.asarray(results.points), labels=list(labs),
                        method=method, brain_key=key)
