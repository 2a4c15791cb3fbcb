"""The labelling widget in a real JupyterLab 4 + Chromium: clicks and keys reach the label store exactly once,
tied to the image that was shown; undo, skip, flag, suggestions, multi-label tags and a killed kernel."""
from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from .conftest import KERNEL_IDLE_JS, REPO, open_and_run, shutil_copy, write_notebook

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = ".alwb-labeller .alwb-root"


def make_project(dirpath: Path, *, tags=None, batch_size=5, limit=240, seed_rounds=0, ui=None, **config):
    """A small digits project plus raw-pixel embeddings saved next to it (the kernel loads them: fast, no torch)."""
    from alworkbench.project import Project

    kw = {"tags": tags, **config} if tags else dict(config)
    if ui:
        kw["ui"] = ui
    p = Project.init(dirpath, "digits", query={"batch_size": batch_size}, source={"limit": limit},
                     guideline={"version": "1", "text": "# Digits\n- answer the digit you **see**\n- skip if unsure"},
                     **kw)
    X = np.stack([np.asarray(p.source.load(it).convert("L"), dtype=np.float32).ravel() / 16.0
                  for it in p.source.items])
    np.save(dirpath / "pixels.npy", X)
    if seed_rounds:
        # an earlier annotator already labelled a few rounds with the true digits (realistic model + curve)
        from sklearn.linear_model import LogisticRegression

        from alworkbench.loop.oracle import Oracle

        s = p.session(annotator="seed", embeddings=X, head_factory=lambda: LogisticRegression(max_iter=300))
        Oracle(s).run(seed_rounds, batch_size=10)
        s.close()
    p.close()
    return dirpath


def widget_cells(project_dir: Path, annotator: str = "tester", multilabel: bool = False,
                 read_guideline: bool = True) -> list[str]:
    """The widget cell; ``read_guideline``: the annotator acknowledged the guideline before (a first-time annotator
    is asked to read it before the first answer)."""
    head = ("class OneVsRest:  # a tiny multi-label head: one logistic regression per tag\n"
            "    def fit(self, X, Y):\n"
            "        self.ms = [LogisticRegression(max_iter=300).fit(X, Y[:, j]) if len(set(Y[:, j])) > 1\n"
            "                   else float(Y[0, j]) for j in range(Y.shape[1])]\n"
            "        return self\n"
            "    def predict_proba(self, X):\n"
            "        return np.stack([m.predict_proba(X)[:, 1] if hasattr(m, 'predict_proba')\n"
            "                         else np.full(len(X), m) for m in self.ms], axis=1)\n"
            "head = OneVsRest\n") if multilabel else "head = lambda: LogisticRegression(max_iter=300)\n"
    return [
        "import numpy as np\nfrom sklearn.linear_model import LogisticRegression\n"
        "from alworkbench.project import Project\nfrom alworkbench.ui import Workbench\n"
        f"project = Project.open({str(project_dir)!r})\n" + head +
        f"s = project.session(annotator={annotator!r}, embeddings=np.load({str(project_dir / 'pixels.npy')!r}),"
        " head_factory=head)\n" + ("s.acknowledge_guideline()\n" if read_guideline else "") + "w = Workbench(s)\nw",
    ]


def root_attr(page, name):
    return page.locator(ROOT).get_attribute(name)


def wait_widget(page, timeout=120_000):
    page.wait_for_selector(f"{ROOT} img.alwb-image", state="visible", timeout=timeout)
    page.wait_for_function(f"() => {{ const r = document.querySelector('{ROOT}'); return r && r.dataset.itemId; }}",
                           timeout=timeout)


def wait_shown_change(page, before_seq, timeout=20_000):
    page.wait_for_function(
        """([sel, seq]) => { const r = document.querySelector(sel);
             return r && r.dataset.shownSeq !== seq && r.dataset.busy === '0'; }""",
        arg=[ROOT, before_seq], timeout=timeout)


