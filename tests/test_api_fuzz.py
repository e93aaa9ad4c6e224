"""Property-based fuzz of the API from its own OpenAPI schema (hypothesis; schemathesis is not installed).

Every operation in ``/openapi.json`` is called with path and query parameters and JSON bodies generated
from its schema: valid values, boundary values just outside the declared ranges, wrong types, unknown
fields, and raw bytes that are not JSON at all. Whatever comes in, the API must answer without a 5xx,
and every 4xx must be JSON with a non-empty ``error`` reason. The real model server answers behind it.
"""

from __future__ import annotations

import collections
import json
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model_fixtures import exported_versions

from recsys_workshop.api import local_stack

pytestmark = [pytest.mark.tf, pytest.mark.slow]

N_EXAMPLES = 1200  # requests generated (the acceptance bar is 1,000)

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
ANY_JSON = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)


def resolve(schema: dict, components: dict) -> dict:
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def value_strategy(schema: dict, components: dict, name: str = "") -> st.SearchStrategy:
    """Values for ``schema``: mostly inside it, often on or just past its bounds, sometimes of another type."""
    schema = resolve(schema, components)
    if "anyOf" in schema:
        return st.one_of([value_strategy(s, components, name) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"]) | st.text(max_size=8)
    kind = schema.get("type")
    wrong = ANY_JSON
    if kind == "integer":
        low, high = int(schema.get("minimum", -(2**31))), int(schema.get("maximum", 2**31))
        edges = st.sampled_from([low - 1, low, high, high + 1, 0, -1, 2**63, -(2**63) - 1, 10**30])
        realistic = st.integers(1, 1700) if name.endswith("_id") else st.integers(low, min(high, 200))
        return realistic | st.integers(low, high) | edges | wrong
    if kind == "number":
        low, high = float(schema.get("minimum", -1e9)), float(schema.get("maximum", 1e9))
        return st.floats(low, high) | st.sampled_from([low - 0.001, high + 0.5, 1e308, -0.0]) | wrong
    if kind == "string":
        size = int(schema.get("maxLength", 30))
        return st.text(max_size=size) | st.text(min_size=size + 1, max_size=size + 5) | wrong
    if kind == "array":
        items = value_strategy(schema.get("items", {}), components, name.removesuffix("s"))
        return st.lists(items, max_size=int(schema.get("maxItems", 10)) + 2) | wrong
    if kind == "object":
        return object_strategy(schema, components) | wrong
    if kind == "null":
        return st.none()
    return wrong


def object_strategy(schema: dict, components: dict) -> st.SearchStrategy:
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    fields = {name: value_strategy(prop, components, name) for name, prop in props.items()}

    @st.composite
    def build(draw):
        out = {}
        for name, strategy in fields.items():
            if name in required or draw(st.booleans()):
                if name in required and draw(st.integers(0, 15)) == 0:
                    continue  # sometimes a required field is missing
                out[name] = draw(strategy)
        if draw(st.integers(0, 9)) == 0:
            out[draw(st.text(min_size=1, max_size=8))] = draw(JSON_SCALARS)  # an unknown field
        return out

    return build()


def body_strategy(schema: dict, components: dict) -> st.SearchStrategy:
    """Raw request bodies: JSON of (mostly) the schema's shape, any JSON, or bytes that are not JSON."""
    as_json = value_strategy(schema, components).map(lambda v: json.dumps(v).encode())
    broken = st.sampled_from([b"", b"{", b'{"user_id": 1,', b"null", b"NaN", b"\xff\xfe", b'{"a": NaN}'])
    return as_json | as_json | ANY_JSON.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=40) | broken


def operations(schema: dict) -> list[tuple[str, str, dict]]:
    return [(method.upper(), path, op) for path, ops in schema["paths"].items() for method, op in ops.items()]


def request_strategy(schema: dict) -> st.SearchStrategy:
    components = schema.get("components", {}).get("schemas", {})
    strategies = []
    for method, path, op in operations(schema):
        params = op.get("parameters", [])

        @st.composite
        def one(draw, method=method, path=path, op=op, params=params):
            url, query = path, {}
            for param in params:
                value = draw(value_strategy(param["schema"], components, param["name"]))
                text = value if isinstance(value, str) else json.dumps(value)
                if param["in"] == "path":
                    url = url.replace("{" + param["name"] + "}", quote(text, safe="") or "0")
                elif param.get("required") or draw(st.booleans()):
                    query[param["name"]] = text
            if draw(st.integers(0, 9)) == 0:
                query[draw(st.text(min_size=1, max_size=6))] = draw(st.text(max_size=6))
            body, headers = None, {}
            if "requestBody" in op:
                body_schema = op["requestBody"]["content"]["application/json"]["schema"]
                body = draw(body_strategy(body_schema, components))
                headers["content-type"] = draw(
                    st.sampled_from(["application/json"] * 6 + ["text/plain", "application/x-www-form-urlencoded"])
                )
            return method, url, query, body, headers

        strategies.append(one())
    # and paths that are not in the schema at all
    strategies.append(
        st.tuples(
            st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
            st.text(max_size=20).map(lambda t: "/" + quote(t, safe="/")),
            st.just({}),
            st.none() | st.binary(max_size=20),
            st.just({}),
        )
    )
    return st.one_of(strategies)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    model_dir = exported_versions(tmp_path_factory.mktemp("models"), n_versions=2)
    with local_stack(model_dir, env={"RECSYS_ARMS": "1,2", "RECSYS_MODEL_TIMEOUT": "2"}) as running:
        yield running


def test_fuzz_from_the_openapi_schema_never_gives_a_5xx(stack):
    schema = requests.get(f"{stack.api_url}/openapi.json", timeout=10).json()
    assert len(operations(schema)) >= 9
    session = requests.Session()
    statuses: collections.Counter[int] = collections.Counter()
    by_operation: collections.Counter[str] = collections.Counter()
    failures: list[str] = []

    @settings(
        max_examples=N_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same 1,200 requests on every run: a failure is reproducible
        suppress_health_check=list(HealthCheck),
    )
    @given(request_strategy(schema))
    def call(request):
        method, url, query, body, headers = request
        response = session.request(method, stack.api_url + url, params=query, data=body, headers=headers, timeout=30)
        statuses[response.status_code] += 1
        by_operation[f"{method} {url.split('/')[1] if url.count('/') else url}"] += 1
        where = f"{method} {url} params={query} body={body!r}: {response.status_code} {response.text[:300]}"
        if response.status_code >= 500:
            failures.append(where)
        elif 400 <= response.status_code < 500:
            try:
                reason = response.json().get("error")
            except (ValueError, AttributeError):
                reason = None
            if not (isinstance(reason, str) and reason):
                failures.append("4xx without an 'error' reason: " + where)

    call()
    assert not failures, f"{len(failures)} bad answers, e.g.:\n" + "\n".join(failures[:5])
    total = sum(statuses.values())
    assert total >= 1000, statuses
    ok = sum(n for s, n in statuses.items() if s < 300)
    client_errors = sum(n for s, n in statuses.items() if 400 <= s < 500)
    # not a vacuous fuzz: many requests were accepted, many refused, on every operation
    assert ok >= 150 and client_errors >= 300, statuses
    assert sum(n for op, n in by_operation.items() if op.startswith("GET recommendations")) >= 50, by_operation
    metrics = session.get(f"{stack.api_url}/metrics", timeout=10).text
    assert 'status="500"' not in metrics and 'status="503"' not in metrics
