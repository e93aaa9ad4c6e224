"""TensorFlow Serving's version policy, for lab 10: its ``models.config`` schema, what a config serves, and
the check of Exercise 10.3 (the learner writes the ``models.config`` of a rollback).

TF Serving decides which versions of a model it loads from a ``ModelServerConfig`` in protobuf text format
(``--model_config_file``)::

    model_config_list {
      config {
        name: "recsys"
        base_path: "/mnt/models"
        model_platform: "tensorflow"
        model_version_policy { specific { versions: 1 versions: 2 } }
        version_labels { key: "stable" value: 2 }
      }
    }

:func:`parse` reads such a text with protobuf's own text-format parser against a copy of the part of TF
Serving's schema this uses (``tensorflow_serving/config/model_server_config.proto`` and
``sources/storage_path/file_system_storage_path_source.proto``, same names and field numbers; not
``logging_config`` nor ``custom_model_config``), so a misspelt field fails exactly as it would in the
server. :func:`served` says what the server would load from the versions on disk and which version answers
a request without a version, with a version, or with a label (TF Serving's rules: no policy means
``latest { num_versions: 1 }``; ``latest`` takes the highest ``num_versions`` (at least 1) on disk,
``all`` every one, ``specific`` those listed that exist; without a version the highest loaded version
answers; a label may only name a loaded version, or the server refuses the config, unless started with
``--allow_version_labels_for_unavailable_models``). :func:`render` is the package's version of the
exercise. protobuf only (no TensorFlow, no TF Serving package needed).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["Served", "check_models_config", "parse", "render", "served"]

_PACKAGE = "tensorflow.serving"


@functools.cache
def _message_class(name: str):
    """The message class ``tensorflow.serving.<name>`` of a private descriptor pool (never the default one,
    so a real ``tensorflow-serving-api`` install cannot clash with it)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    optional, repeated = F.LABEL_OPTIONAL, F.LABEL_REPEATED

    def message(parent, msg_name: str, fields=(), nested=(), oneof: str | None = None, map_entry=False):
        msg = parent.add(name=msg_name)
        if map_entry:
            msg.options.map_entry = True
        if oneof:
            msg.oneof_decl.add(name=oneof)
        for field_name, number, kind, label, type_name, in_oneof in fields:
            field = msg.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = f".{_PACKAGE}.{type_name}"
            if in_oneof:
                field.oneof_index = 0
        for build in nested:
            build(msg.nested_type)
        return msg

    policy = "FileSystemStoragePathSourceConfig.ServableVersionPolicy"
    file = descriptor_pb2.FileDescriptorProto(
        name="recsys_workshop/tf_serving_model_server_config.proto", package=_PACKAGE, syntax="proto3"
    )
    message(file.message_type, "FileSystemStoragePathSourceConfig", nested=[
        lambda parent: message(parent, "ServableVersionPolicy", oneof="policy_choice", fields=[
            ("latest", 100, F.TYPE_MESSAGE, optional, f"{policy}.Latest", True),
            ("all", 101, F.TYPE_MESSAGE, optional, f"{policy}.All", True),
            ("specific", 102, F.TYPE_MESSAGE, optional, f"{policy}.Specific", True),
        ], nested=[
            lambda p: message(p, "Latest", [("num_versions", 1, F.TYPE_UINT32, optional, None, False)]),
            lambda p: message(p, "All"),
            lambda p: message(p, "Specific", [("versions", 1, F.TYPE_INT64, repeated, None, False)]),
        ]),
    ])  # fmt: skip
    message(file.message_type, "ModelConfig", fields=[
        ("name", 1, F.TYPE_STRING, optional, None, False),
        ("base_path", 2, F.TYPE_STRING, optional, None, False),
        ("model_platform", 4, F.TYPE_STRING, optional, None, False),
        ("model_version_policy", 7, F.TYPE_MESSAGE, optional, policy, False),
        ("version_labels", 8, F.TYPE_MESSAGE, repeated, "ModelConfig.VersionLabelsEntry", False),
    ], nested=[lambda p: message(p, "VersionLabelsEntry", map_entry=True, fields=[
        ("key", 1, F.TYPE_STRING, optional, None, False),
        ("value", 2, F.TYPE_INT64, optional, None, False),
    ])])  # fmt: skip
    message(file.message_type, "ModelConfigList", [("config", 1, F.TYPE_MESSAGE, repeated, "ModelConfig", False)])
    message(file.message_type, "ModelServerConfig", oneof="config",
            fields=[("model_config_list", 1, F.TYPE_MESSAGE, optional, "ModelConfigList", True)])  # fmt: skip
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))


def parse(text: str):
    """``text`` (a ``models.config``) as a ``ModelServerConfig`` message; ``ValueError`` with the parser's
    ``line:column`` message when TF Serving could not read it either."""
    from google.protobuf import text_format

    if not isinstance(text, str):
        raise TypeError(f"a models.config is text (str), got {type(text).__name__}")
    config = _message_class("ModelServerConfig")()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as err:
        raise ValueError(str(err)) from None
    return config


@dataclasses.dataclass(frozen=True)
class Served:
    """What TF Serving would serve for one model: ``loaded`` versions, the ``default`` (no version asked),
    ``labels`` (label -> version) and, when the config would be refused, ``refused`` (why), else ''."""

    loaded: tuple[int, ...]
    default: int | None
    labels: dict[str, int]
    refused: str = ""

    def answers(self, *, version: int | None = None, label: str | None = None) -> int | None:
        """The version that answers ``/v1/models/<name>[/versions/<version>|/labels/<label>]:predict``;
        None: TF Serving answers an error (not loaded, unknown label)."""
        if label is not None:
            return self.labels.get(label)
        if version is not None:
            return version if version in self.loaded else None
        return self.default


