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
    loc = p.store_location
    if (isinstance(loc, str) and a.force) or (not isinstance(loc, str) and Path(loc).exists()):
        # init --force over a labelled project (its SQLite file, or the PostgreSQL store it names)
        from .classes import mismatch_message, unknown_labels
        from .errors import StoreError

        try:
            unknown = unknown_labels(p)
            if unknown:
                print(f"note: {mismatch_message(p, unknown)}")
        except StoreError as exc:
            print(f"note: the stored labels could not be checked against the new classes: {exc}")
        finally:
            p.close()
    print(f"next: alwb embed {a.dir}")
    return 0


def cmd_embed(a) -> int:
    from .project import Project

    if a.ray is not None:
        from .embed.ray_embed import import_ray

        import_ray()  # without the [ray] extra: one line naming it, before the project is even opened
    if a.ray_workers is not None and a.ray_workers < 1:
        raise AlwbError(f"--ray-workers takes a positive number, got {a.ray_workers}")
    p = Project.open(a.dir)
    X = p.embeddings(progress=not a.quiet, ray=a.ray, ray_workers=a.ray_workers)
    rep = p.source.report
    er = p.embed_report
    how = ""
    if a.ray is not None:
        how = f" on Ray ({'local cluster' if a.ray == 'local' else a.ray})"
    print(f"{len(X)} images embedded with {p.config.backbone.name} -> {X.shape[1]}-d{how} "
          f"(cache: {p.dir / 'cache'}; {er.n_computed} computed, {er.n_cached} from the cache); "
          f"{len(rep.skipped)} skipped, {len(rep.duplicates)} duplicates")
    return 0


def _stop_on_sigterm():
    """SIGTERM raises KeyboardInterrupt in the main thread (so a long-running command stops as on Ctrl-C); returns the
    function that puts the previous handler back."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def stop(_signum, _frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    return lambda: signal.signal(signal.SIGTERM, previous)


def cmd_ingest(a) -> int:
    """`alwb ingest DIR [--watch SECONDS] [--route | --no-route]`: find new, changed and removed images, embed only
    what is new and route the new images (auto-accept with the saved model, or queue for people)."""
    import time

    from .project import Project

    p = Project.open(a.dir)

    writing = [False]  # a line is being written: Ctrl-C there must not glue the summary onto it

    def emit(text: str) -> None:
        writing[0] = True
        sys.stdout.write(text + "\n")  # one write with its newline (print writes the newline separately)
        sys.stdout.flush()
        writing[0] = False

    def show(rep) -> None:
        emit(json.dumps(rep.to_dict(), ensure_ascii=False) if a.json else "\n".join(rep.lines()))

    route = a.route  # None: the config's routing.on_ingest
    if a.watch is None:
        try:
            show(p.ingest(progress=not a.quiet, route=route))
        finally:
            p.close()
        return 0
    if a.watch <= 0:
        raise AlwbError(f"--watch takes a positive number of seconds, got {a.watch}")
    totals = {"polls": 0, "new": 0, "changed": 0, "removed": 0, "embedded": 0, "auto_labelled": 0, "queued": 0}
    restore = _stop_on_sigterm()   # `kill`, systemd and docker stop end the watch like Ctrl-C: summary, exit 0
    try:
        rep = p.ingest(progress=False, route=route)
        totals["polls"] += 1
        show(rep)
        if rep.builtin:
            return 0
        if not a.json:
            emit(f"watching {rep.source} every {a.watch:g} s (Ctrl-C to stop)")
        last_skipped = rep.skipped
        while True:
            time.sleep(a.watch)
            rep = p.ingest(progress=False, route=route)
            totals["polls"] += 1
            for k in ("new", "changed", "removed"):
                totals[k] += len(getattr(rep, k))
            totals["embedded"] += rep.embedded
            totals["auto_labelled"] += int(rep.routing.get("n_auto", 0))
            totals["queued"] += int(rep.routing.get("n_queued", 0))
            if rep.n_changes or rep.embedded or rep.skipped != last_skipped:
                show(rep)
            last_skipped = rep.skipped
    except KeyboardInterrupt:
        summary = (f"watch stopped after {totals['polls']} poll(s): {totals['new']} new, {totals['changed']} "
                   f"changed, {totals['removed']} removed, {totals['embedded']} embedded, {totals['auto_labelled']} "
                   f"auto-labelled, {totals['queued']} queued since it started")
        if writing[0]:  # interrupted mid-line: end that line first
            sys.stdout.write("\n")
        emit(json.dumps({"watch_summary": totals}) if a.json else summary)
        return 0
    finally:
        restore()
        p.close()


def status_dict(p) -> dict:
    src = p.source
    store = p.store
    answers = store.active_answers()
    kinds: dict[str, int] = {}
    for ev in answers.values():
        kinds[ev["kind"]] = kinds.get(ev["kind"], 0) + 1
    names = p.config.tags if p.config.multilabel else p.config.classes
    rep = src.report
    reports = store.reports()  # every process's round reports, appended
    return {
        "project": p.name, "dir": str(p.dir), "mode": "multi-label" if p.config.multilabel else "single-label",
        "store": {**store.describe(), "schema_version": store.schema_version()},
        "images": len(src.items),
        "skipped": [{"path": s.path, "reason": s.reason} for s in rep.skipped],
        "duplicates": [{"path": d.path, "duplicate_of": d.duplicate_of} for d in rep.duplicates],
        "held_out": int(p.eval_mask().sum()),
        "labelled": kinds.get("tags" if p.config.multilabel else "label", 0),
        "skipped_by_annotator": kinds.get("skip", 0), "flagged": kinds.get("flag", 0),
        "per_class" if not p.config.multilabel else "per_tag": store.counts(names, p.config.multilabel),
        "rounds": store.last_round(), "model_version": store.model_version(),
        "last_accuracy": reports[-1]["accuracy"] if reports else None,
        "model": _model_summary(store),
        "guideline_version": p.config.guideline.version,
        "unknown_labels": _unknown_labels(p),
        **_review_status(p),
        **_taxonomy_status(p, store, reports),
    }


def _taxonomy_status(p, store, reports) -> dict:
    """A taxonomy project: per level, coverage of the current labels and the latest round's accuracy (held out)
    and cross-validated accuracy (out of fold on the human labels)."""
    tree = p.config.tree
    if tree is None:
        return {}
    labels = store.labels()
    if tree.multilabel:  # a tag tree: per level, how many tag sets hold each tag of that depth (ancestors counted)
        cover = tree.tag_level_counts(list(store.tag_sets().values()))
    else:
        cover = tree.level_counts(list(labels.values()))
    moved: dict[str, list] = {}  # leaf -> [n labels, the path stored first] for paths the tree no longer gives
    for sid, path in store.paths().items():
        leaf = labels.get(sid)
        if leaf in tree.leaves and tuple(path) != tree.path(leaf):
            moved.setdefault(leaf, [0, list(path)])[0] += 1
    last = next((r.get("levels") for r in reversed(reports) if r.get("levels")), None) or []
    out = []
    for k, name in enumerate(tree.level_names(), start=1):
        rep = next((lv for lv in last if lv.get("level") == k), {})
        out.append({"level": k, "name": name, "coverage": cover[k - 1], "accuracy": rep.get("accuracy"),
                    "cv_accuracy": rep.get("cv_accuracy"), "metric": "micro_f1" if tree.multilabel else "accuracy"})
    return {"taxonomy_depth": tree.depth, "levels": out,
            "moved_paths": {leaf: {"n": n, "stored": p, "now": list(tree.path(leaf))} for leaf, (n, p) in moved.items()}}


def _review_status(p) -> dict:
    """Review states of the answered items, the open review queue's length and the gold count."""
    from .labels.quality import REVIEW_STATES, QualityView

    view = QualityView(p.store, p.config)
    states = view.review_states()
    from .loop.routing import auto_ids

    ids = {it.id for it in p.source.items}
    missing = sorted(s for s in view.answers if s not in ids)
    return {"review_states": {s: sum(1 for v in states.values() if v == s) for s in REVIEW_STATES},
            "review_queue": len(view.review_queue()), "gold": len(view.gold),
            "auto_labels": len(auto_ids(p.store)), "labelled_missing": missing}


