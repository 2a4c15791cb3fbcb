"""Issue 12, the labeller a professional annotator would pick, in a real JupyterLab 4 + Chromium: keys never reach
JupyterLab's notebook shortcuts while the widget has focus, and text fields inside it still type."""
from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import open_and_run, write_notebook
from .test_labeller_browser import (ROOT, assert_clean, current, make_project, press, shot, store_events,
                                    wait_shown_change, wait_widget, widget_cells)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# the notebook model as JupyterLab holds it: every cell's type and source, the active cell, and our widget
NOTEBOOK_JS = f"""() => {{
  const nb = window.jupyterapp.shell.currentWidget.content;
  const cells = [];
  for (let i = 0; i < nb.model.cells.length; i++) {{
    const c = nb.model.cells.get(i);
    cells.push([c.type, c.sharedModel.getSource()]);
  }}
  return {{cells: cells, active: nb.activeCellIndex, widgets: document.querySelectorAll('{ROOT}').length}};
}}"""

JUPYTERLAB_KEYS = ["m", "x", "c", "v", "d", "d", "b", "a", "Shift+Enter", "ArrowUp", "ArrowDown", "ArrowLeft",
                   "ArrowRight", "y", "r", "Escape", "Enter", "l", "o"]


def notebook_with_widget(lab, name: str, project_dir: Path, annotator: str = "tester",
                         read_guideline: bool = True) -> str:
    """The widget cell first, then two code cells that a stray shortcut would change (or delete, or move to)."""
    write_notebook(lab.root / name, widget_cells(project_dir, annotator=annotator, read_guideline=read_guideline)
                   + ["x = 1", "y = 2"])
    return name


def focused_on(page, selector: str) -> bool:
    return page.evaluate(f"document.activeElement === document.querySelector('{ROOT}{selector}')")


def test_notebook_shortcuts_never_fire_while_the_widget_has_focus(lab, page):
    proj = make_project(lab.root / "proj_keys", batch_size=5)
    open_and_run(page, lab, notebook_with_widget(lab, "keys.ipynb", proj))
    wait_widget(page)
    page.locator(ROOT).focus()
    before = page.evaluate(NOTEBOOK_JS)
    assert before["widgets"] == 1 and len(before["cells"]) == 3
    assert all(t == "code" for t, _ in before["cells"])
    a, _ = current(page)
    for key in JUPYTERLAB_KEYS:
        page.keyboard.press(key)
    # y (redo) asked the kernel, which answered "nothing to redo": wait for that reply (keys are ignored meanwhile)
    page.wait_for_function(f"() => document.querySelector('{ROOT} .alwb-message').textContent.includes('nothing to redo')"
                           f" && document.querySelector('{ROOT}').dataset.busy === '0'")
    # then a key the widget handles: its answer reaches the store and the next image is shown
    press(page, "3")
    assert focused_on(page, ""), "the widget lost focus"
    after = page.evaluate(NOTEBOOK_JS)
    assert after == before, "a JupyterLab shortcut changed the notebook"
    _, active = store_events(proj)
    assert {s: (ev["kind"], ev["value"]) for s, ev in active.items()} == {a: ("label", "2")}

    # typing in the note field: every letter goes into the note, none to JupyterLab or to the widget's own keys
    b, seq = current(page)
    page.keyboard.press("f")
    page.locator(f"{ROOT} .alwb-note-input").wait_for(state="visible")
    assert focused_on(page, " .alwb-note-input")
    page.keyboard.type("m x c v d d b a z 1 s")
    page.keyboard.press("Shift+Home")        # a selection in the text box, then typing over it
    page.keyboard.type("blurry, dark")
    page.keyboard.press("Enter")
    wait_shown_change(page, seq)
    assert page.evaluate(NOTEBOOK_JS) == before
    _, active = store_events(proj)
    assert (active[b]["kind"], active[b]["note"]) == ("flag", "blurry, dark")
    assert len(active) == 2
    assert_clean(page)


