"""Issue 9, findings 1 and 2 for FiftyOne's exporters (`alwb export --format fiftyone|fiftyone-folders`), against
the real MongoDB that FiftyOne starts (this test session's own database folder)."""
from __future__ import annotations

import os
import tempfile

os.environ.setdefault("FIFTYONE_DATABASE_DIR", tempfile.mkdtemp(prefix="alwb-fo-db-"))
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

import pytest  # noqa: E402

pytest.importorskip("fiftyone")
pytestmark = pytest.mark.fiftyone

from alworkbench.errors import AlwbError  # noqa: E402
from alworkbench.integrations import fiftyone_sync as fs  # noqa: E402

from test_issue9_exports import WEIRD, _snapshot, make_project  # noqa: E402


@pytest.fixture
def proj(tmp_path):
    p = make_project(tmp_path)
    yield p
    fs.delete_dataset(p)
    p.close()


@pytest.mark.parametrize("fmt", ["fiftyone", "folders"])
def test_finding1_fiftyone_export_refuses_project_folder(proj, fmt):
    before = _snapshot(proj.dir)
    for out in (proj.dir, proj.dir.parent):
        with pytest.raises(AlwbError, match="project folder"):
            fs.export(proj, out, format=fmt, overwrite=True)
    assert _snapshot(proj.dir) == before and (proj.dir / "alwb.yaml").is_file()


@pytest.mark.parametrize("fmt", ["fiftyone", "folders"])
def test_finding1_fiftyone_export_never_empties_out(proj, tmp_path, fmt):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(AlwbError, match="is not empty"):
        fs.export(proj, out, format=fmt)
    assert sorted(os.listdir(out)) == ["keep.txt"]
    res = fs.export(proj, out, format=fmt, overwrite=True)
    assert res["n_exported"] == 6 and (out / "keep.txt").read_text() == "mine"
    n_images = sum(1 for p in out.rglob("*.png"))
    assert n_images == 6
    fs.export(proj, out, format=fmt, overwrite=True)  # again: the previous export is replaced, not doubled
    assert sum(1 for p in out.rglob("*.png")) == 6 and (out / "keep.txt").read_text() == "mine"


def test_finding2_fiftyone_folders_class_names_stay_inside_out(tmp_path):
    proj = make_project(tmp_path, classes=WEIRD, label_with=WEIRD)
    try:
        out = tmp_path / "a" / "out"
        fs.export(proj, out, format="folders")
        real_out = out.resolve()
        written = [p for p in tmp_path.rglob("*.png") if not p.resolve().is_relative_to(tmp_path / "images")
                   and not p.resolve().is_relative_to(proj.dir.resolve())]
        assert written and all(p.resolve().is_relative_to(real_out) for p in written)
        folders = sorted(p.name for p in out.iterdir() if p.is_dir())
        assert len(folders) == 6 and all(p.parent.parent == out for p in written)
        assert "a_b" in folders and "_CON" in folders
    finally:
        fs.delete_dataset(proj)
        proj.close()