def _unknown_labels(p) -> dict:
    from .classes import unknown_labels

    return unknown_labels(p)


def _model_summary(store) -> Optional[dict]:
    """The latest model record: version, round, labels it was trained on, cross-validated accuracy, temperature."""
    m = store.latest_model_summary()
    if not m:
        return None
    return {k: m.get(k) for k in ("version", "round", "n_labels", "cv_accuracy", "temperature", "annotator")}


def _store_line(d: dict) -> str:
    """Which label store: the SQLite file, or the PostgreSQL server (user@host:port/db, never a password)."""
    if d["backend"] == "postgresql":
        where = f"PostgreSQL {d['location']}" + (f", schema {d['schema']}" if d.get("schema") else "")
    else:
        where = f"SQLite {d['location']}"
    return f"{where} (store schema version {d['schema_version']})"


def cmd_status(a) -> int:
    from .project import Project

    p = Project.open(a.dir)
    st = status_dict(p)
    if a.json:
        print(json.dumps(st, indent=2, ensure_ascii=False))
        return 0
    print(f"project {st['project']} ({st['mode']}) in {st['dir']}")
    print(f"  label store: {_store_line(st['store'])}")
    print(f"  images: {st['images']} ({st['held_out']} held out for evaluation), "
          f"{len(st['skipped'])} unreadable, {len(st['duplicates'])} duplicates")
    for s in st["skipped"][:20]:
        print(f"    skipped {s['path']}: {s['reason']}")
    print(f"  labelled: {st['labelled']}, skipped: {st['skipped_by_annotator']}, flagged: {st['flagged']}; "
          f"rounds: {st['rounds']}, model version: {st['model_version']}"
          + (f", accuracy {st['last_accuracy']:.3f}" if st["last_accuracy"] is not None else ""))
    m = st.get("model")
    if m:
        cv = f", {m['cv_accuracy']:.0%} accurate in cross-validation" if m.get("cv_accuracy") is not None else ""
        print(f"  model v{m['version']} (round {m['round']}): trained on {m['n_labels']} labels{cv}")
    counts = st.get("per_class") or st.get("per_tag")
    width = max((len(k) for k in counts), default=4)
    top = max(counts.values(), default=0) or 1
    for k, v in counts.items():
        print(f"    {k:>{width}s} {v:5d} {'#' * int(30 * v / top)}")
    for lv in st.get("levels") or []:
        metric = lv.get("metric", "accuracy")
        acc = f"{metric} {lv['accuracy']:.3f}" if lv["accuracy"] is not None else f"{metric} -"
        cv = f", cross-validated {lv['cv_accuracy']:.3f}" if lv["cv_accuracy"] is not None else ""
        covered = sum(1 for v in lv["coverage"].values() if v)
        print(f"  {lv['name']}: {acc}{cv}; {covered}/{len(lv['coverage'])} "
              f"{'tags' if metric == 'micro_f1' else 'nodes'} labelled: "
              + ", ".join(f"{n} {c}" for n, c in lv["coverage"].items()))
    for leaf, m in (st.get("moved_paths") or {}).items():
        print(f"  {m['n']} label(s) {leaf!r} were answered under {' > '.join(m['stored'])}; the taxonomy now puts it "
              f"under {' > '.join(m['now'])} (levels, metrics and exports follow the taxonomy; the store keeps both)")
    rs = st["review_states"]
    print(f"  review: {rs['unreviewed']} unreviewed, {rs['accepted']} accepted, {rs['corrected']} corrected; "
          f"{st['review_queue']} waiting in the review queue (alwb review); gold: {st['gold']} item(s)")
    if st["auto_labels"]:
        print(f"  auto labels (alwb route, routed ingests): {st['auto_labels']}, kept apart from human labels")
    if st["labelled_missing"]:
        shown = ", ".join(st["labelled_missing"][:5]) + (" ..." if len(st["labelled_missing"]) > 5 else "")
        print(f"  labelled but missing from the source: {len(st['labelled_missing'])} ({shown}); their labels stay "
              "in the store")
    if st["unknown_labels"]:
        from .classes import mismatch_message

        print(f"  note: {mismatch_message(p, st['unknown_labels'])}")
    return 0