def message(page) -> str:
    return page.locator(f"{ROOT} .alwb-message").inner_text()


def test_first_time_annotator_reads_the_guideline_and_new_annotators_are_confirmed(lab, page):
    from alworkbench.labels import LabelStore

    proj = make_project(lab.root / "proj_people", batch_size=6)
    with LabelStore(proj / "labels.sqlite") as st:
        st.acknowledge_guideline("bea", "1")          # bea worked on this project before
    open_and_run(page, lab, notebook_with_widget(lab, "people.ipynb", proj, annotator="ann", read_guideline=False))
    wait_widget(page)
    # ann is new here: the guideline is open and must be acknowledged before the first answer
    banner = page.locator(f"{ROOT} .alwb-guideline-banner")
    banner.wait_for(state="visible")
    assert "before your first answer" in banner.inner_text()
    assert page.locator(f"{ROOT} .alwb-guideline-body").is_visible()
    assert "answer the digit you see" in page.locator(f"{ROOT} .alwb-guideline-body").inner_text()
    a, seq = current(page)
    page.keyboard.press("1")
    page.wait_for_function(f"() => document.querySelector('{ROOT} .alwb-message').textContent"
                           ".includes('before your first answer')")
    assert current(page) == (a, seq) and store_events(proj)[0] == []
    # Tab from the focused widget reaches "I have read it"; Enter on it acknowledges (recorded in the store)
    page.keyboard.press("Tab")
    assert focused_on(page, " .alwb-guideline-ack")
    page.keyboard.press("Enter")
    banner.wait_for(state="hidden")
    assert focused_on(page, "")
    with LabelStore(proj / "labels.sqlite") as st:
        assert st.acknowledged_guideline("ann") == "1"
    press(page, "3")
    # undo: the message says what was undone, never the item id (a folder-tree id names the class folder)
    press(page, "z")
    assert current(page)[0] == a
    assert message(page) == "undone: 2 \u2014 answer this image again (y redoes)" and a not in message(page)
    press(page, "5")
    # a known annotator is switched to at once (the field offers the project's annotators)
    assert page.locator(f"{ROOT} datalist.alwb-annotators option").evaluate_all(
        "os => os.map(o => o.value)") == ["ann", "bea"]
    ann = page.locator(f"{ROOT} .alwb-annotator")
    ann.fill("bea")
    ann.press("Enter")
    assert focused_on(page, "") and page.locator(f"{ROOT} .alwb-annotator-confirm").is_hidden()
    b, _ = current(page)
    press(page, "6")
    # a typo is not silently a new annotator: it asks, Escape keeps bea
    ann.fill("bae")
    ann.press("Enter")
    confirm = page.locator(f"{ROOT} .alwb-annotator-confirm")
    confirm.wait_for(state="visible")
    assert "\u201cbae\u201d is not one of this project's annotators (ann, bea)" in confirm.inner_text()
    assert focused_on(page, " .alwb-annotator-add")
    page.keyboard.press("Escape")
    confirm.wait_for(state="hidden")
    assert ann.input_value() == "bea" and focused_on(page, "")
    c, _ = current(page)
    press(page, "7")
    # a real new annotator: confirmed with Enter, then the guideline for them, acknowledged with Enter
    ann.fill("nina")
    ann.press("Enter")
    confirm.wait_for(state="visible")
    page.keyboard.press("Enter")
    banner.wait_for(state="visible")
    assert "Welcome, nina" in banner.inner_text()
    page.keyboard.press("Enter")
    banner.wait_for(state="hidden")
    d, _ = current(page)
    press(page, "8")
    assert_clean(page)
    events, active = store_events(proj)
    assert {s: (ev["annotator"], ev["value"]) for s, ev in active.items()} == {
        a: ("ann", "4"), b: ("bea", "5"), c: ("bea", "6"), d: ("nina", "7")}
    assert not [e for e in events if e["annotator"] == "bae"]
    with LabelStore(proj / "labels.sqlite") as st:
        assert st.annotators() == ["ann", "bea", "nina"]
        assert st.acknowledged_guideline("nina") == "1"


