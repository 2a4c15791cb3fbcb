"""A project is a folder: alwb.yaml (config), labels.sqlite (the store), cache/ (embeddings)."""
from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import asdict, dataclass, field
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
        if cfg_path.exists() and "store" not in sections:  # re-init keeps the team store the labels live in
            old_store = _configured_store(cfg_path)
            if old_store:
                raw["store"] = old_store
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
            raw["tags"] = tags if isinstance(tags, dict) else list(tags)  # a mapping: a tag tree
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
    def store_location(self):
        """Where the label store lives: ALWB_STORE_URL, else ``store:`` in alwb.yaml (both a postgresql:// URL
        without a password), else the SQLite file labels.sqlite in the project folder."""
        env = os.environ.get("ALWB_STORE_URL")
        if env:
            from .config import check_store_url

            return check_store_url(env, "ALWB_STORE_URL")
        return self.config.store or self.dir / STORE_FILENAME

    @property
    def store(self):
        with self._lock:
            if self._store is None:
                from .labels import open_store

                self.dir.mkdir(parents=True, exist_ok=True)
                self._store = open_store(self.store_location, lease_s=self.config.quality.lease_s)
            return self._store

    @property
    def schema(self):
        if self._schema is None:
            from .labels import LabelSchema

            g = self.config.guideline
            self._schema = LabelSchema(classes=self.config.classes, tags=self.config.tags,
                                       guideline_text=g.text, guideline_version=g.version, taxonomy=self.config.tree)
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

    def embeddings(self, progress: bool = True, ray: Optional[str] = None,
                   ray_workers: Optional[int] = None) -> np.ndarray:
        """Embeddings for every item (rows aligned with ``source.items``), from the on-disk cache.

        ``ray``: compute what the cache lacks on Ray Data instead of in this process (``"local"``: a local cluster
        on this machine; else a cluster address for ``ray.init``); same cache, same rows. Needs the ``[ray]`` extra.
        """
        with self._lock:
            if self._embeddings is None:
                from .embed.cache import EmbeddingCache, embed_source

                b = self.config.backbone
                if ray is not None:
                    from .embed.ray_embed import connect, embed_source_ray, import_ray

                    import_ray()  # the one-line "install the [ray] extra" error comes before any work
                    address = None if ray == "local" else ray
                    # before the source is scanned: a cluster that cannot be reached leaves the project untouched
                    connect(address, progress=progress)
                    X, rep = embed_source_ray(self.source, (b.name, b.weights, b.device),
                                              EmbeddingCache(self.dir / "cache"),
                                              address=address, workers=ray_workers,
                                              batch_size=b.batch_size, progress=progress, return_report=True)
                else:
                    from .embed.backbones import get_backbone

                    backbone = get_backbone(b.name, weights=b.weights, device=b.device)
                    X, rep = embed_source(self.source, backbone, EmbeddingCache(self.dir / "cache"),
                                          batch_size=b.batch_size, num_workers=b.num_workers, progress=progress,
                                          return_report=True)
                self.embed_report = rep
                self.embed_ok = np.ones(len(X), bool) if rep.ok is None else np.asarray(rep.ok, bool)
                self._embeddings = X
            return self._embeddings

    def ingest(self, progress: bool = False, route: Optional[bool] = None) -> "IngestResult":
        """Look at the source again and embed only what is new: incremental ingest (issue 11, part 3).

        Rescans the folder tree or CSV manifest (unchanged files are recognised by ``stat`` through the scan
        index), compares its items with the snapshot the previous ingest left in ``cache/ingest_state.json``
        (id -> sha256) and embeds every image whose content is not in the embedding cache yet (the cache is keyed
        by content, so only new and changed images are computed). Returns an :class:`IngestResult`: new, changed,
        removed and unchanged item ids, ``embedded`` (counted as the growth of the cache's distinct entries),
        skipped files with their reasons, labelled items whose file is gone (their labels stay in the store:
        nothing is ever written to the store here) and the wall time. The first ingest of a project has no
        snapshot: an item counts as new unless its content is already in the cache.

        Built-in datasets do not change: the result says so (``builtin=True``) and nothing is embedded.
        Sessions opened after this call see the new items; a running session keeps its own item list.

        Then the new (and changed) images are routed (``route``, default the config's ``routing.on_ingest``): when
        the project's saved model is current (restored, never refitted here), the same code path as
        ``session.auto_label()`` runs restricted to them: those above their class threshold get ``auto_label``
        records, the rest are queued for people (they enter the pool in strategy order). With routing off, no
        current model or too few labels, everything is queued and ``result.routing["note"]`` says why. Nothing but
        ``auto_label`` records is ever written: no existing label or answer changes.
        """
        import time

        t0 = time.perf_counter()
        with self._lock:
            kind = self.config.source.kind or ("builtin" if self.config.source.dataset else None)
            if kind == "builtin":
                n = len(self.source.items)
                return IngestResult(source=str(self.config.source.dataset), kind="builtin", n_items=n, unchanged=n,
                                    builtin=True, baseline="built-in dataset",
                                    note=f"built-in dataset {self.config.source.dataset!r} does not change: "
                                         "nothing to ingest", seconds=time.perf_counter() - t0)
            from .embed.backbones import get_backbone
            from .embed.cache import EmbeddingCache, embed_source

            self._source = None  # scan the source again (the scan index keeps this cheap for unchanged files)
            self._embeddings = None
            src = self.source
            state_path = self.dir / "cache" / INGEST_STATE_FILENAME
            prev = _read_ingest_state(state_path, src.root)
            b = self.config.backbone
            backbone = get_backbone(b.name, weights=b.weights, device=b.device)
            cache = EmbeddingCache(self.dir / "cache")
            cached_before = _cached_shas(cache, backbone.key)
            items = src.items
            if prev is None:
                baseline = "embedding cache (first ingest: no earlier snapshot)"
                new = [it.id for it in items if it.sha256 not in cached_before]
                changed: list[str] = []
                removed: list[str] = []
            else:
                baseline = "previous ingest"
                new = [it.id for it in items if it.id not in prev]
                changed = [it.id for it in items if it.id in prev and prev[it.id] != it.sha256]
                present = {it.id for it in items}
                present.update(s.path for s in src.report.skipped)
                present.update(d.path for d in src.report.duplicates)
                removed = sorted(i for i in prev if i not in present)
            X, rep = embed_source(src, backbone, cache, batch_size=b.batch_size, num_workers=b.num_workers,
                                  progress=progress, return_report=True)
            cached_after = _cached_shas(cache, backbone.key)
            self.embed_report = rep
            self.embed_ok = np.ones(len(X), bool) if rep.ok is None else np.asarray(rep.ok, bool)
            self._embeddings = X
            _write_ingest_state(state_path, src.root, {it.id: it.sha256 for it in items})
            labelled = self._labelled_ids()
            ids = {it.id for it in items}
            skipped = [(s.path, s.reason) for s in src.report.skipped] + [(i, f"embedding failed: {why}")
                                                                           for i, why in rep.failed]
            routing = self._route_new(new + changed, route)
            return IngestResult(
                source=str(src.root), kind=src.kind, n_items=len(items), new=new, changed=changed, removed=removed,
                unchanged=len(items) - len(new) - len(changed),
                embedded=len(cached_after - cached_before), computed=int(rep.n_computed),
                cache_before=len(cached_before), cache_after=len(cached_after), skipped=skipped,
                duplicates=len(src.report.duplicates),
                labelled_missing=sorted(i for i in labelled if i not in ids),
                changed_labelled=[i for i in changed if i in labelled], baseline=baseline, routing=routing,
                seconds=time.perf_counter() - t0)

    def _route_new(self, ids: list, route: Optional[bool]) -> dict:
        """Route the ingested images ``ids`` (see :meth:`ingest`): {status, note, n_auto, n_sampled, n_queued,
        n_held_out, n_not_pooled, auto, queued, model_version}. ``status``: "routed", "off", "no_model", "refused"
        (too few labels for out-of-fold predictions) or "nothing" (no new image)."""
        from .errors import NotFittedError

        on = bool(self.config.routing.on_ingest) if route is None else bool(route)
        out = {"status": "routed", "note": "", "n_auto": 0, "n_sampled": 0, "n_queued": 0, "n_held_out": 0,
               "n_not_pooled": 0, "auto": [], "queued": [], "model_version": None}
        if not ids:
            out.update(status="nothing", note="no new image to route")
            return out
        why = None
        if not on:
            out["status"], why = "off", "routing off (routing.on_ingest is false)"
        elif not self._labelled_ids():
            out["status"], why = "no_model", "no model yet (no human label)"
        wanted = set(ids)
        loc = self.store_location
        if self._store is None and not isinstance(loc, str) and not Path(loc).exists():  # no SQLite store: none to create
            ev, ok = self.eval_mask(), self.embed_ok
            rows = [(it.id, i) for i, it in enumerate(self.source.items) if it.id in wanted]
            held = {sid for sid, i in rows if ev[i] and (ok is None or ok[i])}
            out["queued"] = sorted(sid for sid, i in rows if not ev[i] and (ok is None or ok[i]))
            out.update(n_queued=len(out["queued"]), n_held_out=len(held),
                       n_not_pooled=len(wanted) - len(out["queued"]) - len(held))
            out["note"] = f"{why}: {out['n_queued']} new image(s) queued for people"
            return out
        s = None
        try:
            s = self.session(warm_start=False)
            pool = {s.items[int(i)].id for i in s.pool_indices()} & wanted
            held = {sid for sid in wanted if sid in s._index and s.eval_mask[s._index[sid]]}
            if why is None and not s._restore_model():
                out["status"] = "no_model"
                why = "no current model (none saved, or answers since the last one: retrain, e.g. `alwb label`)"
            res = None
            if why is None and pool:  # nothing to score when every new image is held out, labelled or unreadable
                try:
                    res = s.auto_label(item_ids=sorted(pool))
                except NotFittedError as exc:
                    out["status"], why = "refused", str(exc)
            auto = [] if res is None else list(res["item_ids"])
            version = s._model.version if why is None and s._model is not None else None
            out.update(auto=auto, n_auto=len(auto), n_sampled=0 if res is None else int(res["n_sampled"]),
                       model_version=version if res is None else int(res["model_version"]),
                       queued=sorted(pool - set(auto)), n_held_out=len(held))
            out["n_queued"] = len(out["queued"])
            out["n_not_pooled"] = len(wanted) - len(pool) - len(held)
        finally:
            if s is not None:
                s.close()
        if why is not None:
            out["note"] = f"{why}: {out['n_queued']} new image(s) queued for people"
        return out

    def _labelled_ids(self) -> set:
        """Item ids with an active label or tag answer (empty when the project has no store yet; not created)."""
        loc = self.store_location
        if self._store is None and not isinstance(loc, str) and not loc.exists():
            return set()
        return {sid for sid, ev in self.store.active_answers().items() if ev.get("kind") in ("label", "tags")}

    def session(self, annotator: Optional[str] = None, **kw):
        from .loop.session import Session

        return Session(self, annotator=annotator, **kw)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __repr__(self) -> str:
        return f"Project({str(self.dir)!r}, name={self.name!r})"


