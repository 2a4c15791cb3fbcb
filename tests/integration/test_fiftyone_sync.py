"""The FiftyOne integration against the real MongoDB that FiftyOne starts (one database dir per test session)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

# must be in the environment before FiftyOne is imported: this test session's own database folder
os.environ.setdefault("FIFTYONE_DATABASE_DIR", tempfile.mkdtemp(prefix="alwb-fo-db-"))
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

pytest.importorskip("fiftyone")
pytestmark = pytest.mark.fiftyone

from sklearn.linear_model import LogisticRegression  # noqa: E402

from alworkbench import Answer, Project  # noqa: E402
from alworkbench.errors import AlwbError  # noqa: E402
from alworkbench.integrations import fiftyone_analysis as fa  # noqa: E402
from alworkbench.integrations import fiftyone_sync as fs  # noqa: E402
from alworkbench.loop.oracle import Oracle  # noqa: E402
from alworkbench.loop.session import Session  # noqa: E402

N_ITEMS = 300
NOISE = 0.15


def _pixels(project):
    px = project.source.pixels
    return (px.reshape(len(px), -1).astype(np.float32) / 255.0)


def _session(project, X, annotator="alice", strategy="margin"):
    # margin, not the default: adaptive picks at random while this small noisy model is weak, and round 2 must carry
    # scores for the query_score checks
    return Session(project, annotator=annotator, embeddings=X, warm_start=False, strategy=strategy,
                   head_factory=lambda: LogisticRegression(max_iter=500))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A digits project, a noisy oracle, two rounds with a sync after each."""
    d = tmp_path_factory.mktemp("fo") / "digits-demo"
    project = Project.init(d, "digits", backbone="pixels", query={"batch_size": 25}, source={"limit": N_ITEMS})
    X = _pixels(project)
    session = _session(project, X)
    oracle = Oracle(session, noise=NOISE, seed=1)
    syncs = [fs.sync(project, session)]  # before any label: samples + embeddings only
    for _ in range(2):
        oracle.label_batch(session.next_batch())
        session.retrain()
        syncs.append(fs.sync(project, session))
    yield {"project": project, "session": session, "X": X, "syncs": syncs, "ds": fs.get_dataset(project)}
    fs.delete_dataset(project)
    session.close()
    project.close()


def test_sync_creates_one_sample_per_item_with_files_and_ground_truth(world):
    project, ds, syncs = world["project"], world["ds"], world["syncs"]
    items = project.source.items
    assert syncs[0].n_added == len(items) == len(ds)
    assert syncs[1].n_added == 0 and syncs[2].n_added == 0
    assert ds.name == fs.dataset_name(project) and ds.persistent
    ids = ds.values("alwb_id")
    assert sorted(ids) == sorted(it.id for it in items)
    gt = dict(zip(ids, ds.values("ground_truth.label")))
    assert all(gt[it.id] == it.label for it in items)
    paths = ds.values("filepath")
    assert all(Path(p).is_file() and Path(p).is_relative_to(project.dir / "fiftyone" / "images") for p in paths)
    # materialised once: a later sync does not rewrite the PNGs
    mtimes = [os.stat(p).st_mtime_ns for p in paths[:20]]
    fs.sync(project, world["session"])
    assert [os.stat(p).st_mtime_ns for p in paths[:20]] == mtimes
    holdout = dict(zip(ids, ds.values("holdout")))
    mask = project.eval_mask()
    assert all(holdout[it.id] == bool(mask[i]) for i, it in enumerate(items))


