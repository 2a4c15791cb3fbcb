"""LabelSchema: which answers a project accepts, with errors that list the allowed values."""
from __future__ import annotations

import pytest

from alworkbench.errors import AnswerError, ConfigError
from alworkbench.labels import LabelSchema, ancestors, with_ancestors
from alworkbench.types import Answer


def test_single_label_schema_shape():
    s = LabelSchema(classes=["cat", "dog"], guideline_text="# be careful", guideline_version="2")
    assert not s.multilabel
    assert s.names == ("cat", "dog")
    assert s.guideline_version == "2" and s.guideline_text == "# be careful"
    assert s.validate(Answer.of_label("dog")) == Answer.of_label("dog")


def test_unknown_class_lists_allowed_values():
    s = LabelSchema(classes=["cat", "dog"])
    with pytest.raises(AnswerError, match=r"unknown class 'cow'; allowed: 'cat', 'dog'"):
        s.validate(Answer.of_label("cow"))


def test_kind_mismatch_refused_both_ways():
    single = LabelSchema(classes=["cat", "dog"])
    multi = LabelSchema(tags=["red", "round"])
    with pytest.raises(AnswerError, match="single-label project"):
        single.validate(Answer.of_tags(["cat"]))
    with pytest.raises(AnswerError, match="multi-label project"):
        multi.validate(Answer.of_label("red"))


def test_skip_and_flag_always_allowed():
    for s in (LabelSchema(classes=["a", "b"]), LabelSchema(tags=["x"])):
        assert s.validate(Answer.skip()).kind == "skip"
        assert s.validate(Answer.flag("blurry")).note == "blurry"


def test_tags_validation_and_normalisation():
    s = LabelSchema(tags=["red", "round", "small"])
    ans = s.validate(Answer("tags", tags=("round", "red", "round")))
    assert ans.tags == ("red", "round")
    with pytest.raises(AnswerError, match=r"empty tag set: choose at least one tag, or skip"):
        s.validate(Answer.of_tags([]))
    with pytest.raises(AnswerError, match=r"unknown tag\(s\) 'blue', 'huge'; allowed: 'red', 'round', 'small'"):
        s.validate(Answer.of_tags(["red", "huge", "blue"]))


def test_hierarchical_tags_accept_implicit_parents():
    s = LabelSchema(tags=["animal/cat", "animal/dog/puppy", "plant"])
    assert ancestors("animal/dog/puppy") == ("animal", "animal/dog")
    assert ancestors("plant") == ()
    assert s.ancestors("a/b") == ("a",)
    assert s.allowed_tags == ("animal", "animal/cat", "animal/dog", "animal/dog/puppy", "plant")
    assert s.names == ("animal/cat", "animal/dog/puppy", "plant")
    assert s.validate(Answer.of_tags(["animal"])).tags == ("animal",)
    assert s.validate(Answer.of_tags(["animal/dog", "plant"])).tags == ("animal/dog", "plant")
    with pytest.raises(AnswerError, match="unknown tag"):
        s.validate(Answer.of_tags(["animal/cow"]))
    assert with_ancestors(["a/b/c", "a/x"]) == ("a", "a/b", "a/b/c", "a/x")


@pytest.mark.parametrize("kwargs, msg", [
    ({}, "exactly one of 'classes'"),
    ({"classes": ["a", "b"], "tags": ["x"]}, "not both"),
    ({"classes": ["a"]}, "at least 2 classes, got 1"),
    ({"classes": ["a", "a"]}, "'a' is listed twice"),
    ({"tags": []}, "the list is empty"),
    ({"tags": "abc"}, "got the string"),
    ({"tags": ["a//b"]}, "empty part"),
    ({"classes": ["a", " b"]}, "leading or trailing spaces"),
])
def test_bad_schemas_are_config_errors(kwargs, msg):
    with pytest.raises(ConfigError, match=msg):
        LabelSchema(**kwargs)


def test_malformed_answers_refused():
    s = LabelSchema(classes=["a", "b"])
    with pytest.raises(AnswerError, match="unknown answer kind 'maybe'"):
        s.validate(Answer("maybe"))  # type: ignore[arg-type]
    with pytest.raises(AnswerError, match="time_spent_s must be >= 0"):
        s.validate(Answer.of_label("a", time_spent_s=-1.0))
    with pytest.raises(AnswerError, match="expected an Answer"):
        s.validate("a")  # type: ignore[arg-type]
