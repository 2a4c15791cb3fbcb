"""Typed project configuration, loaded from YAML and validated with one-line errors naming the key."""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .errors import ConfigError
from .head import DEFAULT_EPOCHS

CONFIG_FILENAME = "alwb.yaml"
#: the built-in datasets (the one list: alworkbench.data and the CLI read it from here)
BUILTIN_DATASETS = ("digits", "fashion-mnist")
HEAD_KINDS = ("linear", "mlp")
#: how round 0 is chosen (alworkbench.query.strategies.cold_start_indices reads this list)
COLD_STARTS = ("typical", "centroid", "random")
#: integer keys are bounded so a typo (10**20) is a config error rather than an overflow deep in numpy/torch
MAX_INT = 2**31 - 1
SEED_RANGE = (0, 2**32 - 1)  # what numpy and torch generators accept


@dataclass
class SourceConfig:
    kind: str = "builtin"  # builtin | folder | csv
    dataset: Optional[str] = None  # for builtin
    path: Optional[str] = None  # for folder / csv (relative paths resolve against the project dir)
    limit: Optional[int] = None  # built-in datasets: take a deterministic subset


@dataclass
class BackboneConfig:
    name: str = "randconv"  # the offline default (alworkbench.embed.DEFAULT_BACKBONE), no download needed
    weights: str = "default"  # default | none | /path/to/file.pth
    batch_size: int = 64
    num_workers: int = 0
    device: str = "auto"


@dataclass
class HeadConfig:
    kind: str = "linear"
    hidden: int = 256
    epochs: int = DEFAULT_EPOCHS  # alworkbench.head owns the default (TorchHead uses it too)
    lr: float = 0.01
    weight_decay: float = 1e-4
    class_weight: Optional[str] = "balanced"
    device: str = "auto"


@dataclass
class QueryConfig:
    strategy: str = "default"
    batch_size: int = 20
    cold_start: str = "typical"
    seed: int = 0


@dataclass
class EvaluationConfig:
    holdout: float = 0.2


@dataclass
class StoppingConfig:
    stability: float = 0.99
    patience: int = 2


@dataclass
class GuidelineConfig:
    version: str = "1"
    text: str = ""


@dataclass
class UIConfig:
    show_suggestions: bool = True  # false: the labeller shows no predictions (teams that fear anchoring)
    # temperature-scale the shown confidences on out-of-fold predictions (the cross-validation runs either way: it
    # gives the accuracy shown beside suggestions and the adaptive default's skill signal)
    calibrate: bool = True
    keys: dict = field(default_factory=dict)  # class -> key in the labeller, e.g. {cat: c, dog: d} (alworkbench.keymap)


#: review tiers by an annotator's measured accuracy (best first): the share of their answers sampled for review
DEFAULT_TIERS = ({"name": "trusted", "min_accuracy": 0.98, "review_sample": 0.0},
                 {"name": "standard", "min_accuracy": 0.90, "review_sample": None},  # None: quality.review_sample
                 {"name": "probation", "min_accuracy": 0.0, "review_sample": 1.0})


@dataclass
class QualityConfig:
    """The annotation trade's quality loop (alworkbench.labels.quality): review sampling, gold, overlap, teams."""

    review_sample: float = 0.10  # share of each annotator's answers sampled for review (standard tier)
    review_own: bool = False  # may a reviewer review their own answers?
    gold_rate: float = 0.0  # share of hidden gold items mixed into ordinary batches (0.05 = 1 in 20)
    qualification_items: int = 0  # gold items in the qualification test (0: no test)
    pass_mark: float = 0.95  # qualification pass mark, and the accuracy below which the widget warns
    min_known: int = 10  # known-answer comparisons (gold + sampled reviews) before a tier applies
    window: int = 50  # rolling accuracy over the latest N known-answer comparisons
    overlap_share: float = 0.0  # share of items that go to several annotators
    overlap_k: int = 2  # how many different annotators answer an overlap item
    lease_s: float = 1800.0  # an open batch untouched this long returns its unanswered items to the pool
    tiers: list = field(default_factory=lambda: [dict(t) for t in DEFAULT_TIERS])


