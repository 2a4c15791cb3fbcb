"""Issue 9, finding 8: no hidden global state (Pillow's bomb limit, torch threads, FiftyOne's env, matplotlib)."""
import os
import sys
import subprocess
import threading

import numpy as np
import pytest
from PIL import Image

from alworkbench.data import load_image, probe_image
from alworkbench.errors import ImageLoadError


def test_finding8_pillow_bomb_limit_is_never_touched(tmp_path, monkeypatch):
    Image.new("RGB", (40, 30), (9, 9, 9)).save(tmp_path / "a.png")
    factory, accept = Image.OPEN["PNG"]
    seen = []

    def watching_factory(fp, filename):  # runs while our open is in flight
        seen.append(Image.MAX_IMAGE_PIXELS)
        return factory(fp, filename)

    monkeypatch.setitem(Image.OPEN, "PNG", (watching_factory, accept))
    before = Image.MAX_IMAGE_PIXELS
    assert probe_image(tmp_path / "a.png") is None
    assert load_image(tmp_path / "a.png").size == (40, 30)
    assert seen and all(v == before for v in seen), seen


def test_finding8_our_limit_applies_without_pillows_global(tmp_path, monkeypatch):
    # the user lowered Pillow's limit for their own code: our configured limit decides for our loads, and their
    # setting still protects their Image.open calls
    Image.new("RGB", (100, 100)).save(tmp_path / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert probe_image(tmp_path / "a.png") is None
    with pytest.raises(ImageLoadError, match="10000 pixels > limit 5000"):
        load_image(tmp_path / "a.png", max_pixels=5000)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(tmp_path / "a.png")
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_finding8_embedding_leaves_torch_threads_alone():
    torch = pytest.importorskip("torch")
    from alworkbench.data import ImageSource
    from alworkbench.embed import embed_source, get_backbone

    before = torch.get_num_threads()
    seen = []
    b = get_backbone("randconv", device="cpu")
    real = b.module.forward

    def forward(x):
        seen.append(torch.get_num_threads())
        return real(x)

    b.module.forward = forward
    src = ImageSource.builtin("digits", limit=40)
    embed_source(src, b, None, batch_size=16, progress=False)
    b.embed_images([src.load(src.items[0])])
    assert seen and set(seen) == {before} and torch.get_num_threads() == before


def test_finding8_plots_leave_matplotlib_backend_alone(tmp_path):
    # in a fresh interpreter whose backend is not Agg: plotting must not switch it
    code = (
        "import matplotlib\n"
        "matplotlib.use('svg')\n"
        "from alworkbench.plots import plot_coverage, plot_learning_curves\n"
        "import sys\n"
        "out = sys.argv[1]\n"
        "plot_coverage({'a': 3, 'b': 1}, out=out + '/c.png')\n"
        "r = {'dataset': 'd', 'backbone': 'b', 'seeds': [0], 'results': {'random': {'0': "
        "[{'n_labels': 10, 'accuracy': 0.5}, {'n_labels': 20, 'accuracy': 0.6}]}}}\n"
        "plot_learning_curves(r, out=out + '/l.png')\n"
        "import matplotlib.pyplot as plt\n"
        "print(matplotlib.get_backend(), len(plt.get_fignums()))\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["svg", "0"]
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "l.png").stat().st_size > 1000