def current(page):
    r = page.locator(ROOT)
    return r.get_attribute("data-item-id"), r.get_attribute("data-shown-seq")


def press(page, key):
    _, seq = current(page)
    page.keyboard.press(key)
    wait_shown_change(page, seq)


def click(page, selector):
    _, seq = current(page)
    page.locator(f"{ROOT} {selector}").first.click()
    wait_shown_change(page, seq)


def store_events(project_dir: Path):
    from alworkbench.labels import LabelStore

    with LabelStore(project_dir / "labels.sqlite") as st:
        return st.events(), st.active_answers()


def settle(page):
    """Wait until everything a key press could have caused has happened: the page's handlers ran (one animation
    frame), and a kernel round trip completed (the kernel handles messages in order, and a request is done only
    after its idle status, which comes after every message the kernel sent while handling earlier ones)."""
    assert page.evaluate("""() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel
        .requestExecute({code: 'pass', silent: true}).done
        .then(() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true)))))""")


def assert_clean(page):
    assert page.locator(".jupyter-widgets-error-widget").count() == 0, "a widget error box is shown"
    assert not page.alwb_errors, page.alwb_errors


def shot(page, artifacts: Path, name: str) -> Path:
    loc = page.locator(".alwb-labeller").first
    loc.scroll_into_view_if_needed()
    path = artifacts / name
    loc.screenshot(path=str(path))
    return path