def cmd_export(a) -> int:
    from .export import export
    from .project import Project

    p = Project.open(a.dir)
    default = a.out is None
    out = Path(a.out) if a.out else p.dir / "exports" / ("labels.csv" if a.format == "csv" else a.format)
    overwrite = a.overwrite or default  # the default folder under DIR/exports/ holds only earlier exports
    if a.format in ("fiftyone", "fiftyone-folders"):
        from .integrations.fiftyone_sync import export as fo_export

        # fiftyone: FiftyOneImageClassificationDataset; fiftyone-folders: FiftyOne's ImageClassificationDirectoryTree
        res = fo_export(p, out, format="fiftyone" if a.format == "fiftyone" else "folders", overwrite=overwrite,
                        include_auto=a.include_auto)
    else:
        res = export(p, out, a.format, overwrite=overwrite, include_auto=a.include_auto)
    if a.json:
        print(json.dumps(res))
        return 0
    print(f"exported {res['n_exported']} labelled images to {res['path']}")
    if res.get("n_auto"):
        where = f"under {res['auto_folder']}/, apart from the human labels" if res.get("auto_folder") else \
            "with source 'auto', their confidence and model_version"
        print(f"  {res['n_auto']} of them are auto labels (model labels from `alwb route`), {where}")
    if res.get("n_auto_left_out"):
        print(f"  {res['n_auto_left_out']} auto label(s) left out (model labels from `alwb route`, not human labels); "
              "pass --include-auto to export them (kept apart, source 'auto')")
    if res.get("n_ties"):
        print(f"  {res['n_ties']} item(s) left out: their annotators disagree without a majority (a tie); "
              f"review them with `alwb review {a.dir}`")
    return 0


LABEL_HELP = ("answer with a class name or its number from the list{hash}; "
              ":skip, :flag NOTE, :undo, :quit, :help (Ctrl-D also quits; answers are saved as you go)")
TAGS_HELP = ("answer with tag names or numbers separated by commas (e.g. 1,3 or red,round){hash}; "
             ":skip, :flag NOTE, :undo, :quit, :help (Ctrl-D also quits; answers are saved as you go)")
COMMANDS = {":skip": "skip", ":s": "skip", ":flag": "flag", ":f": "flag", ":undo": "undo", ":u": "undo",
            ":quit": "quit", ":q": "quit", ":exit": "quit", ":help": "help", ":h": "help", "?": "help",
            ":ack": "ack"}


class _Reply:
    """What one line typed at the `alwb label` prompt means: a command, an answer, or a message to show."""

    def __init__(self, kind: str, value=None, message: str = ""):
        self.kind = kind  # skip | flag | undo | quit | help | ack | answer | error | empty
        self.value = value
        self.message = message


def _numbers_allowed(names: Sequence[str]) -> bool:
    """Bare numbers pick by position unless a name is itself a number (then only `#N` does)."""
    return not any(n.strip().lstrip("+-").isdigit() for n in names)


def _resolve_name(token: str, names: Sequence[str], accepted: Sequence[str], kind: str):
    """One typed token -> a name (str) or an error message (_Reply). ``names``: the numbered list;
    ``accepted``: every name an answer may use (tags: with their ancestors)."""
    import difflib

    t = token.strip()
    if t in accepted:
        return t
    positional = t[1:] if t.startswith("#") else (t if _numbers_allowed(names) else None)
    if positional is not None and positional.strip().lstrip("+-").isdigit():
        k = int(positional)
        if 1 <= k <= len(names):
            return names[k - 1]
        return _Reply("error", message=f"{t} is not in the list: numbers go from 1 to {len(names)}")
    folded = [n for n in accepted if n.casefold() == t.casefold()]
    if len(folded) == 1:
        return folded[0]
    close = difflib.get_close_matches(t, list(accepted), n=3)
    hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
    word = t.split(" ", 1)[0].lower()
    if t.lstrip("+-").isdigit() and not _numbers_allowed(names):
        hint += f"; the {kind} names here are numbers: #N picks the N-th of the list"
    if ":" + word in COMMANDS:
        hint += f"; commands start with ':', e.g. :{COMMANDS[':' + word]}"
    return _Reply("error", message=f"unknown {kind} {t!r}{hint}; type :help for the choices")


def parse_label_line(line: str, names: Sequence[str], multilabel: bool,
                     accepted: Optional[Sequence[str]] = None) -> _Reply:
    """Parse one line typed at the `alwb label` prompt. Names and numbers answer; commands start with ':'."""
    line = line.strip()
    accepted = list(accepted if accepted is not None else names)
    if not line:
        return _Reply("empty")
    if line in accepted:  # an exact name always wins
        return _Reply("answer", [line] if multilabel else line)
    head, _, rest = line.partition(" ")
    if head.lower() in COMMANDS:
        cmd = COMMANDS[head.lower()]
        if cmd == "flag":
            return _Reply("flag", rest.strip())
        if rest.strip():
            return _Reply("error", message=f"{head} takes no argument (got {rest.strip()!r})")
        return _Reply(cmd)
    if line.startswith(":"):
        return _Reply("error", message=f"unknown command {head!r}; commands: :skip, :flag NOTE, :undo, :quit, :help")
    kind = "tag" if multilabel else "class"
    if not multilabel:
        got = _resolve_name(line, names, accepted, kind)
        return got if isinstance(got, _Reply) else _Reply("answer", got)
    picked = []
    for token in [x for x in line.split(",") if x.strip()] or [line]:
        got = _resolve_name(token, names, accepted, kind)
        if isinstance(got, _Reply):
            return got
        picked.append(got)
    return _Reply("answer", picked)


