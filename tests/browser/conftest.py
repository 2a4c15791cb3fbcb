"""Fixtures that run JupyterLab 4 on 127.0.0.1 and drive it with Playwright in the system Chromium.

Recipe: JupyterLab with a random port and token, HOME in a temp dir, ``expose_app_in_browser`` so the test can
run cells through ``window.jupyterapp``; a persistent Chromium context (``launch()`` refuses a user-data-dir).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("ALWB_CHROMIUM", "/usr/bin/chromium")
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("ALWB_BROWSER_ARTIFACTS", "")) if os.environ.get("ALWB_BROWSER_ARTIFACTS") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _need_browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; or set ALWB_CHROMIUM)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; never `playwright install`)")


class Lab:
    def __init__(self, base: str, token: str, root: Path, proc: subprocess.Popen, log: Path):
        self.base, self.token, self.root, self.proc, self.log = base, token, root, proc, log

    def api(self, path: str, method: str = "GET", body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.base}{path}?token={self.token}", method=method, data=data,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=20) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def shutdown_kernels(self) -> None:
        for s in self.api("/api/sessions"):
            self.api(f"/api/sessions/{s['id']}", method="DELETE")

    def kernel_pids(self) -> list[int]:
        """PIDs of this server's kernel processes: its children whose full command line (from /proc, or psutil
        where there is no /proc; never `ps` text, which is cut at 80 columns) runs ipykernel."""
        return [pid for pid, argv in _children(self.proc.pid) if any("ipykernel" in arg for arg in argv)]


def _children(ppid: int) -> list[tuple[int, list[str]]]:
    """``(pid, argv)`` of the live children of ``ppid``."""
    if not os.path.isdir("/proc/self"):
        import psutil

        out = []
        for child in psutil.Process(ppid).children():
            try:
                out.append((child.pid, child.cmdline()))
            except psutil.Error:
                pass
        return out
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
            # the command name (in parentheses) may contain spaces: fields after the last ")" are fixed
            fields = stat[stat.rindex(b")") + 2:].split()
            if fields[0] == b"Z" or int(fields[1]) != ppid:  # zombie (killed, not reaped yet) or not a child
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = [os.fsdecode(a) for a in fh.read().split(b"\0") if a]
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
        out.append((int(entry), argv))
    return out


def start_lab(home: Path, root: Path) -> Lab:
    """Start JupyterLab for ``root`` with HOME=``home``; returns when /api/status answers (or raises)."""
    settings = home / ".jupyter" / "lab" / "user-settings" / "@jupyterlab"
    (settings / "notebook-extension").mkdir(parents=True, exist_ok=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    (settings / "apputils-extension").mkdir(parents=True, exist_ok=True)
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}')
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, HOME=str(home), FIFTYONE_DO_NOT_TRACK="true", PYTHONUNBUFFERED="1",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
               PYTHONPATH=os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    env.pop("ALWB_HEADLESS", None)
    log = home / "jupyter.log"
    jupyter = Path(sys.executable).with_name("jupyter")
    cmd = [str(jupyter) if jupyter.exists() else "jupyter", "lab", "--no-browser", "--allow-root",
           "--ip=127.0.0.1", f"--port={port}", "--port-retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    proc = subprocess.Popen(cmd, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=str(root))
    base = f"http://127.0.0.1:{port}"
    t0 = time.time()
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                if r.status == 200:
                    return Lab(base, token, root, proc, log)
        except OSError:
            pass
        if proc.poll() is not None or time.time() - t0 > 90:
            proc.kill()
            raise RuntimeError(f"JupyterLab did not start in 90 s; log:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


def stop_lab(lab: Lab) -> None:
    lab.proc.send_signal(signal.SIGTERM)
    try:
        lab.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        lab.proc.kill()


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    _need_browser()
    lab = start_lab(tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("nbroot"))
    yield lab
    stop_lab(lab)


@pytest.fixture(scope="session")
def browser_ctx(lab, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROME_ARGS,
            viewport={"width": 1400, "height": 1100})
        yield ctx
        ctx.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def page(browser_ctx, lab, request, tmp_path):
    pg = browser_ctx.new_page()
    pg.alwb_errors = []
    pg.alwb_console = []
    pg.on("pageerror", lambda e: pg.alwb_errors.append(f"pageerror: {e}"))
    pg.on("console", lambda m: pg.alwb_console.append(f"console.{m.type}: {m.text}"))
    yield pg
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:  # leave evidence: a screenshot, the widget's HTML and the console
        d = ARTIFACTS or Path(os.environ.get("TMPDIR", "/tmp")) / "alwb-browser-failures"
        d.mkdir(parents=True, exist_ok=True)
        name = request.node.name
        try:
            pg.screenshot(path=str(d / f"{name}.png"), full_page=True)
            (d / f"{name}.html").write_text(pg.content())
        except Exception as e:  # the page may be gone; the console log below still helps
            pg.alwb_console.append(f"(screenshot failed: {e})")
        (d / f"{name}.console.txt").write_text("\n".join(pg.alwb_console + pg.alwb_errors))
        print(f"browser evidence saved under {d}")
    pg.close()
    lab.shutdown_kernels()


@pytest.fixture
def artifacts(tmp_path):
    d = ARTIFACTS or (tmp_path / "artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


def write_notebook(path: Path, cells: list[str]) -> None:
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {},
                     "outputs": [], "source": src} for i, src in enumerate(cells)],
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                       "language_info": {"name": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb, indent=1))


KERNEL_IDLE_JS = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle';
}"""


def open_and_run(page, lab: Lab, nb_name: str, timeout: int = 120_000):
    page.goto(f"{lab.base}/lab/tree/{nb_name}?token={lab.token}&reset", wait_until="domcontentloaded")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout)
    page.wait_for_function(KERNEL_IDLE_JS, timeout=timeout)
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")


def shutil_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
