"""Under ALWB_CI (set by .ci/run) a skipped test fails the run, so a missing browser, dataset or package cannot
hide a broken feature; only the listed expected skips pass."""
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


def _run(tmp_path, body, ci):
    shutil.copyfile(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_x.py").write_text("import pytest\n\n" + body)
    env = {"PATH": "/usr/bin:/bin", "ALWB_CI": "1"} if ci else {"PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True)


def test_unexpected_skip_fails_only_in_ci(tmp_path):
    body = "def test_a():\n    pytest.skip('no Chromium at /x')\n"
    assert _run(tmp_path, body, ci=False).returncode == 0
    r = _run(tmp_path, body, ci=True)
    assert r.returncode == 1 and "no Chromium at /x" in r.stdout


def test_expected_skip_and_xfail_pass_in_ci(tmp_path):
    body = ("def test_a():\n    pytest.skip('SCIPY_ARRAY_API is not set: not checking array_api input')\n\n"
            "@pytest.mark.xfail(reason='known')\ndef test_b():\n    assert False\n")
    r = _run(tmp_path, body, ci=True)
    assert r.returncode == 0, r.stdout


def test_finding11_module_level_importorskip_fails_in_ci(tmp_path):
    # a collection skip (module-level importorskip) with another test that passes: green only outside CI
    body = ("pytest.importorskip('alwb_no_such_module_xyz')\n\n"
            "def test_never_runs():\n    assert False\n")
    (tmp_path / "test_ok.py").write_text("def test_fine():\n    pass\n")
    assert _run(tmp_path, body, ci=False).returncode == 0
    r = _run(tmp_path, body, ci=True)
    assert r.returncode == 1, r.stdout
    assert "alwb_no_such_module_xyz" in r.stdout and "test_x.py (whole module, at collection)" in r.stdout


def test_finding11_everything_skipped_at_collection_fails_in_ci(tmp_path):
    body = "pytest.skip('no GPU here', allow_module_level=True)\n\ndef test_a():\n    pass\n"
    assert _run(tmp_path, body, ci=False).returncode in (0, 5)
    r = _run(tmp_path, body, ci=True)
    assert r.returncode == 1 and "no GPU here" in r.stdout, r.stdout
