"""Feature extractors ("backbones") that turn images into fixed-length float32 vectors.

``get_backbone(name, weights, device)`` returns a :class:`Backbone`. Three families:

* ``"randconv"`` (the offline default, :data:`DEFAULT_BACKBONE`) and ``"pixels"``: need no download at all.
  ``randconv`` is a fixed-seed bank of random convolution filters at two scales, rectified two-sided and
  average-pooled over a spatial grid (a classic single-layer "random features" network). Its weights come
  from its own ``torch.Generator`` seeded with a constant, so every machine computes the same features.
  ``pixels`` is the resized grayscale image, flattened (a baseline).
* torchvision classifiers (``resnet18``, ``resnet50``, ``efficientnet_b0``, ``vit_b_16``, ``convnext_tiny``) with
  the classification layer removed. ``weights="default"`` means torchvision's DEFAULT weights; when they are not
  on this machine and cannot be downloaded, :class:`~alworkbench.errors.MissingWeightsError` names the file and
  the folder torch looks in. We never switch to another model silently. ``weights="none"`` is random init
  (tests); ``weights="/path/file.pth"`` loads a local checkpoint.
* ``"timm:<model>"`` via timm when installed, with the same weights policy.

Every backbone's preprocessing starts with ``ToImage()`` (PIL -> uint8 CHW tensor) and continues with tensor
ops only, so :meth:`Backbone.transform_uint8_batch` can run the identical pipeline on a whole uint8 batch
(the fast path for built-in datasets that expose ``.pixels``).

This module imports torch at import time: import it lazily (``alworkbench.embed`` does).
"""
from __future__ import annotations

import contextlib

import hashlib
import os
from typing import Callable, Optional, Sequence
from urllib.error import URLError
from urllib.parse import urlparse

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.transforms import v2

from ..errors import ConfigError, MissingDependencyError, MissingWeightsError

from . import DEFAULT_BACKBONE  # noqa: F401  (defined torch-free in alworkbench/embed/__init__.py)

from . import OFFLINE_BACKBONES, TORCHVISION_BACKBONES, available_backbones  # noqa: F401  (the one list)

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

# randconv hyper-parameters (part of the cache key; changing any of them changes the features)
_RC_SEED = 20240531
_RC_SIZE = 32
_RC_FILTERS = 64            # per scale; output dim = scales * filters * 2 (two-sided) * grid * grid
_RC_KERNELS = (5, 7)        # kernel size at scale 1 (full res) and scale 2 (half res)
_RC_GRID = 2
_RC_VERSION = 1
_RC_SUBBATCH = 16


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; anything else is passed to ``torch.device``."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"backbone.device: {device!r} is not a torch device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"backbone.device: {device!r} requested but torch.cuda.is_available() is False")
    return dev


