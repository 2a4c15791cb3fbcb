"""Issue 9, findings 4 and 9 (data side): odd file names never break a project; scanning is incremental."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alworkbench.data import ImageSource
from alworkbench.data.sources import safe_id


def alwb(*args, check=True, cwd=None):
    r = subprocess.run([sys.executable, "-m", "alworkbench.cli", *(os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in args)],
                       capture_output=True, cwd=cwd, timeout=600)
    out, err = r.stdout.decode("utf-8"), r.stderr.decode("utf-8")  # must be valid UTF-8 text
    if check and r.returncode != 0:
        raise AssertionError(f"alwb {args} exited {r.returncode}\n{out}\n{err}")
    return r.returncode, out, err


def _png(path: bytes, seed: int, size=(12, 10)) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), "RGB").save(
        os.fsdecode(path), format="PNG")


def test_finding4_non_utf8_filename_end_to_end(tmp_path):
    root = os.fsencode(tmp_path / "images")
    for cls in (b"cat", b"dog"):
        os.makedirs(os.path.join(root, cls))
    # names that are not valid UTF-8 (Latin-1 e-acute, a lone continuation byte, an over-long sequence),
    # plus ordinary ones, in both classes
    names = [b"caf\xe9.png", b"x\x80y.png", b"\xc0\xaf.png", b"plain.png", b"new\nline.png"]
    seed = 0
    for cls in (b"cat", b"dog"):
        for name in names:
            seed += 1
            _png(os.path.join(root, cls, name), seed)
    # a non-UTF-8 class folder too
    os.makedirs(os.path.join(root, b"b\xe4r"))
    for i in range(3):
        _png(os.path.join(root, b"b\xe4r", b"i\xff%d.png" % i), 100 + i)
    src = ImageSource.from_folder(os.fsdecode(root), progress=False)
    assert len(src) == 13 and not src.report.skipped
    for item in src.items:
        item.id.encode("utf-8")  # every id is valid UTF-8 text
        (item.label or "").encode("utf-8")
        assert src.load(item).size == (12, 10)  # the real path still loads
    assert "cat/caf\\xe9.png" in src.ids and "b\\xe4r" in src.classes
    assert safe_id(os.fsdecode(b"caf\xe9.png")) == safe_id(os.fsdecode(b"caf\xe9.png")) == "caf\\xe9.png"

    proj = tmp_path / "proj"
    alwb("init", proj, "--images", os.fsdecode(root), "--batch-size", 4)
    _, out, _ = alwb("embed", proj, "--quiet")
    assert "13 images embedded" in out
    _, out, _ = alwb("status", proj, "--json")
    st = json.loads(out)
    assert st["images"] == 13 and st["skipped"] == []
    alwb("status", proj)
    _, out, _ = alwb("label", proj, "--oracle", "--rounds", 3)
    st = json.loads(alwb("status", proj, "--json")[1])
    assert st["labelled"] == 12
    out_csv = tmp_path / "labels.csv"
    alwb("export", proj, "--format", "csv", "--out", out_csv)
    rows = list(csv.DictReader(open(out_csv, encoding="utf-8")))
    assert len(rows) == 12
    ids = {r["id"] for r in rows}
    assert ids <= set(src.ids)


def test_finding4_escaped_id_collision_is_a_skip_not_a_crash(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    _png(os.path.join(os.fsencode(root), b"caf\xe9.png"), 1)
    _png(os.fsencode(root / "caf\\xe9.png"), 2)  # a real file whose name is the escaped form
    src = ImageSource.from_folder(root, progress=False)
    assert src.ids == ["caf\\xe9.png"]
    assert [(s.path, s.reason) for s in src.report.skipped] == [
        ("caf\\xe9.png", "file name is not valid UTF-8 and its escaped form names another file")]


def test_finding4_nul_byte_in_manifest_is_a_row_skip(tmp_path):
    _png(os.fsencode(tmp_path / "a.png"), 1)
    _png(os.fsencode(tmp_path / "b.png"), 2)
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(b"path,label\na.png,x\nb\x00.png,y\nb.png,y\nc.png,z\x00z\n")
    src = ImageSource.from_csv(manifest, progress=False)
    assert src.ids == ["a.png", "b.png"]
    reasons = [s.reason for s in src.report.skipped]
    assert reasons == ["path contains a NUL byte", "label or tags contain a NUL byte"]
    proj = tmp_path / "proj"
    alwb("init", proj, "--images", manifest)
    st = json.loads(alwb("status", proj, "--json")[1])
    assert st["images"] == 2 and len(st["skipped"]) == 2


# ------------------------------------------------------------------------------------------------ finding 9
def _tree(root: Path, n: int, old: bool = True):
    for i in range(n):
        p = root / f"c{i % 3}" / f"img{i:03d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        _png(os.fsencode(p), i, size=(6, 5))
        if old:  # written "long ago": not racy
            os.utime(p, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000 + i))


def _counting_probe(monkeypatch):
    import alworkbench.data.sources as sources

    calls = []
    real = sources.probe_file

    def probe(path, **kw):
        calls.append(path)
        return real(path, **kw)

    monkeypatch.setattr(sources, "probe_file", probe)
    return calls


def test_finding9_incremental_scan_reads_only_new_or_changed_files(tmp_path, monkeypatch):
    root = tmp_path / "imgs"
    _tree(root, 30)
    (root / "c0" / "bad.png").write_bytes(b"not an image")
    os.utime(root / "c0" / "bad.png", ns=(1_600_000_000_000_000_000,) * 2)
    index = tmp_path / "proj" / "cache" / "scan.sqlite"
    calls = _counting_probe(monkeypatch)
    first = ImageSource.from_folder(root, progress=False, scan_index=index)
    assert len(calls) == 31 and index.is_file() and len(first) == 30
    calls.clear()
    second = ImageSource.from_folder(root, progress=False, scan_index=index)
    assert calls == []  # nothing read, re-hashed or decoded again
    assert [(i.id, i.sha256, i.label) for i in second.items] == [(i.id, i.sha256, i.label) for i in first.items]
    assert second.report.skipped == first.report.skipped == [type(first.report.skipped[0])("c0/bad.png",
                                                                                         "not an image (text)")]
    # change one file (same name), add one, remove one: only the changed and the new file are read
    changed = root / "c1" / "img001.png"
    _png(os.fsencode(changed), 999, size=(6, 5))
    os.utime(changed, ns=(1_600_000_000_000_000_000, 1_650_000_000_000_000_000))
    _png(os.fsencode(root / "c2" / "new.png"), 1000, size=(6, 5))
    os.utime(root / "c2" / "new.png", ns=(1_600_000_000_000_000_000,) * 2)
    (root / "c2" / "img002.png").unlink()
    calls.clear()
    third = ImageSource.from_folder(root, progress=False, scan_index=index)
    assert sorted(os.path.basename(c) for c in calls) == ["img001.png", "new.png"]
    assert third.item("c1/img001.png").sha256 != first.item("c1/img001.png").sha256
    assert "c2/new.png" in third.ids and "c2/img002.png" not in third.ids
    # a file written just now (same second as the scan) is read again next time: a same-size rewrite in the same
    # timestamp tick cannot hide behind the index
    _png(os.fsencode(root / "c0" / "fresh.png"), 2000, size=(6, 5))
    ImageSource.from_folder(root, progress=False, scan_index=index)
    calls.clear()
    ImageSource.from_folder(root, progress=False, scan_index=index)
    assert [os.path.basename(c) for c in calls] == ["fresh.png"]


def test_finding9_damaged_or_unwritable_scan_index_is_a_warning_and_a_full_scan(tmp_path, monkeypatch):
    root = tmp_path / "imgs"
    _tree(root, 6)
    index = tmp_path / "scan.sqlite"
    index.write_bytes(b"garbage" * 100)
    calls = _counting_probe(monkeypatch)
    with pytest.warns(RuntimeWarning, match="scan index .*scan.sqlite is damaged"):
        src = ImageSource.from_folder(root, progress=False, scan_index=index)
    assert len(calls) == 6 and len(src) == 6
    calls.clear()
    ImageSource.from_folder(root, progress=False, scan_index=index)  # rebuilt
    assert calls == []
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.warns(RuntimeWarning, match="could not be written"):
        ImageSource.from_folder(root, progress=False, scan_index=blocker / "scan.sqlite")
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_finding9_project_keeps_its_scan_index(tmp_path, monkeypatch):
    from alworkbench import Project

    root = tmp_path / "imgs"
    _tree(root, 9)
    Project.init(tmp_path / "p", str(root))
    assert (tmp_path / "p" / "cache" / "scan.sqlite").is_file()
    calls = _counting_probe(monkeypatch)
    p = Project.open(tmp_path / "p")
    assert len(p.source) == 9 and calls == []