def _configured_store(cfg_path: Path) -> Optional[str]:
    """The ``store:`` of an existing alwb.yaml (None when it names none or cannot be read)."""
    import yaml

    try:
        raw = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    store = raw.get("store") if isinstance(raw, dict) else None
    return store if isinstance(store, str) and store.strip() else None


# ------------------------------------------------------------------------------------------------ incremental ingest
INGEST_STATE_FILENAME = "ingest_state.json"


@dataclass
class IngestResult:
    """What :meth:`Project.ingest` found and did. Lists hold item ids (``skipped``: ``(path, reason)``).

    ``embedded`` is counted from the embedding cache (distinct entries after minus before), ``computed`` is what
    the backbone ran on; ``new`` (and ``changed``) are the ids a routing step (auto-accept or queue) takes next.
    ``labelled_missing``: items with a label in the store whose file is no longer in the source (the labels stay).
    """

    source: str
    kind: str
    n_items: int = 0
    new: list = field(default_factory=list)
    changed: list = field(default_factory=list)
    removed: list = field(default_factory=list)
    unchanged: int = 0
    embedded: int = 0
    computed: int = 0
    cache_before: int = 0
    cache_after: int = 0
    skipped: list = field(default_factory=list)
    duplicates: int = 0
    labelled_missing: list = field(default_factory=list)
    changed_labelled: list = field(default_factory=list)
    baseline: str = ""
    routing: dict = field(default_factory=dict)  # what routing did with new + changed (Project._route_new)
    builtin: bool = False
    note: str = ""
    seconds: float = 0.0

    @property
    def n_changes(self) -> int:
        return len(self.new) + len(self.changed) + len(self.removed)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["skipped"] = [{"path": p, "reason": r} for p, r in self.skipped]
        d["seconds"] = round(self.seconds, 3)
        return d

    def lines(self, limit: int = 20) -> list:
        """The report as text lines (what `alwb ingest` prints)."""
        from .names import text

        if self.builtin:
            return [f"{self.note} ({self.n_items} images)"]
        out = [f"ingest {text(self.source)}: {len(self.new)} new, {len(self.changed)} changed, "
               f"{len(self.removed)} removed, {self.unchanged} unchanged ({self.n_items} images); "
               f"{self.embedded} embedded (cache {self.cache_before} -> {self.cache_after} images), "
               f"{len(self.skipped)} skipped, {self.duplicates} duplicates; {self.seconds:.2f} s"
               + ("" if self.baseline == "previous ingest" else f" [compared with the {self.baseline}]")]

        def some(title: str, ids: list) -> None:
            if ids:
                shown = ", ".join(text(i) for i in ids[:limit])
                more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
                out.append(f"  {title} ({len(ids)}): {shown}{more}")

        some("new", self.new)
        some("changed", self.changed)
        some("removed", self.removed)
        for path, reason in self.skipped[:limit]:
            out.append(f"  skipped {text(path)}: {reason}")
        if len(self.skipped) > limit:
            out.append(f"  ... and {len(self.skipped) - limit} more skipped")
        r = self.routing
        if r and r.get("status") != "nothing":
            if r["status"] == "routed":
                out.append(f"routing with model v{r['model_version']}: {r['n_auto']} auto-labelled "
                           f"({r['n_sampled']} sampled for review), {r['n_queued']} queued for people"
                           + (f", {r['n_held_out']} held out for evaluation" if r["n_held_out"] else "")
                           + (f", {r['n_not_pooled']} not queued (labelled, routed or unreadable)"
                              if r["n_not_pooled"] else ""))
            else:
                out.append(r["note"] + (f" ({r['n_held_out']} held out for evaluation)" if r["n_held_out"] else ""))
        some("labelled but missing (labels kept in the store)", self.labelled_missing)
        some("labelled and changed (labels kept; check them)", self.changed_labelled)
        return out


def _cached_shas(cache, key: str) -> set:
    """The distinct image sha256s the cache holds for backbone ``key``."""
    seen: set = set()
    for shas, _emb in cache.store(key).sources():
        seen.update(shas.tolist())
    return seen


def _read_ingest_state(path: Path, root) -> Optional[dict]:
    """id -> sha256 of the previous ingest of this source, or None (none yet, another source, unreadable)."""
    import json

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        import warnings

        warnings.warn(f"ingest snapshot {path} is unreadable ({type(exc).__name__}): this ingest compares with the "
                      "embedding cache instead", RuntimeWarning, stacklevel=3)
        return None
    if not isinstance(raw, dict) or raw.get("version") != 1 or raw.get("source") != str(root) \
            or not isinstance(raw.get("items"), dict):
        return None
    return raw["items"]


def _write_ingest_state(path: Path, root, items: dict) -> None:
    import json
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"version": 1, "source": str(root), "items": items}, fh, ensure_ascii=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # readers see the old snapshot or the new one
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
