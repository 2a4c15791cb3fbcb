"""Incremental source scanning: remember what probing each file found, keyed by its ``stat``.

A project keeps one index (``DIR/cache/scan.sqlite``). For each file it holds ``(size, mtime_ns, inode)`` and what
:func:`~alworkbench.data.loading.probe_file` returned (sha256 and the skip reason, if any). A later scan stats
every file and re-reads, re-hashes and re-decodes only files that are new or whose stat changed, so a second
``init``/``status`` on 100,000 unchanged images costs a directory walk and 100,000 ``stat`` calls.

A file modified within :data:`RACY_NS` before it was probed is probed again next time (the "racy clean" problem:
a same-size rewrite in the same timestamp tick would otherwise look unchanged). The index is only a cache: when
it is damaged or cannot be written, a one-line warning says so and the scan probes everything, as without it.
"""
from __future__ import annotations

import os
import sqlite3
import time
import warnings
from pathlib import Path
from typing import Optional, Union

RACY_NS = 2_000_000_000
_VERSION = "1"

Stat = tuple  # (size, mtime_ns, inode)
Result = tuple  # (sha256 or None, reason or None)


def stat_key(st: os.stat_result) -> Stat:
    return (int(st.st_size), int(st.st_mtime_ns), int(st.st_ino))


class ScanIndex:
    """``lookup(path, stat)`` -> cached probe result or None; ``record(path, stat, result)``; ``save()``."""

    def __init__(self, path: Union[str, os.PathLike], *, max_pixels: Optional[int]):
        self.path = Path(path)
        self.params = f"v{_VERSION}|max_pixels={max_pixels}"
        self.scan_ns = time.time_ns()
        self._old: dict[bytes, tuple] = {}
        self._new: dict[bytes, tuple] = {}
        self._changed = False
        self.n_reused = 0
        self._read()

    # ------------------------------------------------------------------------------------------ reading
    def _read(self) -> None:
        if not self.path.exists():
            return
        try:
            con = sqlite3.connect(self.path, timeout=30)
            try:
                params = con.execute("SELECT value FROM meta WHERE key = 'params'").fetchone()
                if params is None or params[0] != self.params:
                    self._changed = True
                    return
                for row in con.execute("SELECT path, size, mtime_ns, ino, scanned_ns, sha256, reason FROM scan"):
                    self._old[bytes(row[0])] = row[1:]
            finally:
                con.close()
        except sqlite3.Error as exc:
            warnings.warn(f"scan index {self.path} is damaged ({exc}); every image is read again and the "
                          "index rebuilt", RuntimeWarning, stacklevel=3)
            self._old = {}
            self._changed = True
            self._remove()

    def lookup(self, path: str, st: Stat) -> Optional[Result]:
        key = os.fsencode(path)
        row = self._old.get(key)
        if row is None:
            return None
        size, mtime_ns, ino, scanned_ns, sha, reason = row
        if (size, mtime_ns, ino) != tuple(st) or mtime_ns + RACY_NS >= scanned_ns:
            return None
        self._new[key] = row
        self.n_reused += 1
        return sha, reason

    # ------------------------------------------------------------------------------------------ writing
    def record(self, path: str, st: Stat, result: Result) -> None:
        sha, reason = result
        if sha is None:  # the file could not be read (permissions, vanished): not a property of its content
            return
        self._new[os.fsencode(path)] = (st[0], st[1], st[2], self.scan_ns, sha, reason)
        self._changed = True

    def save(self) -> None:
        """Replace the index with this scan's entries (one transaction) when anything changed."""
        if not self._changed and len(self._new) == len(self._old):
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _clean_stale(self.path)
            con = sqlite3.connect(tmp, timeout=30)
            try:
                con.execute("PRAGMA journal_mode=OFF")
                con.execute("PRAGMA synchronous=OFF")
                con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
                con.execute("CREATE TABLE scan (path BLOB PRIMARY KEY, size INTEGER, mtime_ns INTEGER, ino INTEGER,"
                            " scanned_ns INTEGER, sha256 TEXT, reason TEXT)")
                con.execute("INSERT INTO meta VALUES ('params', ?)", (self.params,))
                con.executemany("INSERT INTO scan VALUES (?, ?, ?, ?, ?, ?, ?)",
                                ((k, *v) for k, v in self._new.items()))
                con.commit()
            finally:
                con.close()
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)  # readers see the old index or the new one, never a half-written one
        except (OSError, sqlite3.Error) as exc:
            warnings.warn(f"scan index {self.path} could not be written ({exc}); the next scan reads every image "
                          "again", RuntimeWarning, stacklevel=3)
        finally:
            _unlink(tmp)

    def _remove(self) -> None:
        _unlink(self.path)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _clean_stale(path: Path) -> None:
    """Remove temporary index files left by runs that were killed (their process is gone)."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            pid = int(tmp.name.rsplit(".", 2)[-2])
        except ValueError:
            continue
        if pid == os.getpid() or not _alive(pid):
            _unlink(tmp)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