def test_a_widget_whose_kernel_died_says_so_and_says_run_the_cell_again(lab, page):
    import os
    import signal

    proj = make_project(lab.root / "proj_dead", batch_size=5)
    open_and_run(page, lab, notebook_with_widget(lab, "dead.ipynb", proj))
    wait_widget(page)
    press(page, "2")
    pids = lab.kernel_pids()
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGKILL)
    dead = page.locator(f"{ROOT} .alwb-dead")
    dead.wait_for(state="visible", timeout=60_000)
    assert "Run this cell again" in dead.inner_text()
    assert page.locator(ROOT).get_attribute("data-dead") == "1"
    page.locator(ROOT).focus()
    page.keyboard.press("3")       # refused at once with the same hint; nothing can reach the store
    page.wait_for_function(f"() => document.querySelector('{ROOT} .alwb-message').textContent"
                           ".includes('Run this cell again')")
    _, active = store_events(proj)
    assert len(active) == 1


def test_keys_overlay_and_keys_remapped_in_alwb_yaml(lab, page, artifacts):
    proj = make_project(lab.root / "proj_remap", batch_size=5, ui={"keys": {"3": "c", "7": "v"}}, label_budget=20)
    open_and_run(page, lab, notebook_with_widget(lab, "remap.ipynb", proj))
    wait_widget(page)
    keys = page.locator(f"{ROOT} .alwb-choice").evaluate_all(
        "bs => bs.map(b => [b.dataset.name, b.querySelector('.alwb-key').textContent])")
    assert keys == [["0", "1"], ["1", "2"], ["2", "3"], ["3", "c"], ["4", "4"], ["5", "5"], ["6", "6"],
                    ["7", "v"], ["8", "7"], ["9", "8"]]
    # ? lists every key: the class keys as configured and the action keys; ? again (or Esc) closes it
    overlay = page.locator(f"{ROOT} .alwb-keys-overlay")
    page.keyboard.press("?")
    overlay.wait_for(state="visible")
    rows = dict(overlay.locator("tr").evaluate_all("rs => rs.map(r => [r.dataset.key, r.cells[1].textContent])"))
    assert rows["c"] == "class 3" and rows["v"] == "class 7" and rows["7"] == "class 8"
    assert {"s", "f", "z", "a", "?", "Backspace", "Esc"} <= set(rows)
    assert "skip" in rows["s"] and "undo" in rows["z"]
    overlay.scroll_into_view_if_needed()
    overlay.screenshot(path=str(artifacts / "labeller_keys_overlay.png"))
    page.keyboard.press("?")
    overlay.wait_for(state="hidden")
    page.keyboard.press("?")
    overlay.wait_for(state="visible")
    page.keyboard.press("Escape")
    overlay.wait_for(state="hidden")
    # the details line: file name (never a folder), original size, the strategy and model that chose the image
    details = page.locator(f"{ROOT} .alwb-details").inner_text()
    assert details.startswith("digits #") and "8\u00d78 px" in details and "chosen by" in details
    stats = page.locator(f"{ROOT} .alwb-stats")
    assert "0 of 20 labels (0%)" in stats.inner_text()
    expected = {}
    for n, (key, label) in enumerate((("c", "3"), ("v", "7"), ("7", "8"), ("2", "1")), start=1):
        sid, _ = current(page)
        press(page, key)
        expected[sid] = label
        # a visible confirmation of what was just recorded, and the pace and budget progress from the store
        assert page.locator(f"{ROOT} .alwb-message").inner_text() == f"recorded: {label} \u2014 z to undo"
        assert f"{n} of 20 labels ({5 * n}%)" in stats.inner_text() and "images/min" in stats.inner_text()
    assert "left at this pace" in stats.inner_text()
    shot(page, artifacts, "labeller_details_stats.png")
    assert page.evaluate(NOTEBOOK_JS)["widgets"] == 1 and len(page.evaluate(NOTEBOOK_JS)["cells"]) == 3
    assert_clean(page)
    _, active = store_events(proj)
    assert {s: ev["value"] for s, ev in active.items()} == expected


