"""The tag-tree labeller (issue 11, multi-label half) in a real JupyterLab 4 + Chromium, driven from the keyboard
only: number keys toggle the tag at this level (a tag brings its ancestors on and a group opens; turning a tag off
takes its descendants off), Backspace goes up a level, ``/`` searches every tag and Enter in the search toggles
the hit, Enter on the widget submits the set. The label store must then hold exactly those tag sets, ancestors
included."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .conftest import open_and_run, write_notebook
from .test_labeller_browser import ROOT, assert_clean, current, shot, wait_shown_change, wait_widget

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TAGS = {"round": {"loops": ["0", "6", "8", "9"], "open": ["2", "3", "5"]},
        "straight": {"1": None, "angled": ["4", "7"]}}


def make_project(dirpath: Path) -> Path:
    from alworkbench.project import Project

    p = Project.init(dirpath, "digits", tags=TAGS, query={"batch_size": 8}, source={"limit": 240})
    X = np.stack([np.asarray(p.source.load(it).convert("L"), dtype=np.float32).ravel() / 16.0
                  for it in p.source.items])
    np.save(dirpath / "pixels.npy", X)
    p.close()
    return dirpath


def state(page) -> tuple[str, str]:
    """(breadcrumb path, the selected tags in tree order) as the tree shows them."""
    el = page.locator(f"{ROOT} .alwb-tree-crumbs")
    return el.get_attribute("data-path"), el.get_attribute("data-tags")


def tree_key(page, key: str, path: str, tags: str) -> None:
    """A key inside the tree (no answer): wait until the breadcrumbs and the selection read ``path`` and ``tags``."""
    page.keyboard.press(key)
    page.wait_for_function(
        """([sel, p, t]) => { const c = document.querySelector(sel); return c.dataset.path === p && c.dataset.tags === t; }""",
        arg=[f"{ROOT} .alwb-tree-crumbs", path, tags], timeout=10_000)


def submit(page) -> None:
    """Enter on the widget submits the tag set: wait until the next image is shown (stored and acknowledged)."""
    _, seq = current(page)
    page.keyboard.press("Enter")
    wait_shown_change(page, seq)
    assert state(page) == ("", "")  # a new image starts at the top with nothing selected


def children(page) -> list[str]:
    return page.locator(f"{ROOT} .alwb-tree-child").evaluate_all("bs => bs.map(b => b.dataset.name)")


def on(page) -> list[str]:
    return page.locator(f"{ROOT} .alwb-tree-child.alwb-on").evaluate_all("bs => bs.map(b => b.dataset.name)")


def test_tag_tree_from_the_keyboard_stores_tag_sets_with_their_ancestors(lab, page, artifacts):
    proj = make_project(lab.root / "proj_tagtree")
    write_notebook(lab.root / "tagtree.ipynb", [
        "import numpy as np\nfrom sklearn.linear_model import LogisticRegression\n"
        "from sklearn.multiclass import OneVsRestClassifier\n"
        "from alworkbench.project import Project\nfrom alworkbench.ui import Workbench\n"
        f"project = Project.open({str(proj)!r})\n"
        f"w = Workbench(project.session(annotator='tagtree', embeddings=np.load({str(proj / 'pixels.npy')!r}),"
        " head_factory=lambda: OneVsRestClassifier(LogisticRegression(max_iter=300))))\nw"])
    open_and_run(page, lab, "tagtree.ipynb")
    wait_widget(page)
    assert page.locator(f"{ROOT} .alwb-tree").is_visible() and not page.locator(f"{ROOT} .alwb-choices").is_visible()
    assert state(page) == ("", "") and children(page) == ["round", "straight"]
    assert page.locator(f"{ROOT} .alwb-tree-search").get_attribute("placeholder") == "/ search all tags"
    expected: dict[str, tuple] = {}

    # 1. number keys per level: round (on, opens) > loops (on, opens) > 8 (a leaf: on, stays), Enter submits
    a, _ = current(page)
    tree_key(page, "1", "round", "round")
    assert children(page) == ["loops", "open"]
    tree_key(page, "1", "round > loops", "round,loops")
    tree_key(page, "3", "round > loops", "round,loops,8")
    assert on(page) == ["8"]
    shot(page, artifacts, "tagtree_level3.png")
    submit(page)
    expected[a] = ("8", "loops", "round")

    # 2. two branches, then a parent turned off takes its descendants with it
    b, _ = current(page)
    tree_key(page, "2", "straight", "straight")
    tree_key(page, "1", "straight", "straight,1")
    tree_key(page, "Backspace", "", "straight,1")
    tree_key(page, "1", "round", "round,straight,1")
    tree_key(page, "1", "round > loops", "round,loops,straight,1")
    tree_key(page, "2", "round > loops", "round,loops,6,straight,1")
    tree_key(page, "Backspace", "round", "round,loops,6,straight,1")
    tree_key(page, "Backspace", "", "round,loops,6,straight,1")
    assert on(page) == ["round", "straight"]
    tree_key(page, "1", "", "straight,1")  # round off: loops and 6 go too
    assert on(page) == ["straight"]
    submit(page)
    expected[b] = ("1", "straight")

    # 3. / searches every tag (groups too) with its full path; Enter toggles the hit (ancestors on); Enter submits
    c, _ = current(page)
    page.keyboard.press("/")
    page.wait_for_function("() => document.activeElement && document.activeElement.classList.contains('alwb-tree-search')")
    page.keyboard.type("7")
    hits = page.locator(f"{ROOT} .alwb-tree-hit")
    hits.first.wait_for(timeout=10_000)
    assert hits.all_inner_texts() == ["straight > angled > 7"]
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => document.querySelector('{ROOT} .alwb-tree-crumbs').dataset.tags === 'straight,angled,7'")
    assert page.evaluate(f"document.activeElement === document.querySelector('{ROOT}')"), "focus did not come back"
    page.keyboard.press("/")
    page.keyboard.type("open")
    page.wait_for_function(f"() => document.querySelectorAll('{ROOT} .alwb-tree-hit').length === 4")
    assert hits.all_inner_texts() == ["round > open"] + [f"round > open > {n}" for n in ("2", "3", "5")]
    shot(page, artifacts, "tagtree_search.png")
    page.keyboard.press("Enter")  # the group itself: on with its parent, and it opens
    page.wait_for_function(
        f"() => document.querySelector('{ROOT} .alwb-tree-crumbs').dataset.tags === 'round,open,straight,angled,7'")
    assert state(page)[0] == "round > open"
    submit(page)
    expected[c] = ("7", "angled", "open", "round", "straight")

    # 4. Enter with nothing selected stores nothing and says so; a top group alone is a valid tag set
    d, seq = current(page)
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => (document.querySelector('{ROOT} .alwb-message') || {{}}).textContent"
                           " && document.querySelector('" + ROOT + " .alwb-message').textContent.includes('no tag selected')")
    assert current(page) == (d, seq)
    tree_key(page, "1", "round", "round")
    submit(page)
    expected[d] = ("round",)
    assert_clean(page)

    # 5. finish the batch (8 items): the model trains; the tree shows each tag's probability, never a child above
    #    its parent's, and marks the tags the model decides present
    for _ in range(4):
        sid, _ = current(page)
        tree_key(page, "2", "straight", "straight")
        submit(page)
        expected[sid] = ("straight",)
    page.wait_for_function(f"() => document.querySelectorAll('{ROOT} .alwb-tree-child .alwb-tree-p').length === 2",
                           timeout=60_000)

    def pct() -> dict:
        return dict(page.locator(f"{ROOT} .alwb-tree-child").evaluate_all(
            "bs => bs.map(b => [b.dataset.name, parseInt(b.querySelector('.alwb-tree-p').textContent)])"))

    top = pct()
    marked = page.locator(f"{ROOT} .alwb-tree-child.alwb-tree-predicted").evaluate_all("bs => bs.map(b => b.dataset.name)")
    assert all(top[n] >= 50 for n in marked) and all(top[n] <= 50 for n in top if n not in marked)  # shown rounded
    tree_key(page, "2", "straight", "straight")
    kids = pct()
    assert set(kids) == {"1", "angled"} and all(v <= top["straight"] for v in kids.values()), (top, kids)
    shot(page, artifacts, "tagtree_predicted.png")
    assert_clean(page)

    from alworkbench.labels import LabelStore

    with LabelStore(proj / "labels.sqlite") as st:
        assert st.tag_sets() == expected
        events = st.events()
    answers = [ev for ev in events if ev["kind"] == "tags"]
    assert len(answers) == 8 and all(ev["annotator"] == "tagtree" for ev in answers)