def _print_choices(names: Sequence[str], multilabel: bool) -> None:
    numbered = _numbers_allowed(names)
    hash_note = "" if numbered else " (names are numbers here: #N picks the N-th)"
    print((TAGS_HELP if multilabel else LABEL_HELP).format(hash=hash_note))
    for i, n in enumerate(names, 1):
        print(f"  {i if numbered else '#' + str(i)}: {n}")


def _label_interactively(s) -> bool:
    """Answer the open batch from stdin; returns False when the person quit (or input ended)."""
    from .errors import NothingToUndoError
    from .loop.session import GuidelineChangedError
    from .names import text
    from .types import Answer

    names = list(s.classes)
    accepted = list(getattr(s.schema, "allowed_tags", ()) or names) if s.multilabel else names
    _print_choices(names, s.multilabel)
    while s.pending():
        bi = s.pending()[0]
        hint = f" (model: {bi.prediction.top[0][0]} {bi.prediction.top[0][1]:.0%})" if bi.prediction else ""
        where = "" if bi.item.uri.startswith("builtin://") else f" [{text(bi.item.uri)}]"
        try:
            line = input(f"{text(bi.item.id)}{where}{hint}> ")
        except EOFError:
            print("\nend of input: stopping here (every answer so far is saved; rerun to continue)")
            return False
        r = parse_label_line(line, names, s.multilabel, accepted)
        if r.kind == "empty":
            continue
        if r.kind == "error":
            print(f"  {r.message}")
            continue
        if r.kind == "help":
            _print_choices(names, s.multilabel)
            continue
        if r.kind == "quit":
            print("stopped (every answer so far is saved; rerun to continue)")
            return False
        if r.kind == "ack":
            s.acknowledge_guideline()
            print(f"  guideline version {s.guideline_version} acknowledged")
            continue
        if r.kind == "undo":
            try:
                print(f"  undone: {text(s.undo()['sample_id'])}")
            except NothingToUndoError:
                print("  nothing to undo yet")
            continue
        ans = {"skip": Answer.skip, "flag": lambda: Answer.flag(note=r.value or "")}.get(r.kind)
        if ans is not None:
            ans = ans()
        elif s.multilabel:
            ans = Answer.of_tags(r.value)
        else:
            ans = Answer.of_label(r.value)
        try:
            s.submit(bi.item.id, ans)
        except GuidelineChangedError as e:
            print(f"  {e}\n  --- guideline ---\n{s.guideline_text}\n  ---\n  type :ack once you have read it")
        except AlwbError as e:
            print(f"  {e}")
    return True


def cmd_label(a) -> int:
    """Label rounds from the terminal (or let the simulated oracle answer with --oracle)."""
    from .classes import check_labels_match
    from .loop.oracle import Oracle
    from .project import Project

    p = Project.open(a.dir)
    check_labels_match(p)  # labels of a renamed class: one line naming `alwb classes rename`, not a crash
    s = p.session(annotator=a.annotator)
    try:
        s.wait()
        if s.opening_fit is not None:  # answers since the last stored model (by anyone): rebuilt on opening
            _print_report(s.opening_fit.result(), "rebuilt on opening: ")
        for _ in range(a.rounds):
            batch = s.next_batch()
            print(f"round {batch.round}: {len(s.pending())} image(s) chosen by {batch.strategy}")
            if a.oracle:
                oracle = Oracle(s)
                oracle.label_batch(batch)
                if oracle.summary():
                    print(f"  {oracle.summary()}")
            elif not _label_interactively(s):
                return 0
            _print_report(s.retrain())
    finally:
        s.close()
    return 0


def _print_report(rep, lead: str = "") -> None:
    """One round report as `alwb label` prints it: model version, labels, held-out accuracy, fit time."""
    acc = f", held-out {rep.metric} {rep.accuracy:.3f}" if rep.accuracy is not None else ""
    fit = rep.timings.get("fit") if rep.timings else None
    print(f"  {lead}model v{rep.model_version}: {rep.n_labels} labels{acc}"
          + ("" if fit is None else f" (fit {fit:.2f} s)"))
    if rep.levels:  # a taxonomy: held-out accuracy per level (cross-validated in brackets)
        print("  per level: " + ", ".join(
            f"{lv['name']} " + ("-" if lv["accuracy"] is None else f"{lv['accuracy']:.3f}")
            + ("" if lv["cv_accuracy"] is None else f" (cv {lv['cv_accuracy']:.3f})") for lv in rep.levels))
    if rep.should_stop:
        print(f"  stopping signal: {rep.stop_reason}")


REVIEW_COMMANDS = {"a": "accept", ":a": "accept", ":accept": "accept", "s": "skip", ":s": "skip", ":skip": "skip",
                   "q": "quit", ":q": "quit", ":quit": "quit", ":exit": "quit", "?": "help", ":h": "help",
                   ":help": "help"}
REVIEW_HELP = "Enter or a = accept the answer; {what} = correct it (a reason is asked next); s = skip; q = quit"


def _review_choices(names: Sequence[str], multilabel: bool) -> str:
    numbered = _numbers_allowed(names)
    what = ("tag names or numbers separated by commas" if multilabel else "a class name or number") if numbered \
        else ("tag names separated by commas" if multilabel else "a class name") + " (#N picks the N-th)"
    listing = ", ".join(f"{i}:{n}" if numbered else n for i, n in enumerate(names, 1))
    return REVIEW_HELP.format(what=what) + f"; {'tags' if multilabel else 'classes'}: {listing}"


