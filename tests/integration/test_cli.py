"""`alwb` end to end in subprocesses, as a user runs it (real files, real store, real torch backbone)."""
import csv
import json
import subprocess
import sys

import pytest

from alworkbench.data.fixtures import make_messy_folder


def alwb(*args, check=True, cwd=None):
    r = subprocess.run([sys.executable, "-m", "alworkbench.cli", *map(str, args)], capture_output=True, text=True,
                       cwd=cwd, timeout=600)
    if check and r.returncode != 0:
        raise AssertionError(f"alwb {' '.join(map(str, args))} exited {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    root = tmp_path_factory.mktemp("messy")
    info = make_messy_folder(root / "images", large=False)
    return root, info


def test_init_embed_status_label_export(messy, tmp_path):
    root, info = messy
    proj = tmp_path / "proj ü"
    r = alwb("init", proj, "--images", root / "images", "--batch-size", 4)
    assert "created" in r.stdout and (proj / "alwb.yaml").exists()
    r = alwb("embed", proj, "--quiet")
    assert f"{info['n_good']} images embedded" in r.stdout
    st = json.loads(alwb("status", proj, "--json").stdout)
    assert st["images"] == info["n_good"]
    assert sorted(s["path"] for s in st["skipped"]) == sorted(info["skipped"])
    reasons = {s["path"]: s["reason"] for s in st["skipped"]}
    for path, reason in info["skipped"].items():
        assert reasons[path] == reason
    assert len(st["duplicates"]) == len(info["duplicates"])
    assert st["labelled"] == 0 and set(st["per_class"]) == set(info["classes"])
    # a headless labelling round answered from the folder names
    r = alwb("label", proj, "--oracle", "--rounds", 2)
    assert "model v2" in r.stdout
    st = json.loads(alwb("status", proj, "--json").stdout)
    assert st["labelled"] == 8 and sum(st["per_class"].values()) == 8 and st["model_version"] == 2
    # the text status names every skipped file with its reason
    text = alwb("status", proj).stdout
    assert "unreadable" in text and "labelled: 8" in text
    assert "model v2 (round 2): trained on 8 labels" in text  # the same round and count as the widget shows
    out = tmp_path / "labels.csv"
    res = json.loads(alwb("export", proj, "--format", "csv", "--out", out, "--json").stdout)
    assert res["n_exported"] == 8
    rows = list(csv.DictReader(open(out, encoding="utf-8")))
    assert len(rows) == 8 and all(r["label"] == info["good"][r["id"]] for r in rows)
    folders = tmp_path / "folders"
    alwb("export", proj, "--format", "folders", "--out", folders)
    exported = sorted(p.relative_to(folders).parts[0] for p in folders.rglob("*") if p.is_file())
    assert len(exported) == 8 and set(exported) <= set(info["classes"])


@pytest.mark.parametrize("args, needle", [
    (["init", "{tmp}/p", "--images", "{tmp}/nope"], "no such file or folder"),
    (["init", "{tmp}/p", "--images", "digits", "--classes", "a,a"], "duplicate names: a"),
    (["status", "{tmp}/empty"], "alwb init"),
    (["simulate", "--dataset", "digits", "--strategy", "bogus", "--budget", "40"], "unknown strategy bogus"),
    (["simulate", "--dataset", "digits", "--budget", "5", "--initial", "10"], "--budget (5) must be >= --initial"),
])
def test_errors_are_one_line(tmp_path, args, needle):
    r = alwb(*[a.format(tmp=tmp_path) for a in args], check=False)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip()
    assert needle in err and "Traceback" not in err and len(err.splitlines()) == 1, err


def test_bad_config_value_is_one_line(tmp_path):
    alwb("init", tmp_path / "p", "--images", "digits")
    cfg = (tmp_path / "p" / "alwb.yaml").read_text().replace("kind: linear", "kind: forest")
    (tmp_path / "p" / "alwb.yaml").write_text(cfg)
    r = alwb("status", tmp_path / "p", check=False)
    assert r.returncode == 2 and r.stderr.strip() == (  # names the file, then the key
        f"alwb: error: {tmp_path / 'p' / 'alwb.yaml'}: config key 'head.kind' is 'forest'; allowed: linear, mlp")


def test_simulate_digits_beats_random_json_shape(tmp_path):
    out = tmp_path / "sim.json"
    # --mode sync: the comparison below must not depend on how loaded the machine is (in the default async mode
    # the labelling pace against the fit time decides which model chooses each batch)
    alwb("simulate", "--dataset", "digits", "--strategy", "random,default", "--budget", 100, "--batch-size", 20,
         "--initial", 20, "--seeds", "0,1", "--json", out, "--workdir", tmp_path / "w", "--quiet", "--mode", "sync")
    res = json.loads(out.read_text())
    assert set(res["results"]) == {"random", "default"}
    for strat in res["results"]:
        assert set(res["results"][strat]) == {"0", "1"}
        for curve in res["results"][strat].values():
            assert [r["n_labels"] for r in curve] == [20, 40, 60, 80, 100]
            assert all(isinstance(r["accuracy"], float) and 0 <= r["accuracy"] <= 1 for r in curve)
    assert res["ingest"] == {"n_images": 1797, "skipped": [], "duplicates": []} and res["mode"] == "sync"
    s = res["summary"]["strategies"]
    assert s["default"]["final_accuracy"] > s["random"]["final_accuracy"]


def test_simulate_at_a_persons_pace_on_the_virtual_clock(tmp_path):
    out = tmp_path / "sim.json"
    alwb("simulate", "--dataset", "digits", "--strategy", "default", "--budget", 40, "--batch-size", 10,
         "--initial", 10, "--seeds", "0", "--json", out, "--workdir", tmp_path / "w", "--quiet", "--clock", "virtual",
         "--pace", 1)
    res = json.loads(out.read_text())
    assert res["mode"] == "async" and res["clock"] == "virtual" and res["pace_seconds_per_answer"] == 1.0
    # ten answers a batch at one virtual second each
    assert [r["virtual_seconds"] for r in res["results"]["default"]["0"]] == [10.0, 20.0, 30.0, 40.0]
    r = alwb("simulate", "--dataset", "digits", "--clock", "wall", check=False)
    assert r.returncode == 2 and "--clock: invalid choice: 'wall'" in r.stderr


def test_simulate_with_fixed_clock_costs_is_deterministic_and_bad_costs_are_refused(tmp_path):
    runs = []
    for k in range(2):
        out = tmp_path / f"sim{k}.json"
        alwb("simulate", "--dataset", "digits", "--strategy", "default", "--budget", 40, "--batch-size", 10,
             "--initial", 10, "--seeds", "0", "--json", out, "--workdir", tmp_path / "w", "--quiet", "--clock",
             "virtual", "--pace", 0.1, "--clock-costs", "land=0.35,calibrated=0.4")
        runs.append(json.loads(out.read_text()))
    assert runs[0]["clock_costs"] == {"land": 0.35, "calibrated": 0.4}
    keys = ("n_labels", "accuracy", "strategy", "chosen_by_version", "model_labels", "reselected", "virtual_seconds")
    trace = [[{k: p[k] for k in keys} for p in r["results"]["default"]["0"]] for r in runs]
    assert trace[0] == trace[1]
    for costs, clock, msg in (("fit=1", "virtual", "'fit=1' is not STEP=SECONDS"),
                              ("land=soon", "virtual", "'soon' is not a number of seconds"),
                              ("land=-1", "virtual", "land must be >= 0 seconds"),
                              ("land=1", "real", "clock costs apply to the virtual clock only")):
        r = alwb("simulate", "--dataset", "digits", "--budget", 20, "--batch-size", 10, "--initial", 10,
                 "--workdir", tmp_path / "w", "--quiet", "--clock", clock, "--clock-costs", costs, check=False)
        assert r.returncode == 2 and msg in r.stderr, r.stderr


def test_simulate_on_a_folder_tree_reports_skips(messy, tmp_path):
    root, info = messy
    out = tmp_path / "sim.json"
    alwb("simulate", "--dataset", root / "images", "--strategy", "random,margin", "--budget", 6, "--batch-size", 2,
         "--initial", 2, "--seeds", "0", "--json", out, "--workdir", tmp_path / "w", "--quiet")
    res = json.loads(out.read_text())
    assert res["ingest"]["n_images"] == info["n_good"]
    assert {s["path"] for s in res["ingest"]["skipped"]} == set(info["skipped"])
    assert [r["n_labels"] for r in res["results"]["margin"]["0"]][-1] == 6


def test_interactive_terminal_labelling(tmp_path):
    """`alwb label` without --oracle reads answers from the terminal: a name or #N (digits' class names are
    numbers, so a bare number is the name), :skip, :flag <note>, :undo, :quit."""
    proj = tmp_path / "p"
    alwb("init", proj, "--images", "digits", "--batch-size", 5, "--limit", 60)
    r = subprocess.run([sys.executable, "-m", "alworkbench.cli", "label", str(proj), "--annotator", "tty"],
                       input="#3\n:skip\n:flag 1 or 7?\n:undo\n8\nbogus\n:quit\n", capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "undone" in r.stdout and "bogus" in r.stdout  # the unknown class is explained, not fatal
    from alworkbench.labels import LabelStore

    with LabelStore(proj / "labels.sqlite") as st:
        active = st.active_answers()
        kinds = sorted((e["kind"], e["value"]) for e in active.values())
        assert kinds == [("label", "2"), ("label", "8"), ("skip", None)]  # "#3" is the 3rd class, "2"
        assert all(e["annotator"] == "tty" for e in active.values())
        assert [e["kind"] for e in st.events()][-1] == "label" and any(e["kind"] == "undo" for e in st.events())