class Backbone:
    """A frozen feature extractor.

    Attributes: ``name``, ``key`` (stable cache key: name + weights id + preprocessing), ``dim``, ``device``.
    ``transform(pil) -> float tensor (3, H, W)`` runs in DataLoader workers (picklable, CPU only);
    ``forward(batch) -> np.float32 (B, dim)``; ``embed_images(list_of_pil) -> np.float32 (N, dim)``.
    """

    def __init__(self, name: str, key: str, dim: int, module: nn.Module, transform: v2.Compose,
                 device: torch.device, small_ops: bool = False):
        self.name = name
        self.key = key
        self.dim = int(dim)
        self.device = device
        self.transform = transform
        self.module = module.eval().to(device)
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._cuda = device.type == "cuda"
        self.small_ops = bool(small_ops)  # many small ops (randconv, pixels); torch's thread count is left alone
        if self._cuda:
            self.module = self.module.to(memory_format=torch.channels_last)

    def __repr__(self) -> str:
        return f"Backbone({self.key!r}, dim={self.dim}, device={self.device})"

    # -- preprocessing ---------------------------------------------------------------------------
    def transform_uint8_batch(self, pixels: np.ndarray) -> torch.Tensor:
        """Apply :attr:`transform` to a uint8 batch ``(B, H, W)`` (grayscale) or ``(B, H, W, 3)`` (RGB).

        Gives the same tensor as ``transform(Image.fromarray(p).convert("RGB"))`` for each image ``p``, but for
        the whole batch at once (every step after ``ToImage`` is a tensor op that accepts a leading batch dim).
        """
        arr = np.asarray(pixels)
        if arr.dtype != np.uint8 or arr.ndim not in (3, 4):
            raise ValueError(f"expected uint8 (B,H,W) or (B,H,W,3) pixels, got {arr.dtype} {arr.shape}")
        t = torch.from_numpy(np.require(arr, requirements=['C', 'W']))
        if t.ndim == 3:
            t = t.unsqueeze(1).expand(-1, 3, -1, -1)
        else:
            t = t.permute(0, 3, 1, 2)
        t = t.contiguous()
        for step in self.transform.transforms:
            if isinstance(step, v2.ToImage):
                continue
            t = step(t)
        return t

    # -- inference -------------------------------------------------------------------------------
    def forward(self, batch: torch.Tensor) -> np.ndarray:
        """Embed a preprocessed batch ``(B, 3, H, W)``; returns float32 ``(B, dim)`` on the CPU."""
        with torch.inference_mode():
            x = batch.to(self.device, non_blocking=True)
            if self._cuda:
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cuda", dtype=torch.float16):
                    out = self.module(x)
            else:
                out = self.module(x)
            out = out.float().reshape(out.shape[0], -1)
        return out.cpu().numpy().astype(np.float32, copy=False)

    def embed_images(self, images: Sequence, batch_size: int = 64) -> np.ndarray:
        """Embed a list of PIL images (any mode; converted to RGB)."""
        out = np.empty((len(images), self.dim), dtype=np.float32)
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            batch = torch.stack([self.transform(im.convert("RGB")) for im in chunk])
            out[start:start + len(chunk)] = self.forward(batch)
        return out


