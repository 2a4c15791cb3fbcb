"""Issue 12, second pass, in a real JupyterLab 4 + Chromium: the reviewer's screen has the labeller's image stage
(fixed size, fit, 1:1, zoom, pan, full resolution on demand), and the labeller is readable in JupyterLab's high
contrast theme and under the system's forced colours."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from .conftest import REPO, open_and_run, shutil_copy, write_notebook
from .test_labeller_browser import ROOT, assert_clean, make_project, shot, widget_cells
from .test_labeller_pro_browser import _photo_project, stage_state
from .test_quality_browser import RROOT, cells, state, wait_changed

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def rstage(page) -> dict:
    return page.evaluate(f"""() => {{ const s = document.querySelector('{RROOT} .alwb-stage');
        const i = s.querySelector('img'); const r = s.getBoundingClientRect();
        return {{mode: s.dataset.mode, scale: parseFloat(s.dataset.scale), full: s.dataset.full || '',
                 w: parseFloat(i.style.width), h: parseFloat(i.style.height), left: parseFloat(i.style.left),
                 top: parseFloat(i.style.top), natural: i.naturalWidth, box: [s.clientWidth, s.clientHeight],
                 outer: [r.width, r.height]}}; }}""")


def test_the_reviewer_screen_has_the_image_stage_fit_zoom_one_to_one_and_pan(lab, page, artifacts):
    from alworkbench import Answer
    from alworkbench.project import Project

    proj = _photo_project(lab.root / "review_stage")   # its own folder: the labeller's stage test uses lab.root
    p = Project.open(proj)
    X = np.load(proj / "pixels.npy")
    names = {it.id: Path(it.uri).name for it in p.items}
    ana = p.session(annotator="ana", embeddings=X)
    for bi in ana.next_batch().items:   # every image flagged: all six are in the review queue
        ana.submit(bi.item.id, Answer.flag(f"unsure about {names[bi.item.id]}"))
    ana.close()
    p.close()

    write_notebook(lab.root / "review_stage.ipynb", cells(proj, "rita", mode="review"))
    open_and_run(page, lab, "review_stage.ipynb")
    page.wait_for_selector(f"{RROOT} .alwb-stage img.alwb-image", state="visible", timeout=120_000)
    page.wait_for_function(f"() => {{ const r = document.querySelector('{RROOT}'); return r && r.dataset.itemId; }}")
    boxes, seen = set(), []
    for _ in range(6):
        item_id, seq = state(page, RROOT)
        page.wait_for_function(f"() => document.querySelector('{RROOT} img.alwb-image').complete")
        st = rstage(page)
        boxes.add(tuple(st["box"] + st["outer"]))
        seen.append(names[item_id])
        if names[item_id] == "big.jpg":
            # fit: the whole 4000x3000 photo in the 640x480 stage, from the kernel's display copy
            assert st["mode"] == "fit" and abs(st["scale"] - 0.16) < 1e-3 and st["natural"] <= 768
            assert (round(st["w"]), round(st["h"])) == (640, 480)
            # 1:1 fetches the full resolution from the kernel; the centre stays in the centre
            page.keyboard.press("=")
            page.wait_for_function(f"""() => {{ const s = document.querySelector('{RROOT} .alwb-stage');
                return s.dataset.full === '1' && s.querySelector('img').complete
                       && s.querySelector('img').naturalWidth === 4000; }}""")
            st = rstage(page)
            assert st["mode"] == "1:1" and st["scale"] == 1 and (st["w"], st["h"]) == (4000, 3000)
            assert (st["left"], st["top"]) == (320 - 2000, 240 - 1500)
            page.keyboard.press("+")
            assert rstage(page)["scale"] == 1.25
            page.keyboard.press("-")
            # while zoomed the Right arrow pans: the same entry stays
            page.keyboard.press("ArrowRight")
            st = rstage(page)
            assert st["left"] == 320 - 2000 - 80 and state(page, RROOT) == (item_id, seq)
            page.mouse.move(0, 0)
            box = page.locator(f"{RROOT} .alwb-stage").bounding_box()
            page.mouse.move(box["x"] + 100, box["y"] + 100)
            page.mouse.wheel(0, -100)
            page.wait_for_function(
                f"() => parseFloat(document.querySelector('{RROOT} .alwb-stage').dataset.scale) === 1.25")
            assert state(page, RROOT) == (item_id, seq)
            page.keyboard.press("=")
            page.keyboard.press("=")   # 1:1, then back to fit
            st = rstage(page)
            assert st["mode"] == "fit" and abs(st["scale"] - 0.16) < 1e-3
            shot_path = artifacts / "reviewer_stage.png"
            page.locator(".alwb-reviewer").first.screenshot(path=str(shot_path))
        elif names[item_id] == "tiny.png":   # 20x30: enlarged smoothly to the stage, no blocky mosaic
            assert st["scale"] == 16 and (st["w"], st["h"]) == (320, 480)
        # back in fit, the Right arrow goes to the next entry without deciding
        page.keyboard.press("ArrowRight")
        wait_changed(page, RROOT, seq)
    assert sorted(seen) == sorted(names.values()), seen
    assert boxes == {(640, 480, 642, 482)}, f"the reviewer's stage changed size from entry to entry: {boxes}"
    assert page.locator(".jupyter-widgets-error-widget").count() == 0 and not page.alwb_errors


CONTRAST_JS = """(sel) => {
  function rgb(s) { const m = s && s.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(',').map(x => parseFloat(x)); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; }
  function over(top, under) { const a = top[3]; return [0, 1, 2].map(i => top[i] * a + under[i] * (1 - a)).concat([1]); }
  function background(el) {   // the colour actually under the text: every background up the tree, composited
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let col = [255, 255, 255, 1];
    for (let i = layers.length - 1; i >= 0; i--) col = over(layers[i], col);
    return col;
  }
  function lum(c) { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); }
  const out = [];
  for (const el of document.querySelectorAll(sel)) {
    if (!el.offsetParent || !el.textContent.trim()) continue;
    const bg = background(el), fg = over(rgb(getComputedStyle(el).color), bg);
    const a = lum(fg), b = lum(bg);
    out.push({cls: el.className, text: el.textContent.trim().slice(0, 40),
              ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)});
  }
  return out;
}"""

TEXTS = ", ".join(f"{ROOT} {s}" for s in (
    ".alwb-position", ".alwb-labelled", ".alwb-model", ".alwb-stats", ".alwb-details", ".alwb-help",
    ".alwb-message", ".alwb-choice .alwb-name", ".alwb-choice .alwb-key", ".alwb-pred-title", ".alwb-pred-name",
    ".alwb-pred-p", ".alwb-cov-name", ".alwb-cov-n", "button"))


def test_high_contrast_theme_and_forced_colours_keep_every_text_readable(lab, page, artifacts):
    proj = make_project(lab.root / "proj_contrast", batch_size=5, seed_rounds=2)
    write_notebook(lab.root / "contrast.ipynb", widget_cells(proj))
    open_and_run(page, lab, "contrast.ipynb")
    page.wait_for_selector(f"{ROOT} img.alwb-image", state="visible", timeout=120_000)
    page.wait_for_function(f"() => document.querySelectorAll('{ROOT} .alwb-pred').length > 0", timeout=60_000)
    light = page.evaluate(CONTRAST_JS, TEXTS)
    assert len(light) >= 20
    try:
        page.evaluate("window.jupyterapp.commands.execute('apputils:change-theme', "
                      "{theme: 'JupyterLab Dark High Contrast'})")
        page.wait_for_function("() => document.body.dataset.jpThemeName === 'JupyterLab Dark High Contrast'",
                               timeout=30_000)
        page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=30_000)
        hc = page.evaluate(CONTRAST_JS, TEXTS)
        assert len(hc) == len(light)
        # WCAG AA for normal text is 4.5:1, AAA 7:1: in the high contrast theme every text of the widget reaches AAA
        low = [r for r in hc if r["ratio"] < 7.0]
        assert not low, f"texts below 7:1 in the high contrast theme: {low}"
        bg = page.evaluate(f"getComputedStyle(document.querySelector('{ROOT} .alwb-stage')).backgroundColor")
        assert bg not in ("rgb(255, 255, 255)", "rgba(0, 0, 0, 0)"), bg   # the stage follows the theme
        path = shot(page, artifacts, "labeller_high_contrast.png")
        if os.environ.get("ALWB_UPDATE_SCREENSHOTS") == "1":
            shutil_copy(path, REPO / "docs" / "screenshots" / "labeller_high_contrast.png")
        # the system's forced colours (Windows high contrast): the browser replaces every colour, so boxes and
        # buttons need borders to stay visible; the selected class keeps an outline
        page.emulate_media(forced_colors="active")
        borders = page.evaluate(f"""() => ['.alwb-stage', '.alwb-choice', '.alwb-root'].map(s => {{
            const c = getComputedStyle(document.querySelector('{ROOT}'.replace('.alwb-root', '') + ' ' + s));
            return [s, c.borderTopStyle, parseFloat(c.borderTopWidth)]; }})""")
        assert all(style == "solid" and width >= 1 for _, style, width in borders), borders
        forced = page.evaluate(CONTRAST_JS, TEXTS)
        assert not [r for r in forced if r["ratio"] < 4.5], forced
        shot(page, artifacts, "labeller_forced_colors.png")
    finally:
        page.emulate_media(forced_colors="none")
        page.evaluate("window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Light'})")
        page.wait_for_function("() => document.body.dataset.jpThemeLight === 'true'", timeout=30_000)
        page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=30_000)
    assert_clean(page)
