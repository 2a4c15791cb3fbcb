"""Image sources (folder tree, CSV manifest, built-in datasets) and robust image loading. No torch here."""
from __future__ import annotations

from .loading import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    IMAGE_LIKE_EXTENSIONS,
    is_image_name,
    load_image,
    probe_file,
    probe_image,
    to_rgb,
)
from .sources import (
    BUILTIN_NAMES,
    FASHION_MNIST_CLASSES,
    display_path,
    ImageSource,
    fashion_mnist_dir,
    natural_key,
    natural_sorted,
    open_source,
    safe_id,
)

__all__ = [
    "BUILTIN_NAMES", "DEFAULT_MAX_PIXELS", "FASHION_MNIST_CLASSES", "IMAGE_EXTENSIONS", "IMAGE_LIKE_EXTENSIONS",
    "ImageSource", "fashion_mnist_dir", "is_image_name", "load_image", "natural_key", "natural_sorted",
    "open_source", "probe_file", "probe_image", "safe_id", "display_path", "to_rgb",
]