# ------------------------------------------------------------------------------------------------
# offline backbones
# ------------------------------------------------------------------------------------------------
class _Pixels(nn.Module):
    """Grayscale pixels in [0, 1], flattened."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gray = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
        return gray.flatten(1)


class RandConv(nn.Module):
    """Fixed random filters at two scales, two-sided ReLU, average pooling over a ``grid x grid`` layout.

    Input: ``(B, 3, S, S)`` in [0, 1]. Each image is contrast-normalised (zero mean, unit std) first, so
    brightness/contrast changes do not move the features. Filters are zero-mean and unit-norm, drawn from a
    private ``torch.Generator`` seeded with ``seed`` (the global RNG is never touched). The threshold ``bias``
    keeps the rectified maps sparse. Output dim = ``len(kernels) * n_filters * 2 * grid**2``.
    """

    def __init__(self, n_filters: int = _RC_FILTERS, kernels: Sequence[int] = _RC_KERNELS,
                 grid: int = _RC_GRID, seed: int = _RC_SEED, bias: float = 0.5, stride: int = 1):
        super().__init__()
        gen = torch.Generator().manual_seed(int(seed))
        self.kernels = tuple(int(k) for k in kernels)
        self.grid = int(grid)
        self.bias = float(bias)
        self.stride = int(stride)
        for i, k in enumerate(self.kernels):
            w = torch.randn(n_filters, 3, k, k, generator=gen, dtype=torch.float32)
            w = w - w.mean(dim=(1, 2, 3), keepdim=True)
            w = w / w.flatten(1).norm(dim=1).clamp_min(1e-8)[:, None, None, None]
            self.register_buffer(f"w{i}", w)
        self.dim = len(self.kernels) * n_filters * 2 * self.grid * self.grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # small sub-batches keep every intermediate map in cache and out of fresh (page-faulting) allocations:
        # measured 3-4x less CPU time than one big batch
        if x.shape[0] > _RC_SUBBATCH:
            return torch.cat([self.forward(x[s:s + _RC_SUBBATCH]) for s in range(0, x.shape[0], _RC_SUBBATCH)])
        x = x.float()
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) / (std + 0.05)
        gray = self._gray(x)
        feats = []
        for i, k in enumerate(self.kernels):
            w = getattr(self, f"w{i}")
            inp = x if i == 0 else F.avg_pool2d(x, kernel_size=2 ** i)
            if gray:
                # grayscale replicated to RGB: conv over 3 equal channels == conv with channel-summed filters
                y = F.conv2d(inp[:, :1], w.sum(dim=1, keepdim=True), padding=k // 2, stride=self.stride)
            else:
                y = F.conv2d(inp, w, padding=k // 2, stride=self.stride)
            # two-sided rectification relu(y-b), relu(-y-b). With s = softshrink(y, b): relu(y-b) = (|s|+s)/2 and
            # relu(-y-b) = (|s|-s)/2, and pooling is linear, so pool s and |s| (in place) and combine.
            shrunk = F.softshrink(y, self.bias)
            del y
            p_s = self._pool(shrunk)
            p_a = self._pool(shrunk.abs_())
            feats.append((p_a + p_s) * 0.5)
            feats.append((p_a - p_s) * 0.5)
        return torch.cat(feats, dim=1)

    def _pool(self, y: torch.Tensor) -> torch.Tensor:
        h, w = y.shape[-2:]
        g = self.grid
        if h % g == 0 and w % g == 0:  # two contiguous-dim sums: ~2x faster than the pooling kernels on CPU
            b, c = y.shape[:2]
            rows = y.reshape(b, c, g, h // g, w).sum(dim=3)
            return rows.reshape(b, c, g, g, w // g).sum(dim=4).flatten(1) * (1.0 / ((h // g) * (w // g)))
        return F.adaptive_avg_pool2d(y, g).flatten(1)

    @staticmethod
    def _gray(x: torch.Tensor) -> bool:
        return bool(torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2]))


def _small_transform(size: int) -> v2.Compose:
    return v2.Compose([
        v2.ToImage(),
        v2.Resize((size, size), antialias=True),
        v2.ToDtype(torch.float32, scale=True),
    ])


def _randconv(device: torch.device, **params) -> Backbone:
    size = int(params.pop("size", _RC_SIZE))
    cfg = dict(n_filters=_RC_FILTERS, kernels=_RC_KERNELS, grid=_RC_GRID, seed=_RC_SEED, bias=0.5, stride=1)
    cfg.update(params)
    module = RandConv(**cfg)
    kernels = "x".join(str(k) for k in cfg["kernels"])
    key = (f"randconv-v{_RC_VERSION}|seed={cfg['seed']}|f={cfg['n_filters']}|k={kernels}|grid={cfg['grid']}|stride={cfg['stride']}"
           f"|bias={cfg['bias']}|size={size}")
    return Backbone("randconv", key, module.dim, module, _small_transform(size), device, small_ops=True)


def _pixels(device: torch.device, size: int = 28) -> Backbone:
    return Backbone("pixels", f"pixels|gray|size={size}", size * size, _Pixels(), _small_transform(size), device,
                    small_ops=True)


# ------------------------------------------------------------------------------------------------
# torchvision / timm
# ------------------------------------------------------------------------------------------------
def _imagenet_transform(resize: int, crop: int, mean=_IMAGENET_MEAN, std=_IMAGENET_STD) -> v2.Compose:
    return v2.Compose([
        v2.ToImage(),
        v2.Resize(resize, antialias=True),
        v2.CenterCrop(crop),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
    ])


def _strip_classifier(name: str, model: nn.Module) -> int:
    """Replace the classification layer by Identity in place; return the pooled feature dim."""
    if name.startswith("resnet"):
        dim = model.fc.in_features
        model.fc = nn.Identity()
    elif name.startswith("efficientnet"):
        dim = model.classifier[-1].in_features
        model.classifier = nn.Identity()
    elif name.startswith("vit"):
        dim = model.heads[-1].in_features
        model.heads = nn.Identity()
    elif name.startswith("convnext"):
        dim = model.classifier[-1].in_features
        model.classifier[-1] = nn.Identity()
    else:  # pragma: no cover - guarded by TORCHVISION_BACKBONES
        raise ConfigError(f"backbone.name: no classifier-removal rule for {name!r}")
    return int(dim)


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _load_local_state_dict(path: str, what: str) -> dict:
    if not os.path.isfile(path):
        raise MissingWeightsError(f"{what}: weights file {path!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, ValueError, EOFError) as exc:
        raise MissingWeightsError(f"{what}: cannot read weights file {path!r}: {exc}") from None
    if isinstance(obj, dict):
        for k in ("state_dict", "model", "model_state_dict"):
            if k in obj and isinstance(obj[k], dict):
                obj = obj[k]
                break
    if not isinstance(obj, dict) or not obj:
        raise MissingWeightsError(f"{what}: {path!r} holds no state dict")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def _load_into(model: nn.Module, state: dict, path: str, what: str, ignore_prefixes: tuple = ()) -> None:
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(ignore_prefixes)]
    if missing:
        raise MissingWeightsError(
            f"{what}: {path!r} does not match the architecture: {len(missing)} missing key(s), e.g. {missing[0]!r}")


#: the seed of random-init backbones (``weights="none"``): the same model in every process, so cached rows that carry
#: the id "random-init" always come from the same weights (a kernel, ``alwb embed``, a Ray actor)
RANDOM_INIT_SEED = 0


@contextlib.contextmanager
def _random_init():
    """Build a random-init model from :data:`RANDOM_INIT_SEED` without touching the caller's torch RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        yield