def served(model, on_disk: Iterable[int], *, allow_unavailable_labels: bool = False) -> Served:
    """TF Serving's choice for ``model`` (a ``ModelConfig``) given the version folders ``on_disk``; the
    versions it loads may still fail to load (a broken folder): that is for the server to find out."""
    disk = sorted({int(v) for v in on_disk})
    kind = model.model_version_policy.WhichOneof("policy_choice") or "latest"
    if kind == "latest":
        loaded = disk[-max(model.model_version_policy.latest.num_versions, 1) :] if disk else []
    elif kind == "all":
        loaded = disk
    else:
        loaded = sorted(set(disk) & {int(v) for v in model.model_version_policy.specific.versions})
    labels = {str(k): int(v) for k, v in model.version_labels.items()}
    stray = {k: v for k, v in labels.items() if v not in loaded}
    refused = ""
    if stray and not allow_unavailable_labels:
        refused = ", ".join(f"label {k!r} names version {v}, which is not loaded" for k, v in sorted(stray.items()))
    return Served(tuple(loaded), loaded[-1] if loaded else None, labels, refused)


def render(name: str, base_path: str, versions: Iterable[int], labels: Mapping[str, int]) -> str:
    """The ``models.config`` of one TensorFlow model serving exactly ``versions``, with ``labels``
    (label -> version): the package's version of Exercise 10.3."""
    lines = ["model_config_list {", "  config {", f'    name: "{name}"', f'    base_path: "{base_path}"',
             '    model_platform: "tensorflow"', "    model_version_policy {", "      specific {"]  # fmt: skip
    lines += [f"        versions: {int(v)}" for v in versions]
    lines += ["      }", "    }"]
    lines += [f'    version_labels {{ key: "{label}" value: {int(v)} }}' for label, v in labels.items()]
    return "\n".join([*lines, "  }", "}", ""])


# ------------------------------------------------------------------------------------------ Exercise 10.3

_PARSE_ADVICE = {
    "VersionLabelsEntry": 'a label is a map entry: version_labels { key: "stable" value: 2 }, one block per label',
    "Expected identifier": "protobuf text format: field names without quotes and no colon before a { block",
    '"}"': "a brace is missing or extra: count the { and } of each block",
    "versions": "specific { versions: 1 versions: 2 } (one versions: per number, or versions: [1, 2])",
}


def _parsed(yours: Callable[..., Any], case: tuple) -> Any:
    call = f"models_config{case!r}"
    text = yours(*case)
    if not isinstance(text, str):
        raise AssertionError(f"{call} returned {type(text).__name__}, not the text of a models.config (str)")
    try:
        return parse(text)
    except ValueError as err:
        advice = next((a for key, a in _PARSE_ADVICE.items() if key in str(err)), "")
        raise AssertionError(
            f"{call}: TF Serving cannot parse it: {err}" + (f" ({advice})" if advice else "")
        ) from None


def _one_model(config, call: str, name: str, base_path: str):
    models = list(config.model_config_list.config)
    if len(models) != 1:
        raise AssertionError(f"{call}: expected one config {{ ... }} inside model_config_list, got {len(models)}")
    model = models[0]
    if model.name != name:
        raise AssertionError(f"{call}: name: expected {name!r} (the name in /v1/models/{name}:predict), "
                             f"got {model.name!r}")  # fmt: skip
    if model.base_path != base_path:
        tail = " (the base path is the folder that holds the version folders)" if base_path in model.base_path else ""
        raise AssertionError(f"{call}: base_path: expected {base_path!r}, got {model.base_path!r}{tail}")
    if model.model_platform != "tensorflow":
        raise AssertionError(f'{call}: model_platform: expected "tensorflow", got {model.model_platform!r}')
    return model


def _policy_problem(model, versions: list[int], on_disk: list[int]) -> str:
    kind = model.model_version_policy.WhichOneof("policy_choice")
    loaded = list(served(model, on_disk).loaded)
    if kind == "specific" and loaded == sorted(versions):
        return ""
    what = {
        None: "no model_version_policy means latest { num_versions: 1 }: only the highest version on disk",
        "latest": "latest { num_versions: N } follows the N highest versions on disk, whatever lands there",
        "all": "all {} loads every version on disk, a broken one too",
        "specific": "specific loads the versions it lists",
    }[kind]
    return f"with versions {on_disk} on disk it loads {loaded}, expected {sorted(versions)}: {what}"


def check_models_config(yours: Callable[[str, str, list[int], dict[str, int]], str]) -> None:
    """Exercise 10.3: ``yours(name, base_path, versions, labels)`` returns a ``models.config`` that TF Serving
    parses, for one TensorFlow model serving exactly ``versions`` whatever else is on disk (so ``specific``),
    with ``labels``; three cases, the first the rollback of lab 10 (version 3 broken on disk)."""
    cases = [
        (("recsys", "/mnt/models", [1, 2], {"stable": 2}), [1, 2, 3]),
        (("recsys", "/mnt/models", [2, 3], {"stable": 2, "canary": 3}), [1, 2, 3, 4]),
        (("films", "/models/films", [7], {}), [5, 6, 7, 8]),
    ]
    for case, on_disk in cases:
        name, base_path, versions, labels = case
        call = f"models_config{case!r}"
        model = _one_model(_parsed(yours, case), call, name, base_path)
        problem = _policy_problem(model, versions, on_disk)
        if problem:
            raise AssertionError(f"{call}: {problem}")
        got = dict(sorted((str(k), int(v)) for k, v in model.version_labels.items()))  # a map has no order
        if got != labels:
            raise AssertionError(f"{call}: version_labels: expected {dict(sorted(labels.items()))}, got {got}")
