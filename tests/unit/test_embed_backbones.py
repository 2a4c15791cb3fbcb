"""Backbones: determinism, preprocessing fast path, torchvision/timm construction, the offline weights policy."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from alworkbench.embed import DEFAULT_BACKBONE  # noqa: E402
from alworkbench.embed import backbones as B  # noqa: E402
from alworkbench.errors import ConfigError, MissingWeightsError  # noqa: E402


def _images(n=6, size=(28, 28), seed=0, mode="L"):
    rng = np.random.default_rng(seed)
    shape = size[::-1] if mode == "L" else size[::-1] + (3,)
    return [Image.fromarray((rng.random(shape) * 255).astype(np.uint8), mode).convert("RGB") for _ in range(n)]


def test_default_is_randconv_and_deterministic_without_touching_global_rng():
    assert DEFAULT_BACKBONE == "randconv"
    before = torch.get_rng_state()
    a = B.get_backbone(DEFAULT_BACKBONE, device="cpu")
    b = B.get_backbone(DEFAULT_BACKBONE, device="cpu")
    assert torch.equal(before, torch.get_rng_state())
    imgs = _images()
    fa, fb = a.embed_images(imgs), b.embed_images(imgs)
    assert fa.shape == (6, a.dim) and fa.dtype == np.float32 and a.dim == 1024
    np.testing.assert_array_equal(fa, fb)
    assert a.key == b.key and "randconv" in a.key and "seed=" in a.key
    assert np.isfinite(fa).all() and fa.std() > 0
    # different images -> different features
    assert not np.allclose(fa[0], fa[1])


def test_uint8_batch_fast_path_matches_per_image_transform():
    bb = B.get_backbone("randconv", device="cpu")
    rng = np.random.default_rng(1)
    px = (rng.random((5, 28, 28)) * 255).astype(np.uint8)
    batch = bb.transform_uint8_batch(px)
    single = torch.stack([bb.transform(Image.fromarray(p, "L").convert("RGB")) for p in px])
    torch.testing.assert_close(batch, single)
    rgb = (rng.random((3, 20, 24, 3)) * 255).astype(np.uint8)
    single_rgb = torch.stack([bb.transform(Image.fromarray(p, "RGB")) for p in rgb])
    torch.testing.assert_close(bb.transform_uint8_batch(rgb), single_rgb)


def test_grayscale_shortcut_equals_full_rgb_convolution(monkeypatch):
    bb = B.get_backbone("randconv", device="cpu")
    x = torch.stack([bb.transform(im) for im in _images(4)])
    fast = bb.module(x)
    monkeypatch.setattr(B.RandConv, "_gray", staticmethod(lambda t: False))
    full = bb.module(x)
    torch.testing.assert_close(fast, full, rtol=1e-4, atol=1e-5)


def test_randconv_is_invariant_to_brightness_and_nearly_to_contrast():
    bb = B.get_backbone("randconv", device="cpu")
    px = (np.random.default_rng(2).random((1, 28, 28)) * 80 + 30).astype(np.uint8)  # 30..110
    brighter = px + 40                                                                 # no clipping
    contrast = (px.astype(np.int32) * 2 + 10).astype(np.uint8)                          # 70..230
    f = bb.forward(bb.transform_uint8_batch(np.concatenate([px, brighter, contrast])))
    np.testing.assert_allclose(f[0], f[1], rtol=1e-3, atol=1e-5)
    # contrast is normalised by std + 0.05 (the floor keeps flat images from amplifying noise): close, not equal
    assert np.corrcoef(f[0], f[2])[0, 1] > 0.95


def test_randconv_linear_probe_on_real_digits_beats_pixels():
    from sklearn.datasets import load_digits

    from alworkbench.head.torch_head import TorchHead

    X, y = load_digits(return_X_y=True)
    px = (X * (255 / 16)).astype(np.uint8).reshape(-1, 8, 8)
    accs = {}
    for name in ("randconv", "pixels"):
        bb = B.get_backbone(name, device="cpu")
        F = np.concatenate([bb.forward(bb.transform_uint8_batch(px[s:s + 256])) for s in range(0, len(px), 256)])
        head = TorchHead(device="cpu").fit(F[:1000], y[:1000])
        accs[name] = (head.predict(F[1000:]) == y[1000:]).mean()
    assert accs["randconv"] > 0.93, accs
    assert accs["randconv"] >= accs["pixels"] - 0.01, accs


def test_pixels_backbone():
    bb = B.get_backbone("pixels", device="cpu")
    f = bb.embed_images(_images(2, size=(40, 30)))
    assert f.shape == (2, 784) and f.min() >= 0 and f.max() <= 1


def test_resnet18_random_init_and_local_weights_file(tmp_path):
    bb = B.get_backbone("resnet18", weights="none", device="cpu")
    assert bb.dim == 512 and "random-init" in bb.key and "crop=224" in bb.key
    imgs = _images(2, size=(64, 48), mode="RGB")
    f = bb.embed_images(imgs)
    assert f.shape == (2, 512) and np.isfinite(f).all()
    # a checkpoint saved without the classifier loads, and gives the same features
    path = tmp_path / "my-resnet18.pth"
    torch.save(bb.module.state_dict(), path)
    loaded = B.get_backbone("resnet18", weights=str(path), device="cpu")
    assert "file:my-resnet18.pth" in loaded.key and loaded.key != bb.key
    np.testing.assert_allclose(loaded.embed_images(imgs), f, rtol=1e-5, atol=1e-5)
    # a file for another architecture is refused by name
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(MissingWeightsError, match="does not match"):
        B.get_backbone("resnet18", weights=str(tmp_path / "other.pth"), device="cpu")
    with pytest.raises(MissingWeightsError, match="does not exist"):
        B.get_backbone("resnet18", weights=str(tmp_path / "absent.pth"), device="cpu")


def test_random_init_is_the_same_model_in_every_process_and_leaves_the_callers_rng_alone():
    """Cached rows carry the backbone key "...|random-init|..." whichever process made them (the kernel, `alwb
    embed`, a Ray actor), so a random-init model must be the same model everywhere: built from a fixed seed, without
    consuming or resetting the caller's torch RNG."""
    import subprocess
    import sys

    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = B.get_backbone("resnet18", weights="none", device="cpu")
    assert torch.equal(torch.rand(3), expected_next)   # the caller's RNG stream is untouched
    b = B.get_backbone("resnet18", weights="none", device="cpu")
    imgs = _images(2, size=(64, 48), mode="RGB")
    fa = a.embed_images(imgs)
    np.testing.assert_array_equal(fa, b.embed_images(imgs))
    # another process (another global seed) builds the same weights
    code = ("import torch, sys; torch.manual_seed(999); from alworkbench.embed import backbones as B;"
            "m = B.get_backbone('resnet18', weights='none', device='cpu').module;"
            "sys.stdout.write(repr(float(sum(p.double().sum() for p in m.parameters()))))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    mine = float(sum(p.double().sum() for p in a.module.parameters()))
    assert float(other) == mine


def test_default_weights_offline_raise_missing_weights_naming_file_and_folder(tmp_path, monkeypatch):
    from urllib.error import URLError

    import torch.hub

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torchhome"))

    def offline(url, dst, *a, **kw):  # what urlopen raises on a machine without internet
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(MissingWeightsError) as info:
        B.get_backbone("resnet18", weights="default", device="cpu")
    msg = str(info.value)
    assert "resnet18-f37072fd.pth" in msg
    assert str(tmp_path / "torchhome" / "hub" / "checkpoints") in msg
    assert "TORCH_HOME" in msg and "\n" not in msg


def test_default_weights_load_from_the_hub_folder_when_present(tmp_path, monkeypatch):
    """A checkpoint copied into $TORCH_HOME/hub/checkpoints is used without any download."""
    import torchvision.models as tvm

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    model = tvm.resnet18(weights=None)
    torch.save(model.state_dict(), folder / "resnet18-f37072fd.pth")
    bb = B.get_backbone("resnet18", weights="default", device="cpu")
    assert "IMAGENET1K_V1:resnet18-f37072fd.pth" in bb.key
    with torch.no_grad():
        model.fc = torch.nn.Identity()
        x = torch.stack([bb.transform(im) for im in _images(1, mode="RGB")])
        np.testing.assert_allclose(bb.forward(x), model.eval()(x).numpy(), rtol=1e-4, atol=1e-5)


def test_unknown_names_and_bad_weights():
    with pytest.raises(ConfigError, match="unknown backbone 'resnet1000'"):
        B.get_backbone("resnet1000", device="cpu")
    with pytest.raises(ConfigError, match="no trainable weights"):
        B.get_backbone("randconv", weights="/x.pth", device="cpu")


def test_timm_random_init():
    pytest.importorskip("timm")
    bb = B.get_backbone("timm:resnet18", weights="none", device="cpu")
    assert bb.dim == 512 and bb.key.startswith("timm:resnet18|random-init")
    assert bb.embed_images(_images(1, size=(40, 40), mode="RGB")).shape == (1, 512)
    with pytest.raises(ConfigError, match="timm has no model"):
        B.get_backbone("timm:not_a_model_xyz", weights="none", device="cpu")


@pytest.mark.parametrize("name,dim", [("resnet50", 2048), ("efficientnet_b0", 1280), ("vit_b_16", 768),
                                      ("convnext_tiny", 768)])
def test_other_torchvision_backbones_drop_their_classifier(name, dim):
    bb = B.get_backbone(name, weights="none", device="cpu")
    assert bb.dim == dim
    assert bb.embed_images(_images(1, size=(50, 40), mode="RGB")).shape == (1, dim)
