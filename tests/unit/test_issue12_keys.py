"""Issue 12: per-class keys in alwb.yaml (``ui.keys``), checked when the config is read: a single character, not
one of the labeller's action keys, not given twice, for a class of the project; every error is one line naming
the key. ``label_budget`` is a positive integer."""
from __future__ import annotations

import numpy as np
import pytest

from alworkbench.config import config_from_dict, load_config
from alworkbench.errors import ConfigError
from alworkbench.keymap import ACTION_KEYS, TAG_KEYS, check_keys, class_keys

BASE = "source: digits\nclasses: [cat, dog, fox]\n"


def _error(tmp_path, text: str) -> str:
    (tmp_path / "alwb.yaml").write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "alwb.yaml") in msg, msg
    return msg


def test_keys_from_yaml_are_read_and_the_other_classes_keep_free_default_keys(tmp_path):
    (tmp_path / "alwb.yaml").write_text(BASE + "ui:\n  keys: {cat: c, fox: 1}\nlabel_budget: 300\n")
    cfg = load_config(tmp_path)
    assert cfg.ui.keys == {"cat": "c", "fox": "1"} and cfg.label_budget == 300
    # dog gets the first default key that no configured class took ("1" is fox's)
    assert class_keys(cfg.classes, cfg.ui.keys) == ["c", "2", "1"]
    # the config writes them back and reads them again unchanged
    (tmp_path / "alwb.yaml").write_text(cfg.to_yaml())
    assert load_config(tmp_path).ui.keys == {"cat": "c", "fox": "1"}


def test_a_config_without_keys_or_budget_writes_neither():
    cfg = config_from_dict({"source": "digits"})
    assert cfg.ui.keys == {} and cfg.label_budget is None
    assert "keys" not in cfg.to_dict()["ui"] and "label_budget" not in cfg.to_dict()


@pytest.mark.parametrize("key", sorted(ACTION_KEYS))
def test_an_action_key_is_refused_naming_the_key_and_its_action(tmp_path, key):
    msg = _error(tmp_path, BASE + f"ui:\n  keys: {{dog: {key!r}}}\n")
    assert f"'ui.keys.dog': key '{key}' is the labeller's key to {ACTION_KEYS[key]}" in msg


@pytest.mark.parametrize("value, shown", [("cc", "'cc'"), ("''", "''"), ("", "None"), ("' '", "' '"), ("[c]", "['c']"),
                                          ("12", "12")])
def test_a_key_must_be_one_character(tmp_path, value, shown):
    msg = _error(tmp_path, BASE + f"ui:\n  keys:\n    cat: {value}\n")
    assert f"'ui.keys.cat' must be a single character" in msg and f"got {shown}" in msg


def test_the_same_key_twice_is_refused(tmp_path):
    msg = _error(tmp_path, BASE + "ui:\n  keys: {cat: c, dog: c}\n")
    assert "key 'c' is given to both 'cat' and 'dog'" in msg


def test_a_key_for_a_class_the_project_does_not_have_is_refused(tmp_path):
    msg = _error(tmp_path, BASE + "ui:\n  keys: {cta: c}\n")
    assert "'ui.keys.cta': 'cta' is not one of this project's classes (cat, dog, fox)" in msg


def test_keys_must_be_a_mapping(tmp_path):
    assert "'ui.keys' must be a mapping of class name to key" in _error(tmp_path, BASE + "ui:\n  keys: [c, d]\n")


@pytest.mark.parametrize("value", ["0", "-5", "many"])
def test_label_budget_is_a_positive_integer(tmp_path, value):
    msg = _error(tmp_path, BASE + f"label_budget: {value}\n")
    assert "label_budget" in msg


def test_tag_keys_and_defaults_never_use_an_action_key():
    assert not set(TAG_KEYS) & set(ACTION_KEYS) and len(set(TAG_KEYS)) == len(TAG_KEYS)
    assert class_keys([f"c{i}" for i in range(12)]) == list("1234567890") + ["", ""]
    tags = [f"t{i}" for i in range(12)]
    assert class_keys(tags, check_keys({"t0": "x"}), multilabel=True)[:3] == ["x", "1", "2"]


def test_the_widget_shows_the_configured_keys_and_refuses_a_key_for_an_unknown_class(tmp_path):
    """Classes from the data (a folder source): the names are known only when the project opens; the widget checks."""
    from PIL import Image

    from alworkbench.project import Project
    from alworkbench.ui.workbench import Workbench

    for c, cls in enumerate(("cat", "dog")):
        (tmp_path / "img" / cls).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (8, 8), (40 * i, 120 * c, 0)).save(tmp_path / "img" / cls / f"{i}.png")
    p = Project.init(tmp_path / "proj", str(tmp_path / "img"), query={"batch_size": 4}, ui={"keys": {"dog": "d"}})
    X = np.random.default_rng(0).normal(size=(len(p.items), 4)).astype("float32")
    w = Workbench(p.session(annotator="ann", embeddings=X), retrain=False)
    assert {c["name"]: c["key"] for c in w.choices} == {"cat": "1", "dog": "d"}
    assert w.action_keys == ACTION_KEYS
    w.close()
    p.config.ui.keys = {"dgo": "d"}
    with pytest.raises(ConfigError, match="'ui.keys.dgo': 'dgo' is not one of this project's classes"):
        Workbench(p.session(annotator="ann", embeddings=X), retrain=False)
    p.close()