def test_single_label_clicks_keys_undo_skip_flag_accept(lab, page, artifacts):
    proj = make_project(lab.root / "proj_single", seed_rounds=3)
    write_notebook(lab.root / "single.ipynb", widget_cells(proj))
    open_and_run(page, lab, "single.ipynb")
    wait_widget(page)
    assert page.evaluate(f"document.activeElement === document.querySelector('{ROOT}')"), "not focused on render"
    cells_before = page.locator(".jp-Notebook .jp-Cell").count()
    expected: dict[str, tuple] = {}

    # 1. click a class button
    a, _ = current(page)
    click(page, ".alwb-choice[data-name='3']")
    expected[a] = ("label", "3")
    # 2. number key (focus stayed on the widget after the click)
    b, _ = current(page)
    assert b != a
    press(page, "8")
    expected[b] = ("label", "7")
    # 3. skip with s
    c, _ = current(page)
    press(page, "s")
    expected[c] = ("skip", None)
    # 4. flag with a note
    d, seq = current(page)
    page.keyboard.press("f")
    page.locator(f"{ROOT} .alwb-note-input").wait_for(state="visible")
    page.keyboard.type("blurry stroke")
    page.keyboard.press("Enter")
    wait_shown_change(page, seq)
    expected[d] = ("flag", "blurry stroke")
    # 5. multi-step undo: z twice -> the flagged item, then the skipped one come back
    press(page, "z")
    assert current(page)[0] == d
    press(page, "Backspace")
    assert current(page)[0] == c
    del expected[c], expected[d]
    press(page, "2")          # c is now labelled "1"
    expected[c] = ("label", "1")
    assert current(page)[0] == d
    # 6. two key presses in the same instant: the second is swallowed while the first is in flight
    _, seq = current(page)
    page.evaluate(f"""() => {{ const r = document.querySelector('{ROOT}');
        for (const k of ['5', '6']) r.dispatchEvent(new KeyboardEvent('keydown', {{key: k, bubbles: true}})); }}""")
    wait_shown_change(page, seq)
    expected[d] = ("label", "4")
    e0, _ = current(page)
    press(page, "0")
    expected[e0] = ("label", "9")
    # the batch (5 items) is complete now: retraining starts and the next batch is shown at once
    page.wait_for_function(f"""() => {{ const r = document.querySelector('{ROOT}');
        return r.querySelectorAll('.alwb-pred').length === 3; }}""", timeout=60_000)
    assert page.locator(f"{ROOT} .alwb-model").inner_text().startswith("model v")
    page.locator(f"{ROOT} .alwb-report .alwb-curve").wait_for(timeout=10_000)
    # 7. accept the model's top suggestion with a
    e, _ = current(page)
    top = page.locator(f"{ROOT} .alwb-pred").first.get_attribute("data-name")
    press(page, "a")
    expected[e] = ("label", top)
    # 8. a retrain started outside the widget (not by its batch end, so the view is not polling): the new model
    #    version reaches the page from the training thread's callback alone
    before = page.locator(f"{ROOT} .alwb-model").inner_text()
    page.evaluate("""() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel
        .requestExecute({code: 'w.session.wait(); _f = w.session.retrain_async()'}).done.then(() => true)""")
    page.wait_for_function(f"""(before) => {{ const t = document.querySelector('{ROOT} .alwb-model').textContent;
        return t !== before && t.startsWith('model v'); }}""", arg=before, timeout=30_000)
    # 9. keys are ignored when the widget is not focused; JupyterLab shortcuts were never triggered
    # (a, s, z, f, digits are also notebook command-mode shortcuts: none of them fired while the widget had focus)
    assert page.locator(".jp-Notebook .jp-Cell").count() == cells_before, "a JupyterLab shortcut fired"
    f_id, f_seq = current(page)
    page.locator(".jp-Notebook .jp-Cell .jp-InputArea-editor").first.click()   # focus a code cell editor
    page.keyboard.press("2")
    settle(page)
    assert current(page) == (f_id, f_seq), "the widget reacted to a key typed into a code cell"
    page.keyboard.press("Backspace")
    assert_clean(page)
    # the position and coverage are shown
    assert "item 2 of 5" in page.locator(f"{ROOT} .alwb-position").inner_text()
    assert page.locator(f"{ROOT} .alwb-cov-row").count() == 10

    png = shot(page, artifacts, "labeller_single.png")
    if os.environ.get("ALWB_UPDATE_SCREENSHOTS") == "1":  # refresh the README screenshot only on purpose
        shutil_copy(png, REPO / "docs" / "screenshots" / "labeller.png")

    events, active = store_events(proj)
    got = {sid: (ev["kind"], ev["value"] if ev["kind"] == "label" else (ev["note"] if ev["kind"] == "flag" else None))
           for sid, ev in active.items() if ev["annotator"] == "tester"}
    assert got == expected
    answers = [ev for ev in events if ev["kind"] in ("label", "tags", "skip", "flag") and ev["annotator"] == "tester"]
    undone = {ev["undoes"] for ev in events if ev["kind"] == "undo"}
    live = [ev for ev in answers if ev["id"] not in undone]
    assert len(live) == len({ev["sample_id"] for ev in live}) == len(expected), "duplicate answers in the store"
    assert len(undone) == 2
    assert len([ev for ev in events if ev["annotator"] == "seed" and ev["kind"] == "label"]) == 30


def test_kernel_killed_mid_batch_resumes_at_first_unanswered(lab, page):
    proj = make_project(lab.root / "proj_restart", batch_size=6)
    write_notebook(lab.root / "restart.ipynb", widget_cells(proj, annotator="kim"))
    open_and_run(page, lab, "restart.ipynb")
    wait_widget(page)
    answered = []
    for key in ("1", "2", "3"):
        sid, _ = current(page)
        press(page, key)
        answered.append(sid)
    nxt, _ = current(page)
    assert "item 4 of 6" in page.locator(f"{ROOT} .alwb-position").inner_text()
    # kill the kernel process hard (no chance to flush anything), then let the server restart it
    pids = lab.kernel_pids()
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGKILL)
    t0 = time.time()
    while not [p for p in lab.kernel_pids() if p != pids[0]]:
        assert time.time() - t0 < 60, "the server did not restart the killed kernel"
        time.sleep(0.3)
    page.wait_for_timeout(500)
    page.wait_for_function(KERNEL_IDLE_JS, timeout=60_000)
    _, active = store_events(proj)
    assert sorted(active) == sorted(answered), "an answered label was lost"
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(f"""(id) => {{ const rs = document.querySelectorAll('{ROOT}');
        const r = rs[rs.length - 1]; return r && r.dataset.itemId === id; }}""", arg=nxt, timeout=60_000)
    roots = page.locator(ROOT)
    assert "item 4 of 6" in roots.last.locator(".alwb-position").inner_text()
    assert_clean(page)


