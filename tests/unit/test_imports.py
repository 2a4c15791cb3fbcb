"""The core must import without torch, ipywidgets, IPython or FiftyOne (heavy imports live at the edges)."""
import subprocess
import sys

HEAVY = ["torch", "torchvision", "ipywidgets", "IPython", "anywidget", "fiftyone", "timm", "playwright", "ray"]
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