@dataclass
class RoutingConfig:
    """Confidence routing (alworkbench.loop.routing): auto-accept predictions above per-class thresholds."""

    target_precision: float = 0.98  # precision the per-class thresholds must reach on out-of-fold predictions
    review_sample: float = 0.05  # share of auto-accepted items put into the review queue (reason "auto")
    train_on_auto: bool = False  # train on auto labels too (opt-in; they are never mixed with human labels)
    min_support: int = 30  # out-of-fold predictions of a class above its threshold needed to trust it
    on_ingest: bool = False  # `alwb ingest` / project.ingest() route the new images with the saved model (opt-in)


@dataclass
class FiftyOneConfig:
    """Where the FiftyOne integration keeps its data (alworkbench.integrations.fiftyone_sync)."""

    #: an external MongoDB (``mongodb://host:port/`` or ``mongodb+srv://...``) instead of the project's own
    #: database under ``DIR/fiftyone/db``; FiftyOne's FIFTYONE_DATABASE_URI, when set, takes precedence
    database_uri: Optional[str] = None


@dataclass
class ProjectConfig:
    name: str = "project"
    source: SourceConfig = field(default_factory=SourceConfig)
    classes: Optional[list[str]] = None
    tags: Optional[list[str]] = None
    #: a class tree (alworkbench.labels.taxonomy); its leaves are ``classes`` (single-label), or, with ``tags``, a tag
    #: tree whose every node is one of the ``tags`` (multi-label; written in alwb.yaml as ``tags:`` nested)
    taxonomy: Optional[dict] = None
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    query: QueryConfig = field(default_factory=QueryConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    stopping: StoppingConfig = field(default_factory=StoppingConfig)
    guideline: GuidelineConfig = field(default_factory=GuidelineConfig)
    ui: UIConfig = field(default_factory=UIConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    fiftyone: FiftyOneConfig = field(default_factory=FiftyOneConfig)
    annotator: str = "anonymous"
    label_budget: Optional[int] = None  # labels the project means to collect: the labeller shows progress toward it
    #: the label store: None for the embedded SQLite file (labels.sqlite in the project folder), or a
    #: ``postgresql://user@host:port/db`` URL for a team store (no password here: PGPASSWORD, ~/.pgpass or a
    #: service file). ALWB_STORE_URL overrides it.
    store: Optional[str] = None

    @property
    def multilabel(self) -> bool:
        return self.tags is not None

    @property
    def tree(self):
        """The taxonomy as an :class:`alworkbench.labels.taxonomy.Taxonomy`, or None for flat classes."""
        if self.taxonomy is None:
            return None
        from .labels.taxonomy import Taxonomy

        if self.tags is not None:
            return Taxonomy(self.taxonomy, key="tags", multilabel=True)
        return Taxonomy(self.taxonomy)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if self.tags is None:
            d.pop("tags")
        elif self.taxonomy is not None:
            d["tags"] = d.pop("taxonomy")  # a tag tree is written as tags: nested (its nodes are the tags)
        if self.classes is None or self.taxonomy is not None:
            d.pop("classes")  # a taxonomy's leaves are the classes: written once, in the tree
        if self.taxonomy is None or self.tags is not None:
            d.pop("taxonomy", None)
        if self.label_budget is None:
            d.pop("label_budget")
        if not self.ui.keys:
            d["ui"].pop("keys")
        if self.store is None:
            d.pop("store")
        return d

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml(), encoding="utf-8")


_SECTIONS = {
    "source": SourceConfig, "backbone": BackboneConfig, "head": HeadConfig, "query": QueryConfig,
    "evaluation": EvaluationConfig, "stopping": StoppingConfig, "guideline": GuidelineConfig,
    "ui": UIConfig, "quality": QualityConfig, "routing": RoutingConfig, "fiftyone": FiftyOneConfig,
}


def _unknown(key: str, allowed) -> ConfigError:
    allowed = sorted(allowed)
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], allowed, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"unknown config key '{key}'{hint}; allowed: {', '.join(allowed)}")


