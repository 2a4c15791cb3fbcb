"""Issue 9, findings 1 (export data loss) and 2 (path traversal, CSV formula injection), with real files and the
real `alwb` command (the FiftyOne exporters: test_issue9_exports_fiftyone.py).

Labels are written straight into the project's real store (no model needed to export): every test that exports
runs on SQLite and on PostgreSQL (``project_backend``)."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alworkbench import Answer, Project
from alworkbench.errors import AlwbError, ConfigError
from alworkbench.export import export

WEIRD = ["=HYPERLINK(\"evil.example\",\"x\")", "+cmd", "-1+1", "@SUM(A1)", "a/b", "CON", "cat: dog?"]


def alwb(*args, input=None):
    return subprocess.run([sys.executable, "-m", "alworkbench.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=300, input=input)


def _png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, size=(12, 12, 3), dtype=np.uint8), "RGB").save(path)


def make_project(tmp_path, classes=("cat", "dog"), n_per_class=3, label_with=None) -> Project:
    """A folder-tree project (files under tmp/images/<class>/), every item labelled in the store.
    ``label_with``: the class names to store (default: the folder's)."""
    images = tmp_path / "images"
    for ci, c in enumerate(("cat", "dog")):
        for k in range(n_per_class):
            _png(images / c / f"{c}{k}.png", seed=10 * ci + k)
    proj = Project.init(tmp_path / "proj", str(images), classes=list(classes))
    names = list(label_with or classes)
    for i, it in enumerate(proj.source.items):
        proj.store.record(it.id, Answer.of_label(names[i % len(names)]), round=1, annotator="ana")
    return proj


def _snapshot(d: Path) -> dict:
    return {str(p.relative_to(d)): p.stat().st_size for p in d.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------------------------------ finding 1
@pytest.mark.parametrize("fmt", ["csv", "folders"])
def test_finding1_export_refuses_project_folder(tmp_path, fmt, project_backend):
    proj = make_project(tmp_path)
    before = _snapshot(proj.dir)
    with pytest.raises(AlwbError, match="is the project folder"):
        export(proj, proj.dir, fmt, overwrite=True)
    r = alwb("export", proj.dir, "--format", fmt, "--out", proj.dir, "--overwrite")
    assert r.returncode == 2 and "is the project folder" in r.stderr and "Traceback" not in r.stderr
    assert _snapshot(proj.dir) == before  # alwb.yaml, labels.sqlite, cache/ untouched


def test_finding1_export_refuses_folders_containing_the_project_or_inside_its_cache(tmp_path, project_backend):
    proj = make_project(tmp_path)
    (proj.dir / "cache").mkdir(exist_ok=True)
    before = _snapshot(tmp_path)
    for out, needle in [(tmp_path, "contains the project folder"), (proj.dir / "cache" / "x", "inside the project's cache"),
                        (tmp_path / "images", "image folder"), (tmp_path / "images" / "cat" / "out", "image folder")]:
        with pytest.raises(AlwbError, match=needle):
            export(proj, out, "folders", overwrite=True)
    assert _snapshot(tmp_path) == before


def test_finding1_export_refuses_non_empty_out_unless_overwrite(tmp_path, project_backend):
    proj = make_project(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    r = alwb("export", proj.dir, "--format", "folders", "--out", out)
    assert r.returncode == 2 and "is not empty" in r.stderr and "--overwrite" in r.stderr
    assert sorted(os.listdir(out)) == ["keep.txt"]
    r = alwb("export", proj.dir, "--format", "folders", "--out", out, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert (out / "keep.txt").read_text() == "mine"  # --overwrite never deletes what alworkbench did not write
    assert len(list((out / "cat").iterdir())) + len(list((out / "dog").iterdir())) == 6
    # an existing .csv file: refused, then replaced with --overwrite
    f = tmp_path / "labels.csv"
    f.write_text("precious")
    r = alwb("export", proj.dir, "--format", "csv", "--out", f)
    assert r.returncode == 2 and "already exists" in r.stderr and f.read_text() == "precious"
    assert alwb("export", proj.dir, "--format", "csv", "--out", f, "--overwrite").returncode == 0
    assert f.read_text().startswith("id,path,label")


def test_finding1_overwrite_replaces_only_the_previous_export(tmp_path, project_backend):
    proj = make_project(tmp_path)
    out = tmp_path / "out"
    export(proj, out, "folders")
    assert sorted(p.name for p in out.iterdir()) == ["cat", "dog"]  # nothing but the export in out
    (out / "notes.txt").write_text("mine")
    (out / "cat" / "mine.png").write_bytes(b"x")
    # every item relabelled: the second export must not leave stale copies in the old class folders
    for it in proj.source.items:
        proj.store.record(it.id, Answer.of_label("dog"), round=2, annotator="ana")
    export(proj, out, "folders", overwrite=True)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert "notes.txt" in files and "cat/mine.png" in files
    assert sum(f.startswith("dog/") for f in files) == 6 and [f for f in files if f.startswith("cat/")] == ["cat/mine.png"]
    # the default location is replaced without --overwrite (it only ever holds alworkbench's exports)
    for _ in range(2):
        assert alwb("export", proj.dir, "--format", "folders").returncode == 0


def test_finding1_failed_export_leaves_out_untouched(tmp_path, monkeypatch, project_backend):
    proj = make_project(tmp_path)
    out = tmp_path / "out"
    export(proj, out, "folders")
    before = _snapshot(out)
    import alworkbench.export as ex

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ex, "_write_folders", boom)
    with pytest.raises(OSError):
        export(proj, out, "folders", overwrite=True)
    assert _snapshot(out) == before
    assert not [p for p in tmp_path.iterdir() if "alwb-export" in p.name]  # no temporary folder left


# ------------------------------------------------------------------------------------------------ finding 2
def test_finding2_manifest_class_traversal_refused_at_init(tmp_path):
    images = tmp_path / "imgs"
    rows = []
    for i, label in enumerate(["../../../x", "ok", "ok", "../../../x"]):
        _png(images / f"{i}.png", i)
        rows.append(f"imgs/{i}.png,{label}")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")
    r = alwb("init", tmp_path / "p", "--images", manifest)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "'../../../x' looks like a relative file path" in r.stderr and str(manifest) in r.stderr
    assert not (tmp_path / "p" / "alwb.yaml").exists()
    with pytest.raises(ConfigError):
        Project.init(tmp_path / "p", str(manifest))


def test_finding2_folder_names_stay_inside_out(tmp_path, project_backend):
    proj = make_project(tmp_path, classes=WEIRD, label_with=WEIRD)
    out = tmp_path / "deep" / "out"
    export(proj, out, "folders")
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and not p.resolve().is_relative_to(out.resolve())
               and not p.resolve().is_relative_to((tmp_path / "images").resolve())
               and not p.resolve().is_relative_to(proj.dir.resolve())]
    assert outside == []
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert len(folders) == 6  # 6 items, 6 distinct classes used; none nested, none reserved
    assert all("/" not in f and f not in (".", "..") and f.upper() != "CON" for f in folders)


def test_finding2_csv_formula_cells_are_neutralised(tmp_path, project_backend):
    proj = make_project(tmp_path, classes=WEIRD, label_with=WEIRD, n_per_class=4)
    out = tmp_path / "labels.csv"
    export(proj, out, "csv")
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    labels = {r["label"] for r in rows}
    assert not any(v.startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows for v in r.values())
    assert "'=HYPERLINK(\"evil.example\",\"x\")" in labels and "'+cmd" in labels and "'@SUM(A1)" in labels
    assert "a/b" in labels and "cat: dog?" in labels  # harmless names unchanged


def test_finding2_sanitiser_unit():
    from alworkbench.names import csv_cell, inside, path_component, unique_components

    for bad in ["../../../x", "..", ".", "", "/etc/passwd", "a\\..\\b", "con.txt", "x\x00y", "\udcff.png", "é" * 300]:
        c = path_component(bad)
        assert c and "/" not in c and "\\" not in c and "\x00" not in c and c not in (".", "..")
        assert len(c.encode("utf-8")) <= 200 and not c.upper().startswith("CON.")
        assert inside(Path("/tmp/out") / c, "/tmp/out")
    m = unique_components(["a/b", "a_b", "A_B", "a:b"])
    assert len(set(v.casefold() for v in m.values())) == 4
    assert csv_cell("=1+2") == "'=1+2" and csv_cell(-3) == -3 and csv_cell("\tx") == "'\tx" and csv_cell("ok") == "ok"
    assert csv_cell("caf\udce9.png") == "caf\\xe9.png"  # undecodable file-name bytes: valid UTF-8 text
