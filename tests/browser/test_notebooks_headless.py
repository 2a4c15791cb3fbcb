"""The example notebooks run top to bottom without a browser (nbclient, as in CI): a simulated annotator answers
through the widget's own message path, and the plots are drawn."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

pytestmark = [pytest.mark.notebook, pytest.mark.slow]

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def run_notebook(name: str, tmp_path: Path, monkeypatch) -> tuple[str, list]:
    monkeypatch.setenv("ALWB_HEADLESS", "1")
    monkeypatch.setenv("ALWB_PROJECTS_DIR", str(tmp_path))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    text, images = [], []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("name") == "stdout":
                text.append(out["text"])
            data = out.get("data", {})
            if "image/png" in data:
                images.append(data["image/png"])
    return "".join(text), images


def test_quickstart_labels_rounds_and_the_model_improves(tmp_path, monkeypatch):
    text, images = run_notebook("01_quickstart.ipynb", tmp_path, monkeypatch)
    acc = [float(a) for a in re.findall(r"held-out accuracy ([0-9.]+)", text)]
    assert len(acc) == 5, text
    assert acc[-1] > acc[0] and acc[-1] > 0.6, acc
    assert len(images) == 1                              # the learning curve
    assert (tmp_path / "quickstart" / "labels.sqlite").exists()


def test_multilabel_notebook_tags_from_a_csv(tmp_path, monkeypatch):
    text, images = run_notebook("02_multilabel_tagging.ipynb", tmp_path, monkeypatch)
    f1 = [float(a) for a in re.findall(r"held-out micro_f1 ([0-9.]+)", text)]
    assert len(f1) == 4 and f1[-1] > 0.7, text
    assert len(images) == 1
    assert "model's tags for" in text


def test_teaching_notebook_compares_strategies(tmp_path, monkeypatch):
    text, images = run_notebook("04_teaching_strategies.ipynb", tmp_path, monkeypatch)
    for strat in ("random", "margin", "entropy", "diverse_margin"):
        assert strat in text
    assert len(images) == 1
    assert "labels to reach random's final" in text
    assert os.path.isdir(tmp_path / "teaching_strategies")


def test_annotation_workflow_notebook_runs_the_quality_loop(tmp_path, monkeypatch):
    text, images = run_notebook("05_annotation_workflow.ipynb", tmp_path, monkeypatch)
    assert "gold: 60 item(s) added" in text                                      # alwb gold import
    assert "QualificationError" in text and "-> failed" in text and "-> passed" in text   # ben fails, retries
    assert re.search(r"ben's tier went from \w+ to probation", text), text       # hidden gold caught him
    assert "below the pass mark" in text                                         # quality_notice()
    assert re.search(r"\d+ accepted, \d+ corrected; queue now 0", text)          # the reviewer
    assert re.search(r"Cohen's kappa [0-9.]+; Krippendorff's alpha [0-9.]+", text)
    wrong = {k: int(n) for k, n in re.findall(r"^\s+(final labels|raw answers|ground truth)\D.*?(\d+) wrong labels",
                                               text, re.M)}
    assert wrong["ground truth"] == 0 and wrong["final labels"] < wrong["raw answers"], wrong
    assert len(images) == 3                      # ben's accuracy; the report's accuracy and confusion plots
    assert (tmp_path / "annotation_workflow" / "labels.sqlite").exists()