def parse_review_line(line: str, names: Sequence[str], multilabel: bool,
                      accepted: Optional[Sequence[str]] = None) -> _Reply:
    """One line typed at the `alwb review` prompt: accept (Enter, a), skip (s), quit (q), help (?), or a
    correction (a class name, or tags with commas). A name that is also a command letter is refused as
    ambiguous (type =NAME for the name, :accept / :skip / :quit for the command): nothing is guessed."""
    raw = line.strip()
    accepted = list(accepted if accepted is not None else names)
    if not raw:
        return _Reply("accept")
    kind = "tag" if multilabel else "class"
    if raw.startswith("=") and len(raw) > 1:  # =NAME: always a name
        r = parse_label_line(raw[1:], names, multilabel, accepted)
        if r.kind == "answer":
            return _Reply("correct", r.value)
        return r if r.kind == "error" else _Reply("error", message=f"unknown {kind} {raw[1:]!r}")
    cmd = REVIEW_COMMANDS.get(raw.lower())
    if cmd is not None:
        clash = any(n.casefold() == raw.casefold() for n in accepted)
        if clash and not raw.startswith(("?", ":")):
            return _Reply("error", message=f"{raw!r} is both a command and a {kind} name: "
                                           f"type :{cmd} for the command or ={raw} for the name")
        return _Reply(cmd)
    if raw.startswith(":"):
        return _Reply("error", message=f"unknown command {raw.split()[0]!r} here")
    r = parse_label_line(raw, names, multilabel, accepted)
    if r.kind == "answer":
        return _Reply("correct", r.value)
    if r.kind == "error":
        return _Reply("error", message=r.message.split("; type :help")[0])
    return _Reply("error", message=f"{raw!r} is not a review choice")


def _review_model_session(p, reviewer: Optional[str]):
    """``(session, why_no_model)``: a Session for the reviewer with the project's saved model restored for the
    suggestions when it is current (trained after the latest answer, on this backbone's embeddings); nothing is
    retrained, and without a usable model no embeddings are computed either."""
    import numpy as np

    rec = p.store.latest_model()
    why = None
    if rec is None:
        why = "no model yet"
    elif rec.get("snapshot") != p.store.n_events():
        why = "no model yet for the latest answers (it retrains when an annotator finishes a batch)"
    else:
        from .embed.backbones import get_backbone

        b = p.config.backbone
        if rec.get("dim") != get_backbone(b.name, weights=b.weights, device="cpu").dim:
            why = "no model yet on this project's embeddings"
    if why is not None:
        # a session over placeholder embeddings: never trained, never queried, only the review queue
        return p.session(annotator=reviewer, embeddings=np.zeros((len(p.items), 1), np.float32),
                         warm_start=False), why
    s = p.session(annotator=reviewer, warm_start=False)
    if not s._restore_model():  # the saved model files: restored, never refitted here
        return s, "no model yet (the saved model could not be loaded)"
    return s, None


def _print_review_entry(rs, entry: dict, k: int, n: int, why_no_model: Optional[str]) -> None:
    from .data.sources import display_path
    from .names import text
    from .quality_report import reason_text

    it = rs.item(entry["item_id"])
    where = it.uri if it.uri.startswith("builtin://") else display_path(it.uri)
    print(f"\n[{k}/{n}] {text(entry['item_id'])}  {where}")
    print(f"  why: {'; '.join(reason_text(r) for r in entry['reasons'])}")
    for ans in entry["answers"]:
        v = ans["value"]
        what = {"skip": "skipped", "flag": "flagged"}.get(ans["kind"]) or (
            ", ".join(v) if isinstance(v, (list, tuple)) else str(v))
        note = f"  note: {text(ans['note'])!r}" if ans.get("note") else ""
        print(f"  {text(ans['annotator'])}: {what}{note}")
    cons = entry.get("consensus")
    if entry.get("tie"):
        cons_text = "none (a tie: no majority)"
    elif cons is None:
        cons_text = "none (no label answer)"
    else:
        cons_text = ", ".join(cons) if isinstance(cons, (list, tuple)) else str(cons)
    print(f"  consensus: {cons_text}")
    sug = entry.get("suggestion")
    if sug:
        print("  model: " + ", ".join(f"{c} {p:.0%}" for c, p in sug))
    else:
        print("  model: " + (why_no_model or "suggestions hidden (ui.show_suggestions: false)"))


def _ask(prompt: str) -> Optional[str]:
    try:
        return input(prompt)
    except EOFError:
        return None


