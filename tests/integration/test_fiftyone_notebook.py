"""notebooks/03_error_analysis.ipynb runs top to bottom headless (nbclient) against the real MongoDB."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("FIFTYONE_DATABASE_DIR", tempfile.mkdtemp(prefix="alwb-fo-db-"))

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("fiftyone")

pytestmark = [pytest.mark.notebook, pytest.mark.fiftyone, pytest.mark.slow]

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "03_error_analysis.ipynb"


def test_error_analysis_notebook_finds_and_fixes_label_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("ALWB_HEADLESS", "1")
    monkeypatch.setenv("ALWB_PROJECTS_DIR", str(tmp_path))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("name") == "stdout")
    n_images = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert n_images == 3, text                                   # coverage, confusion matrices, embedding map
    assert "prediction runs: ['predictions_r1', 'predictions_r2', 'predictions_r3']" in text
    assert re.search(r"holdout: predictions vs ground_truth on \d+ items", text)
    found, top, wrong, total = map(int, re.search(
        r"(\d+) of the top (\d+) suspicious labels are real errors \((\d+) wrong labels among (\d+)", text).groups())
    assert wrong > 0 and found / top > 2 * wrong / total, text    # far better than picking labels at random
    left = int(re.search(r"wrong labels left: (\d+)", text).group(1))
    assert left < wrong
    assert "'n_exported': 90" in text and (tmp_path / "error_analysis" / "exports" / "fiftyone" / "labels.json").exists()
