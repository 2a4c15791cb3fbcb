"""Issue 11, part 3: incremental ingest. `project.ingest()` / `alwb ingest DIR [--watch SECONDS]` find new, changed
and removed files, embed only what the content-keyed cache lacks (counted from the cache), report unreadable files
with a reason, and never touch the label store: a removed file's labels stay and are reported as missing."""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alworkbench import Answer, Project
from alworkbench.embed.backbones import get_backbone
from alworkbench.embed.cache import EmbeddingCache

REPO = Path(__file__).resolve().parents[2]
CLASSES = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}
ENV = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), TQDM_DISABLE="1")



def _sigint_as_a_terminal_gives_it():
    """Run in the watch subprocess before exec: SIGINT back to its default. A test run started as a background job
    (``cmd &`` in a non-interactive shell, as CI scripts and nohup do) has SIGINT ignored, the child inherits that,
    and Python then installs no Ctrl-C handler at all: the watch would never see the test's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _errfile(tmp_path):
    """Where a watch subprocess's stderr goes: a file, since a pipe nobody reads until the end can fill up and
    block the child."""
    return tmp_path / "watch-stderr.txt"


class _Watch:
    """``alwb ingest DIR --watch 0.2 [args]`` in a subprocess, its stdout read line by line on a thread (stderr goes
    to a file: a pipe nobody reads until the end can fill up and block the child)."""

    def __init__(self, tmp_path, *args):
        self.err = _errfile(tmp_path)
        self.proc = subprocess.Popen([sys.executable, "-m", "alworkbench.cli", "ingest", str(tmp_path / "proj"),
                                      "--watch", "0.2", *args], stdout=subprocess.PIPE, stderr=self.err.open("w"),
                                     text=True, env=ENV, preexec_fn=_sigint_as_a_terminal_gives_it)
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for ln in self.proc.stdout:
            self.lines.put(ln)
        self.lines.put(None)  # end of output

    def wait_for(self, pred, timeout=240.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ln = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.proc.poll() is None, f"alwb ingest --watch exited early: {self.seen} {self.err.read_text()}"
                continue
            assert ln is not None, f"alwb ingest --watch ended early: {self.seen} {self.err.read_text()}"
            self.seen.append(ln)
            if pred(ln):
                return ln
        raise AssertionError(f"no matching line before the deadline; output so far: {self.seen}")

    def stop(self, sig=signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        self.proc.wait(timeout=600)  # a liveness bound for a loaded machine, not a speed check
        self.reader.join(timeout=60)
        return self.proc.returncode

    def rest(self) -> str:
        """Everything it printed (call after stop)."""
        while not self.lines.empty():
            ln = self.lines.get()
            if ln is not None:
                self.seen.append(ln)
        return "".join(self.seen)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

def _png(path: Path, rgb, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = np.clip(np.array(rgb) + rng.integers(-25, 25, (12, 12, 3)), 0, 255).astype(np.uint8)
    tmp = path.with_name("." + path.name + ".part")  # hidden while written: a scan never sees half a file
    Image.fromarray(a).save(tmp, format="PNG")
    os.replace(tmp, path)


def make_folder(root: Path, per_class: int = 12) -> Path:
    for c, (name, rgb) in enumerate(CLASSES.items()):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            _png(root / name / f"{name}{i}.png", rgb, seed=100 * c + i)
    return root


def _features(p: Project) -> np.ndarray:
    """Cheap pixel features for the labelling session (the ingest itself uses the project's real backbone)."""
    return np.stack([np.asarray(p.source.load(it).convert("RGB").resize((4, 4)), np.float32).ravel() / 255
                     for it in p.items])


def _cache_count(p: Project) -> int:
    b = p.config.backbone
    return EmbeddingCache(p.dir / "cache").count(get_backbone(b.name, weights=b.weights, device=b.device).key)


def _alwb(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "alworkbench.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def _labelled_project(tmp_path):
    images = make_folder(tmp_path / "images")
    p = Project.init(tmp_path / "proj", str(images), query={"batch_size": 6, "strategy": "random"},
                     evaluation={"holdout": 0.0})
    assert p.config.backbone.name == "randconv"  # the offline default: a real backbone and its real cache
    first = p.ingest()
    assert first.embedded == 36 and len(first.new) == 36 and _cache_count(p) == 36
    s = p.session(annotator="ana", embeddings=_features(p), warm_start=False)
    batch = s.next_batch()
    for bi in batch.items:
        s.submit(bi.item.id, Answer.of_label(bi.item.id.split("/")[0]))
    s.close()
    return images, p, [bi.item.id for bi in batch.items]


def test_ingest_embeds_only_new_and_changed_reports_skips_and_missing_labels_and_keeps_the_store(tmp_path):
    images, p, labelled = _labelled_project(tmp_path)
    events_before = p.store.events()
    labels_before = p.store.labels()
    assert set(labels_before) == set(labelled)
    p.close()

    n_new = 7
    new_ids = [f"green/new{i}.png" for i in range(n_new)]
    for i, rel in enumerate(new_ids):
        _png(images / rel, CLASSES["green"], seed=5000 + i)
    changed_id = next(it for it in sorted(images.glob("blue/*.png")) if f"blue/{it.name}" not in labelled)
    changed_id = f"blue/{changed_id.name}"
    _png(images / changed_id, (0, 0, 0), seed=9999)  # same name, new content
    gone = labelled[0]
    (images / gone).unlink()  # a labelled image disappears
    (images / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a corrupt file

    p2 = Project.open(tmp_path / "proj")
    before = _cache_count(p2)
    rep = p2.ingest()
    after = _cache_count(p2)
    # exactly the new images and the changed one were embedded: counted in the cache, and by the report
    assert after - before == n_new + 1 and rep.embedded == n_new + 1 and rep.computed == n_new + 1
    assert (rep.cache_before, rep.cache_after) == (before, after)
    assert sorted(rep.new) == sorted(new_ids) and rep.changed == [changed_id] and rep.removed == [gone]
    assert rep.unchanged == 36 - 2 and rep.n_items == 36 - 1 + n_new
    assert rep.baseline == "previous ingest"
    broken = [(path, why) for path, why in rep.skipped if path == "red/broken.png"]
    assert len(broken) == 1 and broken[0][1], rep.skipped  # reported with a reason
    assert rep.labelled_missing == [gone] and rep.changed_labelled == []
    text = "\n".join(rep.lines())
    assert "labelled but missing" in text and gone in text and "skipped red/broken.png: " in text

    # the store is untouched: the same events and labels, the removed image's label included
    assert p2.store.events() == events_before and p2.store.labels() == labels_before
    assert gone in p2.store.labels()

    # a new session pools the new items; the removed one is not an item any more
    s = p2.session(annotator="bo", embeddings=_features(p2), warm_start=False)
    pool_ids = {s.items[int(i)].id for i in s.pool_indices()}
    assert set(new_ids) <= pool_ids and changed_id in pool_ids and gone not in {it.id for it in s.items}
    assert not set(labelled) & pool_ids
    s.close()
    # the project's embeddings are the ingested ones (rows aligned with the new items)
    assert p2.embeddings(progress=False).shape[0] == 36 - 1 + n_new
    p2.close()

    # nothing changed since: nothing new, nothing embedded
    p3 = Project.open(tmp_path / "proj")
    again = p3.ingest()
    assert (again.new, again.changed, again.removed, again.embedded) == ([], [], [], 0)
    assert again.unchanged == 36 - 1 + n_new and again.labelled_missing == [gone]
    assert p3.store.events() == events_before
    from alworkbench.cli import status_dict

    st = status_dict(p3)  # `alwb status` names the labelled item whose file is gone
    assert st["labelled_missing"] == [gone] and st["auto_labels"] == 0
    p3.close()


def test_alwb_ingest_cli_prints_the_report_and_exits_0(tmp_path):
    images, p, labelled = _labelled_project(tmp_path)
    events_before = p.store.events()
    p.close()
    for i in range(3):
        _png(images / "red" / f"late{i}.png", CLASSES["red"], seed=7000 + i)
    (images / labelled[1]).unlink()
    (images / "blue" / "empty.png").write_bytes(b"")
    r = _alwb("ingest", tmp_path / "proj", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    head = r.stdout.splitlines()[0]
    assert "3 new, 0 changed, 1 removed" in head and "3 embedded (cache 36 -> 39 images)" in head, r.stdout
    assert "skipped blue/empty.png: empty file" in r.stdout
    assert f"labelled but missing (labels kept in the store) (1): {labelled[1]}" in r.stdout
    assert "red/late0.png" in r.stdout

    r = _alwb("ingest", tmp_path / "proj", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["new"] == [] and rep["embedded"] == 0 and rep["labelled_missing"] == [labelled[1]]
    assert {"path": "blue/empty.png", "reason": rep["skipped"][0]["reason"]} in rep["skipped"]
    p = Project.open(tmp_path / "proj")
    assert p.store.events() == events_before
    p.close()


def test_ingest_of_a_csv_manifest_finds_new_rows(tmp_path):
    images = make_folder(tmp_path / "images", per_class=3)
    manifest = tmp_path / "images" / "m.csv"
    rows = [f"{name}/{name}{i}.png,{name}" for name in CLASSES for i in range(3)]
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")
    p = Project.init(tmp_path / "proj", str(manifest))
    assert p.ingest().embedded == 9
    _png(images / "red" / "extra.png", CLASSES["red"], seed=42)
    manifest.write_text("path,label\n" + "\n".join(rows[1:] + ["red/extra.png,red"]) + "\n")
    rep = p.ingest()
    assert rep.kind == "csv" and rep.new == ["red/extra.png"] and rep.removed == ["red/red0.png"]
    assert rep.embedded == 1 and rep.unchanged == 8
    p.close()


def test_builtin_dataset_ingest_says_it_does_not_change(tmp_path):
    p = Project.init(tmp_path / "proj", "digits", source={"limit": 50})
    rep = p.ingest()
    assert rep.builtin and rep.embedded == 0 and rep.new == [] and rep.unchanged == 50
    p.close()
    r = _alwb("ingest", tmp_path / "proj")
    assert r.returncode == 0 and "built-in dataset 'digits' does not change: nothing to ingest" in r.stdout


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_alwb_ingest_watch_reports_a_dropped_file_and_exits_cleanly_on_ctrl_c(tmp_path, stop):
    """Ctrl-C, and SIGTERM (kill, systemd, docker stop), end the watch the same way: a summary, exit 0."""
    images = make_folder(tmp_path / "images", per_class=4)
    Project.init(tmp_path / "proj", str(images)).close()
    w = _Watch(tmp_path)
    try:
        w.wait_for(lambda ln: ln.startswith("watching "))
        _png(images / "blue" / "dropped.png", CLASSES["blue"], seed=31337)
        line = w.wait_for(lambda ln: "blue/dropped.png" in ln)
        assert line.strip() == "new (1): blue/dropped.png"
        assert any("1 new, 0 changed, 0 removed" in ln and "1 embedded" in ln for ln in w.seen), w.seen
        rc = w.stop(stop)
        err = w.err.read_text()
    finally:
        w.kill()
    assert rc == 0, err
    rest = w.rest()
    summary = [ln for ln in rest.splitlines() if ln.startswith("watch stopped after ")]
    assert len(summary) == 1 and "1 new, 0 changed, 0 removed, 1 embedded" in summary[0], rest
    assert "Traceback" not in err


# ------------------------------------------------------------------------------------------------ routing on ingest
def _events_dump(p: Project) -> str:
    """Every answer event and the derived labels, serialised: compared byte for byte before and after an ingest."""
    return json.dumps([p.store.events(), p.store.labels()], sort_keys=True, default=str)


def _trained_project(tmp_path, routing=None):
    """36 images, 30 labelled by a person (10 per class) and a model trained on the project's own (randconv)
    embeddings and saved; 6 old images stay unlabelled."""
    images = make_folder(tmp_path / "images")
    p = Project.init(tmp_path / "proj", str(images), query={"batch_size": 6, "strategy": "random"},
                     evaluation={"holdout": 0.0},
                     routing={"on_ingest": True, "min_support": 5, "target_precision": 0.9, "review_sample": 0.0,
                              **(routing or {})})
    first = p.ingest()
    assert first.routing["status"] == ("no_model" if p.config.routing.on_ingest else "off")
    assert first.routing["n_auto"] == 0 and first.routing["n_queued"] == 36
    assert ("no model yet" if p.config.routing.on_ingest else "routing off") in first.routing["note"]
    assert not (p.dir / "labels.sqlite").exists()  # nothing to route with: no store created either
    s = p.session(annotator="ana", warm_start=False)
    labelled = [f"{c}/{c}{i}.png" for c in CLASSES for i in range(10)]
    s.answer_items({sid: Answer.of_label(sid.split("/")[0]) for sid in labelled})
    rep = s.retrain()
    version = rep.model_version
    s.close()
    return images, p, labelled, version


def test_ingest_routes_new_images_with_the_saved_model_and_never_changes_a_label(tmp_path):
    from alworkbench.loop.routing import AUTO_LABEL

    images, p, labelled, version = _trained_project(tmp_path)
    p.close()
    old_unlabelled = [f"{c}/{c}{i}.png" for c in CLASSES for i in (10, 11)]
    new_ids = [f"{c}/late{i}.png" for c in CLASSES for i in range(5)]
    for k, sid in enumerate(new_ids):
        _png(images / sid, CLASSES[sid.split("/")[0]], seed=8000 + k)
    relabelled = labelled[3]  # a labelled image changes: it stays the person's, never auto-labelled
    _png(images / relabelled, CLASSES[relabelled.split("/")[0]], seed=4242)
    (images / "green" / "broken.png").write_bytes(b"not a png")
    _png(images / "red" / "grey.png", (128, 128, 128), seed=1)  # no colour of its class: not confident enough
    new_ids.append("red/grey.png")

    p = Project.open(tmp_path / "proj")
    before = _events_dump(p)
    rep = p.ingest()
    r = rep.routing
    assert sorted(rep.new) == sorted(new_ids) and rep.changed == [relabelled]
    assert r["status"] == "routed" and r["model_version"] == version  # the saved model, restored: no refit
    assert p.store.latest_model()["version"] == version
    assert r["n_auto"] + r["n_queued"] == len(new_ids) and r["n_auto"] >= 10 and "red/grey.png" in r["queued"], r
    assert set(r["auto"]) | set(r["queued"]) == set(new_ids) and not set(r["auto"]) & set(r["queued"])
    recs = p.store.records(AUTO_LABEL)
    assert sorted(x["item_id"] for x in recs) == sorted(r["auto"])
    for x in recs:  # the same records as session.auto_label() writes, right for these plain colours
        assert x["label"] == x["item_id"].split("/")[0] and x["model_version"] == version
        assert x["confidence"] >= x["threshold"] and x["target_precision"] == 0.9 and x["sampled"] is False
    # old unlabelled images were not routed (only the new ones), the changed labelled one was not either
    assert not {x["item_id"] for x in recs} & {*old_unlabelled, relabelled, *labelled}
    assert r["n_not_pooled"] == 1  # the changed image: labelled, not queued again
    assert [sk for sk in rep.skipped if sk[0] == "green/broken.png"] and "green/broken.png" not in r["queued"]
    # the store's answers and labels are byte-identical: no human label changed or was overridden
    assert _events_dump(p) == before and p.store.labels()[relabelled] == relabelled.split("/")[0]
    text = "\n".join(rep.lines())
    assert f"routing with model v{version}: {r['n_auto']} auto-labelled (0 sampled for review), " \
           f"{r['n_queued']} queued for people" in text
    # the queued ones are in the human pool, the auto-labelled ones are not
    s = p.session(annotator="bo", warm_start=False)
    pool = {s.items[int(i)].id for i in s.pool_indices()}
    assert set(r["queued"]) <= pool and not set(r["auto"]) & pool and set(old_unlabelled) <= pool
    s.close()

    # nothing new: nothing routed
    again = p.ingest()
    assert again.routing["status"] == "nothing" and len(p.store.records(AUTO_LABEL)) == len(recs)

    # a human answer since the model: it is not current any more; ingest does not refit, it queues everything
    s = p.session(annotator="bo", warm_start=False)
    s.answer_items({old_unlabelled[0]: Answer.of_label("red")})
    s.close()
    _png(images / "blue" / "later.png", CLASSES["blue"], seed=123)
    before = _events_dump(p)
    rep = p.ingest()
    assert rep.routing["status"] == "no_model" and rep.routing["queued"] == ["blue/later.png"]
    assert "no current model" in rep.routing["note"] and rep.routing["note"] in "\n".join(rep.lines())
    assert p.store.latest_model()["version"] == version and _events_dump(p) == before
    assert len(p.store.records(AUTO_LABEL)) == len(recs)
    p.close()


def test_alwb_ingest_cli_routes_only_when_on_and_watch_routes_each_poll(tmp_path):
    from alworkbench.loop.routing import AUTO_LABEL

    images, p, labelled, version = _trained_project(tmp_path, routing={"on_ingest": False})
    before = _events_dump(p)
    p.close()
    for k in range(3):
        _png(images / "green" / f"cli{k}.png", CLASSES["green"], seed=6000 + k)
    r = _alwb("ingest", tmp_path / "proj", "--json")  # routing off in the config: everything queued, said once
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["routing"]["status"] == "off" and out["routing"]["n_queued"] == 3 and out["routing"]["n_auto"] == 0
    assert out["routing"]["note"] == "routing off (routing.on_ingest is false): 3 new image(s) queued for people"
    for k in range(3):
        _png(images / "blue" / f"cli{k}.png", CLASSES["blue"], seed=6100 + k)
    r = _alwb("ingest", tmp_path / "proj", "--route", "--quiet")  # asked for on the command line
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"routing with model v{version}: 3 auto-labelled (0 sampled for review), 0 queued for people" in r.stdout
    p = Project.open(tmp_path / "proj")
    assert sorted(x["item_id"] for x in p.store.records(AUTO_LABEL)) == [f"blue/cli{k}.png" for k in range(3)]
    assert _events_dump(p) == before  # the green ones of the first run stay queued: not routed later either
    p.close()

    # --watch routes what each poll finds
    w = _Watch(tmp_path, "--route")
    try:
        w.wait_for(lambda ln: ln.startswith("watching "))
        _png(images / "red" / "watched.png", CLASSES["red"], seed=6200)
        line = w.wait_for(lambda ln: ln.startswith("routing with model"))
        assert line.strip() == f"routing with model v{version}: 1 auto-labelled (0 sampled for review), " \
                               "0 queued for people", w.seen
        rc = w.stop()
        line = w.wait_for(lambda ln: ln.startswith("watch stopped after "))
        assert "1 new, 0 changed, 0 removed, 1 embedded, 1 auto-labelled, 0 queued" in line, w.seen
    finally:
        w.kill()
    assert rc == 0
    p = Project.open(tmp_path / "proj")
    assert "red/watched.png" in {x["item_id"] for x in p.store.records(AUTO_LABEL)} and _events_dump(p) == before
    p.close()


def test_ingest_routes_new_images_of_a_tag_project_only_when_every_tag_is_confident(tmp_path):
    """The same colour folders used with a tag vocabulary (each image's class is its one tag): ingest routes the
    new images with the saved multi-label model; an auto label is the list of its present tags."""
    from alworkbench.loop.routing import AUTO_LABEL

    images = make_folder(tmp_path / "images")
    p = Project.init(tmp_path / "proj", str(images), tags=list(CLASSES), query={"batch_size": 6},
                     evaluation={"holdout": 0.0},
                     routing={"on_ingest": True, "min_support": 5, "target_precision": 0.9, "review_sample": 0.0})
    p.ingest()
    s = p.session(annotator="ana", warm_start=False)
    s.answer_items({f"{c}/{c}{i}.png": Answer.of_tags([c]) for c in CLASSES for i in range(10)})
    version = s.retrain().model_version
    s.close()
    new_ids = [f"{c}/late{i}.png" for c in CLASSES for i in range(4)]
    for k, sid in enumerate(new_ids):
        _png(images / sid, CLASSES[sid.split("/")[0]], seed=8100 + k)
    before = _events_dump(p)
    rep = p.ingest()
    r = rep.routing
    assert r["status"] == "routed" and r["model_version"] == version
    assert r["n_auto"] + r["n_queued"] == len(new_ids) and r["n_auto"] >= 6, r
    recs = p.store.records(AUTO_LABEL)
    assert sorted(x["item_id"] for x in recs) == sorted(r["auto"])
    for x in recs:
        assert x["label"] == [x["item_id"].split("/")[0]] and set(x["tag_confidence"]) == set(CLASSES)
    assert _events_dump(p) == before
    p.close()
