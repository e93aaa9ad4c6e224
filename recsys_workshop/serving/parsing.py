"""Checking requests before any work: V1 bodies (``{"instances": [...]}``), V2 bodies and tensors (REST
and gRPC), the version a request pins. Every refusal is a :class:`RequestError` with a short reason that
quotes at most :data:`MAX_ECHO` characters of what the client sent.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from recsys_workshop.serving.model import RequestError

__all__ = [
    "DEFAULT_K",
    "MAX_ECHO",
    "MAX_INSTANCES",
    "MAX_ITEMS_PER_INSTANCE",
    "MAX_K",
    "VERSION_HEADER",
    "clip",
    "header_version",
    "parse_instances",
    "parse_v2_body",
    "parse_version",
    "tensor_ints",
]

DEFAULT_K = 10
MAX_K = 1000
MAX_INSTANCES = 1000
MAX_ITEMS_PER_INSTANCE = 10_000
VERSION_HEADER = "x-model-version"
MAX_ECHO = 60  # characters of client input quoted in an error message
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INTEGER_TYPES = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
V2_INPUTS = {"user_id": "INT64, shape [n]", "k": "INT32 or INT64, shape [1]"}
V2_REQUEST_KEYS = {"id", "parameters", "inputs", "outputs"}
V2_INPUT_KEYS = {"name", "shape", "datatype", "parameters", "data"}


def clip(value: Any, limit: int = MAX_ECHO) -> str:
    """``repr(value)`` cut to ``limit`` characters (``...`` marks the cut): what an error may quote."""
    if isinstance(value, (str, bytes)) and len(value) > 4 * limit:
        value = value[: 4 * limit]  # never build the repr of a huge string
    elif isinstance(value, (list, tuple, set, dict)) and len(value) > limit:
        return f"<{type(value).__name__} of {len(value)} entries>"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _names(keys) -> str:
    shown = ", ".join(clip(str(key), 40) for key in sorted(keys, key=str)[:5])
    return f"[{shown}{', ...' if len(keys) > 5 else ''}]"


def _int(value: Any, what: str) -> int:
    if isinstance(value, float) and value.is_integer() and not INT64_MIN < value < INT64_MAX:  # JSON parsers: floats
        raise RequestError(f"{what} is out of the 64-bit integer range")
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{what} must be an integer, got {clip(value)}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise RequestError(f"{what} is out of the 64-bit integer range")
    return value


def _int_list(value: Any, what: str, limit: int) -> list[int]:
    if not isinstance(value, list):
        raise RequestError(f"{what} must be a list of integers, got {type(value).__name__}")
    if len(value) > limit:
        raise RequestError(f"{what} has {len(value)} entries, at most {limit} are allowed")
    # the common case, checked at C speed: plain ints (``type(v) is int`` also refuses bools) in range; an
    # exclude list is every item the user has seen, hundreds of them in every request of the API
    if all(type(v) is int for v in value) and (not value or INT64_MIN <= min(value) and max(value) <= INT64_MAX):
        return value
    return [_int(v, f"{what}[{i}]") for i, v in enumerate(value)]  # finds and names the first bad entry


INSTANCE_KEYS = {"user_id", "k", "exclude", "item_ids"}


def parse_instances(body: Any) -> tuple[list[dict[str, Any]], int | None]:
    """Check a V1 predict body; returns the normalised instances and the pinned version (or None)."""
    if not isinstance(body, dict):
        raise RequestError(f'the body must be a JSON object {{"instances": [...]}}, got {type(body).__name__}')
    unknown = set(body) - {"instances", "version"}
    if unknown:
        raise RequestError(f"unknown top-level field(s) {_names(unknown)}: expected 'instances' (and 'version')")
    if "instances" not in body:
        raise RequestError('missing \'instances\': a list like [{"user_id": 196, "k": 10}]')
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise RequestError("'instances' must be a non-empty list")
    if len(instances) > MAX_INSTANCES:
        raise RequestError(f"too many instances ({len(instances)}), at most {MAX_INSTANCES} per request")
    version = None
    if "version" in body:
        version = _int(body["version"], "version")
        if version < 1:
            raise RequestError("version must be >= 1")
    return [_parse_instance(instance, f"instances[{i}]") for i, instance in enumerate(instances)], version


def _parse_instance(instance: Any, where: str) -> dict[str, Any]:
    if not isinstance(instance, dict):
        raise RequestError(f'{where} must be an object like {{"user_id": 196, "k": 10}}')
    unknown = set(instance) - INSTANCE_KEYS
    if unknown:
        raise RequestError(f"{where}: unknown field(s) {_names(unknown)}; allowed: {sorted(INSTANCE_KEYS)}")
    if "user_id" not in instance:
        raise RequestError(f"{where}: missing 'user_id'")
    entry: dict[str, Any] = {"user_id": _int(instance["user_id"], f"{where}.user_id")}
    if "item_ids" in instance:
        if "k" in instance or "exclude" in instance:
            raise RequestError(f"{where}: 'item_ids' (scoring) cannot be combined with 'k' or 'exclude'")
        entry["item_ids"] = _int_list(instance["item_ids"], f"{where}.item_ids", MAX_ITEMS_PER_INSTANCE)
        if not entry["item_ids"]:
            raise RequestError(f"{where}.item_ids must not be empty")
        return entry
    k = _int(instance.get("k", DEFAULT_K), f"{where}.k")
    if not 1 <= k <= MAX_K:
        raise RequestError(f"{where}.k must be between 1 and {MAX_K}, got {k}")
    entry["k"] = k
    entry["exclude"] = _int_list(instance.get("exclude", []), f"{where}.exclude", MAX_ITEMS_PER_INSTANCE)
    return entry


def parse_version(value: Any, what: str) -> int:
    """A version number given as text (header, query, URL): an integer >= 1."""
    text = str(value).strip()
    if not text.isdigit() or len(text) > 18:
        raise RequestError(f"{what} must be an integer version, got {clip(value)}")
    version = int(text)
    if version < 1:
        raise RequestError(f"{what} must be >= 1")
    return version


def header_version(headers: dict[str, str] | None) -> int | None:
    """The version pinned by the ``x-model-version`` header (or gRPC metadata), or None."""
    value = (headers or {}).get(VERSION_HEADER)
    if value is None or value == "":
        return None
    return parse_version(value, f"the {VERSION_HEADER} header")


# --------------------------------------------------------------------------------------------- V2


def parse_v2_body(body: bytes, model_name: str):
    """A V2 REST body (``{"inputs": [...], "id"?, "parameters"?, "outputs"?}``) checked field by field and
    turned into KServe's ``InferRequest``; the tensors themselves are checked by :func:`tensor_ints`."""
    import orjson
    from kserve.protocol.infer_type import InferInput, InferRequest

    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise RequestError(f"the body is not valid JSON: {clip(str(error), 100)}") from None
    if not isinstance(payload, dict):
        raise RequestError(f'the body must be a JSON object {{"inputs": [...]}}, got {type(payload).__name__}')
    unknown = set(payload) - V2_REQUEST_KEYS
    if unknown:
        raise RequestError(f"unknown top-level field(s) {_names(unknown)}; allowed: {sorted(V2_REQUEST_KEYS)}")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not 1 <= len(inputs) <= len(V2_INPUTS):
        raise RequestError(f"'inputs' must be a list of 1 to {len(V2_INPUTS)} tensors: {_expected_inputs()}")
    request_id = payload.get("id")
    if request_id is not None and (not isinstance(request_id, str) or len(request_id) > 128):
        raise RequestError("'id' must be a string of at most 128 characters")
    for key in ("parameters",):
        if payload.get(key) is not None and not isinstance(payload[key], dict):
            raise RequestError(f"'{key}' must be an object")
    if payload.get("outputs") is not None and not isinstance(payload["outputs"], list):
        raise RequestError("'outputs' must be a list")
    infer_inputs = []
    for i, tensor in enumerate(inputs):
        where = f"inputs[{i}]"
        if not isinstance(tensor, dict):
            raise RequestError(f"{where} must be an object with 'name', 'shape', 'datatype' and 'data'")
        unknown = set(tensor) - V2_INPUT_KEYS
        if unknown:
            raise RequestError(f"{where}: unknown field(s) {_names(unknown)}; allowed: {sorted(V2_INPUT_KEYS)}")
        missing = {"name", "shape", "datatype", "data"} - set(tensor)
        if missing:
            raise RequestError(f"{where}: missing {sorted(missing)}")
        if not isinstance(tensor["name"], str) or not isinstance(tensor["datatype"], str):
            raise RequestError(f"{where}: 'name' and 'datatype' must be strings")
        if not isinstance(tensor["shape"], list) or not isinstance(tensor["data"], list):
            raise RequestError(f"{where}: 'shape' and 'data' must be lists")
        infer_inputs.append(InferInput(tensor["name"], tensor["shape"], tensor["datatype"], tensor["data"]))
    return InferRequest(model_name=model_name, infer_inputs=infer_inputs, request_id=request_id)