def test_predictions_land_under_one_keyed_field_and_run_per_round(world):
    ds, session = world["ds"], world["session"]
    runs = fs.prediction_runs(ds)
    assert [r["key"] for r in runs] == ["predictions_r1", "predictions_r2"]
    assert [r["model_version"] for r in runs] == [1, 2]
    schema = ds.get_field_schema()
    assert {"predictions_r1", "predictions_r2", "predictions", "uncertainty"} <= set(schema)
    ids, proba, classes = session.predict_proba_all()
    row = {s: i for i, s in enumerate(ids)}
    got_ids = ds.values("alwb_id")
    pred = ds.values("predictions_r2.label")
    conf = np.asarray(ds.values("predictions_r2.confidence"))
    order = [row[s] for s in got_ids]
    assert pred == [classes[j] for j in proba[order].argmax(1)]
    np.testing.assert_allclose(conf, proba[order].max(1), rtol=1e-5)
    assert ds.values("predictions.label") == pred  # latest alias
    assert ds.values("predictions_r1.label") != pred  # round 1's model was kept, not overwritten
    top2 = np.sort(proba[order], axis=1)[:, -2:]
    np.testing.assert_allclose(ds.values("predictions_r2.uncertainty"), 1 - (top2[:, 1] - top2[:, 0]), atol=1e-5)
    to_label = ds.load_saved_view("to_label")
    unc = to_label.values("predictions.uncertainty")
    assert unc == sorted(unc, reverse=True) and set(to_label.values("label_status")) == {"unlabelled"}
    # re-syncing the same model writes nothing and registers nothing new
    again = fs.sync(world["project"], session)
    assert again.predictions_field == "predictions_r2" and not again.predictions_written
    assert len(fs.prediction_runs(ds)) == 2


def test_human_answers_flags_skips_and_undo_are_mirrored(world):
    project, session, ds = world["project"], world["session"], world["ds"]
    labels = session.labels()
    got = dict(zip(ds.values("alwb_id"), ds.values("label.label")))
    assert {s: got[s] for s in labels} == labels
    ann = dict(zip(ds.values("alwb_id"), ds.values("annotator")))
    assert {ann[s] for s in labels} == {"alice"}
    batch = session.next_batch()
    a, b = batch.items[0].item.id, batch.items[1].item.id
    session.submit(a, Answer.flag("two digits in one image"))
    session.submit(b, Answer.skip())
    ds.select_by("alwb_id", [a]).set_values("tags", [["reviewed-by-bob"]])  # a tag a person added in the App
    rep = fs.sync(project, session)
    assert rep.n_label_updates == 2
    sa = ds.select_by("alwb_id", [a]).first()
    sb = ds.select_by("alwb_id", [b]).first()
    assert sa.label_status == "flagged" and sa.flag_note == "two digits in one image" and sa.label is None
    assert set(sa.tags) == {"flagged", "reviewed-by-bob"}
    assert sb.label_status == "skipped" and "skipped" in sb.tags
    assert sa.query_batch == batch.batch_id and sa.query_round == batch.round
    assert ds.load_saved_view("flagged").values("alwb_id") == [a]
    session.undo()  # undoes the skip of b
    assert fs.sync(project, session).n_label_updates == 1
    sb = ds.select_by("alwb_id", [b]).first()
    assert sb.label_status == "unlabelled" and "skipped" not in sb.tags and sb.alwb_event == 0


def test_query_scores_come_from_the_batch_records(world):
    project, ds = world["project"], world["ds"]
    by_id = dict(zip(ds.values("alwb_id"), ds.values("query_score")))
    strat = dict(zip(ds.values("alwb_id"), ds.values("query_strategy")))
    batches = project.store.batches()
    scored = [b for b in batches if any(s is not None for s in b["scores"])]
    assert scored, "round 2 was chosen by an uncertainty strategy with scores"
    b = scored[-1]
    for sid, sc in zip(b["item_ids"], b["scores"]):
        assert by_id[sid] == pytest.approx(sc)
        assert strat[sid] == b["strategy"]


def test_embeddings_are_a_vector_field_aligned_with_items(world):
    ds, X, project = world["ds"], world["X"], world["project"]
    emb = ds.values("embedding")
    idx = ds.values("alwb_index")
    ids = ds.values("alwb_id")
    assert all(project.source.items[i].id == s for i, s in zip(idx, ids))
    np.testing.assert_allclose(np.stack(emb), X[idx], rtol=1e-6)
    assert not fs.sync(project, world["session"]).embeddings_written  # written once per backbone/shape


