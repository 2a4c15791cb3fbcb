"""The core must import without torch, ipywidgets, IPython or FiftyOne (heavy imports live at the edges)."""
import subprocess
import sys

HEAVY = ["torch", "torchvision", "ipywidgets", "IPython", "anywidget", "fiftyone", "timm", "playwright",
         "psycopg", "ray"]  # psycopg: only when a postgresql:// store is opened; ray: only for `embed --ray`
CORE = ["alworkbench", "alworkbench.config", "alworkbench.types", "alworkbench.errors", "alworkbench.data",
        "alworkbench.labels", "alworkbench.query", "alworkbench.loop", "alworkbench.loop.session",
        "alworkbench.loop.simulation", "alworkbench.project", "alworkbench.cli", "alworkbench.export",
        "alworkbench.embed", "alworkbench.embed.ray_embed"]


def test_core_imports_no_heavy_dependency():
    code = (
        "import sys, importlib\n"
        f"for m in {CORE!r}: importlib.import_module(m)\n"
        f"bad = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"core imported heavy modules: {out.stdout.strip()}"


def test_core_importable_when_torch_is_missing():
    # simulate a machine without torch / ipywidgets / fiftyone: a meta-path hook that refuses them
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {HEAVY!r}: raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import alworkbench, alworkbench.loop.session, alworkbench.cli, alworkbench.project\n"
        "from alworkbench.labels import LabelStore\n"
        "from alworkbench.query import select\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_sqlite_store_never_imports_psycopg_and_a_missing_psycopg_is_one_clear_error(tmp_path):
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'psycopg': raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from alworkbench.labels import open_store\n"
        f"open_store({str(tmp_path / 'l.sqlite')!r}).close()\n"
        "try:\n"
        "    open_store('postgresql://ana@127.0.0.1:1/x')\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ("MissingDependencyError the PostgreSQL label store needs the 'psycopg' package: "
                                  "pip install 'alworkbench[postgresql]'"), out.stdout + out.stderr
