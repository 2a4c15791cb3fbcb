import pytest

from alworkbench.config import ProjectConfig, config_from_dict, load_config
from alworkbench.errors import ConfigError


def test_defaults_and_roundtrip(tmp_path):
    cfg = config_from_dict({"name": "x", "source": {"kind": "builtin", "dataset": "digits"}, "classes": ["a", "b"]})
    assert cfg.backbone.name and cfg.query.batch_size == 20 and not cfg.multilabel
    path = tmp_path / "alwb.yaml"
    cfg.save(path)
    again = load_config(tmp_path)
    assert again == cfg


@pytest.mark.parametrize("raw, needle", [
    ({"sorce": {}}, "unknown config key 'sorce' (did you mean 'source'?)"),
    ({"head": {"epochz": 3}}, "unknown config key 'head.epochz' (did you mean 'epochs'?)"),
    ({"head": {"kind": "transformer"}}, "'head.kind' is 'transformer'; allowed: linear, mlp"),
    ({"head": {"epochs": "many"}}, "'head.epochs' must be an integer"),
    ({"query": {"batch_size": 0}}, "'query.batch_size' must be >= 1, got 0"),
    ({"source": {"kind": "s3"}}, "'source.kind' is 's3'; allowed: builtin, folder, csv"),
    ({"source": {"kind": "builtin", "dataset": "mnist"}}, "allowed: digits, fashion-mnist"),
    ({"source": {"kind": "folder"}}, "'source.path' is required"),
    ({"classes": ["a", "a"]}, "duplicate names: a"),
    ({"classes": ["a"], "tags": ["b"]}, "'classes' and 'tags' are exclusive"),
    ({"evaluation": {"holdout": 1.5}}, "'evaluation.holdout' must be in [0, 1)"),
    ({"backbone": {"device": "tpu"}}, "'backbone.device' is 'tpu'"),
    ([1, 2], "must be a mapping"),
])
def test_bad_values_one_line_errors(raw, needle):
    if isinstance(raw, dict):
        raw = {"source": {"kind": "builtin", "dataset": "digits"}, **raw} if "source" not in raw else raw
    with pytest.raises(ConfigError) as e:
        config_from_dict(raw)
    msg = str(e.value)
    assert needle in msg
    assert "\n" not in msg


def test_invalid_yaml_names_line(tmp_path):
    (tmp_path / "alwb.yaml").write_text("name: x\nsource: {kind: builtin\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(tmp_path)


def test_missing_config_says_how_to_create(tmp_path):
    with pytest.raises(ConfigError, match="alwb init"):
        load_config(tmp_path)


def test_example_configs_are_valid():
    from pathlib import Path

    for p in sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml")):
        cfg = load_config(p)
        assert isinstance(cfg, ProjectConfig)
        assert cfg.guideline.text.strip(), p.name


def test_multilabel_flag():
    cfg = config_from_dict({"source": {"kind": "csv", "path": "x.csv"}, "tags": "a, b ,c"})
    assert cfg.multilabel and cfg.tags == ["a", "b", "c"]


def test_unknown_backbone_and_strategy_named(tmp_path):
    from alworkbench.config import check_registries

    cfg = config_from_dict({"source": "digits", "classes": ["a", "b"], "backbone": {"name": "resnet19"}})
    with pytest.raises(ConfigError, match="'backbone.name' is 'resnet19'; allowed: randconv, pixels, resnet18"):
        check_registries(cfg)
    cfg = config_from_dict({"source": "digits", "classes": ["a", "b"], "query": {"strategy": "magic"}})
    with pytest.raises(ConfigError, match="'query.strategy' is 'magic'; allowed: .*margin"):
        check_registries(cfg)


def test_single_class_refused():
    with pytest.raises(ConfigError, match="at least 2 classes"):
        config_from_dict({"source": "digits", "classes": ["only"]})


def test_source_shorthand_strings():
    assert config_from_dict({"source": "digits", "classes": ["a", "b"]}).source.dataset == "digits"
    assert config_from_dict({"source": "m.CSV", "tags": ["a"]}).source.kind == "csv"
    assert config_from_dict({"source": "imgs/", "classes": ["a", "b"]}).source.kind == "folder"


def test_ui_section_defaults_roundtrip_and_validation(tmp_path):
    cfg = config_from_dict({"source": "digits", "classes": ["a", "b"]})
    assert cfg.ui.show_suggestions is True and cfg.ui.calibrate is True
    cfg = config_from_dict({"source": "digits", "classes": ["a", "b"],
                            "ui": {"show_suggestions": False, "calibrate": False}})
    assert cfg.ui.show_suggestions is False and cfg.ui.calibrate is False
    cfg.save(tmp_path / "alwb.yaml")
    assert "show_suggestions: false" in (tmp_path / "alwb.yaml").read_text()
    again = load_config(tmp_path)
    assert again == cfg and again.ui.show_suggestions is False
    assert config_from_dict({"source": "digits", "classes": ["a", "b"], "ui": None}).ui.show_suggestions is True
    for raw, needle in (({"show_suggestions": "no"}, "'ui.show_suggestions' must be true or false"),
                        ({"calibrate": 1}, "'ui.calibrate' must be true or false"),
                        ({"show_suggestion": False}, "unknown config key 'ui.show_suggestion' (did you mean "
                                                     "'show_suggestions'?)")):
        with pytest.raises(ConfigError) as e:
            config_from_dict({"source": "digits", "classes": ["a", "b"], "ui": raw})
        assert needle in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="'ui' must be a mapping"):
        config_from_dict({"source": "digits", "classes": ["a", "b"], "ui": [1]})
