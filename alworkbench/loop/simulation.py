"""Simulated active-learning runs: an oracle answers from ground truth, strategies are compared on held-out data.

Each (strategy, seed) run drives the real :class:`Session` with its own throw-away label store, so what is
measured is exactly what a person gets; embeddings are computed once (cached) and shared by all runs.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ..config import BUILTIN_DATASETS
from ..errors import AlwbError, ConfigError

DEFAULT_WORKDIR = Path.home() / ".cache" / "alworkbench" / "simulate"


def _base_project(dataset: str, backbone: Optional[str], workdir: Path, limit: Optional[int], head: Optional[dict],
                  taxonomy: Optional[dict] = None):
    from ..project import Project

    import hashlib

    key = dataset if dataset in BUILTIN_DATASETS else \
        "path-" + hashlib.sha1(str(Path(dataset).resolve()).encode()).hexdigest()[:12]
    d = workdir / f"{key}-{limit or 'all'}"
    kw = {}
    if limit:
        kw["source"] = {"limit": int(limit)}
    if head:
        kw["head"] = head
    if taxonomy:
        kw["taxonomy"] = taxonomy
    return Project.init(d, dataset, backbone=backbone, overwrite=True, **kw)


MODES = ("async", "sync")
CLOCKS = ("real", "virtual")


def parse_clock_costs(text: Optional[str]) -> Optional[dict]:
    """``"land=0.8,calibrated=0.4"`` -> ``{"land": 0.8, "calibrated": 0.4}`` (virtual seconds per worker step, see
    :mod:`.clock`; steps left out cost 0); None or "" -> None (each step costs its measured time)."""
    from .clock import STEPS

    if not text:
        return None
    out = {}
    for part in text.split(","):
        key, sep, val = part.partition("=")
        key = key.strip()
        if not sep or key not in STEPS:
            raise ConfigError(f"--clock-costs: {part.strip()!r} is not STEP=SECONDS with STEP one of {', '.join(STEPS)}")
        try:
            out[key] = float(val)
        except ValueError:
            raise ConfigError(f"--clock-costs: {val.strip()!r} is not a number of seconds") from None
        if not out[key] >= 0:
            raise ConfigError(f"--clock-costs: {key} must be >= 0 seconds")
    return out


def run_one(base, X, strategy: str, seed: int, budget: int, batch_size: int, initial: int,
            head_factory: Optional[Callable] = None, mode: str = "async", pace: float = 0.0,
            validation: float = 0.0, clock: str = "real", clock_costs: Optional[dict] = None) -> list[dict]:
    """One simulated run; returns the learning curve [{n_labels, accuracy, seconds, ...}] at each batch end.

    ``mode="async"`` is the loop a person gets in the notebook: after each batch the model retrains on the session's
    background worker while the oracle goes on answering the next batch (chosen by whatever model is current), one
    answer every ``pace`` seconds; when a model lands, the unanswered rest of the open batch is selected again.
    ``clock="virtual"`` runs the same asynchronous loop on a :class:`~alworkbench.loop.clock.VirtualClock`: ``pace``
    is virtual seconds per answer, each step of a fit costs the real time it took (or ``clock_costs``, fixed virtual
    seconds per step: deterministic), and nothing sleeps, so a person's pace (about a second per answer) can be
    simulated in the time the fits take. ``mode="sync"`` waits for every fit before the next batch (the idealised
    loop). Accuracy at each point is that
    of a head fitted on exactly the labels answered so far (so both modes are measured the same way); each point
    also says which model version chose the batch and how many labels that model had seen.
    """
    from ..project import Project
    from .oracle import Oracle
    from .session import Session

    from .clock import VirtualClock

    if mode not in MODES:
        raise ConfigError(f"simulate mode must be one of {', '.join(MODES)}, got {mode!r}")
    if clock not in CLOCKS:
        raise ConfigError(f"simulate clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    vclock = VirtualClock(clock_costs) if clock == "virtual" and mode == "async" else None
    with tempfile.TemporaryDirectory(prefix="alwb-sim-") as tmp:
        proj = Project(Path(tmp), base.config)
        proj._source = base.source
        proj._embeddings = X
        s = Session(proj, annotator="oracle", embeddings=X, strategy=strategy, seed=seed,
                    head_factory=head_factory, warm_start=False, clock=vclock)
        if validation > 0:
            # choose on a validation split: part of the pool is held back and evaluated on; the test split is
            # neither queried nor evaluated on
            val = validation_mask(s.items, s.eval_mask, validation)
            s.ok_mask = s.ok_mask & ~s.eval_mask
            s.eval_mask = val & s.ok_mask
        oracle = Oracle(s, seed=seed)
        points: list[tuple[list[int], dict]] = []
        n = initial
        try:
            while True:
                t0 = time.perf_counter()
                batch = s.next_batch(n)
                chooser = {"round": batch.round, "strategy": batch.strategy, "chosen_by_version": batch.model_version,
                           "model_labels": s._model.n_labels if s._model is not None else 0}
                while True:
                    bi, _ = s.show_next()  # what the widget does: pick and mark shown in one step
                    if bi is None:
                        break
                    if vclock is not None:
                        vclock.advance(pace)  # fits that land while the person looks at this image land first
                    elif pace > 0 and mode == "async":  # a synchronous loop's outcome does not depend on the pace
                        time.sleep(pace)
                    s.submit(bi.item.id, oracle.answer_for(bi.item))
                if mode == "sync":
                    s.retrain()
                else:
                    s.retrain_async()
                idx, _ = s._training_data()
                chooser["reselected"] = s.current_batch is not None and s.current_batch.batch_id != batch.batch_id
                points.append((idx.tolist(), {**chooser, "seconds": round(time.perf_counter() - t0, 4),
                                              **({"virtual_seconds": round(vclock.now, 4)} if vclock else {})}))
                remaining = budget - len(idx)
                if remaining <= 0 or len(s.pool_indices()) == 0:
                    break
                n = min(batch_size, remaining)
            s.wait()
            fits = [r.timings.get("total") for r in s.reports if r.timings]
            curve = []
            factory = head_factory or s._head_factory
            for idx, info in points:
                acc = _accuracy(s, factory, np.asarray(idx))
                levels = None
                if isinstance(acc, tuple):  # a taxonomy: accuracy per level too
                    acc, levels = acc
                curve.append({"n_labels": len(idx), "accuracy": acc, **info,
                              **({"level_accuracy": levels} if levels is not None else {})})
            if curve:
                curve[-1]["mean_fit_seconds"] = round(float(np.mean(fits)), 4) if fits else None
                curve[-1]["n_models"] = len(s.reports)
        finally:
            s.close()
            proj.close()
    return curve


def validation_mask(items, test_mask: np.ndarray, frac: float) -> np.ndarray:
    """A deterministic ``frac`` of the items outside the test split (by a hash of the item id)."""
    import zlib

    h = np.fromiter((zlib.crc32(("val:" + it.id).encode("utf-8")) / 2**32 for it in items), dtype=np.float64,
                    count=len(items))
    return (h < frac) & ~np.asarray(test_mask, bool)


def _accuracy(session, factory, idx: np.ndarray):
    """Held-out accuracy (micro-F1 multi-label) of a fresh head fitted on items ``idx`` with their human labels;
    with a taxonomy, (accuracy, [accuracy per level]) of the tree-consistent predictions."""
    from .session import _Model

    labelled = session.labels()
    ev = np.flatnonzero(session.eval_mask)
    if len(ev) == 0 or len(idx) == 0:
        return None
    ids = [session.items[i].id for i in idx]
    head = factory()
    if session.multilabel:
        Y = np.zeros((len(ids), len(session.classes)), dtype=np.int64)
        for r, sid in enumerate(ids):
            for t in labelled.get(sid, ()):
                if t in session.classes:
                    Y[r, session.classes.index(t)] = 1
        head.fit(session.X[idx], Y)
    else:
        head.fit(session.X[idx], np.array([session.classes.index(labelled[sid]) for sid in ids]))
    proba, classes = session._full_proba(head)
    model = _Model(head, 0, proba, classes, session.multilabel, tree=session.tree)
    acc, _ = session._evaluate(model)
    if session.tree is not None:
        levels = session._levels(model)
        return acc, [lv["accuracy"] for lv in levels]
    return acc


def labels_to_reach(curve: list[dict], target: float) -> Optional[int]:
    for r in curve:
        if r["accuracy"] is not None and r["accuracy"] >= target:
            return r["n_labels"]
    return None


def summarise(results: dict, baseline: str = "random") -> dict:
    """Mean curve per strategy, labels needed to reach the baseline's final mean accuracy, the worst round against
    the baseline, and the mean accuracy over the whole curve (area under the learning curve / rounds)."""
    out = {}
    means = {}
    for strat, by_seed in results.items():
        curves = list(by_seed.values())
        n_rounds = min(len(c) for c in curves)
        mean = [{"n_labels": int(np.mean([c[i]["n_labels"] for c in curves])),
                 "accuracy": float(np.mean([c[i]["accuracy"] for c in curves]))} for i in range(n_rounds)]
        means[strat] = mean
    target = means[baseline][-1]["accuracy"] if baseline in means else None
    for strat, mean in means.items():
        entry = {"final_n_labels": mean[-1]["n_labels"], "final_accuracy": mean[-1]["accuracy"], "mean_curve": mean,
                 "mean_accuracy_over_curve": float(np.mean([r["accuracy"] for r in mean]))}
        finals = [c[-1].get("level_accuracy") for c in results[strat].values()]
        if finals and all(f is not None for f in finals):
            entry["final_level_accuracy"] = [float(np.mean([f[k] for f in finals])) for k in range(len(finals[0]))]
        if target is not None:
            entry["labels_to_reach_baseline_final"] = labels_to_reach(mean, target)
            base = {r["n_labels"]: r["accuracy"] for r in means[baseline]}
            gaps = [r["accuracy"] - base[r["n_labels"]] for r in mean if r["n_labels"] in base]
            entry["worst_gap_vs_baseline"] = float(min(gaps)) if gaps else None
        out[strat] = entry
    return {"baseline": baseline, "baseline_final_accuracy": target, "strategies": out}


def simulate(dataset: str, strategies: Sequence[str] = ("random", "default"), budget: int = 200,
             batch_size: int = 20, initial: int = 20, seeds: Sequence[int] = (0, 1, 2),
             backbone: Optional[str] = None, limit: Optional[int] = None, workdir: Optional[str | Path] = None,
             head: Optional[dict] = None, progress: bool = True, log: Optional[Callable[[str], None]] = None,
             mode: str = "async", pace: float = 0.0, compare_sync: bool = False, validation: float = 0.0,
             taxonomy: Optional[dict] = None, clock: str = "real", clock_costs: Optional[dict] = None) -> dict:
    """Compare strategies with a simulated oracle. Returns a JSON-ready dict:
    ``results[strategy][seed] = [{"n_labels", "accuracy", ...}, ...]`` plus ``ingest`` and ``summary``.

    ``mode="async"`` (default) drives the loop a person gets (background retrains, one answer per ``pace``
    seconds, stale-batch re-selection; ``clock="virtual"``: at a virtual pace, see :func:`run_one`);
    ``compare_sync=True`` also runs the synchronous loop and reports it beside
    (``results_sync``, ``summary_sync``). ``validation=0.2`` holds back 20% of the pool and reports accuracy on
    it instead of the test split (for choosing defaults without looking at the test split). ``taxonomy`` (a nested
    mapping as in ``alwb.yaml``, its leaves the dataset's classes) adds ``level_accuracy`` to every curve point and
    ``final_level_accuracy`` to the summary."""
    from ..query import available_strategies

    if budget < initial:
        raise ConfigError(f"--budget ({budget}) must be >= --initial ({initial})")
    if initial < 1 or batch_size < 1:
        raise ConfigError(f"--initial ({initial}) and --batch-size ({batch_size}) must be >= 1")
    if clock not in CLOCKS:
        raise ConfigError(f"--clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    if clock_costs is not None and clock != "virtual":
        raise ConfigError("clock costs apply to the virtual clock only (--clock virtual)")
    strategies = list(dict.fromkeys(strategies))
    if "random" not in strategies:
        strategies.insert(0, "random")
    workdir = Path(workdir) if workdir else DEFAULT_WORKDIR
    base = _base_project(dataset, backbone, workdir, limit, head, taxonomy)
    if base.config.tree is not None:
        gt_names = {g for g in base.source.ground_truth() if g is not None}
        outside = sorted(gt_names - set(base.config.tree.leaves))
        if outside:
            raise ConfigError(f"the taxonomy's leaves must be {dataset}'s classes: {', '.join(map(repr, outside))} "
                              f"is not a leaf (leaves: {', '.join(base.config.tree.leaves)})")
    allowed = available_strategies(multilabel=base.config.multilabel)
    bad = [s for s in strategies if s not in allowed]
    if bad:
        raise ConfigError(f"unknown strategy {', '.join(bad)}; allowed: {', '.join(sorted(allowed))}")
    src = base.source
    if not any(g is not None for g in src.ground_truth()):
        raise AlwbError(f"{dataset}: no ground truth (a folder tree with one sub-folder per class is needed to simulate)")
    t0 = time.perf_counter()
    X = base.embeddings(progress=progress)
    t_embed = time.perf_counter() - t0
    pool_size = int((~base.eval_mask()).sum())
    if pool_size < budget:
        raise ConfigError(f"--budget {budget} is larger than the pool ({pool_size} items outside the held-out split)")
    modes = [mode] + (["sync"] if compare_sync and mode != "sync" else [])
    all_results: dict = {}
    for m in modes:
        results: dict = {}
        for strat in strategies:
            results[strat] = {}
            for seed in seeds:
                t1 = time.perf_counter()
                curve = run_one(base, X, strat, int(seed), budget, batch_size, initial, mode=m, pace=pace,
                                validation=validation, clock=clock, clock_costs=clock_costs)
                results[strat][str(seed)] = curve
                if log:
                    log(f"[{m}] {strat:>16s} seed {seed}: {curve[-1]['n_labels']} labels -> "
                        f"{curve[-1]['accuracy']:.4f} ({time.perf_counter() - t1:.1f} s)")
        all_results[m] = results
    results = all_results[mode]
    report = src.report
    return {
        "dataset": dataset, "backbone": base.config.backbone.name, "head": base.config.head.kind,
        "budget": budget, "batch_size": batch_size, "initial": initial, "seeds": [int(s) for s in seeds],
        "n_pool": pool_size, "n_eval": int(base.eval_mask().sum()), "embed_seconds": round(t_embed, 2),
        "evaluated_on": "validation" if validation > 0 else "test", "validation": validation,
        "ingest": {"n_images": report.n_images,
                   "skipped": [{"path": s.path, "reason": s.reason} for s in report.skipped],
                   "duplicates": [{"path": d.path, "duplicate_of": d.duplicate_of} for d in report.duplicates]},
        "mode": mode, "pace_seconds_per_answer": pace, "clock": clock if mode == "async" else "none",
        **({"clock_costs": clock_costs} if clock_costs is not None and mode == "async" else {}),
        "results": results,
        "summary": summarise(results),
        **({"levels": base.config.tree.level_names(), "taxonomy": base.config.taxonomy}
           if base.config.tree is not None else {}),
        **({"results_sync": all_results["sync"], "summary_sync": summarise(all_results["sync"])}
           if "sync" in all_results and mode != "sync" else {}),
    }


def format_table(result: dict) -> str:
    """A plain-text table: mean accuracy per strategy at each labelled count."""
    summ = result["summary"]["strategies"]
    strategies = list(summ)
    ns = [r["n_labels"] for r in summ[strategies[0]]["mean_curve"]]
    head = f"{'labels':>7s} " + " ".join(f"{s[:14]:>14s}" for s in strategies)
    lines = [head, "-" * len(head)]
    for i, n in enumerate(ns):
        cells = []
        for s in strategies:
            curve = summ[s]["mean_curve"]
            cells.append(f"{curve[i]['accuracy']:14.4f}" if i < len(curve) else " " * 14)
        lines.append(f"{n:7d} " + " ".join(cells))
    lines.append("")
    base = result["summary"]["baseline_final_accuracy"]
    lines.append(f"random's final accuracy: {base:.4f}")
    for s in strategies:
        reach = summ[s].get("labels_to_reach_baseline_final")
        gap = summ[s].get("worst_gap_vs_baseline")
        lines.append(f"  {s:>18s}: reaches it with {reach if reach is not None else '-'} labels; "
                     f"worst round vs random {gap * 100:+.2f} points" if gap is not None else f"  {s}")
    if result.get("levels"):
        lines.append("final accuracy per taxonomy level (" + ", ".join(result["levels"]) + "):")
        for s in strategies:
            lv = summ[s].get("final_level_accuracy") or []
            lines.append(f"  {s:>18s}: " + "  ".join(f"{n} {a:.4f}" for n, a in zip(result["levels"], lv)))
    return "\n".join(lines)
