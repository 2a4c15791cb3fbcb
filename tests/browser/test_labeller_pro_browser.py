"""Issue 12, the labeller a professional annotator would pick, in a real JupyterLab 4 + Chromium: keys never reach
JupyterLab's notebook shortcuts while the widget has focus, and text fields inside it still type."""
from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import open_and_run, write_notebook
from .test_labeller_browser import (ROOT, assert_clean, current, make_project, press, store_events, wait_shown_change,
                                    wait_widget, widget_cells)

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


def notebook_with_widget(lab, name: str, project_dir: Path, annotator: str = "tester") -> str:
    """The widget cell first, then a markdown cell and a code cell that a stray shortcut would change."""
    write_notebook(lab.root / name, widget_cells(project_dir, annotator=annotator) + ["x = 1", "y = 2"])
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
