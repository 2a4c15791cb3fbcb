"""A project is a folder: alwb.yaml (config), labels.sqlite (the store), cache/ (embeddings)."""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .config import BUILTIN_DATASETS, CONFIG_FILENAME, ProjectConfig, check_registries, config_from_dict, load_config
from .errors import AlwbError, ConfigError

STORE_FILENAME = "labels.sqlite"


def _source_spec(images: str, project_dir: Path) -> dict:
    if images in BUILTIN_DATASETS:
        return {"kind": "builtin", "dataset": images}
    p = Path(images).expanduser()
    if not p.exists():
        raise ConfigError(f"--images {images!r}: no such file or folder (built-in datasets: {', '.join(BUILTIN_DATASETS)})")
    p = p.resolve()
    if p.is_file():
        if p.suffix.lower() != ".csv":
            raise ConfigError(f"--images {images!r} is a file but not a .csv manifest")
        return {"kind": "csv", "path": str(p)}
    return {"kind": "folder", "path": str(p)}


class Project:
    """Open with :meth:`open`, create with :meth:`init`. Heavy parts (source, store, embeddings) load lazily."""

    def __init__(self, directory: str | Path, config: ProjectConfig):
        self.dir = Path(directory).resolve()
        self.config = config
        self._source = None
        self._store = None
        self._schema = None
        self._embeddings: Optional[np.ndarray] = None
        self.embed_report = None  # alworkbench.embed.EmbedReport of the last embeddings() call
        self.embed_ok: Optional[np.ndarray] = None  # False for images that could not be read at embed time
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- creation
    @classmethod
    def init(cls, directory: str | Path, images: str, *, classes: Optional[Sequence[str]] = None,
             tags: Optional[Sequence[str]] = None, backbone: Optional[str] = None, name: Optional[str] = None,
             overwrite: bool = False, **sections) -> "Project":
        """Create a project folder with its alwb.yaml. ``sections`` override config sections, e.g.
        ``query={"batch_size": 10}``, ``source={"limit": 500}``, ``guideline={"text": "..."}``."""
        d = Path(directory).expanduser().resolve()
        cfg_path = d / CONFIG_FILENAME
        if cfg_path.exists() and not overwrite:
            raise AlwbError(f"{cfg_path} already exists: open it with Project.open({str(d)!r}) "
                            "or pass overwrite=True")
        if classes is not None and tags is not None:
            raise ConfigError("give classes or tags, not both")
        raw: dict = {"name": name or d.name, "source": _source_spec(images, d)}
        for key, val in sections.items():
            if key in ("source",) and isinstance(val, dict):
                raw["source"].update(val)
            else:
                raw[key] = val
        if backbone:
            raw.setdefault("backbone", {})
            raw["backbone"] = {**raw["backbone"], "name": backbone}
        if classes is not None:
            raw["classes"] = list(classes)
        if tags is not None:
            raw["tags"] = list(tags)
        cfg = config_from_dict(raw)
        check_registries(cfg)
        proj = cls(d, cfg)
        if cfg.classes is None and cfg.tags is None:
            src = proj.source  # ingest once to learn the classes / tags
            from .names import check_names

            # names from folder names or a manifest's label column pass the same rule as the config's
            if src.classes:
                cfg.classes = check_names(src.classes, "classes", where=str(images))
            elif getattr(src, "tags", None):
                cfg.tags = check_names(src.tags, "tags", where=str(images))
            else:
                raise ConfigError(f"no classes found in {images!r}: pass --classes a,b,c or --tags x,y,z")
        d.mkdir(parents=True, exist_ok=True)
        cfg.save(cfg_path)
        return proj

    @classmethod
    def open(cls, directory: str | Path) -> "Project":
        d = Path(directory).expanduser().resolve()
        cfg = load_config(d / CONFIG_FILENAME)
        check_registries(cfg)
        return cls(d, cfg)

    @classmethod
    def open_or_init(cls, directory: str | Path, images: str, **kw) -> "Project":
        d = Path(directory).expanduser()
        if (d / CONFIG_FILENAME).exists():
            return cls.open(d)
        return cls.init(d, images, **kw)

    # ---------------------------------------------------------------- parts
    @property
    def name(self) -> str:
        return self.config.name

    @property
    def config_path(self) -> Path:
        return self.dir / CONFIG_FILENAME

    def reload_config(self) -> ProjectConfig:
        """Re-read alwb.yaml (e.g. after the guideline was edited)."""
        self.config = load_config(self.config_path)
        self._schema = None
        return self.config

    @property
    def source(self):
        with self._lock:
            if self._source is None:
                from .data import open_source

                spec = {k: v for k, v in vars(self.config.source).items() if v is not None}
                if spec.get("path") and not Path(spec["path"]).is_absolute():
                    spec["path"] = str((self.dir / spec["path"]).resolve())
                self._source = open_source(spec, scan_index=self.dir / "cache" / "scan.sqlite")
            return self._source

    @property
    def store(self):
        with self._lock:
            if self._store is None:
                from .labels import LabelStore

                self.dir.mkdir(parents=True, exist_ok=True)
                self._store = LabelStore(self.dir / STORE_FILENAME, lease_s=self.config.quality.lease_s)
            return self._store

    @property
    def schema(self):
        if self._schema is None:
            from .labels import LabelSchema

            g = self.config.guideline
            self._schema = LabelSchema(classes=self.config.classes, tags=self.config.tags,
                                       guideline_text=g.text, guideline_version=g.version)
        return self._schema

    @property
    def items(self):
        return self.source.items

    def index_of(self, item_id: str) -> int:
        return self.source.index_of(item_id)

    def eval_mask(self) -> np.ndarray:
        """Items held out for evaluation: they have ground truth and are never queried.

        Built-in datasets use their test split; other sources hold out a deterministic fraction
        (``evaluation.holdout``) chosen by a hash of the item id, so it is stable across runs.
        """
        items = self.source.items
        frac = self.config.evaluation.holdout
        mask = np.zeros(len(items), dtype=bool)
        has_split = any(it.split == "test" for it in items)
        for i, it in enumerate(items):
            if it.label is None and not it.tags:
                continue
            if has_split:
                mask[i] = it.split == "test"
            elif frac > 0:
                h = int.from_bytes(hashlib.sha1(it.id.encode("utf-8")).digest()[:4], "big") / 2**32
                mask[i] = h < frac
        return mask

    def embeddings(self, progress: bool = True) -> np.ndarray:
        """Embeddings for every item (rows aligned with ``source.items``), from the on-disk cache."""
        with self._lock:
            if self._embeddings is None:
                from .embed.backbones import get_backbone
                from .embed.cache import EmbeddingCache, embed_source

                b = self.config.backbone
                backbone = get_backbone(b.name, weights=b.weights, device=b.device)
                X, rep = embed_source(self.source, backbone, EmbeddingCache(self.dir / "cache"),
                                      batch_size=b.batch_size, num_workers=b.num_workers, progress=progress,
                                      return_report=True)
                self.embed_report = rep
                self.embed_ok = np.ones(len(X), bool) if rep.ok is None else np.asarray(rep.ok, bool)
                self._embeddings = X
            return self._embeddings

    def session(self, annotator: Optional[str] = None, **kw):
        from .loop.session import Session

        return Session(self, annotator=annotator, **kw)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __repr__(self) -> str:
        return f"Project({str(self.dir)!r}, name={self.name!r})"
