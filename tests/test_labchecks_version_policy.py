"""Lab 10's TF Serving version policy (recsys_workshop.labchecks.version_policy): the schema copy parses what
TF Serving's documentation shows and refuses what TF Serving would, the rules say which versions a policy
loads and which one answers, and Exercise 10.3's check passes the solution and names each usual mistake (a
map written as a message, JSON instead of text format, no policy, ``latest``, ``all``, a missing or extra
version, a wrong name or path, a version folder as base path, a wrong label)."""

from __future__ import annotations

import pytest
from check_helpers import solution_functions

from recsys_workshop.labchecks import version_policy

pytestmark = pytest.mark.unit


# The example of TF Serving's "Assigning String Labels to Model Versions" (tensorflow_serving/g3doc/
# serving_config.md), inside a model_config_list, single quotes and all.
DOCUMENTED = """
model_config_list {
  config {
    name: 'my_model'
    base_path: '/models/my_model/'
    model_platform: 'tensorflow'
    model_version_policy {
      specific {
        versions: 42
        versions: 43
      }
    }
    version_labels {
      key: 'stable'
      value: 42
    }
    version_labels {
      key: 'canary'
      value: 43
    }
  }
}
"""


def _model(text: str):
    return version_policy.parse(text).model_config_list.config[0]


def _fails(yours, match: str) -> str:
    with pytest.raises(AssertionError) as info:
        version_policy.check_models_config(yours)
    message = str(info.value)
    assert match in message, message
    return message


# -------------------------------------------------------------------------------------------- the schema


def test_the_documented_example_parses_with_its_labels_and_versions():
    model = _model(DOCUMENTED)
    assert (model.name, model.base_path, model.model_platform) == ("my_model", "/models/my_model/", "tensorflow")
    assert list(model.model_version_policy.specific.versions) == [42, 43]
    assert dict(model.version_labels) == {"stable": 42, "canary": 43}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('model_config_list { config { nmae: "x" } }', 'no field named "nmae"'),
        ("model_config_list { config { model_version_policy { newest { } } } }", 'no field named "newest"'),
        ("model_config_list { config { version_labels { stable: 2 } } }", 'no field named "stable"'),
        ('model_config_list { config { name: "x" }', 'Expected "}"'),
        ('{"model_config_list": {}}', "Expected identifier"),
        ("model_config_list { config { model_version_policy { specific { versions: -x } } } }", "Couldn't parse"),
    ],
)
def test_what_tf_serving_would_not_parse_is_refused_with_the_parsers_position(text, says):
    with pytest.raises(ValueError, match="^1:") as info:
        version_policy.parse(text)
    assert says in str(info.value)


def test_one_policy_at_a_time_as_in_the_oneof():
    with pytest.raises(ValueError, match="policy_choice"):
        version_policy.parse("model_config_list { config { model_version_policy { all {} latest {} } } }")


def test_parse_wants_text():
    with pytest.raises(TypeError, match="got bytes"):
        version_policy.parse(b"model_config_list {}")


# --------------------------------------------------------------------------------------------- the rules


@pytest.mark.parametrize(
    ("policy", "loaded"),
    [
        ("", [4]),  # no policy: latest { num_versions: 1 }
        ("latest {}", [4]),  # num_versions 0 counts as 1
        ("latest { num_versions: 3 }", [2, 3, 4]),
        ("latest { num_versions: 9 }", [1, 2, 3, 4]),
        ("all {}", [1, 2, 3, 4]),
        ("specific { versions: 3 versions: 1 }", [1, 3]),
        ("specific { versions: [2, 7] }", [2]),  # 7 is not on disk: not loaded
    ],
)
def test_each_policy_loads_what_tf_serving_loads(policy, loaded):
    model = _model(f'model_config_list {{ config {{ name: "m" model_version_policy {{ {policy} }} }} }}')
    what = version_policy.served(model, [3, 1, 4, 2])
    assert list(what.loaded) == loaded
    assert what.default == loaded[-1], "without a version, the highest loaded version answers"
    assert what.refused == ""


def test_versions_labels_and_refusals_answer_as_tf_serving_does():
    model = _model(DOCUMENTED)
    what = version_policy.served(model, [41, 42, 43, 44])
    assert what.loaded == (42, 43) and what.default == 43
    assert what.answers() == 43 and what.answers(version=42) == 42 and what.answers(version=44) is None
    assert what.answers(label="stable") == 42 and what.answers(label="canary") == 43
    assert what.answers(label="beta") is None
    only_43 = version_policy.served(model, [43])
    assert only_43.refused == "label 'stable' names version 42, which is not loaded"
    assert version_policy.served(model, [43], allow_unavailable_labels=True).refused == ""
    assert version_policy.served(model, []).default is None