def _coerce(key: str, value: Any, default: Any, annotation: str) -> Any:
    """Check a scalar's type against the dataclass annotation (as a string, from __future__ annotations)."""
    optional = "Optional" in annotation or value is None and default is None
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config key '{key}' must not be empty")
    base = annotation.replace("Optional[", "").rstrip("]")
    if base == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
    elif base == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        lo, hi = SEED_RANGE if key.endswith(".seed") else (-MAX_INT, MAX_INT)
        if not lo <= value <= hi:
            raise ConfigError(f"config key '{key}' must be an integer from {lo} to {hi}, got {value}")
    elif base == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        try:
            value = float(value)
        except OverflowError:
            raise ConfigError(f"config key '{key}' is too large: {value}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"config key '{key}' must be a finite number, got {value}")
    elif base == "str":
        if isinstance(value, float) and getattr(value, "text", None) is not None and str(value) != value.text:
            # YAML reads `version: 1.10` as the number 1.1: refuse rather than store "1.1"
            raise ConfigError(f"config key '{key}' is the number {value.text}, which YAML reads as {value}: "
                              f"write it in quotes, {key.rsplit('.', 1)[-1]}: \"{value.text}\"")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # guideline version 2 -> "2"
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
    return value


def _section(name: str, cls, raw: Any):
    if raw is None:
        return cls()
    if isinstance(raw, str) and name in ("source", "backbone"):
        if name == "backbone":
            raw = {"name": raw}
        elif raw in BUILTIN_DATASETS:
            raw = {"kind": "builtin", "dataset": raw}
        else:
            raw = {"kind": "csv" if raw.lower().endswith(".csv") else "folder", "path": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"config key '{name}' must be a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    for k, v in raw.items():
        if k not in fields:
            raise _unknown(f"{name}.{k}", fields)
        if name == "quality" and k == "tiers":
            out[k] = _tiers(v)
            continue
        if name == "ui" and k == "keys":
            from .keymap import check_keys

            out[k] = check_keys(v, "ui.keys")
            continue
        f = fields[k]
        out[k] = _coerce(f"{name}.{k}", v, f.default, str(f.type))
    return cls(**out)


def _tiers(raw: Any) -> list:
    """quality.tiers: a list of {name, min_accuracy, review_sample}; sorted best first, one must start at 0."""
    if not isinstance(raw, list) or not raw:
        raise ConfigError("config key 'quality.tiers' must be a non-empty list of "
                          "{name, min_accuracy, review_sample} mappings")
    out = []
    for i, t in enumerate(raw):
        key = f"quality.tiers[{i}]"
        if not isinstance(t, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {type(t).__name__}")
        extra = set(t) - {"name", "min_accuracy", "review_sample"}
        if extra:
            raise _unknown(f"{key}.{sorted(extra)[0]}", ("name", "min_accuracy", "review_sample"))
        name = _coerce(f"{key}.name", t.get("name", f"tier{i + 1}"), "", "str")
        lo = _coerce(f"{key}.min_accuracy", t.get("min_accuracy"), None, "float")
        rate = t.get("review_sample")
        rate = None if rate is None else _coerce(f"{key}.review_sample", rate, None, "float")
        if not 0 <= lo <= 1 or (rate is not None and not 0 <= rate <= 1):
            raise ConfigError(f"config key '{key}': min_accuracy and review_sample must be in [0, 1]")
        out.append({"name": name, "min_accuracy": lo, "review_sample": rate})
    out.sort(key=lambda t: -t["min_accuracy"])
    if out[-1]["min_accuracy"] != 0:
        raise ConfigError("config key 'quality.tiers': the last tier must have min_accuracy: 0 (every annotator "
                          "falls in some tier)")
    return out


def _name_list(key: str, raw: Any) -> list[str]:
    from .names import check_names

    if isinstance(raw, str):
        raw = [s.strip() for s in raw.split(",") if s.strip()]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"config key '{key}' must be a non-empty list of names")
    return check_names([x.strip() if isinstance(x, str) else x for x in raw], key)


def _taxonomy(raw: Any, classes: Optional[list], tags: Optional[list]) -> dict:
    """taxonomy: a class tree whose leaves are the classes. A ``classes:`` list beside it must name the same
    leaves (any order); ``tags:`` beside it is refused (hierarchical tags are written ``animal/cat``)."""
    from .labels.taxonomy import Taxonomy

    if tags is not None:
        raise ConfigError("config keys 'taxonomy' and 'tags' are exclusive: a taxonomy's leaves are single-label "
                          "classes; for a tag tree write tags: as nested mappings (tags: {animal: [cat, dog]})")
    tree = Taxonomy(raw)
    if classes is not None and set(classes) != set(tree.leaves):
        extra = [c for c in classes if c not in tree.leaves]
        missing = [c for c in tree.leaves if c not in classes]
        what = (f"classes lists {extra[0]!r}, which is not a leaf of the taxonomy" if extra else
                f"the taxonomy leaf {missing[0]!r} is missing from classes")
        raise ConfigError(f"config keys 'classes' and 'taxonomy' disagree: {what}; drop classes: (the taxonomy's "
                          "leaves are the classes)")
    return {"taxonomy": tree.to_dict(), "classes": list(tree.leaves)}


def _tag_taxonomy(raw: Any) -> dict:
    """tags: as nested mappings (any depth): a tag tree whose every node, group or leaf, is a tag; choosing a tag
    stores its ancestors with it. Names are unique in the tree and hold no '/'."""
    from .labels.taxonomy import Taxonomy

    tree = Taxonomy(raw, key="tags", multilabel=True)
    return {"taxonomy": tree.to_dict(), "tags": list(tree.nodes)}


def config_from_dict(raw: Any) -> ProjectConfig:
    if raw is None or raw == {}:
        raise ConfigError("the config is empty: it needs at least 'source' (e.g. source: digits, or "
                          "source: {kind: folder, path: images/}); `alwb init DIR --images PATH --force` writes one")
    if not isinstance(raw, dict):
        raise ConfigError(f"the config must be a mapping of keys, got {type(raw).__name__}")
    if raw.get("source") is None:
        raise ConfigError("config key 'source' is missing: say where the images are, e.g. source: digits, or "
                          "source: {kind: folder, path: images/}")
    top = {f.name for f in dataclasses.fields(ProjectConfig)}
    for k in raw:
        if k not in top:
            raise _unknown(str(k), top)
    kw: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        kw[name] = _section(name, cls, raw.get(name))
    if "name" in raw:
        kw["name"] = _coerce("name", raw["name"], "project", "str")
    if "annotator" in raw:
        kw["annotator"] = _coerce("annotator", raw["annotator"], "anonymous", "str")
    if raw.get("label_budget") is not None:
        kw["label_budget"] = _coerce("label_budget", raw["label_budget"], None, "Optional[int]")
        if kw["label_budget"] < 1:
            raise ConfigError(f"config key 'label_budget' must be >= 1, got {kw['label_budget']}")
    if raw.get("classes") is not None and raw.get("tags") is not None:
        raise ConfigError("config keys 'classes' and 'tags' are exclusive: use classes for one label per image, "
                          "tags for several")
    if raw.get("classes") is not None:
        kw["classes"] = _name_list("classes", raw["classes"])
        if len(kw["classes"]) < 2:
            raise ConfigError(f"config key 'classes' needs at least 2 classes, got {len(kw['classes'])}")
    if isinstance(raw.get("tags"), dict) or (isinstance(raw.get("tags"), list)
                                             and any(isinstance(x, (dict, list)) for x in raw["tags"])):
        if raw.get("taxonomy") is not None:
            raise ConfigError("config keys 'taxonomy' and 'tags' are exclusive: a nested tags: is already the tag "
                              "tree; drop taxonomy:")
        kw.update(_tag_taxonomy(raw["tags"]))
    elif raw.get("tags") is not None:
        kw["tags"] = _name_list("tags", raw["tags"])
    if raw.get("taxonomy") is not None:
        kw.update(_taxonomy(raw["taxonomy"], kw.get("classes"), kw.get("tags")))
    if raw.get("store") is not None:
        kw["store"] = check_store_url(raw["store"], "config key 'store'")
    cfg = ProjectConfig(**kw)
    validate(cfg)
    names = cfg.classes if cfg.classes is not None else cfg.tags
    if cfg.ui.keys and names is not None:   # with classes from the data, the session checks the names
        from .keymap import class_keys

        class_keys(names, cfg.ui.keys, multilabel=cfg.tags is not None)
    return cfg


def _url_password(url: str) -> bool:
    """Does a PostgreSQL URL (or key=value conninfo) carry a password? Parsed without psycopg."""
    from urllib.parse import parse_qs, urlsplit

    if "://" in url:
        parts = urlsplit(url)
        return bool(parts.password) or "password" in parse_qs(parts.query)
    return any(tok.split("=", 1)[0].strip() == "password" for tok in url.split() if "=" in tok)


def check_store_url(value: Any, where: str) -> str:
    """A label-store location from alwb.yaml or ALWB_STORE_URL: ``postgresql://`` (or ``postgres://``) without
    a password. One-line ConfigError otherwise (the password itself is never repeated)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} must be a postgresql://user@host:port/db URL, got {type(value).__name__}")
    url = value.strip()
    if url.split(":", 1)[0].lower() not in ("postgresql", "postgres") or "://" not in url:
        raise ConfigError(f"{where} must be a postgresql://user@host:port/db URL (the embedded SQLite store needs "
                          f"no setting), got {url.split('://', 1)[0] + '://...' if '://' in url else 'a path'}")
    if _url_password(url):
        raise ConfigError(f"{where} carries a password: remove it and put it in PGPASSWORD, ~/.pgpass or a "
                          "PostgreSQL service file (credentials never go into alwb.yaml)")
    return url


def validate(cfg: ProjectConfig) -> None:
    s = cfg.source
    if s.kind not in ("builtin", "folder", "csv"):
        raise ConfigError(f"config key 'source.kind' is {s.kind!r}; allowed: builtin, folder, csv")
    if s.kind == "builtin":
        if s.dataset not in BUILTIN_DATASETS:
            raise ConfigError(f"config key 'source.dataset' is {s.dataset!r}; allowed: {', '.join(BUILTIN_DATASETS)}")
    elif not s.path:
        raise ConfigError(f"config key 'source.path' is required when source.kind is {s.kind!r}")
    if s.limit is not None and s.limit < 10:
        raise ConfigError(f"config key 'source.limit' must be >= 10, got {s.limit}")
    if cfg.head.kind not in HEAD_KINDS:
        raise ConfigError(f"config key 'head.kind' is {cfg.head.kind!r}; allowed: {', '.join(HEAD_KINDS)}")
    if cfg.head.class_weight not in (None, "balanced"):
        raise ConfigError(f"config key 'head.class_weight' is {cfg.head.class_weight!r}; allowed: balanced, null")
    for key, val, lo in (("head.epochs", cfg.head.epochs, 1), ("head.hidden", cfg.head.hidden, 1),
                         ("query.batch_size", cfg.query.batch_size, 1), ("backbone.batch_size", cfg.backbone.batch_size, 1),
                         ("backbone.num_workers", cfg.backbone.num_workers, 0), ("stopping.patience", cfg.stopping.patience, 1)):
        if val < lo:
            raise ConfigError(f"config key '{key}' must be >= {lo}, got {val}")
    if not 0 < cfg.head.lr <= 10:
        raise ConfigError(f"config key 'head.lr' must be in (0, 10], got {cfg.head.lr}")
    if not 0 <= cfg.evaluation.holdout < 1:
        raise ConfigError(f"config key 'evaluation.holdout' must be in [0, 1), got {cfg.evaluation.holdout}")
    if not 0 < cfg.stopping.stability <= 1:
        raise ConfigError(f"config key 'stopping.stability' must be in (0, 1], got {cfg.stopping.stability}")
    if cfg.query.cold_start not in COLD_STARTS:
        raise ConfigError(f"config key 'query.cold_start' is {cfg.query.cold_start!r}; allowed: {', '.join(COLD_STARTS)}")
    for key, dev in (("backbone.device", cfg.backbone.device), ("head.device", cfg.head.device)):
        if dev != "auto" and dev != "cpu" and not dev.startswith("cuda"):
            raise ConfigError(f"config key '{key}' is {dev!r}; allowed: auto, cpu, cuda, cuda:N")
    q = cfg.quality
    for key, val in (("quality.review_sample", q.review_sample), ("quality.gold_rate", q.gold_rate),
                     ("quality.pass_mark", q.pass_mark), ("quality.overlap_share", q.overlap_share)):
        if not 0 <= val <= 1:
            raise ConfigError(f"config key '{key}' must be in [0, 1], got {val}")
    if q.gold_rate > 0.5:
        raise ConfigError(f"config key 'quality.gold_rate' is {q.gold_rate}: at most 0.5 (half of every batch)")
    for key, val, lo in (("quality.qualification_items", q.qualification_items, 0), ("quality.min_known", q.min_known, 1),
                         ("quality.window", q.window, 1), ("quality.overlap_k", q.overlap_k, 2)):
        if val < lo:
            raise ConfigError(f"config key '{key}' must be >= {lo}, got {val}")
    if not q.lease_s > 0:
        raise ConfigError(f"config key 'quality.lease_s' must be > 0 seconds, got {q.lease_s}")
    uri = cfg.fiftyone.database_uri
    if uri is not None and (not isinstance(uri, str) or not uri.startswith(("mongodb://", "mongodb+srv://"))):
        raise ConfigError(f"config key 'fiftyone.database_uri' must be a MongoDB URI (mongodb://host:port/ or "
                          f"mongodb+srv://...), got {uri!r}")
    r = cfg.routing
    if not 0 < r.target_precision <= 1:
        raise ConfigError(f"config key 'routing.target_precision' must be in (0, 1], got {r.target_precision}")
    if not 0 <= r.review_sample <= 1:
        raise ConfigError(f"config key 'routing.review_sample' must be in [0, 1], got {r.review_sample}")
    if r.min_support < 1:
        raise ConfigError(f"config key 'routing.min_support' must be >= 1, got {r.min_support}")
    # strategy and backbone names are checked against their registries when those modules are importable
    # (config stays importable without them): see check_registries().


def check_registries(cfg: ProjectConfig) -> None:
    """Validate names that live in other registries (query strategies, backbones)."""
    from .query import available_strategies

    allowed = available_strategies(multilabel=cfg.multilabel)
    if cfg.query.strategy not in allowed:
        raise ConfigError(f"config key 'query.strategy' is {cfg.query.strategy!r}; allowed: {', '.join(sorted(allowed))}")
    from .embed import available_backbones  # torch-free list

    names = [n for n in available_backbones() if not n.startswith("timm:")]
    if cfg.backbone.name not in names and not cfg.backbone.name.startswith("timm:"):
        raise ConfigError(f"config key 'backbone.name' is {cfg.backbone.name!r}; allowed: {', '.join(names)}, timm:<model>")


class _YamlFloat(float):
    """A float that remembers how it was written (``1.10``), so a text key can refuse to lose the ``0``."""

    text: str


def _yaml_loader():
    """PyYAML's safe loader, refusing duplicate keys and keeping the written text of floats."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = loader.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # PyYAML reports unhashable keys itself
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: key '{key}' appears twice "
                                  f"(first on line {seen[key]}): keep one")
            seen[key] = key_node.start_mark.line + 1
        loader.flatten_mapping(node)
        return dict(loader.construct_pairs(node, deep=True))

    def construct_float(loader, node):
        f = _YamlFloat(yaml.SafeLoader.construct_yaml_float(loader, node))
        f.text = str(node.value)
        return f

    Loader.add_constructor("tag:yaml.org,2002:map", construct_mapping)
    Loader.add_constructor("tag:yaml.org,2002:float", construct_float)
    return Loader


_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"),
         (b"\xfe\xff", "UTF-16"))


