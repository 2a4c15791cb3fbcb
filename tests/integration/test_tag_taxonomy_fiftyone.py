"""Tag trees in FiftyOne (issue 11, multi-label half): one Classifications field per level for the final tag set,
the ground truth and the tree-consistent prediction, against the real MongoDB that FiftyOne starts."""
from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

os.environ.setdefault("FIFTYONE_DATABASE_DIR", tempfile.mkdtemp(prefix="alwb-fo-db-"))
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

import fiftyone  # noqa: E402,F401 - required: a missing package fails, never skips
pytestmark = pytest.mark.fiftyone

from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.multiclass import OneVsRestClassifier  # noqa: E402

from alworkbench import Answer, Project  # noqa: E402
from alworkbench.integrations import fiftyone_sync as fs  # noqa: E402

TAGS = {"round": {"loops": ["0", "6", "8", "9"], "open": ["2", "3", "5"]},
        "straight": {"1": None, "angled": ["4", "7"]}}


def test_fiftyone_gets_tags_per_level_for_label_ground_truth_and_prediction(tmp_path):
    p = Project.init(tmp_path / "tagtree-fo", "digits", backbone="pixels", tags=TAGS, source={"limit": 200},
                     query={"batch_size": 30})
    X = p.source.pixels.reshape(len(p.items), -1).astype(np.float32) / 16.0
    s = p.session(embeddings=X, warm_start=False,
                  head_factory=lambda: OneVsRestClassifier(LogisticRegression(max_iter=300)))
    t = p.config.tree
    try:
        b = s.next_batch()
        answered = {}
        for bi in b.items[:25]:
            s.submit(bi.item.id, Answer.of_tags([bi.item.label]))  # the digit only: its ancestors come with it
            answered[bi.item.id] = t.path(bi.item.label)
        s.retrain()
        rep = fs.sync(p, s)
        assert set(rep.level_fields) == {f"{pre}level_{k}" for pre in ("", "gt_", "pred_") for k in (1, 2, 3)}
        ds = fs.get_dataset(p)
        ids = ds.values("alwb_id")
        by_id = {it.id: it for it in p.items}
        for k in (1, 2, 3):
            labels = dict(zip(ids, ds.values(f"level_{k}.classifications.label")))
            gts = dict(zip(ids, ds.values(f"gt_level_{k}.classifications.label")))
            for sid in ids:
                want = [n for n in answered[sid] if t.tag_depth(n) == k] if sid in answered else None
                assert labels[sid] == want
                assert gts[sid] == [n for n in t.path(by_id[sid].label) if t.tag_depth(n) == k]
        # predictions per level: the tags decided present (p >= 0.5 of the consistent probabilities), with them
        item_ids, proba, classes = s.predict_proba_all()
        row = {sid: r for r, sid in enumerate(item_ids)}
        preds = [dict(zip(ids, zip(ds.values(f"pred_level_{k}.classifications.label"),
                                   ds.values(f"pred_level_{k}.classifications.confidence")))) for k in (1, 2, 3)]
        n_tags = 0
        for sid in ids:
            r = row[sid]
            chosen = []
            for k in range(3):
                labs, conf = preds[k][sid]
                want = [n for n in t.tag_level_nodes(k + 1) if proba[r, classes.index(n)] >= 0.5]
                assert labs == want
                assert conf == pytest.approx([proba[r, classes.index(n)] for n in want], rel=1e-6)
                chosen += labs
            assert set(t.close_tags(chosen)) == set(chosen)  # no predicted tag without its parent
            n_tags += len(chosen)
        assert n_tags > len(ids)  # the model does predict tags (most items get a top tag and more)
        assert fs.sync(p, s).level_fields == []  # nothing new: no level field written again
    finally:
        s.close()
        fs.delete_dataset(p)
        p.close()
