"""The labeller's keys: the action keys it keeps for itself, and the key of every class (the defaults, or the ones
``ui.keys`` in alwb.yaml gives). Pure functions of plain data, shared by the config check and the widget.

>>> class_keys(["cat", "dog", "fox"], {"dog": "d"})
['1', 'd', '2']
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

from .errors import ConfigError

#: keys the labeller keeps for its actions (a class key may not be one of them)
ACTION_KEYS: dict[str, str] = {
    "a": "accept the model's suggestion",
    "s": "skip the image",
    "f": "flag the image for review (with a note)",
    "z": "undo the last answer (repeatable)",
    "y": "redo what was undone",
    "r": "retry the qualification test (after it failed)",
    "h": "open the answer history (pick an earlier answer to change it)",
    "i": "show or hide the image details",
    "/": "filter the classes by name (more than 10 classes)",
    "?": "show every key",
    "+": "zoom in",
    "-": "zoom out",
    "=": "image at its own size (1:1), again: fit",
}
#: named keys (browser ``KeyboardEvent.key`` values) the labeller uses; never a class key either
NAMED_KEYS = ("Enter", "Backspace", "Escape", "Tab", " ", "ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown")
SINGLE_KEYS = list("1234567890")
# tag keys: digits first, then letters that are not action keys
TAG_KEYS = list("1234567890") + [c for c in "qwertyuiopghjklxcvbnm" if c not in ACTION_KEYS]


def check_key(cls: str, key, where: str = "ui.keys") -> str:
    """One class key from the config: a single character that is not an action key (one-line ConfigError)."""
    if isinstance(key, int) and not isinstance(key, bool) and 0 <= key <= 9:
        key = str(key)   # `cat: 1` in YAML is the number 1
    if not isinstance(key, str) or len(key) != 1 or key.isspace():
        raise ConfigError(f"config key '{where}.{cls}' must be a single character (a letter, a digit or a sign), "
                          f"got {key!r}")
    if key in ACTION_KEYS:
        raise ConfigError(f"config key '{where}.{cls}': key '{key}' is the labeller's key to "
                          f"{ACTION_KEYS[key]}; choose another (action keys: {' '.join(ACTION_KEYS)})")
    return key


def check_keys(raw, where: str = "ui.keys") -> dict[str, str]:
    """``ui.keys`` from alwb.yaml: a mapping class -> one character; no action key, no key used twice."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config key '{where}' must be a mapping of class name to key, e.g. {{cat: c, dog: d}}; "
                          f"got {type(raw).__name__}")
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for cls, key in raw.items():
        cls = str(cls)
        key = check_key(cls, key, where)
        if key in seen:
            raise ConfigError(f"config key '{where}': key '{key}' is given to both '{seen[key]}' and '{cls}'")
        seen[key] = cls
        out[cls] = key
    return out


def class_keys(names: Sequence[str], keys: Optional[Mapping[str, str]] = None, multilabel: bool = False) -> list[str]:
    """The key of every class, in ``names`` order ("" for classes past the default keys). Classes named in ``keys``
    get that key; the others the default keys (digits, and for tags letters too) not taken by ``keys``."""
    keys = dict(keys or {})
    unknown = [c for c in keys if c not in names]
    if unknown:
        shown = ", ".join(list(names)[:12]) + (", ..." if len(names) > 12 else "")
        raise ConfigError(f"config key 'ui.keys.{unknown[0]}': '{unknown[0]}' is not one of this project's "
                          f"{'tags' if multilabel else 'classes'} ({shown})")
    taken = set(keys.values())
    free = iter(k for k in (TAG_KEYS if multilabel else SINGLE_KEYS) if k not in taken)
    return [keys[n] if n in keys else next(free, "") for n in names]