def test_multilabel_tags_enter_submits_never_empty(lab, page, artifacts):
    proj = make_project(lab.root / "proj_multi", tags=["even", "odd", "round", "straight"], batch_size=4)
    write_notebook(lab.root / "multi.ipynb", widget_cells(proj, annotator="mia", multilabel=True))
    open_and_run(page, lab, "multi.ipynb")
    wait_widget(page)
    assert page.locator(f"{ROOT} .alwb-tag").count() == 4
    assert page.locator(f"{ROOT} .alwb-tag .alwb-key").all_inner_texts() == ["1", "2", "3", "4"]
    expected = {}
    # Enter with nothing selected: refused inline, nothing stored, same image
    a, seq = current(page)
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => document.querySelector('{ROOT} .alwb-message').textContent.includes('no tag selected')")
    assert current(page) == (a, seq)
    # toggle by key (1 on, 3 on, 3 off, 4 on) and by click (2 on, 2 off), then Enter
    for k in ("1", "3", "3", "4"):
        page.keyboard.press(k)
    page.locator(f"{ROOT} .alwb-tag[data-name='odd']").click()
    page.locator(f"{ROOT} .alwb-tag[data-name='odd']").click()
    assert sorted(page.locator(f"{ROOT} .alwb-tag.alwb-on").evaluate_all("els => els.map(e => e.dataset.name)")) \
        == ["even", "straight"]
    press(page, "Enter")
    expected[a] = ("tags", ["even", "straight"])
    # the submit button after a click does not re-fire on Enter for the next image
    b, _ = current(page)
    page.keyboard.press("2")
    click(page, ".alwb-submit")
    expected[b] = ("tags", ["odd"])
    c, seq = current(page)
    page.keyboard.press("Enter")   # nothing selected on the new image: must not submit anything
    settle(page)
    assert current(page) == (c, seq)
    press(page, "s")
    expected[c] = ("skip", None)
    # the guideline changes on disk: the next answer is refused until the annotator acknowledges version 2
    from alworkbench.project import Project

    p = Project.open(proj)
    p.config.guideline.version = "2"
    p.config.guideline.text = "# Digits v2\n- a 4 with a closed top counts as **loop**"
    p.config.save(p.config_path)
    d, seq = current(page)
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    banner = page.locator(f"{ROOT} .alwb-guideline-banner")
    banner.wait_for(state="visible")
    assert "version 1 to 2" in banner.inner_text()
    assert "closed top" in page.locator(f"{ROOT} .alwb-guideline-body").inner_text()   # opened for reading
    assert "version 2" in page.locator(f"{ROOT} .alwb-message").inner_text()
    assert current(page) == (d, seq)
    page.locator(f"{ROOT} .alwb-guideline-ack").click()
    banner.wait_for(state="hidden")
    press(page, "Enter")               # the selection survived; now it is accepted
    expected[d] = ("tags", ["even"])
    # the annotator name can be changed in the widget (a new name after a confirmation, and the new annotator
    # reads the guideline first: Enter acknowledges it); later answers carry it
    page.locator(f"{ROOT} .alwb-annotator").fill("mia2")
    page.locator(f"{ROOT} .alwb-annotator").press("Enter")
    assert page.evaluate(f"document.activeElement === document.querySelector('{ROOT} .alwb-annotator-add')")
    page.keyboard.press("Enter")
    assert page.evaluate(f"document.activeElement === document.querySelector('{ROOT}')")
    banner.wait_for(state="visible")
    page.keyboard.press("Enter")
    banner.wait_for(state="hidden")
    e, _ = current(page)
    page.keyboard.press("2")
    press(page, "Enter")
    expected[e] = ("tags", ["odd"])
    assert_clean(page)
    shot(page, artifacts, "labeller_multi.png")
    if os.environ.get("ALWB_UPDATE_SCREENSHOTS") == "1":
        shutil_copy(artifacts / "labeller_multi.png", REPO / "docs" / "screenshots" / "labeller_multilabel.png")
    _, active = store_events(proj)
    got = {s: (ev["kind"], list(ev["value"]) if ev["kind"] == "tags" else None) for s, ev in active.items()}
    assert got == {s: (k, v) for s, (k, v) in expected.items()}
    assert all(ev["value"] for ev in active.values() if ev["kind"] == "tags"), "an empty tag set was stored"
    assert active[e]["annotator"] == "mia2" and active[d]["annotator"] == "mia"