def _torchvision(name: str, weights: str, device: torch.device) -> Backbone:
    import torchvision.models as tvm

    enum = tvm.get_model_weights(name).DEFAULT
    tf = enum.transforms()
    resize, crop = int(tf.resize_size[0]), int(tf.crop_size[0])
    prep = f"resize={resize}|crop={crop}|imagenet-norm"
    if weights in ("none", None):
        with _random_init():
            model = tvm.get_model(name, weights=None)
        wid = "random-init"
    elif weights == "default":
        filename = os.path.basename(urlparse(enum.url).path)
        folder = os.path.join(torch.hub.get_dir(), "checkpoints")
        model = tvm.get_model(name, weights=None)
        try:
            state = enum.get_state_dict(progress=False, check_hash=True)
        except (URLError, ConnectionError, TimeoutError) as exc:
            raise MissingWeightsError(
                f"{name}: pretrained weights {filename} are not in {folder} and cannot be downloaded ({exc}); "
                f"on a machine with internet download {enum.url} and copy it to {folder} "
                f"(or set TORCH_HOME so that $TORCH_HOME/hub/checkpoints/{filename} exists), "
                f"or pass weights='/path/to/{filename}'") from None
        except RuntimeError as exc:  # corrupt or truncated file, hash mismatch
            raise MissingWeightsError(
                f"{name}: {os.path.join(folder, filename)} is unreadable ({exc}); delete it and copy a good copy "
                f"of {enum.url} there") from None
        model.load_state_dict(state)
        wid = str(enum).split(".")[-1] + ":" + filename
    else:
        path = os.path.abspath(os.path.expanduser(weights))
        model = tvm.get_model(name, weights=None)
        _load_into(model, _load_local_state_dict(path, name), path, name,
                   ignore_prefixes=("fc.", "classifier.", "heads."))
        wid = f"file:{os.path.basename(path)}:{_file_digest(path)}"
    dim = _strip_classifier(name, model)
    return Backbone(name, f"{name}|{wid}|{prep}", dim, model, _imagenet_transform(resize, crop), device)