def test_render_writes_what_it_was_asked_for():
    model = _model(version_policy.render("recsys", "/mnt/models", [2, 1], {"stable": 2, "canary": 1}))
    assert (model.name, model.base_path, model.model_platform) == ("recsys", "/mnt/models", "tensorflow")
    assert model.model_version_policy.WhichOneof("policy_choice") == "specific"
    assert list(model.model_version_policy.specific.versions) == [2, 1]
    assert dict(model.version_labels) == {"stable": 2, "canary": 1}
    assert dict(_model(version_policy.render("m", "/m", [5], {})).version_labels) == {}


# ------------------------------------------------------------------------------------------ Exercise 10.3


def _solution_function():
    """The lab's ``models_config``, as the solution notebook defines it."""
    return solution_functions("10_serving.ipynb", "models_config")["models_config"]


def test_the_lab_solution_and_the_package_pass_and_agree():
    solution = _solution_function()
    version_policy.check_models_config(solution)
    version_policy.check_models_config(version_policy.render)
    for case in (("recsys", "/mnt/models", [1, 2], {"stable": 2}), ("m", "/m", [3], {})):
        assert _model(solution(*case)) == _model(version_policy.render(*case))


def _written(policy=None, *, name=None, base_path=None, platform="tensorflow", labels=None, text=None):
    """A learner's models_config with one thing changed."""

    def yours(n, path, versions, wanted):
        if text is not None:
            return text
        lines = " ".join(f"versions: {v}" for v in versions)
        block = policy(versions) if policy else f"specific {{ {lines} }}"
        entries = " ".join(
            f'version_labels {{ key: "{k}" value: {v} }}' for k, v in (wanted if labels is None else labels).items()
        )
        return (f'model_config_list {{ config {{ name: "{name or n}" base_path: "{base_path or path}" '
                f'model_platform: "{platform}" model_version_policy {{ {block} }} {entries} }} }}')  # fmt: skip

    return yours


@pytest.mark.parametrize(
    ("yours", "says"),
    [
        (_written(lambda v: ""), "no model_version_policy means latest { num_versions: 1 }"),
        (_written(lambda v: f"latest {{ num_versions: {len(v)} }}"), "it loads [2, 3], expected [1, 2]"),
        (_written(lambda v: "all {}"), "all {} loads every version on disk"),
        (_written(lambda v: "specific { versions: 2 }"), "it loads [2], expected [1, 2]"),
        (_written(lambda v: "specific { versions: 1 versions: 2 versions: 3 }"), "it loads [1, 2, 3]"),
        (_written(name="my_model"), "name: expected 'recsys' (the name in /v1/models/recsys:predict)"),
        (_written(base_path="/mnt/models/2"), "the base path is the folder that holds the version folders"),
        (_written(platform="keras"), 'model_platform: expected "tensorflow"'),
        (_written(labels={"stable": 1}), "version_labels: expected {'stable': 2}, got {'stable': 1}"),
        (_written(labels={}), "version_labels: expected {'stable': 2}, got {}"),
    ],
)
def test_each_usual_mistake_gets_its_own_message(yours, says):
    message = _fails(yours, says)
    assert message.startswith("models_config('recsys', '/mnt/models', [1, 2], {'stable': 2}): ")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('model_config_list { config { name: "recsys" version_labels { stable: 2 } } }',
         'a label is a map entry: version_labels { key: "stable" value: 2 }'),
        ('{"model_config_list": {"config": {"name": "recsys"}}}', "field names without quotes"),
        ('model_config_list { config { name: "recsys" }', "a brace is missing or extra"),
        ("", "expected one config { ... } inside model_config_list, got 0"),
    ],
)  # fmt: skip
def test_unparsable_text_gets_the_parser_message_and_advice(text, says):
    message = _fails(_written(text=text), says)
    assert "TF Serving cannot parse it" in message or "got 0" in message


def test_a_non_text_answer_and_an_unwritten_exercise():
    _fails(lambda *a: {"model_config_list": {}}, "returned dict, not the text of a models.config (str)")

    def stub(*args):
        raise NotImplementedError("Exercise 10.3")

    with pytest.raises(NotImplementedError, match="Exercise 10.3"):
        version_policy.check_models_config(stub)


def test_an_extra_label_is_caught():
    def extra(name, base_path, versions, labels):
        return version_policy.render(name, base_path, versions, {**labels, "canary": versions[-1]})

    _fails(extra, "version_labels: expected {'stable': 2}, got {'canary': 2, 'stable': 2}")


def test_a_later_case_is_named_when_only_it_fails():
    def hard_coded(name, base_path, versions, labels):
        return version_policy.render("recsys", "/mnt/models", versions, labels)

    message = _fails(hard_coded, "name: expected 'films'")
    assert message.startswith("models_config('films', '/models/films', [7], {}): ")