def test_coverage_table_plot_and_view(world):
    project, session = world["project"], world["session"]
    cov = fa.coverage(project, session)
    assert cov.names == project.config.classes
    assert dict(zip(cov.names, cov.labelled)) == {c: n for c, n in session.coverage().items()}
    assert sum(cov.unlabelled_predicted) == cov.n_unlabelled
    assert cov.gaps and set(cov.gaps) <= set(cov.names)
    ds = world["ds"]
    gap_preds = set(ds.load_saved_view("coverage_gaps").values("predictions.label"))
    assert gap_preds <= set(cov.gaps)
    ax = cov.plot()
    assert len(ax.patches) == 2 * len(cov.names)
    assert "labelled" in str(cov)


def test_model_errors_on_holdout_and_out_of_fold(world):
    project, session, ds = world["project"], world["session"], world["ds"]
    hold = fa.model_errors(project, session)
    assert hold.mode == "holdout" and hold.gt_field == "ground_truth"
    assert hold.n == int(project.eval_mask().sum()) and hold.confusion.sum() == hold.n
    assert hold.accuracy == pytest.approx(session.reports[-1].accuracy, abs=1e-9)
    assert len(hold.mistake_ids) == hold.n - np.trace(hold.confusion)
    assert set(ds.load_saved_view("mistakes").values("alwb_id")) == set(hold.mistake_ids)
    oof = fa.model_errors(project, session, mode="out_of_fold")
    assert oof.mode == "out_of_fold" and oof.n == len(session.labels())
    assert "macro avg" in oof.report and oof.confusion.shape == (10, 10)
    oof.plot()


def test_suspicious_labels_find_the_oracle_noise(world):
    project, session, ds = world["project"], world["session"], world["ds"]
    rep = fa.suspicious_labels(project, session, top=15, threshold=0.0)
    truth = {it.id: it.label for it in project.source.items}
    labels = session.labels()
    wrong = {s for s, lab in labels.items() if truth[s] != lab}
    assert wrong, "the oracle flips ~15% of labels"
    base = len(wrong) / len(labels)
    hit = sum(s in wrong for s in rep.ids) / len(rep.ids)
    assert hit > 2 * base, (hit, base)
    assert rep.mistakenness == sorted(rep.mistakenness, reverse=True)
    assert {"mistakenness", "hardness", "uniqueness"} <= set(ds.list_brain_runs())
    oof = ds.load_saved_view("suspicious").first().oof_predictions
    assert np.exp(oof.logits).sum() == pytest.approx(1.0, abs=1e-3)  # hardness needs the logits
    assert len(rep.least_unique_ids) == 15
    assert ds.load_saved_view("suspicious").values("alwb_id") == rep.ids


def test_embedding_map_with_pca(world):
    emap = fa.embeddings_visualization(world["project"], world["session"], method="pca")
    assert emap.points.shape == (len(world["ds"]), 2) and np.isfinite(emap.points).all()
    assert "viz_pca" in world["ds"].list_brain_runs()
    emap.plot()
    tsne = fa.embeddings_visualization(world["project"], world["session"], method="tsne")
    assert tsne.points.shape == emap.points.shape and tsne.brain_key == "viz_tsne"
    if __import__("importlib").util.find_spec("umap") is None:
        with pytest.raises(AlwbError, match="umap-learn"):
            fa.embeddings_visualization(world["project"], world["session"], method="umap")