def test_history_jump_back_and_change_leaves_one_active_answer_and_redo_after_undo(lab, page, artifacts):
    proj = make_project(lab.root / "proj_history", batch_size=6)
    open_and_run(page, lab, notebook_with_widget(lab, "history.ipynb", proj))
    wait_widget(page)
    ids = []
    for key in ("2", "3", "4"):
        ids.append(current(page)[0])
        press(page, key)
    resume, _ = current(page)
    # h opens the history: the latest answers first, with a thumbnail, the answer, who and when
    page.keyboard.press("h")
    box = page.locator(f"{ROOT} .alwb-history")
    box.wait_for(state="visible")
    cards = box.locator(".alwb-history-entry")
    cards.nth(2).wait_for()
    assert cards.locator(".alwb-history-text").all_inner_texts() == ["3", "2", "1"]
    assert cards.locator("img.alwb-history-thumb").count() == 3
    assert all(t.startswith("tester \u00b7 ") for t in cards.locator(".alwb-history-meta").all_inner_texts())
    # choose the oldest with the arrows, Enter shows its image to change it, a class key gives the new answer
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert "alwb-sel" in cards.nth(2).get_attribute("class")
    press(page, "Enter")
    assert current(page)[0] == ids[0]
    assert page.locator(ROOT).get_attribute("data-changing")
    assert "changing your earlier answer \u201c1\u201d" in page.locator(f"{ROOT} .alwb-position").inner_text()
    shot(page, artifacts, "labeller_history.png")
    press(page, "8")
    assert page.locator(f"{ROOT} .alwb-message").inner_text().startswith("changed: 1 \u2192 7")
    assert current(page)[0] == resume and not page.locator(ROOT).get_attribute("data-changing")
    page.wait_for_function(f"() => document.querySelector('{ROOT} .alwb-history-text').textContent === '7'")
    events, active = store_events(proj)
    mine = [e for e in events if e["sample_id"] == ids[0]]
    undone = {e["undoes"] for e in events if e["kind"] == "undo"}
    assert [(e["kind"], e["value"]) for e in mine] == [("label", "1"), ("undo", None), ("label", "7")]
    assert len([e for e in mine if e["kind"] == "label" and e["id"] not in undone]) == 1
    assert active[ids[0]]["value"] == "7"
    # redo after undo: z takes the latest answer back, y gives it again (a new event)
    press(page, "5")
    press(page, "z")
    assert current(page)[0] == resume
    press(page, "y")
    assert page.locator(f"{ROOT} .alwb-message").inner_text() == "redone: 4 \u2014 z to undo"
    page.keyboard.press("Escape")
    box.wait_for(state="hidden")
    assert_clean(page)
    events, active = store_events(proj)
    assert {s: e["value"] for s, e in active.items()} == {ids[0]: "7", ids[1]: "2", ids[2]: "3", resume: "4"}
    assert [e["kind"] for e in events if e["sample_id"] == resume] == ["label", "undo", "label"]


