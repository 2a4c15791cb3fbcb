"""The FiftyOne App, opened with alworkbench's launch_app, shows the project's samples with their labels and tags
in a real Chromium (Playwright). Set ALWB_UPDATE_SCREENSHOTS=1 to refresh docs/screenshots/fiftyone_app.png."""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("FIFTYONE_DATABASE_DIR", tempfile.mkdtemp(prefix="alwb-fo-db-"))
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

pytest.importorskip("fiftyone")
sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.fiftyone]

CHROMIUM = os.environ.get("ALWB_CHROMIUM", "/usr/bin/chromium")
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_project(tmp_path_factory):
    from sklearn.linear_model import LogisticRegression

    from alworkbench import Answer, Project
    from alworkbench.integrations import fiftyone_sync as fs
    from alworkbench.loop.oracle import Oracle
    from alworkbench.loop.session import Session

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; or set ALWB_CHROMIUM)")
    d = tmp_path_factory.mktemp("app") / "digits-app"
    project = Project.init(d, "digits", backbone="pixels", source={"limit": 60}, query={"batch_size": 10})
    X = project.source.pixels.reshape(60, -1).astype(np.float32) / 255.0
    session = Session(project, annotator="alice", embeddings=X, warm_start=False,
                      head_factory=lambda: LogisticRegression(max_iter=300))
    Oracle(session).label_batch(session.next_batch())
    session.retrain()
    batch = session.next_batch()
    flagged, skipped = batch.items[0].item.id, batch.items[1].item.id
    session.submit(flagged, Answer.flag("smudged"))
    session.submit(skipped, Answer.skip())
    fs.sync(project, session)
    ds = fs.get_dataset(project)
    ds.save_view("status", ds.sort_by("label_status"), overwrite=True)  # for the screenshot
    port = _free_port()
    app = fs.launch_app(project, session, port=port, address="127.0.0.1")
    ds = fs.get_dataset(project)
    yield {"project": project, "session": session, "app": app, "port": port, "ds": ds,
           "flagged": flagged, "skipped": skipped}
    app.close()
    fs.delete_dataset(project)
    session.close()
    project.close()


def test_app_shows_the_project_samples_with_their_tags(app_project, tmp_path):
    ds, port = app_project["ds"], app_project["port"]
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                    headless=True, args=CHROME_ARGS,
                                                    viewport={"width": 1400, "height": 900})
        try:
            page = ctx.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            base = f"http://127.0.0.1:{port}/datasets/{ds.name}"
            page.goto(base, wait_until="domcontentloaded")
            page.get_by_text(f"{len(ds)} samples").first.wait_for(timeout=60_000)
            for name in ("Dismiss", "Disable"):  # "Explore Enterprise" popover; analytics banner
                button = page.get_by_role("button", name=name)
                if button.count():
                    button.first.click()
            assert page.get_by_text("Accelerate your workflow").count() == 0
            assert page.get_by_text(ds.name).count() >= 1
            for name in ("ground_truth", "label", "predictions_r1", "predictions", "label_status", "alwb_id"):
                assert page.get_by_text(name, exact=True).count() >= 1, name
            # tick "sample tags" in the sidebar so the tiles show them
            box = page.get_by_text("sample tags", exact=True).first.bounding_box()
            page.mouse.click(box["x"] - 16, box["y"] + box["height"] / 2)
            # the grid draws each sample's image on a canvas
            page.wait_for_function("() => document.querySelectorAll('canvas').length >= 12", timeout=30_000)
            # the saved views from launch_app: each tag is on its sample
            for view, tag, item in (("flagged", "flagged", app_project["flagged"]),
                                    ("skipped", "skipped", app_project["skipped"])):
                page.goto(f"{base}?view={view}", wait_until="domcontentloaded")
                page.get_by_text("1 sample", exact=True).first.wait_for(timeout=60_000)
                page.get_by_text(tag, exact=True).first.wait_for(timeout=30_000)
                assert ds.load_saved_view(view).values("alwb_id") == [item]
            # for the screenshot: flagged, labelled, skipped, unlabelled samples, in that order
            page.goto(f"{base}?view=status", wait_until="domcontentloaded")
            page.get_by_text(f"{len(ds)} samples").first.wait_for(timeout=60_000)
            page.get_by_text("skipped", exact=True).first.wait_for(timeout=30_000)
            page.get_by_text("flagged", exact=True).first.wait_for(timeout=30_000)
            page.wait_for_timeout(1500)  # let the tiles finish painting
            shot = tmp_path / "fiftyone_app.png"
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 20_000
            if os.environ.get("ALWB_UPDATE_SCREENSHOTS") == "1":
                out = REPO / "docs" / "screenshots" / "fiftyone_app.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, out)
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))
            if os.environ.get("ALWB_BROWSER_ARTIFACTS"):
                shutil.copy(tmp_path / "failure.png", Path(os.environ["ALWB_BROWSER_ARTIFACTS"]) / "fiftyone_app_failure.png")
            raise
        finally:
            ctx.close()
    assert not errors, errors


def test_app_selection_goes_back_to_the_labelling_queue(app_project):
    """What a person selects in the App (``app.selected``) becomes the session's next batch."""
    from alworkbench.integrations import fiftyone_sync as fs

    app, ds, session = app_project["app"], app_project["ds"], app_project["session"]
    chosen = ds.limit(4)
    app.select_samples(ids=chosen.values("id"))
    batch = fs.send_to_queue(session, app, reason="review")
    assert [bi.item.id for bi in batch.items] == chosen.values("alwb_id")
    assert batch.strategy == "queue:review"
