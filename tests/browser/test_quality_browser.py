"""The quality loop in a real JupyterLab 4 + Chromium, from the keyboard only: the qualification test (fail, read
the guideline, retry, pass, carry on) and reviewer mode (skip, a refused accept, a correction with a reason, an
accept). What counts is what the label store holds afterwards, read from the store, not from the page."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .conftest import open_and_run, write_notebook
from .test_labeller_browser import assert_clean, settle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LROOT = ".alwb-labeller .alwb-root"
RROOT = ".alwb-reviewer .alwb-root"
GUIDE = "# Digits\n- answer the digit you **see**\n- a 7 with a bar across is still a seven"
KEYS = "1234567890"   # the labeller's class keys: class "0" is key 1, ..., class "9" is key 0


def key_for(label: str) -> str:
    return KEYS[int(label)]


def wrong(label: str) -> str:
    return str((int(label) + 1) % 10)


def save_pixels(p, d: Path) -> np.ndarray:
    X = p.source.pixels.reshape(len(p.items), -1).astype("float32") / 16.0
    np.save(d / "pixels.npy", X)
    return X


def cells(project_dir: Path, annotator: str, mode: str = "label") -> list[str]:
    return [
        "import numpy as np\nfrom sklearn.linear_model import LogisticRegression\n"
        "from alworkbench.project import Project\nfrom alworkbench.ui import Workbench\n"
        f"project = Project.open({str(project_dir)!r})\n"
        f"s = project.session(annotator={annotator!r}, embeddings=np.load({str(project_dir / 'pixels.npy')!r}),"
        " head_factory=lambda: LogisticRegression(max_iter=300))\n"
        f"w = Workbench(s, mode={mode!r})\nw",
    ]


def state(page, root):
    r = page.locator(root)
    return r.get_attribute("data-item-id"), r.get_attribute("data-shown-seq")


def wait_changed(page, root, before_seq, timeout=30_000):
    page.wait_for_function(
        """([sel, seq]) => { const r = document.querySelector(sel);
             return r && r.dataset.shownSeq !== seq && r.dataset.busy === '0'; }""",
        arg=[root, before_seq], timeout=timeout)


def press(page, root, key):
    _, seq = state(page, root)
    page.keyboard.press(key)
    wait_changed(page, root, seq)
    return state(page, root)[0]


def focused(page, selector) -> bool:
    return page.evaluate(f"document.activeElement === document.querySelector({selector!r})")


def message(page, root) -> str:
    return page.locator(f"{root} .alwb-message").inner_text()


def shot(page, cls: str, path: Path) -> None:
    loc = page.locator(cls).first
    loc.scroll_into_view_if_needed()
    loc.screenshot(path=str(path))


def test_qualification_fail_read_guideline_retry_pass_from_the_keyboard(lab, page, artifacts):
    from alworkbench.labels.quality import QUALIFICATION_STRATEGY, add_gold
    from alworkbench.project import Project

    proj = lab.root / "proj_qualify"
    p = Project.init(proj, "digits", source={"limit": 120}, query={"batch_size": 4},
                     guideline={"version": "1", "text": GUIDE},
                     quality={"qualification_items": 3, "pass_mark": 1.0})
    save_pixels(p, proj)
    truth = {it.id: it.label for it in p.items}
    gold = [it.id for it in p.items[:6]]
    assert add_gold(p.store, [(sid, truth[sid]) for sid in gold], multilabel=False, source="test",
                    known_ids=list(truth))["added"] == 6
    p.close()
    write_notebook(lab.root / "qualify.ipynb", cells(proj, "quinn"))
    open_and_run(page, lab, "qualify.ipynb")
    page.wait_for_function(f"() => {{ const r = document.querySelector('{LROOT}'); "
                           "return r && r.dataset.itemId && r.dataset.test === '1'; }", timeout=120_000)
    assert focused(page, LROOT), "the widget is not focused on render"
    # a first-time annotator reads the guideline before the first answer: Enter acknowledges it
    page.locator(f"{LROOT} .alwb-guideline-banner").wait_for(state="visible")
    page.keyboard.press("Enter")
    page.locator(f"{LROOT} .alwb-guideline-banner").wait_for(state="hidden")
    cells_before = page.locator(".jp-Notebook .jp-Cell").count()
    position = page.locator(f"{LROOT} .alwb-position")
    assert position.inner_text() == ("Qualification test: item 1 of 3 \u2014 answers are scored against known "
                                     "answers, no suggestions")
    assert page.locator(f"{LROOT} .alwb-pred").count() == 0
    assert "no suggestions" in page.locator(f"{LROOT} .alwb-predictions").inner_text()
    assert not page.locator(f"{LROOT} .alwb-accept").is_visible()

    # first test: the first answer wrong, the other two right
    first = []
    for i in range(3):
        sid, _ = state(page, LROOT)
        assert sid in gold and position.inner_text().startswith(f"Qualification test: item {i + 1} of 3")
        value = wrong(truth[sid]) if i == 0 else truth[sid]
        first.append((sid, value))
        press(page, LROOT, key_for(value))
    qual = page.locator(f"{LROOT} .alwb-qual")
    page.wait_for_function(f"() => document.querySelector('{LROOT}').dataset.qualification === 'failed'")
    assert page.locator(f"{LROOT} .alwb-qual-result").inner_text() == \
        "Qualification test failed: 2 of 3 correct (67%); the pass mark is 100%."
    assert "a 7 with a bar across is still a seven" in page.locator(f"{LROOT} .alwb-qual-guideline").inner_text()
    retry = page.locator(f"{LROOT} .alwb-qual-retry")
    assert retry.is_visible() and "I have read the guideline" in retry.inner_text()
    assert not page.locator(f"{LROOT} img.alwb-image").is_visible()
    shot(page, ".alwb-labeller", artifacts / "qualification_failed.png")
    # a class key now does nothing (no item), the store is unchanged
    n_events = len(_events(proj))
    page.keyboard.press("4")
    settle(page)
    assert len(_events(proj)) == n_events and state(page, LROOT)[0] == ""
    # Enter (the widget has focus) = the retry button: acknowledges the guideline, a new test starts
    assert focused(page, LROOT)
    press(page, LROOT, "Enter")
    page.wait_for_function(f"() => document.querySelector('{LROOT}').dataset.test === '1'")
    assert not qual.is_visible()
    second = []
    for i in range(3):
        sid, _ = state(page, LROOT)
        assert position.inner_text().startswith(f"Qualification test: item {i + 1} of 3")
        second.append((sid, truth[sid]))
        press(page, LROOT, key_for(truth[sid]))
    # passed: the result is shown and an ordinary batch follows at once
    page.wait_for_function(f"() => document.querySelector('{LROOT}').dataset.qualification === 'passed'")
    assert page.locator(f"{LROOT} .alwb-qual-result").inner_text() == \
        "Qualification test passed: 3 of 3 correct (100%); the pass mark is 100%."
    assert page.locator(LROOT).get_attribute("data-test") == "0" and state(page, LROOT)[0]
    assert position.inner_text().startswith("round ") and "item 1 of 4" in position.inner_text()
    assert page.locator(f"{LROOT} .alwb-notice").is_hidden()
    assert page.locator(".jp-Notebook .jp-Cell").count() == cells_before, "a JupyterLab shortcut fired"
    assert_clean(page)
    shot(page, ".alwb-labeller", artifacts / "qualification_passed.png")

    # the store: exactly 3 + 3 test answers, two scored tests, the guideline acknowledged after the failure
    events = _events(proj)
    answers = [e for e in events if e["kind"] in ("label", "tags", "skip", "flag")]
    assert [(e["sample_id"], e["value"]) for e in answers] == first + second
    assert all(e["strategy"] == QUALIFICATION_STRATEGY and e["annotator"] == "quinn" and e["kind"] == "label"
               for e in answers)
    assert not [e for e in events if e["kind"] == "undo"]
    quals, acks = _records(proj, "qualification"), _records(proj, "guideline_ack")
    assert [(q["annotator"], q["passed"], q["correct"], q["n"]) for q in quals] == [
        ("quinn", False, 2, 3), ("quinn", True, 3, 3)]
    after_failure = [a for a in acks if quals[0]["id"] < a["id"] < quals[1]["id"]]
    assert [(a["annotator"], a["version"]) for a in after_failure] == [("quinn", "1")]
    assert not [a for a in acks if a["id"] > quals[1]["id"]]


def test_reviewer_mode_skip_refused_accept_correct_with_reason_accept(lab, page, artifacts):
    from alworkbench import Answer
    from alworkbench.labels.quality import QualityView, add_gold
    from alworkbench.project import Project

    proj = lab.root / "proj_review"
    p = Project.init(proj, "digits", source={"limit": 80}, query={"batch_size": 3},
                     guideline={"version": "1", "text": GUIDE}, quality={"review_sample": 1.0})
    X = save_pixels(p, proj)
    truth = {it.id: it.label for it in p.items}
    ana = p.session(annotator="ana", embeddings=X)
    flagged, disputed, sampled = [bi.item.id for bi in ana.next_batch().items]
    ana.submit(flagged, Answer.flag("blurry: a 1 or a 7?"))
    ana.submit(disputed, Answer.of_label(truth[disputed]))
    ana.submit(sampled, Answer.of_label(truth[sampled]))
    bob = p.session(annotator="bob", embeddings=X)
    bob.enqueue([disputed])
    bob.submit(disputed, Answer.of_label(wrong(truth[disputed])))
    ana.close()
    bob.close()
    # known answers on 30 other items: the reviewer's session trains a model on them when it opens, whose
    # suggestions the queue shows (gold is never queued for review)
    others = [sid for sid in truth if sid not in (flagged, disputed, sampled)][:30]
    add_gold(p.store, [(sid, truth[sid]) for sid in others], multilabel=False, source="test", known_ids=list(truth))
    p.close()

    write_notebook(lab.root / "review.ipynb", cells(proj, "rita", mode="review"))
    open_and_run(page, lab, "review.ipynb")
    page.wait_for_selector(f"{RROOT} img.alwb-image", state="visible", timeout=120_000)
    page.wait_for_function(f"() => {{ const r = document.querySelector('{RROOT}'); return r && r.dataset.itemId; }}")
    assert focused(page, RROOT), "the reviewer's widget is not focused on render"
    cells_before = page.locator(".jp-Notebook .jp-Cell").count()
    position = page.locator(f"{RROOT} .alwb-review-position")
    # 1. the flag: who answered what (with the note), why it is queued; n skips it without deciding
    assert state(page, RROOT)[0] == flagged
    assert position.inner_text() == "item 1 of 3 in the review queue"
    assert page.locator(f"{RROOT} .alwb-review-reason").all_inner_texts() == ["flagged by an annotator"]
    row = page.locator(f"{RROOT} .alwb-review-answer[data-annotator='ana']")
    assert "blurry: a 1 or a 7?" in row.inner_text() and row.get_attribute("data-kind") == "flag"
    assert "review" in page.locator(f"{RROOT} .alwb-review-title").inner_text()
    assert press(page, RROOT, "n") == disputed
    # 2. the disagreement: both answers, a tie, the model's suggestion
    assert position.inner_text() == "item 2 of 3 in the review queue"
    answers = {r.get_attribute("data-annotator"): r.inner_text()
               for r in page.locator(f"{RROOT} .alwb-review-answer").all()}
    assert answers.keys() == {"ana", "bob"} and truth[disputed] in answers["ana"] \
        and wrong(truth[disputed]) in answers["bob"]
    assert "tie" in page.locator(f"{RROOT} .alwb-review-consensus").inner_text()
    assert "the annotators disagree" in page.locator(f"{RROOT} .alwb-review-reasons").inner_text()
    page.wait_for_function(f"() => document.querySelectorAll('{RROOT} .alwb-review-suggestion .alwb-pred').length"
                           " === 3", timeout=60_000)   # the model fitted at open (also if it lands meanwhile)
    assert page.locator(f"{RROOT} .alwb-review-suggestion .alwb-pred-title").inner_text() == "the model suggests:"
    # Enter = accept: refused by the core (they disagree), the message is shown, nothing stored, same item
    _, seq = state(page, RROOT)
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => document.querySelector('{RROOT} .alwb-message').textContent.includes('disagree')")
    settle(page)
    assert state(page, RROOT) == (disputed, seq) and _records(proj, "review") == []
    # a class key starts a correction: the reason box takes focus; Escape cancels it
    reason = f"{RROOT} .alwb-reason-input"
    page.keyboard.press(key_for(wrong(truth[disputed])))
    page.wait_for_function(f"() => document.activeElement === document.querySelector({reason!r})")
    page.keyboard.press("Escape")
    assert focused(page, RROOT) and page.locator(reason).is_hidden()
    # again, the right class; Enter with no reason is refused (the core's message), the box keeps focus
    page.keyboard.press(key_for(truth[disputed]))
    page.wait_for_function(f"() => document.activeElement === document.querySelector({reason!r})")
    assert page.locator(f"{RROOT} .alwb-reason-label").inner_text() == f"correct to {truth[disputed]}:"
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => document.querySelector('{RROOT} .alwb-message').textContent.includes('reason')")
    settle(page)
    assert state(page, RROOT) == (disputed, seq) and focused(page, reason) and _records(proj, "review") == []
    # typing the reason: its letters (a accepts, n skips elsewhere) stay in the box; Enter saves
    text = "ana is right: bob read a stray mark as a stroke"
    page.keyboard.type(text)
    assert state(page, RROOT) == (disputed, seq) and page.locator(reason).input_value() == text
    assert press(page, RROOT, "Enter") == sampled
    assert focused(page, RROOT)
    # 3. the sampled answer: Enter accepts it
    assert position.inner_text() == "item 2 of 2 in the review queue"
    assert "sampled from ana's answers" in page.locator(f"{RROOT} .alwb-review-reasons").inner_text()
    assert press(page, RROOT, "Enter") == flagged     # only the skipped flag is left
    assert position.inner_text() == "item 1 of 1 in the review queue"
    assert page.locator(".jp-Notebook .jp-Cell").count() == cells_before, "a JupyterLab shortcut fired"
    assert_clean(page)
    shot(page, ".alwb-reviewer", artifacts / "reviewer.png")

    # the store: exactly two review records, and the derived review states and final labels
    recs = _records(proj, "review")
    assert [(r["item_id"], r["action"], r.get("label"), r["reason"], r["reviewer"]) for r in recs] == [
        (disputed, "correct", truth[disputed], text, "rita"), (sampled, "accept", truth[sampled], "", "rita")]
    p = Project.open(proj)
    try:
        view = QualityView(p.store, p.config)
        st = view.item_state(disputed)
        assert st["review_state"] == "corrected" and st["final"] == truth[disputed] and st["source"] == "review"
        st = view.item_state(sampled)
        assert st["review_state"] == "accepted" and st["final"] == truth[sampled]
        assert view.item_state(flagged)["review_state"] == "unreviewed"
        assert not [e for e in p.store.events() if e["annotator"] == "rita"], "the reviewer stored an answer"
    finally:
        p.close()


def _events(project_dir: Path) -> list[dict]:
    from alworkbench.labels import LabelStore

    with LabelStore(project_dir / "labels.sqlite") as st:
        return st.events()


def _records(project_dir: Path, kind: str) -> list[dict]:
    from alworkbench.labels import LabelStore

    with LabelStore(project_dir / "labels.sqlite") as st:
        return st.records(kind)
