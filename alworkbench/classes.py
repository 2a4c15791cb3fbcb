"""When a project's classes change under its labels: find labels that use names the config no longer has, and
map them to a new name by appending label events (the store is append-only; nothing is rewritten).

``alwb classes rename DIR OLD NEW`` and :func:`rename_class` are the one way to map them; every command that
would trip over such labels (``alwb label``, ``status``, ``export``) calls :func:`check_labels_match` first and
prints its one-line explanation naming that command.
"""
from __future__ import annotations

import shlex
from typing import Optional

from .errors import AlwbError, ConfigError
from .types import Answer

RENAME_ANNOTATOR = "alwb:rename"


def _names(project) -> list[str]:
    cfg = project.config
    return list(cfg.tags if cfg.multilabel else cfg.classes)


def _allowed(project) -> set[str]:
    if project.config.multilabel:
        return set(project.schema.allowed_tags)
    return set(project.config.classes)


def unknown_labels(project) -> dict[str, int]:
    """Names used by current labels (or tag sets) that the config does not declare -> how many items use each."""
    allowed = _allowed(project)
    out: dict[str, int] = {}
    store = project.store
    if project.config.multilabel:
        for tags in store.tag_sets().values():
            for t in tags:
                if t not in allowed:
                    out[t] = out.get(t, 0) + 1
        # single-label answers left from before the project became multi-label
        for lab in store.labels().values():
            out[lab] = out.get(lab, 0) + 1
    else:
        for lab in store.labels().values():
            if lab not in allowed:
                out[lab] = out.get(lab, 0) + 1
        for tags in store.tag_sets().values():
            for t in tags:
                out[t] = out.get(t, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def store_name(project) -> str:
    """Where the project's labels are, for messages: the SQLite file, or postgresql://user@host:port/db."""
    loc = project.store_location
    if isinstance(loc, str):
        from .labels.pgstore import describe_url

        return describe_url(loc)
    return str(loc)


def mismatch_message(project, unknown: dict[str, int]) -> str:
    kind = "tag" if project.config.multilabel else "class"
    shown = ", ".join(f"{n!r} ({c} item{'s' if c != 1 else ''})" for n, c in list(unknown.items())[:5])
    more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    d = shlex.quote(str(project.dir))
    old = shlex.quote(next(iter(unknown)))
    return (f"labels in {store_name(project)} use {kind} name(s) that {project.config_path.name} does not "
            f"list: {shown}{more}; map them with `alwb classes rename {d} {old} NEW_NAME` "
            f"(or add the {kind} back to {'tags' if project.config.multilabel else 'classes'}: in "
            f"{project.config_path.name})")


def check_labels_match(project) -> None:
    """Raise AlwbError (one line, naming the command that maps them) when labels use undeclared names."""
    unknown = unknown_labels(project)
    if unknown:
        raise AlwbError(mismatch_message(project, unknown))


def rename_class(project, old: str, new: str, *, annotator: str = RENAME_ANNOTATOR,
                 update_config: bool = True) -> dict:
    """Map every current label ``old`` to ``new`` (single-label) or replace ``old`` in every tag set.

    Appends one label (or tags) event per affected item, all in one fresh round (``store.last_round() + 1``),
    by ``annotator`` with a note naming the mapping and who answered before; earlier events stay in the store.
    The config is updated when ``update_config``: ``old`` is replaced by ``new`` in place, or dropped when
    ``new`` is already declared (a merge). When ``old`` is no longer in the config (renamed by hand, or
    ``init --force`` with new classes), ``new`` must already be declared. Safe to run again after an
    interruption: it only touches items whose current label is still ``old``.

    Returns {"old", "new", "n_items", "round", "config_changed"}.
    """
    from .names import check_name

    old = str(old)
    new = check_name(str(new).strip(), "tags" if project.config.multilabel else "classes")
    if old == new:
        raise AlwbError(f"old and new name are the same ({old!r}): nothing to rename")
    cfg = project.config
    names = _names(project)
    key = "tags" if cfg.multilabel else "classes"
    store = project.store
    if cfg.multilabel:
        current = {sid: tags for sid, tags in store.tag_sets().items() if old in tags}
    else:
        current = {sid: lab for sid, lab in store.labels().items() if lab == old}
    if old not in names and new not in names:
        raise AlwbError(f"{new!r} is not in {key}: of {project.config_path}: rename to one of "
                        f"{', '.join(map(repr, names))}, or add {new!r} to {key}: first")
    if old not in names and not current:
        raise AlwbError(f"no label uses {old!r} and it is not in {key}: of {project.config_path}: nothing to rename")
    if cfg.taxonomy is not None and old in names:
        raise AlwbError(f"{project.config_path} has a taxonomy: rename or move the leaf {old!r} in its taxonomy: "
                        f"first, then run this again to map the labels (they get the new leaf's path)")
    # 1. the labels: one appended event per item (idempotent: only items still labelled `old`)
    active = store.active_answers()
    round_ = store.last_round() + 1 if current else None
    for sid in sorted(current):
        prev = active.get(sid, {})
        note = (f"renamed {old!r} -> {new!r} by `alwb classes rename`"
                f" (answered by {prev.get('annotator', '?')} in round {prev.get('round', '?')})")
        if cfg.multilabel:
            ans = Answer.of_tags([new if t == old else t for t in current[sid]], note=note)
        else:
            ans = Answer.of_label(new, note=note)
            if cfg.taxonomy is not None:
                ans = project.schema.validate(ans)  # stores the new leaf's path
        store.record(sid, ans, round=round_, annotator=annotator, model_version=int(prev.get("model_version") or 0),
                     strategy="rename")
    # 2. the config
    changed = False
    if update_config and old in names:
        new_names = [new if n == old else n for n in names] if new not in names else [n for n in names if n != old]
        if not cfg.multilabel and len(new_names) < 2:
            raise ConfigError(f"merging {old!r} into {new!r} would leave fewer than 2 classes in {project.config_path}")
        if cfg.multilabel:
            cfg.tags = new_names
        else:
            cfg.classes = new_names
        cfg.save(project.config_path)
        project.reload_config()
        changed = True
    return {"old": old, "new": new, "n_items": len(current), "round": round_, "config_changed": changed}
