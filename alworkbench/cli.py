"""The `alwb` command line, built on alworkbench.loop. Errors we raise on purpose print as one line (exit 2)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from .errors import AlwbError


def _names(s: Optional[str]) -> Optional[list[str]]:
    if s is None:
        return None
    return [x.strip() for x in s.split(",") if x.strip()]


def _ints(s: str) -> list[int]:
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


def cmd_init(a) -> int:
    from .project import Project

    kw = {}
    if a.batch_size:
        kw["query"] = {"batch_size": a.batch_size}
    if a.limit:
        kw["source"] = {"limit": a.limit}
    p = Project.init(a.dir, a.images, classes=_names(a.classes), tags=_names(a.tags), backbone=a.backbone,
                     name=a.name, overwrite=a.force, **kw)
    kind = f"tags: {', '.join(p.config.tags)}" if p.config.multilabel else f"classes: {', '.join(p.config.classes)}"
    print(f"created {p.config_path} ({kind}; backbone {p.config.backbone.name})")
    print(f"next: alwb embed {a.dir}")
    return 0


def cmd_embed(a) -> int:
    from .project import Project

    p = Project.open(a.dir)
    X = p.embeddings(progress=not a.quiet)
    rep = p.source.report
    print(f"{len(X)} images embedded with {p.config.backbone.name} -> {X.shape[1]}-d "
          f"(cache: {p.dir / 'cache'}); {len(rep.skipped)} skipped, {len(rep.duplicates)} duplicates")
    return 0


def status_dict(p) -> dict:
    src = p.source
    store = p.store
    answers = store.active_answers()
    kinds: dict[str, int] = {}
    for ev in answers.values():
        kinds[ev["kind"]] = kinds.get(ev["kind"], 0) + 1
    names = p.config.tags if p.config.multilabel else p.config.classes
    rep = src.report
    reports = store.get_meta("reports", []) or []
    return {
        "project": p.name, "dir": str(p.dir), "mode": "multi-label" if p.config.multilabel else "single-label",
        "images": len(src.items),
        "skipped": [{"path": s.path, "reason": s.reason} for s in rep.skipped],
        "duplicates": [{"path": d.path, "duplicate_of": d.duplicate_of} for d in rep.duplicates],
        "held_out": int(p.eval_mask().sum()),
        "labelled": kinds.get("tags" if p.config.multilabel else "label", 0),
        "skipped_by_annotator": kinds.get("skip", 0), "flagged": kinds.get("flag", 0),
        "per_class" if not p.config.multilabel else "per_tag": store.counts(names, p.config.multilabel),
        "rounds": store.last_round(), "model_version": store.get_meta("model_version", 0),
        "last_accuracy": reports[-1]["accuracy"] if reports else None,
        "guideline_version": p.config.guideline.version,
    }


def cmd_status(a) -> int:
    from .project import Project

    p = Project.open(a.dir)
    st = status_dict(p)
    if a.json:
        print(json.dumps(st, indent=2, ensure_ascii=False))
        return 0
    print(f"project {st['project']} ({st['mode']}) in {st['dir']}")
    print(f"  images: {st['images']} ({st['held_out']} held out for evaluation), "
          f"{len(st['skipped'])} unreadable, {len(st['duplicates'])} duplicates")
    for s in st["skipped"][:20]:
        print(f"    skipped {s['path']}: {s['reason']}")
    print(f"  labelled: {st['labelled']}, skipped: {st['skipped_by_annotator']}, flagged: {st['flagged']}; "
          f"rounds: {st['rounds']}, model version: {st['model_version']}"
          + (f", accuracy {st['last_accuracy']:.3f}" if st["last_accuracy"] is not None else ""))
    counts = st.get("per_class") or st.get("per_tag")
    width = max((len(k) for k in counts), default=4)
    top = max(counts.values(), default=0) or 1
    for k, v in counts.items():
        print(f"    {k:>{width}s} {v:5d} {'#' * int(30 * v / top)}")
    return 0


def cmd_export(a) -> int:
    from .export import export
    from .project import Project

    p = Project.open(a.dir)
    out = Path(a.out) if a.out else p.dir / "exports" / ("labels.csv" if a.format == "csv" else "folders")
    if a.format in ("fiftyone", "fiftyone-folders"):
        from .integrations.fiftyone_sync import export as fo_export

        # fiftyone: FiftyOneImageClassificationDataset; fiftyone-folders: FiftyOne's ImageClassificationDirectoryTree
        res = fo_export(p, out, format="fiftyone" if a.format == "fiftyone" else "folders")
    else:
        res = export(p, out, a.format)
    print(json.dumps(res) if a.json else f"exported {res['n_exported']} labelled images to {res['path']}")
    return 0


def cmd_label(a) -> int:
    """Label rounds from the terminal (or let the simulated oracle answer with --oracle)."""
    from .loop.oracle import Oracle
    from .project import Project
    from .types import Answer

    p = Project.open(a.dir)
    s = p.session(annotator=a.annotator)
    try:
        s.wait()
        for _ in range(a.rounds):
            batch = s.next_batch()
            print(f"round {batch.round}: {len(s.pending())} image(s) chosen by {batch.strategy}")
            if a.oracle:
                Oracle(s).label_batch(batch)
            else:
                names = s.classes
                print("answer with a number or name; s = skip, f = flag, u = undo, q = quit")
                for i, n in enumerate(names, 1):
                    print(f"  {i}: {n}")
                while s.pending():
                    bi = s.pending()[0]
                    hint = f" (model: {bi.prediction.top[0][0]} {bi.prediction.top[0][1]:.0%})" if bi.prediction else ""
                    line = input(f"{bi.item.id} [{bi.item.uri}]{hint}> ").strip()
                    if line == "q":
                        return 0
                    if line == "u":
                        print(f"undone: {s.undo()['sample_id']}")
                        continue
                    try:
                        if line == "s":
                            ans = Answer.skip()
                        elif line.startswith("f"):
                            ans = Answer.flag(note=line[1:].strip())
                        elif s.multilabel:
                            ans = Answer.of_tags([names[int(x) - 1] if x.isdigit() else x for x in line.split(",")])
                        else:
                            ans = Answer.of_label(names[int(line) - 1] if line.isdigit() else line)
                        s.submit(bi.item.id, ans)
                    except (AlwbError, IndexError) as e:
                        print(f"  {e}")
            rep = s.retrain()
            acc = f", held-out {rep.metric} {rep.accuracy:.3f}" if rep.accuracy is not None else ""
            print(f"  model v{rep.model_version}: {rep.n_labels} labels{acc} (fit {rep.timings['fit']:.2f} s)")
            if rep.should_stop:
                print(f"  stopping signal: {rep.stop_reason}")
    finally:
        s.close()
    return 0


def cmd_simulate(a) -> int:
    from .loop.simulation import format_table, simulate

    res = simulate(a.dataset, strategies=_names(a.strategy), budget=a.budget, batch_size=a.batch_size,
                   initial=a.initial, seeds=a.seeds, backbone=a.backbone, limit=a.limit, workdir=a.workdir,
                   progress=not a.quiet, log=None if a.quiet else (lambda m: print(m, file=sys.stderr)))
    print(format_table(res))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1))
        print(f"wrote {a.json}")
    if a.plot:
        from .plots import plot_learning_curves

        plot_learning_curves(res, a.plot)
        print(f"wrote {a.plot}")
    return 0


def cmd_lab(a) -> int:
    """Open JupyterLab on a notebook (127.0.0.1 only)."""
    import os
    import subprocess

    if not Path(a.notebook).exists():
        raise AlwbError(f"no notebook at {a.notebook} (run alwb lab from the repository root, or give a path)")
    args = [sys.executable, "-m", "jupyter", "lab", "--ip=127.0.0.1", f"--port={a.port}", a.notebook]
    if a.no_browser:
        args.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--allow-root")  # containers and CI machines often run as root
    return subprocess.call(args)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="alwb", description="alworkbench: active-learning image labelling")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("init", help="create a project folder")
    p.add_argument("dir")
    p.add_argument("--images", required=True, help="a folder tree, a flat folder, a CSV manifest, digits, fashion-mnist")
    p.add_argument("--classes", help="comma-separated classes (one label per image)")
    p.add_argument("--tags", help="comma-separated tags (several per image)")
    p.add_argument("--backbone", help="embedding backbone (default: the offline default)")
    p.add_argument("--name")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--limit", type=int, help="built-in datasets: use a deterministic subset")
    p.add_argument("--force", action="store_true", help="overwrite an existing alwb.yaml")
    p.set_defaults(fn=cmd_init)

    p = sub.add_parser("embed", help="compute (or resume) the embedding cache")
    p.add_argument("dir")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_embed)

    p = sub.add_parser("status", help="images, skipped files, labels per class")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_status)

    p = sub.add_parser("export", help="export the labelled set")
    p.add_argument("dir")
    p.add_argument("--format", choices=["csv", "folders", "fiftyone", "fiftyone-folders"], default="csv")
    p.add_argument("--out")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_export)

    p = sub.add_parser("label", help="label rounds in the terminal (or --oracle from ground truth)")
    p.add_argument("dir")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--annotator")
    p.add_argument("--oracle", action="store_true", help="answer from ground truth (simulated annotator)")
    p.set_defaults(fn=cmd_label)

    p = sub.add_parser("simulate", help="compare query strategies with a simulated oracle")
    p.add_argument("--dataset", required=True, help="digits, fashion-mnist or a folder tree (class = sub-folder)")
    p.add_argument("--strategy", default="random,default", help="comma-separated strategy names")
    p.add_argument("--budget", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--initial", type=int, default=20)
    p.add_argument("--seeds", type=_ints, default=[0, 1, 2])
    p.add_argument("--backbone")
    p.add_argument("--limit", type=int, help="use a deterministic subset of a built-in dataset")
    p.add_argument("--workdir", help="where embeddings for simulation are cached")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--plot", help="write a learning-curve PNG here")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_simulate)

    p = sub.add_parser("lab", help="open JupyterLab on a notebook (bound to 127.0.0.1)")
    p.add_argument("notebook", nargs="?", default="notebooks/01_quickstart.ipynb")
    p.add_argument("--no-browser", action="store_true")
    p.add_argument("--port", type=int, default=8888)
    p.set_defaults(fn=cmd_lab)
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    try:
        return a.fn(a)
    except AlwbError as e:
        print(f"alwb: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("alwb: interrupted (finished work is kept; rerun to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
