"""Image embeddings: backbones (torch, imported lazily) and the on-disk embedding cache.

``import alworkbench.embed`` does not import torch; ``get_backbone`` and the backbone classes load it on use.
"""
from __future__ import annotations

#: The offline default backbone. A linear probe on Fashion-MNIST (10k train / 10k test) scores ~0.88 with
#: ``randconv`` features against ~0.83 for ``pixels`` and less for a randomly initialised resnet18, with no
#: download and a few thousand images/s on 2 CPU cores (numbers: bench/bench_embed.py and the embed report).
DEFAULT_BACKBONE = "randconv"

from .cache import EmbeddingCache, EmbedReport, embed_source  # noqa: E402  (torch-free)


def get_backbone(name: str = DEFAULT_BACKBONE, weights="default", device: str = "auto"):
    """Build a :class:`~alworkbench.embed.backbones.Backbone` (imports torch). See ``backbones.get_backbone``."""
    from .backbones import get_backbone as _get

    return _get(name, weights=weights, device=device)


#: the backbone names (the one list: alworkbench.embed.backbones and the config check read them from here)
OFFLINE_BACKBONES = ("randconv", "pixels")
TORCHVISION_BACKBONES = ("resnet18", "resnet50", "efficientnet_b0", "vit_b_16", "convnext_tiny")


def available_backbones() -> list[str]:
    return list(OFFLINE_BACKBONES) + list(TORCHVISION_BACKBONES) + ["timm:<model>"]


__all__ = ["DEFAULT_BACKBONE", "EmbeddingCache", "EmbedReport", "embed_source", "get_backbone",
           "available_backbones"]
