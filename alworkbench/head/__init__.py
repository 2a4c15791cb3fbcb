"""Classifier heads over embeddings. torch is imported only when a head is fitted or used."""
from __future__ import annotations

from typing import Callable, Mapping, Optional

from ..errors import ConfigError

#: AdamW passes over the data when a head config does not say (the one default: HeadConfig and TorchHead use it)
DEFAULT_EPOCHS = 100

HEAD_PARAMS = ("kind", "hidden", "epochs", "lr", "weight_decay", "batch_size", "class_weight", "device", "solver", "C",
               "max_iter", "tol", "cpu_fit",
               "random_state", "standardize")


def make_head_factory(config: Optional[Mapping] = None, multilabel: bool = False) -> Callable[[], object]:
    """Return a zero-argument callable that builds a fresh, unfitted :class:`TorchHead` from ``config``.

    ``config`` is the project's ``head:`` section (keys: kind, hidden, epochs, lr, weight_decay, batch_size,
    class_weight, device, random_state/seed, standardize). Unknown keys raise ConfigError naming the key.
    """
    cfg = dict(config or {})
    if "seed" in cfg and "random_state" not in cfg:
        cfg["random_state"] = cfg.pop("seed")
    unknown = sorted(set(cfg) - set(HEAD_PARAMS))
    if unknown:
        raise ConfigError(f"head.{unknown[0]}: unknown key; allowed: {', '.join(HEAD_PARAMS)}")
    if cfg.get("class_weight") in ("none", "None"):
        cfg["class_weight"] = None
    from .torch_head import TorchHead

    proto = TorchHead(multilabel=bool(multilabel), **cfg)
    try:
        proto._check_params()
    except ValueError as exc:
        raise ConfigError(f"head: {exc}") from None
    return _Factory(proto.get_params())


class _Factory:
    """Picklable head factory (a closure would not pickle)."""

    def __init__(self, params: dict):
        self.params = dict(params)

    def __call__(self):
        from .torch_head import TorchHead
        return TorchHead(**self.params)

    def __repr__(self) -> str:
        return f"make_head_factory -> TorchHead({self.params})"


def __getattr__(name):
    if name == "TorchHead":
        from .torch_head import TorchHead
        return TorchHead
    raise AttributeError(f"module 'alworkbench.head' has no attribute {name!r}")


__all__ = ["make_head_factory", "TorchHead", "HEAD_PARAMS"]