def test_send_to_queue_from_a_view_and_from_sample_ids(world):
    project, session, ds = world["project"], world["session"], world["ds"]
    fa.model_errors(project, session)
    mistakes = ds.load_saved_view("mistakes").limit(5)
    want = mistakes.values("alwb_id")
    batch = fs.send_to_queue(session, mistakes, reason="relabel")
    assert [bi.item.id for bi in batch.items] == want
    assert batch.strategy == "queue:relabel" and session.current_batch is batch
    assert [bi.item.id for bi in session.pending()] == want
    enq = [e for e in project.store.events() if e["kind"] == "enqueue"]
    assert [e["sample_id"] for e in enq[-5:]] == want
    # the App's selection arrives as FiftyOne sample ids
    sample_ids = ds.limit(3).values("id")
    batch = fs.send_to_queue(session, sample_ids, reason="review", dataset=ds)
    assert [bi.item.id for bi in batch.items] == ds.limit(3).values("alwb_id")
    with pytest.raises(AlwbError, match="empty"):
        fs.send_to_queue(session, ds.match({"alwb_id": "nope"}))


def test_export_through_fiftyone_exporters_and_csv(world, tmp_path):
    project, session = world["project"], world["session"]
    labels = session.labels()
    res = fs.export(project, tmp_path / "folders", format="folders")
    assert res["n_exported"] == len(labels)
    files = [p for p in (tmp_path / "folders").rglob("*") if p.is_file()]
    assert len(files) == len(labels)
    counts = {}
    for lab in labels.values():
        counts[lab] = counts.get(lab, 0) + 1
    assert {d.name: len(list(d.iterdir())) for d in (tmp_path / "folders").iterdir()} == counts
    res = fs.export(project, tmp_path / "fo", format="fiftyone")
    manifest = json.loads((tmp_path / "fo" / "labels.json").read_text())
    names = manifest["classes"]
    got = sorted((names[v] if isinstance(v, int) else v["label"] if isinstance(v, dict) else v)
                 for v in manifest["labels"].values())
    assert got == sorted(labels.values()) and len(list((tmp_path / "fo" / "data").iterdir())) == len(labels)
    res = fs.export(project, tmp_path / "csv", format="csv")
    lines = Path(res["path"]).read_text().strip().splitlines()
    assert len(lines) == 1 + len(labels)
    with pytest.raises(AlwbError, match="allowed"):
        fs.export(project, tmp_path / "x", format="coco")


def test_multilabel_answers_become_classifications_and_sample_tags(tmp_path):
    project = Project.init(tmp_path / "tags", "digits", backbone="pixels", tags=["0", "1", "2", "3"],
                           source={"limit": 60}, query={"batch_size": 6})
    session = _session(project, _pixels(project), annotator="bob")
    try:
        batch = session.next_batch()
        a, b = batch.items[0].item.id, batch.items[1].item.id
        session.submit(a, Answer.of_tags(["1", "3"]))
        session.submit(b, Answer.of_tags(["2"]))
        fs.sync(project, session, embeddings=False)
        ds = fs.get_dataset(project)
        sa = ds.select_by("alwb_id", [a]).first()
        assert sorted(c.label for c in sa.label.classifications) == ["1", "3"]
        assert set(sa.tags) == {"1", "3"}
        assert ds.count_sample_tags() == {"1": 1, "3": 1, "2": 1}
        session.undo()  # b back to unlabelled: its tags go, a's stay
        fs.sync(project, session, embeddings=False)
        assert ds.count_sample_tags() == {"1": 1, "3": 1}
        with pytest.raises(AlwbError, match="one class per image"):
            fs.export(project, tmp_path / "out", format="folders")
    finally:
        fs.delete_dataset(project)
        session.close()
        project.close()