def cmd_review(a) -> int:
    """Review the queue in the terminal: accept, correct with a reason, skip, quit (one line per decision)."""
    from .loop.review import ReviewError, ReviewSession
    from .project import Project

    p = Project.open(a.dir)
    s, why_no_model = _review_model_session(p, a.reviewer)
    try:
        rs = ReviewSession(s)
        names = list(s.classes)
        accepted_names = list(getattr(s.schema, "allowed_tags", ()) or names) if s.multilabel else names
        queue = rs.queue()
        print(f"review queue of {p.name}: {len(queue)} item(s) for reviewer {rs.reviewer}"
              + (f" ({why_no_model}: no suggestions)" if why_no_model else ""))
        if queue:
            print(_review_choices(names, s.multilabel))
        counts = {"accepted": 0, "corrected": 0, "skipped": 0}
        stopped = None
        for k, entry in enumerate(queue, 1):
            if entry["item_id"] not in {e["item_id"] for e in rs.view().review_queue(rs.reviewer)}:
                print(f"\n[{k}/{len(queue)}] {entry['item_id']}: reviewed by someone else meanwhile (or answered "
                      "again); next")
                continue
            _print_review_entry(rs, entry, k, len(queue), why_no_model)
            while True:
                line = _ask("review> ")
                if line is None:
                    stopped = "end of input: stopping here"
                    break
                r = parse_review_line(line, names, s.multilabel, accepted_names)
                if r.kind == "error":
                    print(f"  {r.message}\n  {_review_choices(names, s.multilabel)}")
                    continue
                if r.kind == "help":
                    print(f"  {_review_choices(names, s.multilabel)}")
                    continue
                if r.kind == "quit":
                    stopped = "stopped"
                    break
                if r.kind == "skip":
                    counts["skipped"] += 1
                    print("  skipped")
                    break
                if r.kind == "accept":
                    try:
                        rs.accept(entry["item_id"])
                    except ReviewError as e:
                        print(f"  {e}")
                        continue
                    counts["accepted"] += 1
                    print("  accepted")
                    break
                # a correction: ask for the reason until one is given
                reason = None
                while True:
                    reason = _ask("reason: ")
                    if reason is None or reason.strip():
                        break
                    print("  a correction needs a reason (what was wrong)")
                if reason is None:
                    stopped = "end of input: stopping here (this correction was not saved)"
                    break
                try:
                    rs.correct(entry["item_id"], r.value, reason.strip())
                except ReviewError as e:
                    print(f"  {e}")
                    continue
                counts["corrected"] += 1
                value = ", ".join(r.value) if isinstance(r.value, (list, tuple)) else r.value
                print(f"  corrected to {value}")
                break
            if stopped:
                break
        left = len(rs)
        if stopped:
            print(f"\n{stopped} (every decision so far is saved; rerun to continue)")
        print(f"\nreviewed: {counts['accepted']} accepted, {counts['corrected']} corrected, {counts['skipped']} "
              f"skipped; {left} left in the queue")
    finally:
        s.close()
    return 0


def cmd_quality(a) -> int:
    """Per annotator accuracy, agreement, review states and the open queue; --json prints the report dict."""
    from .labels.quality import QualityView
    from .project import Project
    from .quality_report import format_quality_report, jsonable

    p = Project.open(a.dir)
    report = jsonable(QualityView(p.store, p.config).report())
    if a.json:
        print(json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False))
        return 0
    print(f"quality of {p.name} ({p.dir})")
    print(format_quality_report(report))
    return 0


def cmd_gold(a) -> int:
    """`alwb gold import DIR FILE.csv` / `alwb gold promote DIR [--item ID ...]` / `alwb gold list DIR`."""
    from .labels.quality import QualityView, _norm, add_gold, promote_reviewed, read_gold_csv
    from .names import text
    from .project import Project

    p = Project.open(a.dir)
    if a.action == "import":
        rows = read_gold_csv(a.file, p.schema)  # ConfigError naming the line: exit 2
        if not rows:
            col = "tags" if p.config.multilabel else "label"
            raise AlwbError(f"gold file {a.file} has no rows (expected id,{col})")
        ids = {it.id for it in p.source.items}
        gold = QualityView(p.store, p.config).gold
        new = [(sid, v) for sid, v in rows if _norm(gold.get(sid)) != _norm(v)]
        res = add_gold(p.store, new, multilabel=p.config.multilabel, source=f"csv:{Path(a.file).name}",
                       known_ids=ids)
        same = len(rows) - len(new)
        n_gold = len(QualityView(p.store, p.config).gold)
        print(f"gold: {res['added']} item(s) added from {a.file}"
              + (f", {same} already gold with that answer" if same else "") + f"; {n_gold} gold item(s) in {p.name}")
        if res["unknown"]:
            shown = ", ".join(text(x) for x in res["unknown"][:10])
            more = f" and {len(res['unknown']) - 10} more" if len(res["unknown"]) > 10 else ""
            print(f"alwb: error: {len(res['unknown'])} id(s) in {a.file} are not items of this project and were not "
                  f"added: {shown}{more}", file=sys.stderr)
            return 1
        return 0
    if a.action == "promote":
        n = promote_reviewed(p.store, p.config, a.item or None)
        n_gold = len(QualityView(p.store, p.config).gold)
        print(f"gold: {n} reviewed item(s) promoted; {n_gold} gold item(s) in {p.name}")
        return 0
    view = QualityView(p.store, p.config)
    print(f"{len(view.gold)} gold item(s) in {p.name}")
    answered = {}
    for e in view.gold_events:
        answered[e["sample_id"]] = answered.get(e["sample_id"], 0) + 1
    for sid in sorted(view.gold):
        v = view.gold[sid]
        value = ", ".join(v) if isinstance(v, (list, tuple)) else str(v)
        print(f"  {text(sid)}: {value}  (source {view.gold_source.get(sid) or '-'}; answered {answered.get(sid, 0)} "
              f"time(s) as gold)")
    return 0


def cmd_classes(a) -> int:
    """`alwb classes list DIR` / `alwb classes rename DIR OLD NEW`."""
    from .classes import rename_class, unknown_labels
    from .project import Project

    p = Project.open(a.dir)
    if a.action == "rename":
        res = rename_class(p, a.old, a.new)
        what = "config updated" if res["config_changed"] else "config unchanged"
        print(f"renamed {res['old']!r} -> {res['new']!r}: {res['n_items']} label(s) mapped"
              + (f" in round {res['round']}" if res["round"] else "") + f"; {what} ({p.config_path})")
        return 0
    names = p.config.tags if p.config.multilabel else p.config.classes
    counts = p.store.counts(names, p.config.multilabel)
    for n in names:
        print(f"  {n}: {counts.get(n, 0)}")
    for n, c in unknown_labels(p).items():
        print(f"  {n}: {c}  (not in {p.config_path.name}: map with `alwb classes rename {a.dir} {n} NEW`)")
    return 0


