"""The benchmark scripts report what they measure: a baseline a peer's user would write, the ratio against it
measured in the same run, and a correctness check beside the speed (finding 12 of issue 9)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", REPO / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ------------------------------------------------------------------------------------------- FiftyOne sync
def test_fiftyone_sync_assemble_ratio_is_against_the_faster_set_values_form():
    fo_bench = _load("bench_fiftyone_sync")
    ok = {"identical": True}
    res = fo_bench.assemble(60000, 10, ours=[3.0, 2.0], ordered=[8.0, 9.0], keyed=[7.0, 6.0], loop_n=2000,
                            loop_s=4.0, checks={"a": ok, "b": ok}, extra={"command": "x"})
    assert res["ours"]["s"] == 2.0
    assert res["baseline"] == "set_values_key_field" and res["baseline_s"] == 6.0
    assert res["ratio"] == pytest.approx(3.0)
    assert res["baselines"]["set_values_ordered"]["ratio"] == pytest.approx(4.0)
    loop = res["reference_loop"]
    assert loop["extrapolated"] is True and loop["extrapolated_s"] == pytest.approx(120.0)
    assert loop["ratio"] == pytest.approx(60.0)
    assert res["correctness"]["all_identical"] is True
    bad = fo_bench.assemble(10, 2, [1.0], [1.0], [1.0], 5, 1.0, {"a": ok, "b": {"identical": False}}, {})
    assert bad["correctness"]["all_identical"] is False


@pytest.mark.fiftyone
@pytest.mark.slow
def test_fiftyone_sync_bench_smallest_mode_writes_baseline_ratio_and_checks(tmp_path):
    out = tmp_path / "fo.json"
    env = dict(os.environ, FIFTYONE_DATABASE_DIR=str(tmp_path / "db"), FIFTYONE_DO_NOT_TRACK="true",
               TQDM_DISABLE="1")
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "bench_fiftyone_sync.py"), "--n", "2000",
                           "--loop-n", "100", "--repeats", "1", "--json", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["n"] == 2000
    assert res["baseline"] in ("set_values_ordered", "set_values_key_field")
    for name in ("set_values_ordered", "set_values_key_field"):
        b = res["baselines"][name]
        assert b["s"] > 0 and b["ratio"] == pytest.approx(b["s"] / res["ours"]["s"])
    assert res["ratio"] == pytest.approx(res["baseline_s"] / res["ours"]["s"])
    assert res["reference_loop"]["extrapolated"] is True and res["reference_loop"]["timed_n"] == 100
    fields = res["correctness"]["fields"]
    assert set(fields) == {"set_values_ordered", "set_values_key_field", "ours_vs_argmax", "reference_loop_subset"}
    for name, c in fields.items():
        assert c["count"] == c["samples"], name
        assert c["label_mismatches_vs_ours"] == 0 and c["label_mismatches_vs_argmax"] == 0, name
        assert c["identical"], name
    assert res["correctness"]["all_identical"] is True
    assert res["machine"]["cpu_count"] >= 1 and "--n 2000" in res["command"]
    assert "headline" in proc.stdout and "identical field contents: True" in proc.stdout


# ------------------------------------------------------------------------------------------- UI latency
def _presses(ms, ids):
    return [{"painted_ms": m, "inserted_ms": m / 2, "item_id": i} for m, i in zip(ms, ids)]


def test_ui_latency_json_has_both_projects_prep_and_the_same_run_ratio():
    ui = _load("bench_ui_latency")
    sizes = {"a": (4000, 3000), "b": (640, 480)}
    prep = [{"w": 4000, "h": 3000, "load_ms": 200.0, "encode_ms": 100.0, "prep_ms": 300.0, "prep_max_side_ms": 90.0},
            {"w": 640, "h": 480, "load_ms": 5.0, "encode_ms": 1.0, "prep_ms": 6.0, "prep_max_side_ms": 4.0}]
    photos = ui.summarize_scenario("photos", _presses([100, 200, 300, 400], "abab"), 4, 2, 0, [], sizes=sizes,
                                   prep=prep, info={"images": 2})
    digits = ui.summarize_scenario("digits", _presses([50, 50, 100, 100], "xyxy"), 4, 3, 0, [])
    photos_t = ui.summarize_scenario("photos", _presses([40, 60], "ab"), 2, 0, 0, [], info={"think_ms": 1000})
    digits_t = ui.summarize_scenario("digits", _presses([20, 20], "xy"), 2, 0, 0, [], info={"think_ms": 1000})
    assert ui.run_key("photos", 0) == "photos" and ui.run_key("photos", 1000) == "photos+think1000ms"
    res = ui.assemble({"photos": photos, "digits": digits, ui.run_key("photos", 1000): photos_t,
                       ui.run_key("digits", 1000): digits_t}, {"presses": 4}, {"cpu_count": 2}, "cmd")
    assert res["photos_vs_digits"]["photos+think1000ms"]["median_ratio"] == pytest.approx(2.5)
    assert photos["painted_ms"]["median"] == 250 and photos["painted_ms"]["p90"] == pytest.approx(370)
    assert photos["painted_ms_by_original_size"]["4000x3000"]["median"] == 200
    assert photos["painted_ms_by_original_size"]["640x480"]["n"] == 2
    assert photos["prep_ms"]["prep_ms"]["median"] == 153 and photos["prep_ms_by_size"]["4000x3000"]["prep_ms"] == 300
    assert list(photos["prep_ms_by_size"]) == ["640x480", "4000x3000"]   # small to large
    assert photos["goal_met"] is False and digits["goal_met"] is True
    assert res["photos_vs_digits_median_ratio"] == pytest.approx(250 / 75)
    assert res["all_answers_stored"] is True and res["no_errors"] is True
    assert len(photos["raw_presses"]) == 4 and res["command"] == "cmd"
    lost = ui.summarize_scenario("photos", _presses([1, 2], "ab"), 1, 0, 1, ["boom"])
    res2 = ui.assemble({"photos": lost}, {}, {}, "cmd")
    assert res2["all_answers_stored"] is False and res2["no_errors"] is False
    assert "photos_vs_digits_median_ratio" not in res2


def test_ui_latency_photos_are_realistic_and_prep_is_timed_on_them(tmp_path):
    from PIL import Image

    from alworkbench.project import Project
    ui = _load("bench_ui_latency")
    photos = ui.make_photos(tmp_path / "photos", 4, sizes=[(640, 480), (1600, 1200)], classes=["a", "b"])
    assert [(p["w"], p["h"]) for p in photos] == [(640, 480), (1600, 1200)] * 2
    for p in photos:
        with Image.open(p["path"]) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (p["w"], p["h"])
        # noise and structure: about 0.2 bytes per pixel or more, as camera JPEGs, not a flat colour
        assert p["bytes"] > 0.15 * p["w"] * p["h"], p
    Project.init(tmp_path / "proj", str(tmp_path / "photos"), backbone="pixels").close()
    rows = ui.prep_times(tmp_path / "proj", per_size=1)
    assert sorted((r["w"], r["h"]) for r in rows) == [(640, 480), (1600, 1200)]
    for r in rows:
        assert r["prep_ms"] == pytest.approx(r["load_ms"] + r["encode_ms"]) and r["prep_ms"] > 0
        assert max(r["sent_w"], r["sent_h"]) <= 768


# ------------------------------------------------------------------------------------------- feature ceiling
@pytest.mark.parametrize("options, extra, message", [
    ("[1]", [], "expected a JSON object"),
    ("{x", [], "not JSON"),
    ('{"nope": 1}', [], "unexpected keyword argument 'nope'"),
    ('{"random_state": 1}', [], "random_state is set from --seeds"),
    ('{"standardize": true}', ["--standardize", "pool"], "standardize is set by --standardize pool"),
    ("{}", ["--features", "randconv,nope"], "unknown feature set(s) 'nope'"),
    ("{}", ["--features", "supervised", "--supervised-classes", "3"], "at least two of Fashion-MNIST's class codes"),
    ("{}", ["--features", "supervised", "--supervised-classes", "8-11"], "at least two of Fashion-MNIST's class codes"),
    ("{}", ["--supervised-classes", "shirts"], "--supervised-classes: expected class codes"),
    ("{}", ["--features", "supervised", "--supervised-images", "19"], "--supervised-images: at least two per class"),
    ("{}", ["--features", "supervised", "--supervised-epochs", "0"], "--supervised-epochs: at least 1"),
])
def test_feature_ceiling_refuses_head_options_it_cannot_pass_on(options, extra, message, tmp_path):
    """A bad --head-options, feature set or --supervised-classes is refused with its reason before any data is
    read, never silently dropped or overridden (a 'standardize' key that --standardize pool would overwrite)."""
    out = tmp_path / "ceiling.json"
    r = subprocess.run([sys.executable, str(REPO / "bench" / "fmnist_feature_ceiling.py"), "--head-options", options,
                        *extra, "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert message in r.stderr
    assert not out.exists()


def test_feature_ceiling_supervised_stand_in_learns_from_its_labels():
    """The 'supervised' stand-in backbone uses its labels: on pure-noise images with random labels (codes 2 and 7, so
    the codes are remapped), the trained features separate the training images, which the untrained network's do
    not; the output is (len(embed), 256) float32 and repeatable with its seed."""
    from sklearn.linear_model import LogisticRegression

    mod = _load("fmnist_feature_ceiling")
    rng = np.random.default_rng(0)
    imgs = rng.random((200, 12, 12)).astype(np.float32)
    lab = rng.integers(0, 2, 200) * 5 + 2

    def fit_acc(F):
        return LogisticRegression(max_iter=2000).fit(F, lab).score(F, lab)

    untrained = mod.supervised_features(imgs, lab, imgs, epochs=0, batch=32)
    trained = mod.supervised_features(imgs, lab, imgs, epochs=20, batch=32)
    assert trained.shape == (200, 256) and trained.dtype == np.float32
    assert fit_acc(untrained) < 0.7
    assert fit_acc(trained) > 0.95
    np.testing.assert_array_equal(trained, mod.supervised_features(imgs, lab, imgs, epochs=20, batch=32))
