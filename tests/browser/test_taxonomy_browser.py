"""The taxonomy tree labeller (issue 11) in a real JupyterLab 4 + Chromium, driven from the keyboard only: number
keys descend level by level, Backspace goes up (and, at the top, undoes), ``/`` searches every leaf and Enter
picks the highlighted match. The label store must then hold exactly the chosen leaves with their ancestors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .conftest import open_and_run, write_notebook
from .test_labeller_browser import ROOT, assert_clean, current, shot, wait_shown_change, wait_widget

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TREE = {"round": {"loops": ["0", "6", "8", "9"], "open": ["2", "3", "5"]},
        "straight": {"1": None, "angled": ["4", "7"]}}


def make_project(dirpath: Path) -> Path:
    from alworkbench.project import Project

    p = Project.init(dirpath, "digits", taxonomy=TREE, query={"batch_size": 8}, source={"limit": 240})
    X = np.stack([np.asarray(p.source.load(it).convert("L"), dtype=np.float32).ravel() / 16.0
                  for it in p.source.items])
    np.save(dirpath / "pixels.npy", X)
    p.close()
    return dirpath


def crumbs(page) -> str:
    return page.locator(f"{ROOT} .alwb-tree-crumbs").get_attribute("data-path")


def level_key(page, key: str, expect_path: str) -> None:
    """A key that moves inside the tree (no answer): wait until the breadcrumbs show ``expect_path``."""
    page.keyboard.press(key)
    page.wait_for_function(f"""(p) => document.querySelector('{ROOT} .alwb-tree-crumbs').dataset.path === p""",
                           arg=expect_path, timeout=10_000)


def answer_key(page, key: str) -> None:
    """A key that picks a leaf: wait until the next image is shown (the answer was stored and acknowledged)."""
    _, seq = current(page)
    page.keyboard.press(key)
    wait_shown_change(page, seq)


def children(page) -> list[str]:
    return page.locator(f"{ROOT} .alwb-tree-child").evaluate_all("bs => bs.map(b => b.dataset.name)")


def test_tree_labeller_from_the_keyboard_stores_leaves_with_their_ancestors(lab, page, artifacts):
    proj = make_project(lab.root / "proj_tree")
    write_notebook(lab.root / "tree.ipynb", [
        "import numpy as np\nfrom sklearn.linear_model import LogisticRegression\n"
        "from alworkbench.project import Project\nfrom alworkbench.ui import Workbench\n"
        f"project = Project.open({str(proj)!r})\n"
        f"w = Workbench(project.session(annotator='tree', embeddings=np.load({str(proj / 'pixels.npy')!r}),"
        " head_factory=lambda: LogisticRegression(max_iter=300)))\nw"])
    open_and_run(page, lab, "tree.ipynb")
    wait_widget(page)
    tree = page.locator(f"{ROOT} .alwb-tree")
    assert tree.is_visible() and not page.locator(f"{ROOT} .alwb-choices").is_visible()
    assert crumbs(page) == "" and children(page) == ["round", "straight"]
    expected: dict[str, tuple] = {}

    # 1. number keys per level: round > loops > 8
    a, _ = current(page)
    level_key(page, "1", "round")
    assert children(page) == ["loops", "open"]
    level_key(page, "1", "round > loops")
    assert children(page) == ["0", "6", "8", "9"]
    assert page.locator(f"{ROOT} .alwb-crumb").all_inner_texts() == ["all", "round", "loops"]
    shot(page, artifacts, "tree_level3.png")
    answer_key(page, "3")
    expected[a] = ("round", "loops", "8")
    assert crumbs(page) == ""  # a new image starts at the top again

    # 2. down, Backspace up twice, then another branch: straight > angled, back to the top, round > open > 3
    b, _ = current(page)
    assert b != a
    level_key(page, "2", "straight")
    level_key(page, "2", "straight > angled")
    level_key(page, "Backspace", "straight")
    level_key(page, "Backspace", "")
    level_key(page, "1", "round")
    level_key(page, "2", "round > open")
    answer_key(page, "2")
    expected[b] = ("round", "open", "3")

    # 3. / focuses the search; the match shows its full path; Enter picks it
    c, _ = current(page)
    page.keyboard.press("/")
    page.wait_for_function("() => document.activeElement && document.activeElement.classList.contains('alwb-tree-search')")
    page.keyboard.type("7")
    hits = page.locator(f"{ROOT} .alwb-tree-hit")
    hits.first.wait_for(timeout=10_000)
    assert hits.all_inner_texts() == ["straight > angled > 7"]
    shot(page, artifacts, "tree_search.png")
    _, seq = current(page)
    page.keyboard.press("Enter")
    wait_shown_change(page, seq)
    expected[c] = ("straight", "angled", "7")
    assert page.evaluate(f"document.activeElement === document.querySelector('{ROOT}')"), "focus did not come back"

    # 4. a search matching a group lists its leaves; ArrowDown moves the highlight, Enter picks the second one
    d, _ = current(page)
    page.keyboard.press("/")
    page.keyboard.type("loops")
    page.wait_for_function(f"() => document.querySelectorAll('{ROOT} .alwb-tree-hit').length === 4")
    assert hits.all_inner_texts() == [f"round > loops > {n}" for n in ("0", "6", "8", "9")]
    page.keyboard.press("ArrowDown")
    page.wait_for_function(f"() => document.querySelector('{ROOT} .alwb-tree-hit.alwb-hit').dataset.name === '6'")
    _, seq = current(page)
    page.keyboard.press("Enter")
    wait_shown_change(page, seq)
    expected[d] = ("round", "loops", "6")

    # 5. a shallow leaf (level 2): straight > 1
    e, _ = current(page)
    level_key(page, "2", "straight")
    answer_key(page, "1")
    expected[e] = ("straight", "1")

    # 6. Backspace at the top is the usual undo: the last item comes back and is answered again through the tree
    f0, _ = current(page)
    answer_key(page, "Backspace")
    assert current(page)[0] == e
    del expected[e]
    level_key(page, "2", "straight")
    level_key(page, "2", "straight > angled")
    answer_key(page, "1")
    expected[e] = ("straight", "angled", "4")
    assert current(page)[0] == f0
    assert_clean(page)

    # 7. finish the batch (8 items): the model trains, and the tree marks its top-down prediction at every level;
    #    following the marked children leads to the widget's first suggestion (the same tree-consistent leaf)
    for _ in range(3):
        before = current(page)[0]
        level_key(page, "1", "round")
        level_key(page, "1", "round > loops")
        answer_key(page, "1")
        expected[before] = ("round", "loops", "0")
    page.wait_for_function(f"() => document.querySelectorAll('{ROOT} .alwb-pred').length === 3", timeout=60_000)
    page.wait_for_function(f"() => document.querySelectorAll('{ROOT} .alwb-tree-predicted').length === 1",
                           timeout=10_000)
    top = page.locator(f"{ROOT} .alwb-pred").first.get_attribute("data-name")
    walked = []
    while True:
        marked = page.locator(f"{ROOT} .alwb-tree-child.alwb-tree-predicted")
        assert marked.count() == 1
        name = marked.get_attribute("data-name")
        walked.append(name)
        if "alwb-tree-leaf" in (marked.get_attribute("class") or ""):
            break
        level_key(page, str(children(page).index(name) + 1), " > ".join(walked))
    assert walked[-1] == top and len(walked) in (2, 3)
    assert page.locator(f"{ROOT} .alwb-tree-child .alwb-tree-p").count() == len(children(page))
    shot(page, artifacts, "tree_predicted.png")
    level_key(page, "Escape", "")
    assert_clean(page)

    # the store holds exactly these answers: each leaf with its ancestors, stored with the event
    from alworkbench.labels import LabelStore

    with LabelStore(proj / "labels.sqlite") as st:
        assert st.labels() == {sid: path[-1] for sid, path in expected.items()}
        assert st.paths() == expected
        events = st.events()
    answers = [ev for ev in events if ev["kind"] == "label"]
    assert len(answers) == 9 and sum(ev["kind"] == "undo" for ev in events) == 1
    undone = next(ev for ev in events if ev["kind"] == "undo")["undoes"]
    assert next(ev for ev in answers if ev["id"] == undone)["path"] == ("straight", "1")  # kept, never rewritten
    assert all(ev["annotator"] == "tree" for ev in answers)