def cmd_route(a) -> int:
    """Confidence routing: auto-accept predictions above the per-class thresholds (``auto_label`` records), print
    the thresholds, what was accepted and the realised precision of the reviewed auto labels (--json: one dict)."""
    from .loop.routing import format_report, routing_report
    from .project import Project
    from .quality_report import jsonable

    p = Project.open(a.dir)
    s = p.session(annotator=a.annotator)
    try:
        res = s.auto_label(dry_run=a.dry_run)
    finally:
        s.close()
    rep = routing_report(p.store, p.config)
    if a.json:
        out = {k: v for k, v in res.items() if k not in ("item_ids", "pool_ids")}
        out["report"] = rep
        print(json.dumps(jsonable(out), indent=2, ensure_ascii=False, allow_nan=False))
        return 0
    print(f"routing of {p.name} ({p.dir})" + (" [dry run: nothing written]" if a.dry_run else ""))
    print(format_report(res, rep))
    return 0


def cmd_simulate(a) -> int:
    from .loop.simulation import format_table, parse_clock_costs, simulate

    dataset, taxonomy, limit = a.dataset, None, a.limit
    if a.config:  # a project config: its built-in dataset, its taxonomy and its source.limit
        from .config import load_config

        cfg = load_config(a.config)
        if cfg.source.kind != "builtin" and dataset is None:
            raise AlwbError(f"{a.config}: simulate needs a built-in source (source.dataset) or --dataset")
        dataset = dataset or cfg.source.dataset
        if cfg.tags is not None and cfg.taxonomy is not None:
            raise AlwbError(f"{a.config}: simulate runs class taxonomies (taxonomy:), not tag trees (tags: nested)")
        taxonomy = cfg.taxonomy
        limit = limit or cfg.source.limit
    if dataset is None:
        raise AlwbError("simulate needs --dataset or --config")
    res = simulate(dataset, strategies=_names(a.strategy), budget=a.budget, batch_size=a.batch_size,
                   initial=a.initial, seeds=a.seeds, backbone=a.backbone, limit=limit, workdir=a.workdir,
                   progress=not a.quiet, log=None if a.quiet else (lambda m: print(m, file=sys.stderr)),
                   mode=a.mode, pace=a.pace, compare_sync=a.compare_sync, taxonomy=taxonomy,
                   clock=a.clock, clock_costs=parse_clock_costs(a.clock_costs))
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
    if os.name == "posix":
        # alwb lab becomes the JupyterLab server: a SIGTERM (a process manager, `kill`) reaches the server itself
        # (as a child it was orphaned and went on serving the notebook)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, args)
    return subprocess.call(args)


