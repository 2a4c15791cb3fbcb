"""Issue 9, finding 7 (config part) and finding 10 (config keys only partly wired, rules with several owners).

Every bad alwb.yaml is one ConfigError line naming the file (and the key) and what to do; nothing passes silently.
"""
from __future__ import annotations

import pytest

from alworkbench.config import HeadConfig, config_from_dict, load_config
from alworkbench.errors import ConfigError

BASE = "source: digits\nclasses: [a, b]\n"


def _load(tmp_path, data: bytes):
    (tmp_path / "alwb.yaml").write_bytes(data)
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "alwb.yaml") in msg, msg
    return msg


@pytest.mark.parametrize("data, needle", [
    ("name: x\nsource: digits\n".encode("utf-16"), "saved as UTF-16: save it as UTF-8"),
    ("name: x\nsource: digits\n".encode("utf-16-le"), "NUL bytes"),
    ("name: caf\xe9\nsource: digits\n".encode("latin-1"), "line 1 is not UTF-8 (byte 0xe9)"),
], ids=["utf16-bom", "utf16-no-bom", "latin1"])
def test_finding7_config_not_utf8_is_one_line_error(tmp_path, data, needle):
    assert needle in _load(tmp_path, data)


@pytest.mark.parametrize("seed", ["-1", "100000000000000000000"])
def test_finding7_config_seed_out_of_range(tmp_path, seed):
    msg = _load(tmp_path, (BASE + f"query: {{seed: {seed}}}\n").encode())
    assert "'query.seed' must be an integer from 0 to 4294967295" in msg


def test_finding7_config_huge_integer_elsewhere_refused(tmp_path):
    assert "'head.epochs' must be an integer from" in _load(tmp_path, (BASE + "head: {epochs: 99999999999999}\n").encode())


@pytest.mark.parametrize("text, needle", [
    (BASE + "classes: [c, d]\n", "line 3: key 'classes' appears twice (first on line 2): keep one"),
    (BASE + "head:\n  epochs: 3\n  epochs: 4\n", "key 'epochs' appears twice"),
])
def test_finding7_config_duplicate_keys_refused(tmp_path, text, needle):
    assert needle in _load(tmp_path, text.encode())


def test_finding7_config_yaml_merge_keys_still_work(tmp_path):
    (tmp_path / "alwb.yaml").write_text("source: digits\nclasses: [a, b]\nbase: &b {epochs: 3}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown config key 'base'"):
        load_config(tmp_path)  # anchors parse; an unknown top key is still named


@pytest.mark.parametrize("classes, needle", [
    ("[a, null]", "contains an empty (null) name"),
    ("[a, ~]", "contains an empty (null) name"),
    ("[yes, no]", "quote the name"),
    ("[a, 1.10]", "the number 1.10, which YAML reads as 1.1"),
    ("['../../../x', b]", "looks like a relative file path"),
    ('["a\\tb", c]', "control characters"),
])
def test_finding7_config_bad_class_names_refused(tmp_path, classes, needle):
    assert needle in _load(tmp_path, f"source: digits\nclasses: {classes}\n".encode())


def test_finding7_config_version_1_10_is_not_silently_1_1(tmp_path):
    msg = _load(tmp_path, (BASE + "guideline: {version: 1.10}\n").encode())
    assert "'guideline.version' is the number 1.10" in msg and 'version: "1.10"' in msg
    (tmp_path / "alwb.yaml").write_text(BASE + 'guideline: {version: "1.10"}\n', encoding="utf-8")
    assert load_config(tmp_path).guideline.version == "1.10"
    (tmp_path / "alwb.yaml").write_text(BASE + "guideline: {version: 2}\n", encoding="utf-8")
    assert load_config(tmp_path).guideline.version == "2"


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n"])
def test_finding7_config_empty_file_says_so(tmp_path, text):
    msg = _load(tmp_path, text.encode())
    assert "is empty" in msg and "source.dataset" not in msg and "alwb init" in msg


def test_finding7_config_missing_source_names_the_key(tmp_path):
    msg = _load(tmp_path, b"classes: [a, b]\n")
    assert "config key 'source' is missing" in msg and "None" not in msg


def test_finding7_config_utf8_bom_is_fine(tmp_path):
    (tmp_path / "alwb.yaml").write_bytes(b"\xef\xbb\xbf" + BASE.encode())
    assert load_config(tmp_path).classes == ["a", "b"]


def test_finding7_config_non_finite_number_refused():
    with pytest.raises(ConfigError, match="'head.lr' must be a finite number"):
        config_from_dict({"source": "digits", "classes": ["a", "b"], "head": {"lr": float("nan")}})


# ------------------------------------------------------------------------------------------------ finding 10
def test_finding10_centroid_cold_start_accepted_and_used():
    import numpy as np

    from alworkbench.query.strategies import cold_start_indices

    cfg = config_from_dict({"source": "digits", "classes": ["a", "b"], "query": {"cold_start": "centroid"}})
    assert cfg.query.cold_start == "centroid"
    X = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)
    idx, info = cold_start_indices(X, 5, np.random.default_rng(0), mode="centroid")
    assert len(set(idx.tolist())) == 5
    with pytest.raises(ConfigError, match="allowed: typical, centroid, random"):
        config_from_dict({"source": "digits", "classes": ["a", "b"], "query": {"cold_start": "median"}})


def test_finding10_head_epochs_one_default():
    from alworkbench.head.torch_head import TorchHead

    assert HeadConfig().epochs == TorchHead().epochs


def test_finding10_builtin_datasets_and_backbones_have_one_owner():
    from alworkbench import config, embed
    from alworkbench.data import sources

    assert sources.BUILTIN_NAMES is config.BUILTIN_DATASETS
    backbones = pytest.importorskip("alworkbench.embed.backbones")
    assert backbones.TORCHVISION_BACKBONES is embed.TORCHVISION_BACKBONES
    assert backbones.OFFLINE_BACKBONES is embed.OFFLINE_BACKBONES
    assert backbones.available_backbones is embed.available_backbones


def test_finding10_class_name_rule_has_one_owner():
    """The config and the label schema refuse the same names with the same rule (alworkbench.names)."""
    from alworkbench.labels.schema import LabelSchema

    for bad in ("../x", "a//b", " a", "a\x00b"):
        with pytest.raises(ConfigError):
            config_from_dict({"source": "digits", "classes": [bad, "z"]}) if bad.strip() == bad else \
                LabelSchema(classes=[bad, "z"])
        with pytest.raises(ConfigError):
            LabelSchema(classes=[bad, "z"])
