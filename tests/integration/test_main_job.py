"""The README main-job command: `alwb lab notebooks/01_quickstart.ipynb` serves JupyterLab on 127.0.0.1,
rooted at notebooks/ (JupyterLab roots the server at the folder of the notebook it is given)."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_alwb_lab_serves_the_quickstart_on_loopback(tmp_path):
    port = _free_port()
    env = {**os.environ, "HOME": str(tmp_path), "JUPYTER_CONFIG_DIR": str(tmp_path / ".jupyter")}
    proc = subprocess.Popen([sys.executable, "-m", "alworkbench.cli", "lab", "notebooks/01_quickstart.ipynb",
                             "--no-browser", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        token, log = None, []
        deadline = time.time() + 90
        while time.time() < deadline and token is None:
            line = proc.stdout.readline()
            log.append(line)
            m = re.search(r"http://127\.0\.0\.1:%d/lab\?token=(\w+)" % port, line)
            if m:
                token = m.group(1)
        assert token, "".join(log)
        for _ in range(100):  # the URL is logged a moment before the socket accepts
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=5)
                break
            except OSError:
                time.sleep(0.3)
        url = f"http://127.0.0.1:{port}/api/contents/01_quickstart.ipynb?token={token}"
        nb = json.load(urllib.request.urlopen(url, timeout=30))
        assert nb["type"] == "notebook" and "Workbench" in json.dumps(nb["content"])
        # a SIGTERM to `alwb lab` (a process manager, `kill`) stops the server itself: nothing goes on serving
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, "JupyterLab still serves after alwb lab was terminated"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