def _timm(model_name: str, weights: str, device: torch.device) -> Backbone:
    try:
        import timm
        from timm.data import resolve_data_config
    except ImportError:
        raise MissingDependencyError("timm", "timm", f"backbone 'timm:{model_name}'") from None
    if model_name not in timm.list_models(pretrained=False) and not timm.is_model(model_name):
        raise ConfigError(f"backbone.name: timm has no model {model_name!r}")
    name = f"timm:{model_name}"
    if weights in ("none", None):
        with _random_init():
            model = timm.create_model(model_name, pretrained=False, num_classes=0)
        wid = "random-init"
    elif weights == "default":
        cfg = timm.models.get_pretrained_cfg(model_name)
        hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
        if not hub_id:
            raise MissingWeightsError(f"{name}: timm knows no default pretrained weights for {model_name!r}; "
                                      f"pass weights='/path/to/file.pth' or weights='none'")
        try:
            model = timm.create_model(model_name, pretrained=True, num_classes=0)
        except (URLError, OSError, ConnectionError, TimeoutError, RuntimeError) as exc:
            hf_home = os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface"))
            raise MissingWeightsError(
                f"{name}: pretrained weights (Hugging Face repo {hub_id}: model.safetensors or pytorch_model.bin) are not in "
                f"{os.path.join(hf_home, 'hub')} and cannot be downloaded ({type(exc).__name__}); on a machine "
                f"with internet download that file and pass weights='/path/to/model.safetensors', or copy the "
                f"Hugging Face cache folder here (set HF_HUB_OFFLINE=1 to skip the download retries)") from None
        wid = f"pretrained:{hub_id}"
    else:
        path = os.path.abspath(os.path.expanduser(weights))
        model = timm.create_model(model_name, pretrained=False, num_classes=0)
        if path.endswith(".safetensors"):
            try:
                from safetensors.torch import load_file
            except ImportError:
                raise MissingDependencyError("safetensors", "timm", f"loading {path}") from None
            if not os.path.isfile(path):
                raise MissingWeightsError(f"{name}: weights file {path!r} does not exist")
            state = load_file(path)
        else:
            state = _load_local_state_dict(path, name)
        head_prefixes = ("head", "fc.", "classifier.", "last_linear.")
        state = {k: v for k, v in state.items() if not k.startswith(head_prefixes)}
        _load_into(model, state, path, name)
        wid = f"file:{os.path.basename(path)}:{_file_digest(path)}"
    dc = resolve_data_config({}, model=model)
    crop = int(dc["input_size"][-1])
    resize = int(round(crop / float(dc.get("crop_pct", 0.875))))
    prep = f"resize={resize}|crop={crop}|mean={tuple(round(m, 4) for m in dc['mean'])}|std=" \
           f"{tuple(round(s, 4) for s in dc['std'])}"
    return Backbone(name, f"{name}|{wid}|{prep}", int(model.num_features), model,
                    _imagenet_transform(resize, crop, dc["mean"], dc["std"]), device)


_OFFLINE: dict[str, Callable[..., Backbone]] = {"randconv": _randconv, "pixels": _pixels}


def get_backbone(name: str = DEFAULT_BACKBONE, weights: Optional[str] = "default",
                 device: str = "auto") -> Backbone:
    """Build a backbone by name. See the module docstring for names and the ``weights`` policy."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"backbone.name: expected a non-empty string, got {name!r}")
    weights = "none" if weights is None else str(weights)
    dev = resolve_device(device)
    if name in _OFFLINE:
        if weights not in ("default", "none"):
            raise ConfigError(f"backbone.weights: {name!r} has no trainable weights; use 'default' (got {weights!r})")
        return _OFFLINE[name](dev)
    if name in TORCHVISION_BACKBONES:
        return _torchvision(name, weights, dev)
    if name.startswith("timm:") and len(name) > 5:
        return _timm(name[5:], weights, dev)
    raise ConfigError(f"backbone.name: unknown backbone {name!r}; choose one of {available_backbones()}")
