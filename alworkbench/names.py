"""The one place where names become paths or spreadsheet cells.

Class names, tag names and item ids come from people and from manifests: ``../../../x``, ``CON``, ``a/b``,
``=HYPERLINK(...)`` and names with control characters or undecodable bytes all occur. Every exporter (CSV,
class folders, FiftyOne's exporters) and project creation go through the functions here:

* :func:`check_name` refuses names that cannot be a class or tag at all (empty, control characters, ``.``/``..``
  path segments); used when a config or a source's class list is read.
* :func:`path_component` turns any name into one safe file or folder name (never a separator, never ``.``/``..``,
  no reserved device names, bounded length); :func:`unique_components` does it for a set of names without two
  names landing in one folder.
* :func:`inside` says whether a path stays under a root once resolved; exporters assert it before writing.
* :func:`csv_cell` neutralises spreadsheet formulas (OWASP "CSV injection": a cell starting with ``= + - @``,
  tab or carriage return gets a leading ``'``).
"""
from __future__ import annotations

import hashlib
import os
import unicodedata
from pathlib import Path
from typing import Any, Iterable, Optional

from .errors import ConfigError

#: characters never allowed in a path component on any common file system
_BAD_PATH_CHARS = set('<>:"/\\|?*')
#: Windows device names: a folder called ``CON`` or ``nul.txt`` cannot be created there
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
#: bytes per path component kept (most file systems allow 255; room for a disambiguating suffix)
MAX_COMPONENT_BYTES = 180
#: first characters a spreadsheet reads as a formula (OWASP CSV injection)
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") and ch not in ("\u200d",)


def check_name(name: Any, key: str = "classes", where: Optional[str] = None) -> str:
    """Return ``name`` as a string, or raise a one-line ConfigError naming ``key`` (and ``where`` it came from)
    when it cannot be a class or tag name: null, yes/no, empty, leading/trailing spaces, control characters,
    an empty part between ``/`` (tags are hierarchical: ``animal/cat``), or a ``.``/``..`` part."""
    src = f" (from {where})" if where else ""
    if name is None:
        raise ConfigError(f"config key '{key}'{src} contains an empty (null) name: remove it or write the name")
    if isinstance(name, bool):
        raise ConfigError(f"config key '{key}'{src} contains {name!r}, which YAML reads from yes/no/true/false: "
                          "quote the name, e.g. \"no\"")
    if isinstance(name, float) and getattr(name, "text", None) is not None and str(name) != name.text:
        raise ConfigError(f"config key '{key}'{src} contains the number {name.text}, which YAML reads as {name}: "
                          f"quote it, e.g. \"{name.text}\"")
    if not isinstance(name, (str, int, float)):
        raise ConfigError(f"config key '{key}'{src} must list names, got {type(name).__name__} {name!r}")
    text = str(name)
    if not text.strip():
        raise ConfigError(f"config key '{key}'{src} contains an empty name")
    if text != text.strip():
        raise ConfigError(f"config key '{key}'{src}: name {text!r} has leading or trailing spaces")
    bad = [c for c in text if _is_control(c)]
    if bad:
        raise ConfigError(f"config key '{key}'{src}: name {text!r} contains control characters "
                          f"({', '.join(repr(c) for c in dict.fromkeys(bad))}): rename it")
    parts = text.split("/")
    if any(p == "" for p in parts):
        raise ConfigError(f"config key '{key}'{src}: name {text!r} has an empty part between '/' separators")
    if any(p.strip() in (".", "..") for p in text.replace("\\", "/").split("/")):
        raise ConfigError(f"config key '{key}'{src}: name {text!r} looks like a relative file path ('.' or '..' "
                          "between '/'): rename it")
    return text


def check_names(names: Iterable[Any], key: str = "classes", where: Optional[str] = None) -> list[str]:
    out = [check_name(n, key, where) for n in names]
    dup = sorted({n for n in out if out.count(n) > 1})
    if dup:
        src = f" (from {where})" if where else ""
        raise ConfigError(f"config key '{key}'{src} has duplicate names: {', '.join(dup)}")
    return out


def _printable(text: str) -> str:
    out = []
    for c in text:
        if c in _BAD_PATH_CHARS or _is_control(c) or "\udc80" <= c <= "\udcff":
            out.append("_")
        else:
            out.append(c)
    return "".join(out)


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def path_component(name: Any) -> str:
    """One safe file or folder name for ``name`` (any string): separators, control characters and undecodable
    bytes become ``_``; leading/trailing dots and spaces go; ``.``, ``..``, ``""`` and Windows device names are
    prefixed; long names are cut and get a short hash so they stay distinct."""
    text = str(name)
    out = _printable(text).strip(" .")
    if not out or set(out) <= {"_", "."}:
        out = "_" + out if out else "_"
    stem = out.split(".", 1)[0].upper()
    if stem in _RESERVED:
        out = "_" + out
    raw = out.encode("utf-8")
    if len(raw) > MAX_COMPONENT_BYTES:
        suffix = Path(out).suffix if 0 < len(Path(out).suffix) <= 10 else ""
        keep = raw[:MAX_COMPONENT_BYTES - 9 - len(suffix.encode())].decode("utf-8", "ignore").rstrip(" .")
        out = f"{keep}-{_digest(text)}{suffix}"
    return out


def unique_components(names: Iterable[Any]) -> dict[str, str]:
    """name -> path component for a set of names, with no two names sharing one component (compared without
    case, as on macOS and Windows): a name that would collide gets a short hash of its full text."""
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for name in dict.fromkeys(str(n) for n in names):
        comp = path_component(name)
        if comp.casefold() in taken:
            p = Path(comp)
            suffix = p.suffix if 0 < len(p.suffix) <= 10 else ""
            base = comp[: len(comp) - len(suffix)] if suffix else comp
            comp = f"{base}-{_digest(name)}{suffix}"
            i = 2
            while comp.casefold() in taken:
                comp = f"{base}-{_digest(name)}-{i}{suffix}"
                i += 1
        taken.add(comp.casefold())
        mapping[name] = comp
    return mapping


def inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """True when ``path`` (resolved, links followed) is ``root`` or below it."""
    p = Path(os.path.realpath(path))
    r = Path(os.path.realpath(root))
    return p == r or r in p.parents


def safe_join(root: str | os.PathLike, *names: Any) -> Path:
    """``root / path_component(n1) / path_component(n2) ...``; raises AlwbError if the result would leave
    ``root`` (it cannot, by construction; the check guards against future edits)."""
    from .errors import AlwbError

    out = Path(root)
    for n in names:
        out = out / path_component(n)
    if not inside(out, root):
        raise AlwbError(f"refusing to write {out}: it is outside {root}")
    return out


def text(value: str) -> str:
    """``value`` as valid UTF-8 text for a text file: undecodable file-name bytes (surrogate escapes) become
    ``\\xNN`` (the identity for text that is already valid)."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("ascii")


def csv_cell(value: Any) -> Any:
    """A value safe to put in a CSV cell that a spreadsheet may open: strings starting with ``= + - @``, tab or
    carriage return get a leading ``'`` (OWASP); numbers and None pass through unchanged."""
    if not isinstance(value, str):
        return value
    value = text(value)
    if value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_row(values: Iterable[Any]) -> list:
    return [csv_cell(v) for v in values]