def test_many_classes_type_to_search(lab, page):
    """More than 10 classes: the first ten have number keys, '/' opens a filter box, Enter picks the match."""
    import csv

    from PIL import Image

    from alworkbench.project import Project

    names = ["airplane", "bicycle", "bird", "boat", "bus", "car", "cat", "cow", "dog", "horse", "motorbike",
             "person", "sheep", "train"]
    data = lab.root / "many_data"
    (data / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    with open(data / "manifest.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["path", "label"])
        for i in range(42):
            Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(data / "img" / f"{i:02d}.png")
            out.writerow([f"img/{i:02d}.png", names[i % len(names)]])
    proj = lab.root / "proj_many"
    p = Project.init(proj, str(data / "manifest.csv"), classes=names, query={"batch_size": 5})
    np.save(proj / "pixels.npy", np.stack([np.asarray(p.source.load(it).convert("L").resize((8, 8)),
                                                      dtype=np.float32).ravel() / 255 for it in p.source.items]))
    p.close()
    write_notebook(lab.root / "many.ipynb", widget_cells(proj))
    open_and_run(page, lab, "many.ipynb")
    wait_widget(page)
    keys = page.locator(f"{ROOT} .alwb-choice .alwb-key").all_inner_texts()
    assert keys == list("1234567890") and page.locator(f"{ROOT} .alwb-choice").count() == 14
    expected = {}
    a, seq = current(page)
    page.keyboard.press("/")
    assert page.evaluate(f"document.activeElement === document.querySelector('{ROOT} .alwb-search')")
    page.keyboard.type("mot")          # letters go to the filter box, not to the action keys
    assert page.locator(f"{ROOT} .alwb-choice").all_inner_texts() == ["motorbike"]
    page.keyboard.press("Enter")
    wait_shown_change(page, seq)
    expected[a] = "motorbike"
    b, seq = current(page)
    assert page.evaluate(f"document.activeElement === document.querySelector('{ROOT}')"), "focus not returned"
    page.keyboard.press("/")
    page.keyboard.type("s")            # bus, sheep (and any other name with an s): ArrowDown picks the second
    matches = page.locator(f"{ROOT} .alwb-choice").all_inner_texts()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    wait_shown_change(page, seq)
    expected[b] = [n for n in names if "s" in n][1]
    assert len(matches) >= 2
    c, _ = current(page)
    press(page, "0")                   # the tenth class by its number key
    expected[c] = "horse"
    assert_clean(page)
    _, active = store_events(proj)
    assert {s: ev["value"] for s, ev in active.items()} == expected


def test_quickstart_notebook_itself_labels_from_the_keyboard(lab, page):
    """The shipped notebooks/01_quickstart.ipynb (default backbone and torch head), run in JupyterLab: the widget
    appears, a round is labelled from the keyboard only, and the store holds exactly those answers."""
    import shutil as _sh

    nbdir = lab.root / "quickstart"
    nbdir.mkdir(exist_ok=True)
    _sh.copyfile(REPO / "notebooks" / "01_quickstart.ipynb", nbdir / "01_quickstart.ipynb")
    proj = lab.root / "projects" / "quickstart"  # the notebook puts projects/ beside its folder
    open_and_run(page, lab, "quickstart/01_quickstart.ipynb")
    wait_widget(page, timeout=240_000)
    page.locator(ROOT).focus()
    # a first-time annotator reads the guideline first: Enter acknowledges it
    page.locator(f"{ROOT} .alwb-guideline-banner").wait_for(state="visible")
    page.keyboard.press("Enter")
    page.locator(f"{ROOT} .alwb-guideline-banner").wait_for(state="hidden")
    shown = []
    for key in ["1", "2", "s", "3"]:
        item, _ = current(page)
        shown.append((item, key))
        press(page, key)
    events, active = store_events(proj)
    answers = [e for e in events if e["kind"] in ("label", "skip")]
    assert [(e["sample_id"], e["kind"], e["value"]) for e in answers] == [
        (shown[0][0], "label", "0"), (shown[1][0], "label", "1"), (shown[2][0], "skip", None),
        (shown[3][0], "label", "2")]
    assert len({e["sample_id"] for e in answers}) == 4  # never twice, never empty
    assert_clean(page)


def _store_view(project_dir: Path, annotator: str) -> dict:
    """What the label store says: labels in it, the annotator's open round, the latest model and report."""
    from alworkbench.labels import LabelStore

    with LabelStore(project_dir / "labels.sqlite") as st:
        model, report = st.latest_model_summary(), st.reports()[-1]
        cal = [r for r in st.records("calibration") if r["version"] == model["version"]]
        return {"labels": len(st.labels()), "open_round": st.open_batch(annotator=annotator)["round"],
                "random": (cal[-1].get("skill_accuracy"), cal[-1].get("n_skill") or 0) if cal else (None, 0),
                "version": model["version"], "trained_on": model["n_labels"], "cv": model.get("cv_accuracy"),
                "report_round": report["round"], "report_version": report["model_version"],
                "report_labels": report["n_labels"]}


def _parse(pattern: str, text: str) -> tuple:
    import re

    m = re.search(pattern, text)
    assert m, f"{pattern!r} not found in {text!r}"
    return tuple(int(g) if g is not None and g.isdigit() else g for g in m.groups())


MODEL_RE = r"model v(\d+) \u00b7 trained on (\d+) labels \u00b7 cross-validated accuracy (\d+)%"


def test_header_and_round_summary_agree_with_the_store(lab, page):
    """Issue 8: after a batch is labelled and its model lands, the header (open round, labels in the store, model
    version / trained on / cross-validated accuracy) and the round summary name the same figures, and they are
    the store's. The suggestions say how accurate that model was in cross-validation."""
    proj = make_project(lab.root / "proj_agree", batch_size=5, seed_rounds=3)
    write_notebook(lab.root / "agree.ipynb", widget_cells(proj, annotator="tara"))
    open_and_run(page, lab, "agree.ipynb")
    wait_widget(page)
    # the model refit at open (30 labels from the seed annotator) lands in the header; then label one batch
    page.wait_for_function(f"() => document.querySelector('{ROOT} .alwb-model').dataset.trainedOn === '30'",
                           timeout=60_000)
    first_round = int(page.locator(f"{ROOT} .alwb-position").get_attribute("data-round"))
    for key in "12345":
        press(page, key)
    header = page.locator(f"{ROOT} .alwb-header")
    assert _parse(r"round (\d+) \u00b7 item (\d+) of (\d+)", header.inner_text()) == (first_round + 1, 1, 5)
    # wait for the batch's model: trained on the 35 labels, in the header and in the summary, training over
    page.wait_for_function(f"""() => {{ const r = document.querySelector('{ROOT}');
        const m = r.querySelector('.alwb-model'), t = r.querySelector('.alwb-report-title');
        return r.dataset.training === '0' && m.dataset.trainedOn === '35' && t
               && t.dataset.modelVersion === m.dataset.version; }}""", timeout=60_000)
    settle(page)
    store = _store_view(proj, "tara")
    head_text = header.inner_text()
    summary_title = page.locator(f"{ROOT} .alwb-report-title").inner_text()
    summary_now = page.locator(f"{ROOT} .alwb-report-now").inner_text()
    # the header: the open batch's round, the store's label count, the current model
    h_round, h_item, h_n = _parse(r"round (\d+) \u00b7 item (\d+) of (\d+)", head_text)
    (h_labels,) = _parse(r"(\d+) labels in the store", head_text)
    h_version, h_trained, h_cv = _parse(MODEL_RE, head_text)
    # the round summary: the round whose answers trained the model, the same model line, the open round and count
    s_round, s_version, s_trained, s_cv = _parse(r"Round (\d+) \u2192 " + MODEL_RE, summary_title)
    s_open, s_labels = _parse(r"now: round (\d+) open \u00b7 (\d+) labels in the store", summary_now)
    assert (h_version, h_trained, h_cv) == (s_version, s_trained, s_cv)
    assert h_round == s_open == store["open_round"] == first_round + 1 and (h_item, h_n) == (1, 5)
    assert h_labels == s_labels == store["labels"] == 35
    assert h_version == store["version"] == store["report_version"] and h_trained == store["trained_on"] == 35
    assert s_round == store["report_round"] == first_round and s_trained == store["report_labels"]
    assert store["cv"] is not None and h_cv == round(100 * store["cv"])
    # the suggestions name that model and its cross-validated accuracy
    title = page.locator(f"{ROOT} .alwb-pred-title").inner_text()
    assert f"model v{h_version}, {h_cv}% accurate in cross-validation" in title
    # and, from 10 labels chosen at random on (the seed annotator's adaptive batches hold some), the out-of-fold
    # accuracy on those only, as the store's calibration record of that model has it
    skill, n_random = store["random"]
    if skill is not None and n_random >= 10:
        assert f"({math.floor(100 * skill + 0.5)}% on the {n_random} picked at random)" in title
    else:
        assert "picked at random" not in title
    assert page.locator(f"{ROOT} .alwb-pred").count() == 3
    assert_clean(page)


def test_show_suggestions_false_no_predictions_and_accept_key_does_nothing(lab, page):
    """ui.show_suggestions: false (teams that fear anchoring): a model exists, but the page shows no prediction,
    no accept button, and the a key only says why; nothing reaches the store; the model's line stays in the header."""
    proj = make_project(lab.root / "proj_nosugg", batch_size=5, seed_rounds=3, ui={"show_suggestions": False})
    write_notebook(lab.root / "nosugg.ipynb", widget_cells(proj, annotator="noa"))
    open_and_run(page, lab, "nosugg.ipynb")
    wait_widget(page)
    page.wait_for_function(f"() => document.querySelector('{ROOT} .alwb-model').dataset.trainedOn === '30'",
                           timeout=60_000)
    settle(page)
    assert page.locator(f"{ROOT} .alwb-pred").count() == 0
    assert "turned off" in page.locator(f"{ROOT} .alwb-predictions").inner_text()
    assert not page.locator(f"{ROOT} .alwb-accept").is_visible()
    assert "a accept" not in page.locator(f"{ROOT} .alwb-help").inner_text()
    n0 = len(store_events(proj)[0])
    shown = current(page)
    page.keyboard.press("a")
    page.wait_for_function(f"() => document.querySelector('{ROOT} .alwb-message').textContent"
                           ".includes('show_suggestions: false')")
    settle(page)
    assert current(page) == shown and len(store_events(proj)[0]) == n0
    # choosing a class still works, and the next image shows no prediction either
    press(page, "3")
    assert len(store_events(proj)[0]) == n0 + 1 and page.locator(f"{ROOT} .alwb-pred").count() == 0
    assert page.locator(f"{ROOT} .alwb-model").inner_text().startswith("model v")
    assert_clean(page)
