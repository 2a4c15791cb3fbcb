"""bench/bench_quality.py on a tiny digits run: the JSON it writes has every arm, and its numbers agree with each
other (answers add up, reviews are accepted + corrected, the gaps are the per-seed differences of the accuracies,
noise-free labels are never wrong, the quality loop's spend shows only in its own arm)."""
from __future__ import annotations

import importlib.util
import json
import statistics
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("_bench_quality", REPO / "bench" / "bench_quality.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def result(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("bq") / "quality.json"
    bench.main(["--dataset", "digits", "--seeds", "0,1", "--labels", "80", "--batch-size", "20", "--gold", "20",
                "--review-budget", "15", "--json", str(out)])
    return json.loads(out.read_text())


def test_json_has_every_arm_per_seed_and_the_settings(result, bench):
    assert result["dataset"] == "digits" and result["labels"] == 80 and result["seeds"] == [0, 1]
    assert result["noise"] == {"ana": 0.02, "ben": 0.20}
    assert result["quality"]["gold_rate"] == 0.05 and result["review_budget_per_batch"] == 15
    assert sorted((r["arm"], r["seed"]) for r in result["runs"]) == sorted(
        (a, s) for a in bench.ARMS for s in (0, 1))
    assert "--labels 80" in result["command"]
    for arm in bench.ARMS:
        e = result["summary"][arm]
        for key in ("accuracy", "labels_used", "wrong_share", "answers", "gold_answers", "reviews", "wall_s"):
            assert set(e[key]) == {"mean", "std", "values"}, (arm, key)
    assert set(result["summary"]["gap_points"]) == {"quality_vs_noise_free", "raw_vs_noise_free", "quality_vs_raw"}


def test_numbers_are_consistent(result):
    for r in result["runs"]:
        assert 0.0 < r["accuracy"] <= 1.0 and r["n_eval"] > 0
        assert r["labels_used"] >= 80 and r["labels_used"] == r["labels_final"]
        assert r["wrong_share"] == pytest.approx(r["wrong_labels"] / r["labels_final"])
        assert sum(r["answers_by"].values()) == r["answers"]
        assert r["reviews"] == r["reviews_accepted"] + r["reviews_corrected"]
        assert r["gold_items"] == 20
        if r["arm"] == "noise_free":
            assert r["wrong_labels"] == 0
            assert all(a["true_error"] == 0 for a in r["annotators"].values())
        if r["arm"] != "quality":
            # no hidden gold, no review, no overlap: every ordinary answer is one training label (plus the gold set)
            assert r["gold_answers"] == 0 and r["reviews"] == 0 and r["overlap_items"] == 0
            assert r["answers"] + r["gold_items"] == r["labels_used"]
        else:
            assert r["gold_answers"] > 0 and r["reviews"] > 0
            assert r["reviews"] <= 15 * r["batches"]
            assert r["agreement"]["n_items"] == r["overlap_items"]


def test_summary_is_computed_from_the_runs(result):
    s = result["summary"]
    for arm in ("noise_free", "raw", "quality"):
        accs = [r["accuracy"] for r in result["runs"] if r["arm"] == arm]
        assert s[arm]["accuracy"]["mean"] == pytest.approx(statistics.fmean(accs))
        assert s[arm]["accuracy"]["std"] == pytest.approx(statistics.stdev(accs))
    acc = {(r["arm"], r["seed"]): r["accuracy"] for r in result["runs"]}
    gap = s["gap_points"]["quality_vs_noise_free"]
    want = [100 * (acc[("quality", k)] - acc[("noise_free", k)]) for k in (0, 1)]
    assert gap["values"] == pytest.approx(want)
    assert gap["mean"] == pytest.approx(100 * (s["quality"]["accuracy"]["mean"] - s["noise_free"]["accuracy"]["mean"]))
    assert s["goal"]["met"] == (gap["mean"] >= -1.0)


def test_the_summary_table_prints_every_arm(result, bench):
    text = bench.format_summary(result)
    for arm in bench.ARMS:
        assert arm in text
    assert "gap quality vs noise free" in text


def test_committed_result_is_a_full_run_with_the_same_structure(bench):
    path = REPO / "bench" / "results" / "quality.json"
    assert path.exists(), "bench/results/quality.json is the kept run the README quotes"
    res = json.loads(path.read_text())
    assert res["dataset"] == "fashion-mnist" and len(res["seeds"]) >= 3 and res["labels"] == 1000
    s = res["summary"]
    for arm in bench.ARMS:
        accs = [r["accuracy"] for r in res["runs"] if r["arm"] == arm]
        assert len(accs) == len(res["seeds"]) and s[arm]["accuracy"]["mean"] == pytest.approx(statistics.fmean(accs))
    for r in res["runs"]:
        assert r["labels_used"] >= 1000 and sum(r["answers_by"].values()) == r["answers"]