def _read_text(path: Path) -> str:
    """The config file as text; every way it can fail is a one-line ConfigError naming the file."""
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder, not a config file: remove it and run `alwb init`") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}; check its permissions") from None
    for bom, enc in _BOMS:
        if data.startswith(bom):
            raise ConfigError(f"{path} is saved as {enc}: save it as UTF-8 (e.g. iconv -f {enc} -t UTF-8)")
    if b"\x00" in data:
        raise ConfigError(f"{path} contains NUL bytes (saved as UTF-16 without a byte-order mark?): "
                          "save it as UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line} is not UTF-8 (byte 0x{data[e.start]:02x}): save the file as "
                          "UTF-8") from None


def load_config(path: str | Path) -> ProjectConfig:
    import yaml

    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILENAME
    if not path.exists():
        raise ConfigError(f"no project config at {path}: create one with `alwb init DIR --images PATH`")
    text = _read_text(path)
    try:
        raw = yaml.load(text, Loader=_yaml_loader())
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} is not valid YAML: {getattr(e, 'problem', e)}") from None
    except RecursionError:
        raise ConfigError(f"{path} is nested too deeply to be a config") from None
    if raw is None:
        raise ConfigError(f"{path} is empty: write its settings (see configs/ for examples) or recreate it with "
                          "`alwb init DIR --images PATH --force`")
    try:
        return config_from_dict(raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