def _photo_project(root: Path) -> Path:
    """Six images of very different sizes in a CSV project: a 4000x3000 photo-like JPEG, a 20x30 PNG, a
    transparent PNG and three ordinary ones."""
    import csv

    import numpy as np
    from PIL import Image, ImageDraw

    from alworkbench.project import Project

    data = root / "photo_data"
    (data / "img").mkdir(parents=True)
    yy, xx = np.mgrid[0:3000, 0:4000]
    big = np.stack([(xx * 255 // 4000), (yy * 255 // 3000), ((xx + yy) * 255 // 7000)], axis=-1).astype(np.uint8)
    im = Image.fromarray(big)
    ImageDraw.Draw(im).ellipse((1500, 1000, 2500, 2000), fill=(250, 40, 40))
    im.save(data / "img" / "big.jpg", quality=85)
    Image.new("RGB", (20, 30), (30, 160, 60)).save(data / "img" / "tiny.png")
    alpha = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    ImageDraw.Draw(alpha).ellipse((90, 40, 210, 160), fill=(255, 200, 0, 255))
    alpha.save(data / "img" / "alpha.png")
    rng = np.random.default_rng(1)
    for i, (w, h) in enumerate([(640, 480), (180, 120), (1200, 300)]):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(data / "img" / f"plain{i}.png")
    names = ["big.jpg", "tiny.png", "alpha.png", "plain0.png", "plain1.png", "plain2.png"]
    with open(data / "manifest.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["path", "label"])
        for i, n in enumerate(names):
            out.writerow([f"img/{n}", ["round", "square"][i % 2]])
    proj = root / "proj_photos"
    p = Project.init(proj, str(data / "manifest.csv"), classes=["round", "square"], query={"batch_size": 6},
                     evaluation={"holdout": 0})
    np.save(proj / "pixels.npy", np.stack([np.asarray(p.source.load(it).convert("L").resize((8, 8)), dtype=np.float32)
                                           .ravel() / 255 for it in p.source.items]))
    p.close()
    return proj


def stage_state(page) -> dict:
    return page.evaluate(f"""() => {{ const s = document.querySelector('{ROOT} .alwb-stage');
        const i = s.querySelector('img'); const r = s.getBoundingClientRect();
        return {{mode: s.dataset.mode, scale: parseFloat(s.dataset.scale), full: s.dataset.full || '',
                 w: parseFloat(i.style.width), h: parseFloat(i.style.height), left: parseFloat(i.style.left),
                 top: parseFloat(i.style.top), natural: i.naturalWidth, box: [s.clientWidth, s.clientHeight], outer: [r.width, r.height],
                 rendering: getComputedStyle(i).imageRendering, src: i.getAttribute('src').slice(0, 15)}}; }}""")


def _check_big_photo(page, st, details):
    # fit: the 4000x3000 photo is shown whole in the 640x480 stage, from a display copy made in the kernel
    assert "4000\u00d73000 px" in details
    assert st["mode"] == "fit" and st["box"] == [640, 480]
    assert abs(st["scale"] - 0.16) < 1e-3 and (round(st["w"]), round(st["h"])) == (640, 480)
    assert st["natural"] <= 768
    # 1:1 (=): one image pixel per screen pixel, the full resolution fetched from the kernel on demand
    page.keyboard.press("=")
    page.wait_for_function(f"""() => {{ const s = document.querySelector('{ROOT} .alwb-stage');
        return s.dataset.full === '1' && s.querySelector('img').complete && s.querySelector('img').naturalWidth === 4000; }}""")
    st = stage_state(page)
    assert st["mode"] == "1:1" and st["scale"] == 1 and (st["w"], st["h"]) == (4000, 3000)
    assert page.locator(f"{ROOT} .alwb-zoom").inner_text() == "1:1"
    assert (st["left"], st["top"]) == (320 - 2000, 240 - 1500)      # the centre stays in the centre
    page.keyboard.press("+")
    assert stage_state(page)["scale"] == 1.25
    page.keyboard.press("-")
    assert stage_state(page)["scale"] == 1
    # pan by key and by dragging, zoom by the wheel around the pointer
    page.keyboard.press("ArrowLeft")
    assert stage_state(page)["left"] == 320 - 2000 + 80
    box = page.locator(f"{ROOT} .alwb-stage").bounding_box()
    page.mouse.move(box["x"] + 300, box["y"] + 200)
    page.mouse.down()
    page.mouse.move(box["x"] + 250, box["y"] + 150)
    page.mouse.up()
    st = stage_state(page)
    assert (st["left"], st["top"]) == (320 - 2000 + 80 - 50, 240 - 1500 - 50)
    page.mouse.move(box["x"] + 100, box["y"] + 100)
    page.mouse.wheel(0, -100)
    page.wait_for_function(f"() => parseFloat(document.querySelector('{ROOT} .alwb-stage').dataset.scale) === 1.25")
    st = stage_state(page)
    assert st["mode"] == "zoom" and st["left"] == 100 - (100 - (320 - 2000 + 30)) * 1.25
    page.keyboard.press("=")
    page.keyboard.press("=")             # 1:1, then back to fit
    st = stage_state(page)
    assert st["mode"] == "fit" and abs(st["scale"] - 0.16) < 1e-3


def _check_transparent_in_dark_theme(page, st, artifacts):
    import io
    import os

    from PIL import Image

    from .conftest import REPO, shutil_copy

    assert st["src"] == "data:image/png;" and st["box"] == [640, 480]     # alpha kept: PNG
    page.evaluate("window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=30_000)
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=30_000)   # the theme-change splash
    stage = page.locator(f"{ROOT} .alwb-stage")
    stage.scroll_into_view_if_needed()
    raw = stage.screenshot()
    (artifacts / "labeller_dark_stage.png").write_bytes(raw)
    png = Image.open(io.BytesIO(raw)).convert("RGB")
    x0, y0 = int(st["left"]) + 10, int(st["top"]) + 10           # a transparent corner of the image
    assert max(png.getpixel((x0, y0))) < 120, png.getpixel((x0, y0))   # the dark checkerboard, not white
    cx, cy = int(st["left"] + st["w"] / 2), int(st["top"] + st["h"] / 2)   # the opaque yellow disc
    r, g, b = png.getpixel((cx, cy))
    assert r > 200 and g > 150 and b < 80, (r, g, b)
    path = shot(page, artifacts, "labeller_dark.png")
    if os.environ.get("ALWB_UPDATE_SCREENSHOTS") == "1":
        shutil_copy(path, REPO / "docs" / "screenshots" / "labeller_dark.png")
    page.evaluate("window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Light'})")
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'true'", timeout=30_000)
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=30_000)
    page.locator(ROOT).focus()


def test_fixed_stage_fit_zoom_one_to_one_on_a_4000x3000_photo_and_dark_theme_transparency(lab, page, artifacts):
    proj = _photo_project(lab.root)
    open_and_run(page, lab, notebook_with_widget(lab, "photos.ipynb", proj))
    wait_widget(page)
    boxes, done = set(), []
    for n in range(6):
        name = page.locator(f"{ROOT} .alwb-details").get_attribute("data-name")
        assert name, f"no image shown after {done}: {page.locator(f'{ROOT} .alwb-position').inner_text()}"
        page.wait_for_function(f"() => document.querySelector('{ROOT} img.alwb-image').complete")
        st = stage_state(page)
        boxes.add(tuple(st["box"] + st["outer"]))
        if name == "big.jpg":
            _check_big_photo(page, st, page.locator(f"{ROOT} .alwb-details").inner_text())
        elif name == "alpha.png":
            _check_transparent_in_dark_theme(page, st, artifacts)
        elif name == "tiny.png":   # enlarged smoothly to fit: no blocky mosaic
            assert st["scale"] == 16 and st["rendering"] == "auto" and (st["w"], st["h"]) == (320, 480)
        done.append(name)
        if n < 5:
            press(page, "1")
    assert sorted(done) == ["alpha.png", "big.jpg", "plain0.png", "plain1.png", "plain2.png", "tiny.png"]
    assert boxes == {(640, 480, 642, 482)}, f"the stage changed size from image to image: {boxes}"
    assert_clean(page)