def _expected_inputs() -> str:
    return ", ".join(f"'{name}' ({spec})" for name, spec in V2_INPUTS.items())


def v2_inputs(request) -> dict[str, Any]:
    """The inputs of a KServe ``InferRequest`` by name; refuses unknown or repeated names."""
    found: dict[str, Any] = {}
    for tensor in request.inputs:
        name = tensor.name
        if name not in V2_INPUTS:
            raise RequestError(f"unknown input {clip(name, 40)}; this model takes {_expected_inputs()}")
        if name in found:
            raise RequestError(f"input '{name}' is given twice")
        found[name] = tensor
    if "user_id" not in found:
        raise RequestError(f"missing input 'user_id' ({V2_INPUTS['user_id']})")
    return found


def tensor_ints(tensor, limit: int) -> np.ndarray:
    """The values of an integer V2 input (KServe ``InferInput``, from REST or gRPC) as a flat int64 array,
    checked before numpy sees them: an integer datatype, a shape of non-negative integers holding at most
    ``limit`` values, exactly that many values (JSON data or raw bytes), each in the int64 range."""
    name, datatype = tensor.name, tensor.datatype
    if datatype not in INTEGER_TYPES:
        raise RequestError(f"input '{name}' must be an integer tensor (INT64 or INT32), got {clip(datatype, 20)}")
    shape = list(tensor.shape)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise RequestError(f"input '{name}': the shape must be a list of non-negative integers, got {clip(shape)}")
    count = math.prod(shape)
    if count > limit:
        raise RequestError(f"input '{name}': shape {clip(shape)} holds {count} values, at most {limit} are allowed")
    raw = getattr(tensor, "_raw_data", None)
    if raw is not None:
        return _raw_ints(name, datatype, raw, count)
    values = _flat(tensor.data, count, name)
    if len(values) != count:
        raise RequestError(f"input '{name}': shape {clip(shape)} needs {count} values, got {len(values)}")
    return np.asarray([_int(v, f"input '{name}' value") for v in values], dtype=np.int64)


def _raw_ints(name: str, datatype: str, raw: bytes, count: int) -> np.ndarray:
    dtype = np.dtype(datatype.lower()).newbyteorder("<")
    if len(raw) != count * dtype.itemsize:
        raise RequestError(f"input '{name}': {len(raw)} raw bytes do not hold {count} {datatype} values")
    values = np.frombuffer(raw, dtype=dtype)
    if dtype == np.uint64 and np.any(values > INT64_MAX):
        raise RequestError(f"input '{name}' is out of the 64-bit integer range")
    return values.astype(np.int64)


def _flat(data: Any, count: int, name: str) -> list:
    """The values of (possibly nested, row-major) JSON tensor data; stops counting past ``count``."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).tolist()
    flat: list = []
    stack = [iter(data if isinstance(data, list) else [data])]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                if len(stack) > 32:
                    raise RequestError(f"input '{name}': the data is nested too deeply")
                stack.append(iter(value))
                break
            flat.append(value)
            if len(flat) > count:
                return flat
        else:
            stack.pop()
    return flat
