"""Taxonomies end to end: `alwb simulate --config configs/fmnist-taxonomy.yaml` (real Fashion-MNIST, real torch
backbone and head) reports accuracy per level; FiftyOne (real MongoDB) gets one field per level."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("FIFTYONE_DATABASE_DIR", tempfile.mkdtemp(prefix="alwb-fo-db-"))
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

REPO = Path(__file__).resolve().parents[2]
FMNIST = Path("/usr/share/datasets/fashion-mnist")


def test_simulate_fashion_mnist_taxonomy_reports_accuracy_per_level(tmp_path):
    if not FMNIST.is_dir():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    out = tmp_path / "sim.json"
    r = subprocess.run([sys.executable, "-m", "alworkbench.cli", "simulate", "--config",
                        str(REPO / "configs" / "fmnist-taxonomy.yaml"), "--strategy", "random", "--budget", "60",
                        "--batch-size", "20", "--initial", "20", "--seeds", "0", "--limit", "1000", "--mode", "sync",
                        "--workdir", str(tmp_path / "w"), "--json", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["dataset"] == "fashion-mnist" and res["levels"] == ["level_1", "level_2", "level_3"]
    curve = res["results"]["random"]["0"]
    assert [p["n_labels"] for p in curve] == [20, 40, 60]
    for p in curve:
        lv = p["level_accuracy"]
        assert len(lv) == 3 and all(0 <= a <= 1 for a in lv)
        assert lv[2] == pytest.approx(p["accuracy"])  # the leaf level is the flat accuracy
        assert lv[0] >= lv[1] >= lv[2]  # top-down predictions: a right leaf has right ancestors
    final = res["summary"]["strategies"]["random"]["final_level_accuracy"]
    assert final == pytest.approx(curve[-1]["level_accuracy"])
    assert final[0] > 0.6  # clothing / footwear / accessory is easy even with 60 labels (chance: 1/3)
    assert "final accuracy per taxonomy level (level_1, level_2, level_3):" in r.stdout
    assert f"level_1 {final[0]:.4f}  level_2 {final[1]:.4f}  level_3 {final[2]:.4f}" in r.stdout


def test_simulate_refuses_a_taxonomy_that_is_not_the_datasets_classes(tmp_path):
    cfg = tmp_path / "alwb.yaml"
    cfg.write_text("source: digits\ntaxonomy: {small: ['0', '1'], big: ['8', '9']}\n")
    r = subprocess.run([sys.executable, "-m", "alworkbench.cli", "simulate", "--config", str(cfg), "--budget", "20",
                        "--workdir", str(tmp_path / "w"), "--quiet"], capture_output=True, text=True, timeout=600)
    assert r.returncode != 0
    assert "the taxonomy's leaves must be digits's classes: '2'" in r.stderr
    assert "Traceback" not in r.stderr


def test_alwb_label_with_the_oracle_prints_accuracy_per_level_and_stores_paths(tmp_path):
    from alworkbench import Project
    from alworkbench.labels import LabelStore

    tree = {"round": {"loops": ["0", "6", "8", "9"], "open": ["2", "3", "5"]}, "straight": ["1", "4", "7"]}
    Project.init(tmp_path / "p", "digits", taxonomy=tree, query={"batch_size": 30}).close()
    r = subprocess.run([sys.executable, "-m", "alworkbench.cli", "label", str(tmp_path / "p"), "--oracle",
                        "--rounds", "2"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("  per level: ")]
    assert len(lines) == 2 and all("level_1 " in ln and "level_2 " in ln and "level_3 " in ln for ln in lines)
    with LabelStore(tmp_path / "p" / "labels.sqlite") as st:
        reports = st.reports()
        labels, paths = st.labels(), st.paths()
    last = reports[-1]["levels"]
    assert lines[-1] == "  per level: " + ", ".join(
        f"{lv['name']} {lv['accuracy']:.3f}" + ("" if lv["cv_accuracy"] is None else f" (cv {lv['cv_accuracy']:.3f})")
        for lv in last)
    assert len(labels) == 60 and set(paths) == set(labels)
    t = Project.open(tmp_path / "p").config.tree
    assert all(paths[sid] == t.path(leaf) for sid, leaf in labels.items())


def test_simulate_needs_a_dataset_or_a_builtin_config(tmp_path):
    r = subprocess.run([sys.executable, "-m", "alworkbench.cli", "simulate", "--budget", "20"], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode != 0 and "simulate needs --dataset or --config" in r.stderr and "Traceback" not in r.stderr
    cfg = tmp_path / "alwb.yaml"
    cfg.write_text("source: {kind: folder, path: imgs}\ntaxonomy: {a: [x, y]}\n")
    r = subprocess.run([sys.executable, "-m", "alworkbench.cli", "simulate", "--config", str(cfg)], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode != 0 and "simulate needs a built-in source (source.dataset) or --dataset" in r.stderr


@pytest.mark.fiftyone
def test_fiftyone_gets_label_ground_truth_and_prediction_per_level(tmp_path):
    pytest.importorskip("fiftyone")
    from sklearn.linear_model import LogisticRegression

    from alworkbench import Answer, Project
    from alworkbench.integrations import fiftyone_sync as fs

    tree = {"round": {"loops": ["0", "6", "8", "9"], "open": ["2", "3", "5"]},
            "straight": {"1": None, "angled": ["4", "7"]}}
    p = Project.init(tmp_path / "tax-fo", "digits", backbone="pixels", taxonomy=tree, source={"limit": 200},
                     query={"batch_size": 30})
    X = p.source.pixels.reshape(len(p.items), -1).astype(np.float32) / 16.0
    s = p.session(embeddings=X, warm_start=False, head_factory=lambda: LogisticRegression(max_iter=300))
    try:
        b = s.next_batch()
        answered = {}
        for bi in b.items[:25]:
            s.submit(bi.item.id, Answer.of_label(bi.item.label))
            answered[bi.item.id] = bi.item.label
        s.retrain()
        rep = fs.sync(p, s)
        assert set(rep.level_fields) == {f"{pre}level_{k}" for pre in ("", "gt_", "pred_") for k in (1, 2, 3)}
        ds = fs.get_dataset(p)
        ids = ds.values("alwb_id")
        t = p.config.tree
        by_id = {it.id: it for it in p.items}
        for k in (1, 2, 3):
            labels = dict(zip(ids, ds.values(f"level_{k}.label")))
            gts = dict(zip(ids, ds.values(f"gt_level_{k}.label")))
            for sid in ids:
                assert labels[sid] == (t.levels(answered[sid])[k - 1] if sid in answered else None)
                assert gts[sid] == t.levels(by_id[sid].label)[k - 1]
        # predictions per level: the model's top-down path, with the node's summed probability as confidence
        item_ids, proba, classes = s.predict_proba_all()
        row = {sid: r for r, sid in enumerate(item_ids)}
        paths = t.predict_paths(proba, classes)
        node_p = t.node_proba(proba, classes)
        preds = [dict(zip(ids, zip(ds.values(f"pred_level_{k}.label"), ds.values(f"pred_level_{k}.confidence"))))
                 for k in (1, 2, 3)]
        for sid in ids:
            got = tuple(preds[k][sid][0] for k in range(3))
            assert got == paths[row[sid]] and t.levels(got[-1]) == got  # never contradicts the tree
            assert preds[0][sid][1] == pytest.approx(node_p[got[0]][row[sid]], rel=1e-5)
        # the flat predictions field names the same (top-down) leaf as the last level
        flat = dict(zip(ids, ds.values("predictions.label")))
        assert all(flat[sid] == preds[2][sid][0] for sid in ids)
        # a second sync with nothing new writes no level field again
        assert fs.sync(p, s).level_fields == []
    finally:
        s.close()
        fs.delete_dataset(p)
        p.close()
