"""Issue 9, finding 11: the browser tests find kernel processes from full command lines, not `ps` text (cut at 80
columns when not on a terminal), so a checkout at a long path still finds its kernels."""
import importlib.util
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).resolve().parents[1] / "browser" / "conftest.py"


def _browser_conftest():
    spec = importlib.util.spec_from_file_location("alwb_browser_conftest", CONFTEST)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_finding11_kernels_found_in_a_long_checkout_path(tmp_path):
    mod = _browser_conftest()
    long_dir = tmp_path / ("x" * 60) / ("checkout-" + "y" * 70)  # well past 80 columns
    long_dir.mkdir(parents=True)
    connection = long_dir / "kernel-1234.json"
    # what a server's kernel child looks like: python -m ipykernel_launcher -f <connection file in a long path>
    # a checkout at a long path: the interpreter itself (the venv's python) lives under it
    python = long_dir / "python"
    python.symlink_to(sys.executable)
    child = subprocess.Popen([str(python), "-c", "import sys, time; time.sleep(60)", "-m", "ipykernel_launcher",
                              "-f", str(connection)])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(long_dir)])
    try:
        lab = mod.Lab("http://127.0.0.1:1", "t", tmp_path, proc=type("P", (), {"pid": __import__("os").getpid()})(),
                      log=tmp_path / "log")
        assert lab.kernel_pids() == [child.pid]
        # the text `ps` gives a pipe would have lost the marker: the argument list is longer than 80 columns
        assert " ".join(map(str, child.args)).index("ipykernel") > 80
    finally:
        child.kill()
        other.kill()
        child.wait()
        other.wait()