def test_mongod_failure_is_a_clear_error_and_labelling_keeps_working(tmp_path):
    """In a fresh process whose MongoDB cannot be reached, sync raises FiftyOneUnavailableError naming the
    database, and the label store still records answers. (A database dir that cannot be created is not a
    reliable failure: FiftyOne reuses a database service that another process on the machine started.)"""
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=1500&connectTimeoutMS=1500"
    code = textwrap.dedent(f"""
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        from alworkbench import Answer, Project
        from alworkbench.errors import FiftyOneUnavailableError
        from alworkbench.loop.session import Session
        from alworkbench.integrations import fiftyone_sync as fs
        p = Project.init({str(tmp_path / 'p')!r}, "digits", backbone="pixels", source={{"limit": 30}})
        X = p.source.pixels.reshape(30, -1).astype(np.float32)
        s = Session(p, embeddings=X, warm_start=False, head_factory=LogisticRegression)
        try:
            fs.sync(p, s)
            print("SYNCED")
        except FiftyOneUnavailableError as exc:
            print("ERROR:", exc)
        b = s.next_batch()
        s.submit(b.items[0].item.id, Answer.of_label(b.items[0].item.label))
        print("LABELS:", len(s.labels()))
    """)
    env = {**os.environ, "FIFTYONE_DATABASE_URI": uri}
    env.pop("FIFTYONE_PRIVATE_DATABASE_PORT", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "SYNCED" not in out.stdout
    err = next(line for line in out.stdout.splitlines() if line.startswith("ERROR:"))
    assert "MongoDB could not be started or reached" in err and uri in err and "labelling keeps working" in err
    assert "LABELS: 1" in out.stdout


def test_reinitialised_project_folder_rebuilds_its_dataset_and_images(tmp_path):
    d = tmp_path / "again"
    first = Project.init(d, "digits", backbone="pixels", source={"limit": 40}, query={"batch_size": 5})
    s1 = _session(first, _pixels(first))
    b = s1.next_batch()
    s1.submit(b.items[0].item.id, Answer.flag("old history"))
    fs.sync(first, s1, embeddings=False)
    old_name = fs.get_dataset(first).name
    s1.close()
    first.close()
    import shutil

    shutil.rmtree(d)  # a fresh project in the same folder: new store, images gone
    second = Project.init(d, "digits", backbone="pixels", source={"limit": 40}, query={"batch_size": 5})
    s2 = _session(second, _pixels(second))
    try:
        rep = fs.sync(second, s2, embeddings=False)
        ds = fs.get_dataset(second)
        assert ds.name == old_name and rep.n_added == 40
        assert ds.count_values("label_status") == {"unlabelled": 40}
        assert all(Path(p).is_file() for p in ds.values("filepath"))
    finally:
        fs.delete_dataset(second)
        s2.close()
        second.close()


def test_one_call_review_after_a_round(world):
    """Issue 5's 'one call': sync + coverage + errors + suspicious labels as saved views (App not launched here;
    tests/browser/test_fiftyone_app.py opens it)."""
    from alworkbench.integrations import review

    project, session = world["project"], world["session"]
    r = review(project, session, top=10)
    assert r.coverage.n_labelled == len(project.store.labels()) == 50
    assert r.errors is not None and r.errors.mode == "holdout" and 0 < r.errors.accuracy <= 1
    assert r.suspicious is not None and 0 < len(r.suspicious.ids) <= 10
    assert {"mistakes", "suspicious", "to_label", "flagged"} <= set(r.views)
    assert r.app is None and "mistakes" in str(r)
    ds = world["ds"]
    assert len(ds.load_saved_view("mistakes")) == len(r.errors.mistake_ids)


def test_similarity_query_view_goes_to_the_queue(world):
    """A FiftyOne Brain similarity query (sklearn backend, offline) on the synced embeddings -> labelling queue."""
    import fiftyone.brain as fob

    project, session, ds = world["project"], world["session"], world["ds"]
    key = "alwb_sim_test"
    if key not in ds.list_brain_runs():
        fob.compute_similarity(ds, embeddings="embedding", brain_key=key, backend="sklearn")
    query = ds.first()
    view = ds.sort_by_similarity(query.id, k=6, brain_key=key)
    want = view.values("alwb_id")
    assert len(want) == 6 and want[0] == query["alwb_id"]  # the query image is its own nearest neighbour
    batch = fs.send_to_queue(session, view, reason="similar")
    assert [bi.item.id for bi in batch.items] == want and batch.strategy == "queue:similar"