def cmd_store(a) -> int:
    """alwb store migrate DIR --to URL: copy the project's label store (SQLite file, or its configured store)
    into an empty PostgreSQL database, printing row counts and a checksum of both sides."""
    import os

    from .config import check_store_url, load_config
    from .labels import open_store
    from .labels.migrate import copy_store
    from .project import STORE_FILENAME

    d = Path(a.dir)
    if not d.is_dir():
        raise AlwbError(f"no project folder {d}")
    cfg_path = d / "alwb.yaml"
    cfg = load_config(cfg_path) if cfg_path.exists() else None
    source = (cfg.store if cfg is not None else None) or d / STORE_FILENAME
    if not isinstance(source, str) and not source.exists():
        raise AlwbError(f"no label store in {d} (no {STORE_FILENAME}, no 'store:' in alwb.yaml): nothing to migrate")
    target = a.to or os.environ.get("ALWB_STORE_URL")
    if not target:
        raise AlwbError("say where to migrate to: --to postgresql://user@host:port/db (or set ALWB_STORE_URL); "
                        "the password comes from PGPASSWORD, ~/.pgpass or a service file")
    target = check_store_url(target, "--to")
    if str(source) == target:
        raise AlwbError(f"the project's store already is {target}")
    src = open_store(source)
    try:
        dst = open_store(target)
        try:
            res = copy_store(src, dst)
        finally:
            dst.close()
    finally:
        src.close()
    for side, where in (("source", src.path), ("target", dst.path)):
        c = res[side]["counts"]
        print(f"{side}: {where}: {c['events']} events, {c['records']} records, {c['batches']} batches, "
              f"{c['meta']} meta keys; checksum {res[side]['checksum']}")
    if res["source"] != res["target"]:
        raise AlwbError("the copy differs from the source (counts or checksum above): do not switch to it")
    print(f"identical. To use it, set `store: {dst.path}` in {cfg_path} (or ALWB_STORE_URL); the SQLite file is "
          "left as it was")
    return 0


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
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="compute on Ray Data (needs the [ray] extra): without ADDRESS a local cluster on this machine, "
                        "else the cluster at ADDRESS (e.g. 10.0.0.5:6379 or ray://host:10001)")
    p.add_argument("--ray-workers", type=int, help="with --ray: actors (default one per GPU, else one per CPU)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_embed)

    p = sub.add_parser("ingest", help="find new, changed and removed images in the source and embed only what is "
                       "new (existing labels are never changed)")
    p.add_argument("dir")
    p.add_argument("--watch", type=float, metavar="SECONDS",
                   help="poll the source every SECONDS until interrupted (Ctrl-C prints a summary)")
    p.add_argument("--json", action="store_true", help="print each report as one JSON line")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--route", dest="route", action="store_true", default=None,
                   help="route the new images with the saved model (auto-accept or queue) even if "
                        "routing.on_ingest is false")
    g.add_argument("--no-route", dest="route", action="store_false",
                   help="queue every new image for people this time")
    p.set_defaults(fn=cmd_ingest)

    p = sub.add_parser("status", help="images, skipped files, labels per class")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_status)

    p = sub.add_parser("export", help="export the labelled set")
    p.add_argument("dir")
    p.add_argument("--format", choices=["csv", "folders", "fiftyone", "fiftyone-folders"], default="csv")
    p.add_argument("--out", help="a new or empty folder (csv: or a .csv file); never the project or image folder "
                   "(default: DIR/exports/)")
    p.add_argument("--overwrite", action="store_true",
                   help="allow a non-empty --out: replace a previous export's files there, keep other files")
    p.add_argument("--include-auto", action="store_true",
                   help="also export auto labels (confidence routing, `alwb route`) of items no person labelled: "
                   "source 'auto' in csv (with confidence, model_version), under auto/<class>/ in folders "
                   "(csv and folders only)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_export)

    p = sub.add_parser("label", help="label rounds in the terminal (or --oracle from ground truth)")
    p.add_argument("dir")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--annotator")
    p.add_argument("--oracle", action="store_true", help="answer from ground truth (simulated annotator)")
    p.set_defaults(fn=cmd_label)

    p = sub.add_parser("review", help="review the queue in the terminal: accept, or correct with a reason")
    p.add_argument("dir")
    p.add_argument("--reviewer", help="your name, recorded with every decision (default: the config's annotator)")
    p.set_defaults(fn=cmd_review)

    p = sub.add_parser("quality", help="per-annotator accuracy, agreement, review states and the review queue")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true", help="print the report as JSON (nothing else on stdout)")
    p.set_defaults(fn=cmd_quality)

    p = sub.add_parser("gold", help="the gold set: import a CSV, promote reviewed items, list")
    gsub = p.add_subparsers(dest="action", required=True)
    q = gsub.add_parser("import", help="add gold answers from a CSV (id,label or id,tags with ; between tags); "
                        "exits 1 when ids are not items of the project (the others are added), 2 when the file is "
                        "invalid (nothing added)")
    q.add_argument("dir")
    q.add_argument("file")
    q.set_defaults(fn=cmd_gold)
    q = gsub.add_parser("promote", help="make reviewed items gold (their reviewed label)")
    q.add_argument("dir")
    q.add_argument("--item", action="append", help="an item id (repeat; default: every reviewed item)")
    q.set_defaults(fn=cmd_gold)
    q = gsub.add_parser("list", help="the gold items with their answers and sources")
    q.add_argument("dir")
    q.set_defaults(fn=cmd_gold)

    p = sub.add_parser("classes", help="list classes with label counts, or rename a class in config and labels")
    csub = p.add_subparsers(dest="action", required=True)
    q = csub.add_parser("list", help="classes (or tags) with label counts, and labels that use unknown names")
    q.add_argument("dir")
    q.set_defaults(fn=cmd_classes)
    q = csub.add_parser("rename", help="map labels OLD -> NEW (appended events; the config is updated too)")
    q.add_argument("dir")
    q.add_argument("old")
    q.add_argument("new")
    q.set_defaults(fn=cmd_classes)

    p = sub.add_parser("route", help="auto-accept confident predictions (per-class thresholds reaching "
                       "routing.target_precision out of fold); the rest stays in the human queue")
    p.add_argument("dir")
    p.add_argument("--dry-run", action="store_true", help="show what would be auto-accepted; write nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON (nothing else on stdout)")
    p.add_argument("--annotator", help="the session's annotator (default: the config's)")
    p.set_defaults(fn=cmd_route)

    p = sub.add_parser("simulate", help="compare query strategies with a simulated oracle")
    p.add_argument("--dataset", help="digits, fashion-mnist or a folder tree (class = sub-folder)")
    p.add_argument("--config", help="a project config (alwb.yaml): its built-in dataset, source.limit and taxonomy "
                   "(accuracy per taxonomy level is reported)")
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
    p.add_argument("--mode", choices=["async", "sync"], default="async",
                   help="async (default): the loop a person gets, retraining in the background while answering; "
                        "sync: wait for every fit")
    p.add_argument("--pace", type=float, default=0.0, help="seconds per simulated answer (async)")
    p.add_argument("--clock", default="real", choices=["real", "virtual"],
                   help="virtual: the async loop on a virtual clock (each fit costs its measured time, nothing "
                        "sleeps), so a person's pace (--pace 1) runs in the time the fits take")
    p.add_argument("--clock-costs", default=None, metavar="STEP=SECONDS,...",
                   help="with --clock virtual: fixed virtual seconds per fit step (start, land, reselect, calibrated, "
                        "end; e.g. land=0.8,calibrated=0.4) instead of the measured times: a deterministic run")
    p.add_argument("--compare-sync", action="store_true", help="also run the synchronous loop and report it beside")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_simulate)

    p = sub.add_parser("store", help="the label store: migrate a project's store to PostgreSQL")
    ssub = p.add_subparsers(dest="action", required=True)
    q = ssub.add_parser("migrate", help="copy every event, record and batch into an empty PostgreSQL store; "
                                        "prints counts and a checksum of both sides")
    q.add_argument("dir", help="the project folder")
    q.add_argument("--to", help="postgresql://user@host:port/db (no password; default: ALWB_STORE_URL)")
    q.set_defaults(fn=cmd_store)

    p = sub.add_parser("lab", help="open JupyterLab on a notebook (bound to 127.0.0.1)")
    p.add_argument("notebook", nargs="?", default="notebooks/01_quickstart.ipynb")
    p.add_argument("--no-browser", action="store_true")
    p.add_argument("--port", type=int, default=8888)
    p.set_defaults(fn=cmd_lab)
    return ap


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"alwb: warning: {message}", file=sys.stderr if file is None else file)


def main(argv: Optional[Sequence[str]] = None) -> int:
    import warnings

    ap = build_parser()
    a = ap.parse_args(argv)
    try:
        with warnings.catch_warnings():
            # our notices are one line each ("alwb: warning: ..."), without Python's source-line echo
            warnings.showwarning = _show_warning
            return a.fn(a)
    except AlwbError as e:
        print(f"alwb: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("alwb: interrupted (finished work is kept; rerun to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
