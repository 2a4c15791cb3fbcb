"""Issue 9, finding 6 (deleted images): an image of the open batch deleted from the source folder used to make every
`alwb label` fail with "not in this project". Now the missing item is dropped from the open batch with a one-line
notice and labelling carries on (a batch with nothing left counts as closed)."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alworkbench import Answer, Project

REPO = Path(__file__).resolve().parents[2]
CLASSES = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}


def make_folder(root: Path, per_class: int = 8) -> Path:
    rng = np.random.default_rng(0)
    for name, rgb in CLASSES.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            a = np.clip(np.array(rgb) + rng.integers(-25, 25, (12, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(root / name / f"{name}{i}.png")
    return root


def _features(p: Project) -> np.ndarray:
    return np.stack([np.asarray(p.source.load(it).convert("RGB").resize((4, 4)), np.float32).ravel() / 255
                     for it in p.items])


def _path_of(p: Project, item_id: str) -> Path:
    return Path(next(it.uri for it in p.items if it.id == item_id))


def test_finding6_deleted_image_of_open_batch_is_dropped_and_labelling_carries_on(tmp_path):
    images = make_folder(tmp_path / "images")
    p = Project.init(tmp_path / "proj", str(images), query={"batch_size": 5, "strategy": "random"},
                     evaluation={"holdout": 0.0})
    s = p.session(annotator="ana", embeddings=_features(p), warm_start=False)
    b = s.next_batch()
    ids = [bi.item.id for bi in b.items]
    s.submit(ids[0], Answer.of_label("red"))
    gone = ids[1:3]
    paths = [_path_of(p, g) for g in gone]
    s.close()
    p.close()
    for path in paths:
        path.unlink()  # two unanswered images of the open batch disappear

    p2 = Project.open(tmp_path / "proj")
    assert not set(gone) & {it.id for it in p2.items}
    s2 = p2.session(annotator="ana", embeddings=_features(p2), warm_start=False)
    with pytest.warns(UserWarning) as rec:
        b2 = s2.next_batch()
    notices = [str(w.message) for w in rec if "no longer in this project" in str(w.message)]
    assert len(notices) == 1 and "\n" not in notices[0] and "2 item(s)" in notices[0], notices
    # the batch closed with the session is renewed on reopening (same round, superseding it), minus the deleted images
    assert b2.round == b.round and [bi.item.id for bi in b2.items] == [ids[0]] + ids[3:]
    assert p2.store.load_batch(b2.batch_id)["supersedes"] == b.batch_id
    assert [bi.item.id for bi in s2.pending()] == ids[3:]
    for bi in s2.pending():
        s2.submit(bi.item.id, Answer.skip())
    nxt = s2.next_batch()  # the batch is complete: a new one, without the deleted images
    assert nxt.batch_id not in (b.batch_id, b2.batch_id) and not set(gone) & {bi.item.id for bi in nxt.items}
    s2.close()
    p2.close()


def test_finding6_batch_whose_images_were_all_deleted_counts_as_closed(tmp_path):
    images = make_folder(tmp_path / "images")
    p = Project.init(tmp_path / "proj", str(images), query={"batch_size": 3, "strategy": "random"},
                     evaluation={"holdout": 0.0})
    s = p.session(annotator="ana", embeddings=_features(p), warm_start=False)
    b = s.next_batch()
    paths = [_path_of(p, bi.item.id) for bi in b.items]
    s.close()
    p.close()
    for path in paths:
        path.unlink()
    p2 = Project.open(tmp_path / "proj")
    s2 = p2.session(annotator="ana", embeddings=_features(p2), warm_start=False)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        b2 = s2.next_batch()
    assert any("3 item(s) no longer in this project" in str(w.message) for w in rec)
    assert b2.batch_id != b.batch_id and len(b2) == 3 and s2.pending() == b2.items
    s2.close()
    p2.close()


def test_finding6_alwb_label_carries_on_after_an_image_of_the_open_batch_is_deleted(tmp_path):
    images = make_folder(tmp_path / "images")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def alwb(*args):
        return subprocess.run([sys.executable, "-m", "alworkbench.cli", *map(str, args)], capture_output=True,
                              text=True, timeout=300, env=env)

    d = tmp_path / "proj"
    assert alwb("init", d, "--images", images, "--backbone", "pixels", "--batch-size", 6).returncode == 0
    assert alwb("embed", d, "--quiet").returncode == 0
    p = Project.open(d)
    s = p.session()  # the CLI's annotator (the config's default)
    b = s.next_batch()
    victim = b.items[2].item.id
    path = _path_of(p, victim)
    s.close()
    p.close()
    path.unlink()
    r = alwb("label", d, "--oracle", "--rounds", 2)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no longer in this project" in r.stderr and "not in this project" not in r.stdout
    notice = [ln for ln in r.stderr.splitlines() if "no longer in this project" in ln]
    assert len(notice) == 1 and notice[0].startswith("alwb: warning: batch ")  # one line, no source echo
    assert "warnings.warn" not in r.stderr
    assert "round 1: 5 image(s)" in r.stdout and "model v2" in r.stdout
    p = Project.open(d)
    answered = p.store.answered_ids()
    assert len(answered) == 11 and victim not in answered
    assert {bi.item.id for bi in b.items} - {victim} <= answered  # the rest of the open batch was labelled
    p.close()
