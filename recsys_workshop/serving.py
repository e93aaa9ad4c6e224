"""The model server: a KServe predictor answering top-k recommendations from exported SavedModels.

Run it with ``python -m recsys_workshop.serving --model-dir <base> [--model-name recsys] [--http-port 8080]
[--grpc-port 8081] [--host 127.0.0.1] [--version N] [--no-access-log]``, or from Python with
:func:`local_server`, which starts it as a subprocess on free loopback ports and stops it on exit.
``<base>`` holds one folder per version, as written by :func:`recsys_workshop.export.export_model`
(``<base>/1/``, ``<base>/2/``, ...).

How it answers. Every version is loaded once with ``tf.saved_model.load``; its precomputed user and item
vectors, biases and item popularity are read out as numpy arrays, and each request is one matrix product
plus a partial sort (``argpartition``) over all its instances at once: no TensorFlow call per request.
The SavedModel's own signatures (``serving_default``, ``score``) give the same items and scores; they are
what TensorFlow Serving uses in the cluster's TensorFlow-format InferenceService.

REST, V1 protocol (TensorFlow Serving's API):

- ``GET /v1/models/recsys``: ``{"name": "recsys", "ready": true}`` (readiness);
- ``POST /v1/models/recsys:predict`` with ``{"instances": [{"user_id": 196, "k": 10}, ...]}``:
  ``{"predictions": [{"user_id", "item_ids", "scores", "known", "version"}, ...]}``. Per instance:
  ``k`` (default 10, 1 to 1000), ``exclude`` (item ids never returned, e.g. already seen). With
  ``"item_ids": [...]`` instead of ``k`` an instance asks for the scores of those items. An unknown user
  gets ``"known": false`` and the most popular items. A malformed body gets a 400 ``{"error": reason}``.
- Version pinning: the active version answers unless the request names one, by the header
  ``X-Model-Version: 2``, the query ``?version=2`` or a top-level ``"version": 2`` in the body (404 for a
  version that does not exist, 409 for one that fails to load). The version that answered is in every
  prediction and in the ``X-Model-Version`` response header.
- Versions, without restart: ``GET /v1/models/recsys/versions`` lists them (active, loaded, available,
  failed); ``POST /v1/models/recsys/versions/{v}:activate`` makes ``v`` the default (409 with the reason if
  it fails to load: the current version keeps serving); ``POST /v1/models/recsys:rollback`` returns to the
  version active before the last switch (or, if there was none, to the highest lower version that loads).
  At start the highest version that loads is active (or ``--version N``); a version exported later is
  served when pinned or activated (the server never switches by itself).

gRPC, Open Inference Protocol v2 (``ModelInfer``): inputs ``user_id`` (INT64, ``[n]``) and optionally
``k`` (INT32 or INT64, ``[1]``); outputs ``item_ids`` (INT64, ``[n, k]``), ``scores`` (FP32, ``[n, k]``)
and ``known`` (BOOL, ``[n]``); the version is pinned by the ``x-model-version`` metadata. A client:
:class:`GrpcClient`. The same tensors work over REST at ``POST /v2/models/recsys/infer`` (KServe's V2).

KServe 0.21 binds REST to 0.0.0.0 and gRPC to [::]; this server binds both to ``--host`` (127.0.0.1 by
default; a cluster pod passes ``--host 0.0.0.0``). This module never imports the training code.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recsys_workshop.export import METADATA_FILE, list_versions

__all__ = [
    "GrpcClient",
    "LoadedVersion",
    "LocalServer",
    "RequestError",
    "VersionError",
    "VersionManager",
    "local_server",
    "main",
]

DEFAULT_K = 10
MAX_K = 1000
MAX_INSTANCES = 1000
MAX_ITEMS_PER_INSTANCE = 10_000
VERSION_HEADER = "x-model-version"


class RequestError(ValueError):
    """A request the server cannot answer as asked (HTTP 400 with the reason)."""


class VersionError(RuntimeError):
    """A version that does not exist (``status`` 404) or cannot be loaded (``status`` 409)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------------------------- one version


class LoadedVersion:
    """The arrays of one exported version, in memory, and top-k / scoring over them in numpy."""

    def __init__(self, version: int, path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, Any]):
        self.version, self.path, self.metadata = version, path, metadata
        self.user_ids = arrays["user_ids"]
        self.item_ids = arrays["item_ids"]
        self.user_vectors = arrays["user_vectors"]
        self.item_vectors_t = np.ascontiguousarray(arrays["item_vectors"].T)
        self.user_bias = arrays["user_bias"]
        self.item_bias = arrays["item_bias"]
        self.global_bias = np.float32(arrays["global_bias"])
        self.popularity = arrays["popularity"]
        self.popular_order = np.argsort(-self.popularity, kind="stable")  # ties: smaller item id first
        self.n_items = len(self.item_ids)

    @classmethod
    def load(cls, path: str | os.PathLike[str], version: int | None = None) -> LoadedVersion:
        """Load a version folder: the SavedModel (through TensorFlow, once) and ``metadata.json``."""
        import tensorflow as tf

        path = Path(path)
        version = int(path.name) if version is None else version
        if not (path / "saved_model.pb").is_file():
            raise VersionError(f"version {version}: no saved_model.pb in {path}", 409)
        try:
            loaded = tf.saved_model.load(str(path))
            arrays = {
                name: getattr(loaded, name).numpy()
                for name in (
                    "user_ids",
                    "item_ids",
                    "user_vectors",
                    "item_vectors",
                    "user_bias",
                    "item_bias",
                    "global_bias",
                    "popularity",
                )
            }
            missing = {"serving_default", "score"} - set(loaded.signatures.keys())
        except Exception as error:  # any TensorFlow failure means: this version cannot serve
            raise VersionError(f"version {version} failed to load: {type(error).__name__}: {error}", 409) from None
        if missing:
            raise VersionError(f"version {version} lacks the signatures {sorted(missing)}", 409)
        try:
            metadata = json.loads((path / METADATA_FILE).read_text())
        except (OSError, ValueError) as error:
            raise VersionError(f"version {version}: unreadable {METADATA_FILE}: {error}", 409) from None
        n_users, n_items = len(arrays["user_ids"]), len(arrays["item_ids"])
        shapes_ok = (
            n_items > 0
            and arrays["user_vectors"].shape[0] == n_users
            and arrays["item_vectors"].shape[0] == n_items
            and arrays["user_vectors"].shape[1] == arrays["item_vectors"].shape[1]
            and arrays["user_bias"].shape == (n_users,)
            and arrays["item_bias"].shape == (n_items,)
            and arrays["popularity"].shape == (n_items,)
        )
        if not shapes_ok:
            raise VersionError(f"version {version}: inconsistent array shapes in the SavedModel", 409)
        return cls(version, path, arrays, metadata)

    # ------------------------------------------------------------------ lookups

    def rows(self, user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row of each user id (clipped into range) and whether the model knows the user."""
        rows = np.minimum(np.searchsorted(self.user_ids, user_ids), len(self.user_ids) - 1)
        return rows, self.user_ids[rows] == user_ids

    def columns(self, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cols = np.minimum(np.searchsorted(self.item_ids, item_ids), self.n_items - 1)
        return cols, self.item_ids[cols] == item_ids

    # ------------------------------------------------------------------ answers

    def top_k(
        self, user_ids: Sequence[int] | np.ndarray, k: int, exclude: Sequence[Sequence[int] | None] | None = None
    ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """Top-``k`` item ids and scores of each user (one list each, best first; shorter only when
        ``exclude`` leaves fewer than ``k`` items), and which users are known. Ties go to the smaller
        item id, as in ``Recommender.recommend`` and ``tf.math.top_k``."""
        users = np.asarray(user_ids, dtype=np.int64).reshape(-1)
        k = int(min(max(k, 1), self.n_items))
        rows, known = self.rows(users)
        exclude = exclude if exclude is not None else [None] * len(users)
        items: list[np.ndarray] = [np.empty(0, np.int64)] * len(users)
        scores: list[np.ndarray] = [np.empty(0, np.float32)] * len(users)
        warm = np.flatnonzero(known)
        if len(warm):
            block = self.user_vectors[rows[warm]] @ self.item_vectors_t
            block += self.user_bias[rows[warm]][:, None]
            block += self.item_bias[None, :]
            block += self.global_bias
            for i, row in enumerate(warm):
                if exclude[row]:
                    cols, ok = self.columns(np.asarray(exclude[row], dtype=np.int64))
                    block[i, cols[ok]] = -np.inf
            cols, values = _top_k_rows(block, k)
            for i, row in enumerate(warm):
                finite = np.isfinite(values[i])
                items[row], scores[row] = self.item_ids[cols[i][finite]], values[i][finite]
        for row in np.flatnonzero(~known):
            order = self.popular_order
            if exclude[row]:
                order = order[~np.isin(self.item_ids[order], np.asarray(exclude[row], dtype=np.int64))]
            order = order[:k]
            items[row], scores[row] = self.item_ids[order], self.popularity[order]
        return items, scores, known

    def score(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """Score of each (user, item) pair, as the ``score`` signature: the item's popularity for an
        unknown user, NaN for an unknown item."""
        rows, known = self.rows(np.asarray(user_ids, dtype=np.int64))
        cols, item_known = self.columns(np.asarray(item_ids, dtype=np.int64))
        dot = np.einsum("ij,ji->i", self.user_vectors[rows], self.item_vectors_t[:, cols])
        out = dot + self.user_bias[rows] + self.item_bias[cols] + self.global_bias
        out = np.where(known, out, self.popularity[cols]).astype(np.float32)
        out[~item_known] = np.nan
        return out


def _top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns and values of the ``k`` largest entries of each row, best first, ties to the smaller
    column: ``argpartition`` (linear) for all rows, an exact stable sort only for rows with a tie at the
    k-th place."""
    n, m = scores.shape
    if k < m:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part.sort(axis=1)  # column order, so that the stable sort below breaks ties by column
    else:
        part = np.broadcast_to(np.arange(m), (n, m)).copy()
    values = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    cols, values = np.take_along_axis(part, order, axis=1), np.take_along_axis(values, order, axis=1)
    if k < m:
        tied = np.flatnonzero((scores >= values[:, -1:]).sum(axis=1) > k)
        for row in tied:  # another column equals the k-th value: settle the tie exactly
            full = np.argsort(-scores[row], kind="stable")[:k]
            cols[row], values[row] = full, scores[row, full]
    return cols, values


# --------------------------------------------------------------------------------------------- versions


class VersionManager:
    """The versions under a base folder: which one is active, loading on demand, switching, rolling back.

    Thread-safe; a version that fails to load is remembered (with its error) and never made active."""

    def __init__(self, base_dir: str | os.PathLike[str]):
        self.base = Path(base_dir)
        self._loaded: dict[int, LoadedVersion] = {}
        self._failed: dict[int, str] = {}
        self._history: list[int] = []  # previously active versions, most recent last
        self._lock = threading.RLock()
        self.active: int | None = None

    def available(self) -> list[int]:
        return list_versions(self.base)

    def get(self, version: int | None = None) -> LoadedVersion:
        """The loaded version (the active one by default); loads it on first use."""
        with self._lock:
            if version is None:
                if self.active is None:
                    raise VersionError("no version is active", 503)
                return self._loaded[self.active]
            if version in self._loaded:
                return self._loaded[version]
        path = self.base / str(version)
        if not path.is_dir():
            raise VersionError(f"version {version} does not exist (available: {self.available()})", 404)
        try:
            loaded = LoadedVersion.load(path, version)
        except VersionError as error:
            with self._lock:
                self._failed[version] = str(error)
            raise
        with self._lock:
            self._failed.pop(version, None)
            return self._loaded.setdefault(version, loaded)

    def start(self, version: int | None = None, preload: int = 3) -> int:
        """Activate ``version``, by default the highest version that loads; raises if it (or none) loads.
        Then load the ``preload`` most recent other versions too (failures are only recorded), so that
        pinning or switching to them answers at once."""
        versions = self.available()
        if not versions:
            raise VersionError(f"no model versions under {self.base} (expected folders 1/, 2/, ...)", 404)
        chosen = None
        if version is not None:
            self.get(version)
            chosen = version
        else:
            errors = []
            for candidate in reversed(versions):
                try:
                    self.get(candidate)
                except VersionError as error:
                    errors.append(str(error))
                    continue
                chosen = candidate
                break
            if chosen is None:
                raise VersionError("no version loads: " + "; ".join(errors), 409)
        with self._lock:
            self.active = chosen
        for other in [v for v in reversed(versions) if v != chosen][:preload]:
            with contextlib.suppress(VersionError):
                self.get(other)
        return chosen

    def activate(self, version: int) -> dict[str, Any]:
        """Make ``version`` the default; the current one keeps serving if it fails to load."""
        self.get(version)  # raises (404/409) before anything changes
        with self._lock:
            previous = self.active
            if previous is not None and previous != version:
                self._history.append(previous)
            self.active = version
        return {"active": version, "previous": previous}

    def rollback(self) -> dict[str, Any]:
        """Return to the version active before the last switch (else the highest lower one that loads)."""
        with self._lock:
            current = self.active
            candidates = list(reversed(self._history))
        candidates += [v for v in reversed(self.available()) if current is None or v < current]
        errors = []
        for version in candidates:
            if version == current:
                continue
            try:
                self.get(version)
            except VersionError as error:
                errors.append(str(error))
                continue
            with self._lock:
                if version in self._history:
                    self._history = self._history[: len(self._history) - 1 - self._history[::-1].index(version)]
                self.active = version
            return {"active": version, "previous": current}
        reason = f"no earlier version to roll back to from version {current}"
        raise VersionError(reason + (": " + "; ".join(errors) if errors else ""), 409)

    def describe(self) -> dict[str, Any]:
        with self._lock:
            loaded, failed, active = dict(self._loaded), dict(self._failed), self.active
        entries = []
        for version in self.available():
            entry: dict[str, Any] = {"version": version}
            if version == active:
                entry["status"] = "active"
            elif version in loaded:
                entry["status"] = "loaded"
            elif version in failed:
                entry["status"], entry["error"] = "failed", failed[version]
            else:
                entry["status"] = "available"
            meta = loaded[version].metadata if version in loaded else _read_metadata(self.base / str(version))
            entry.update({key: meta.get(key) for key in ("model", "created_at", "dataset", "metrics")})
            entries.append(entry)
        return {"active": active, "versions": entries}


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads((path / METADATA_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


# --------------------------------------------------------------------------------------------- requests


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{what} must be an integer, got {value!r}")
    if not -(2**63) <= value < 2**63:
        raise RequestError(f"{what} is out of the 64-bit integer range")
    return value


def _int_list(value: Any, what: str, limit: int) -> list[int]:
    if not isinstance(value, list):
        raise RequestError(f"{what} must be a list of integers, got {type(value).__name__}")
    if len(value) > limit:
        raise RequestError(f"{what} has {len(value)} entries, at most {limit} are allowed")
    return [_int(v, f"{what}[{i}]") for i, v in enumerate(value)]


INSTANCE_KEYS = {"user_id", "k", "exclude", "item_ids"}


def parse_instances(body: Any) -> tuple[list[dict[str, Any]], int | None]:
    """Check a V1 predict body; returns the normalised instances and the pinned version (or None)."""
    if not isinstance(body, dict):
        raise RequestError(f'the body must be a JSON object {{"instances": [...]}}, got {type(body).__name__}')
    unknown = set(body) - {"instances", "version"}
    if unknown:
        raise RequestError(f"unknown top-level field(s) {sorted(unknown)}: expected 'instances' (and 'version')")
    if "instances" not in body:
        raise RequestError("missing 'instances': a list like [{\"user_id\": 196, \"k\": 10}]")
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
    parsed = []
    for i, instance in enumerate(instances):
        where = f"instances[{i}]"
        if not isinstance(instance, dict):
            raise RequestError(f"{where} must be an object like {{\"user_id\": 196, \"k\": 10}}")
        unknown = set(instance) - INSTANCE_KEYS
        if unknown:
            raise RequestError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(INSTANCE_KEYS)}")
        if "user_id" not in instance:
            raise RequestError(f"{where}: missing 'user_id'")
        entry: dict[str, Any] = {"user_id": _int(instance["user_id"], f"{where}.user_id")}
        if "item_ids" in instance:
            if "k" in instance or "exclude" in instance:
                raise RequestError(f"{where}: 'item_ids' (scoring) cannot be combined with 'k' or 'exclude'")
            entry["item_ids"] = _int_list(instance["item_ids"], f"{where}.item_ids", MAX_ITEMS_PER_INSTANCE)
            if not entry["item_ids"]:
                raise RequestError(f"{where}.item_ids must not be empty")
        else:
            k = _int(instance.get("k", DEFAULT_K), f"{where}.k")
            if not 1 <= k <= MAX_K:
                raise RequestError(f"{where}.k must be between 1 and {MAX_K}, got {k}")
            entry["k"] = k
            entry["exclude"] = _int_list(instance.get("exclude", []), f"{where}.exclude", MAX_ITEMS_PER_INSTANCE)
        parsed.append(entry)
    return parsed, version


def header_version(headers: dict[str, str] | None) -> int | None:
    value = (headers or {}).get(VERSION_HEADER)
    if value is None or value == "":
        return None
    try:
        version = int(value)
    except ValueError:
        raise RequestError(f"the {VERSION_HEADER} header must be an integer version, got {value!r}") from None
    if version < 1:
        raise RequestError(f"the {VERSION_HEADER} header must be >= 1")
    return version


def predict_instances(model: LoadedVersion, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The V1 predictions for normalised instances, top-k ones grouped into one vectorised call per k."""
    out: list[dict[str, Any] | None] = [None] * len(instances)
    by_k: dict[int, list[int]] = {}
    for i, instance in enumerate(instances):
        if "item_ids" in instance:
            items = np.asarray(instance["item_ids"], dtype=np.int64)
            scores = model.score(np.full(len(items), instance["user_id"], dtype=np.int64), items)
            out[i] = {
                "user_id": instance["user_id"],
                "item_ids": instance["item_ids"],
                "scores": [None if np.isnan(s) else float(s) for s in scores],
                "known": bool(model.rows(np.asarray([instance["user_id"]]))[1][0]),
                "version": model.version,
            }
        else:
            by_k.setdefault(instance["k"], []).append(i)
    for k, positions in by_k.items():
        users = [instances[i]["user_id"] for i in positions]
        items, scores, known = model.top_k(users, k, [instances[i]["exclude"] for i in positions])
        for j, i in enumerate(positions):
            out[i] = {
                "user_id": users[j],
                "item_ids": items[j].tolist(),
                "scores": scores[j].tolist(),
                "known": bool(known[j]),
                "version": model.version,
            }
    return out  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------- KServe


def build_predictor(name: str, manager: VersionManager, initial_version: int | None = None):
    """The ``kserve.Model`` subclass instance serving ``manager``'s versions under ``name`` (starting with
    ``initial_version``, by default the latest that loads)."""
    import kserve
    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

    class RecommenderPredictor(kserve.Model):
        def __init__(self):
            super().__init__(name, return_response_headers=True)
            self.manager = manager

        def load(self) -> bool:
            self.manager.start(initial_version)
            self.ready = True
            return self.ready

        def predict(self, payload, headers=None, response_headers=None):
            try:
                if isinstance(payload, InferRequest):
                    return self._predict_v2(payload, headers, response_headers)
                instances, body_version = parse_instances(payload)
                pinned = header_version(headers)
                if body_version is not None and pinned is not None and body_version != pinned:
                    raise RequestError(f"the body pins version {body_version} but the request asks for {pinned}")
                model = self.manager.get(pinned if pinned is not None else body_version)
                predictions = predict_instances(model, instances)
            except RequestError as error:
                raise InvalidInput(str(error)) from None
            if response_headers is not None:
                response_headers[VERSION_HEADER] = str(model.version)
            return {"predictions": predictions}

        def _predict_v2(self, request, headers, response_headers):
            user_input = request.get_input_by_name("user_id")
            if user_input is None:
                raise RequestError("missing input 'user_id' (INT64, shape [n])")
            users = np.asarray(user_input.as_numpy()).reshape(-1)
            if not np.issubdtype(users.dtype, np.integer):
                raise RequestError(f"input 'user_id' must be an integer tensor, got {user_input.datatype}")
            if not 1 <= len(users) <= MAX_INSTANCES:
                raise RequestError(f"input 'user_id' must hold 1 to {MAX_INSTANCES} ids")
            k = DEFAULT_K
            k_input = request.get_input_by_name("k")
            if k_input is not None:
                values = np.asarray(k_input.as_numpy()).reshape(-1)
                if values.size != 1 or not np.issubdtype(values.dtype, np.integer) or not 1 <= values[0] <= MAX_K:
                    raise RequestError(f"input 'k' must be one integer between 1 and {MAX_K}")
                k = int(values[0])
            try:
                model = self.manager.get(header_version(headers))
            except VersionError as error:  # gRPC has no 404/409: INVALID_ARGUMENT with the reason
                raise RequestError(str(error)) from None
            items, scores, known = model.top_k(users.astype(np.int64), k)
            item_block, score_block = np.stack(items), np.stack(scores).astype(np.float32)
            outputs = []
            for out_name, array, datatype in (
                ("item_ids", item_block, "INT64"),
                ("scores", score_block, "FP32"),
                ("known", known.astype(bool), "BOOL"),
            ):
                output = InferOutput(name=out_name, shape=list(array.shape), datatype=datatype)
                output.set_data_from_numpy(array, binary_data=False)
                outputs.append(output)
            if response_headers is not None:
                response_headers[VERSION_HEADER] = str(model.version)
            return InferResponse(
                response_id=request.id or "",
                model_name=self.name,
                infer_outputs=outputs,
                model_version=str(model.version),
            )

    return RecommenderPredictor()


def _version_error_handler():
    from fastapi.responses import JSONResponse

    async def handler(_, error: VersionError):
        return JSONResponse(status_code=error.status, content={"error": str(error)})

    return handler


def _add_management_routes(app, name: str, manager: VersionManager) -> None:
    """Versions list, activate and rollback, on KServe's FastAPI app (before the server starts)."""
    from fastapi import HTTPException

    def check(model_name: str) -> None:
        if model_name != name:
            raise HTTPException(404, detail=f"model {model_name!r} does not exist; this server serves {name!r}")

    def versions(model_name: str):
        check(model_name)
        return {"name": name, **manager.describe()}

    def activate(model_name: str, version: int):
        check(model_name)
        return {"name": name, **manager.activate(version)}

    def rollback(model_name: str):
        check(model_name)
        return {"name": name, **manager.rollback()}

    app.add_api_route("/v1/models/{model_name}/versions", versions, methods=["GET"])
    app.add_api_route("/v1/models/{model_name}/versions/{version}:activate", activate, methods=["POST"])
    app.add_api_route("/v1/models/{model_name}:rollback", rollback, methods=["POST"])
    app.add_exception_handler(VersionError, _version_error_handler())


class _VersionQueryToHeader:
    """ASGI middleware: ``?version=N`` on a request becomes the ``x-model-version: N`` header."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and b"version=" in scope.get("query_string", b""):
            from urllib.parse import parse_qs

            query = parse_qs(scope["query_string"].decode("latin-1"))
            if "version" in query:
                headers = [(k, v) for k, v in scope["headers"] if k.lower() != VERSION_HEADER.encode()]
                headers.append((VERSION_HEADER.encode(), query["version"][-1].encode("latin-1")))
                scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


def serve(
    model_dir: str | os.PathLike[str],
    *,
    model_name: str = "recsys",
    host: str = "127.0.0.1",
    http_port: int = 8080,
    grpc_port: int = 8081,
    enable_grpc: bool = True,
    access_log: bool = True,
    version: int | None = None,
) -> None:
    """Load the versions under ``model_dir`` and serve them (blocks until SIGTERM/SIGINT); ``version``:
    the version active at start (default the latest that loads)."""
    from kserve.model_server import app  # KServe's FastAPI app (importing KServe reads sys.argv: see main)

    _limit_tensorflow_threads()
    manager = VersionManager(model_dir)
    predictor = build_predictor(model_name, manager, version)
    predictor.load()  # raises (and the process exits) if no version loads
    _add_management_routes(app, model_name, manager)
    app.add_middleware(_VersionQueryToHeader)
    server = _loopback_model_server(
        host, access_log=access_log, http_port=http_port, grpc_port=grpc_port, enable_grpc=enable_grpc
    )
    server.start([predictor])


def _loopback_grpc_server_class(host: str):
    """A subclass of KServe's ``GRPCServer`` that binds ``host`` (KServe's own binds ``[::]``)."""
    from concurrent import futures

    from grpc import aio
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
    from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor
    from kserve.protocol.grpc.server import GRPCServer
    from kserve.protocol.grpc.servicer import InferenceServicer

    class LoopbackGRPCServer(GRPCServer):
        """KServe's gRPC server, listening on ``host`` instead of the hard-coded ``[::]``."""

        async def start(self, max_workers):
            self._server = aio.server(
                futures.ThreadPoolExecutor(max_workers=max_workers),
                interceptors=(LoggingInterceptor(), ExceptionToStatusInterceptor()),
                options=[
                    ("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                    ("grpc.max_receive_message_length", self._kwargs.get("grpc_max_receive_message_length")),
                ],
            )
            grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
                InferenceServicer(self._data_plane, self._model_repository_extension), self._server
            )
            address = f"[{host}]:{self._port}" if ":" in host else f"{host}:{self._port}"
            self._server.add_insecure_port(address)
            await self._server.start()
            await self._server.wait_for_termination()

    return LoopbackGRPCServer


def _loopback_model_server(host: str, *, access_log: bool, http_port: int, grpc_port: int, enable_grpc: bool):
    """KServe's single-process ``ModelServer`` with REST and gRPC bound to ``host``; its ``start(models)``
    blocks until a signal stops it."""
    import asyncio

    import kserve
    from kserve.protocol.rest.server import RESTServer

    grpc_server_class = _loopback_grpc_server_class(host)

    class LoopbackModelServer(kserve.ModelServer):
        """KServe's single-process ModelServer, with REST and gRPC bound to ``host``."""

        def start(self, models) -> None:
            self._register_and_check_atleast_one_model_is_ready(models)
            self._add_rest_server()
            if self.enable_grpc:
                self._add_grpc_server()
            self._run_until_stopped()

        def _add_rest_server(self) -> None:
            self._rest_server = RESTServer(
                "kserve.model_server:app",
                self.dataplane,
                self.model_repository_extension,
                self.http_port,
                access_log_format=self.access_log_format,
                workers=1,
                grace_period=self.grace_period,
                event_loop=self.event_loop,
                timeout_keep_alive=self.timeout_keep_alive,
            )
            self._rest_server.config.host = host  # KServe hard-codes 0.0.0.0
            if not access_log:
                _silence_access_log()
            self.servers.append(self._rest_server.start())

        def _add_grpc_server(self) -> None:
            from kserve.model_server import args

            self._grpc_server = grpc_server_class(
                self.grpc_port,
                self.dataplane,
                self.model_repository_extension,
                kwargs=vars(args),
                grace_period=self.grace_period,
            )
            self.servers.append(self._grpc_server.start(self.max_threads))

        def _run_until_stopped(self) -> None:
            """Run the servers on a new event loop; KServe's handlers for SIGINT, SIGTERM and SIGQUIT call
            ``stop``, which shuts both servers down (within ``grace_period``) and so ends the loop."""
            self.setup_event_loop()
            self.register_signal_handler()
            asyncio.run(self._serve())

    return LoopbackModelServer(
        http_port=http_port,
        grpc_port=grpc_port,
        enable_grpc=enable_grpc,
        enable_latency_logging=False,
        grace_period=2,
    )


def _silence_access_log() -> None:
    """No log line per request: neither uvicorn's access log nor KServe's timing trace."""
    import logging

    logging.getLogger("uvicorn.access").handlers = []
    logging.getLogger("uvicorn.access").propagate = False
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)


def _limit_tensorflow_threads() -> None:
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m recsys_workshop.serving`` (the manifests' args are tested against it)."""
    parser = argparse.ArgumentParser(prog="python -m recsys_workshop.serving", description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", required=True, help="base folder holding the versions 1/, 2/, ...")
    parser.add_argument("--model-name", default="recsys", help="name in the URL /v1/models/<name> (default recsys)")
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--grpc-port", type=int, default=8081)
    parser.add_argument("--host", default="127.0.0.1", help="interface for REST and gRPC (0.0.0.0 in a pod)")
    parser.add_argument("--no-grpc", action="store_true", help="serve REST only")
    parser.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--version", type=int, default=None, help="version active at start (default: the latest that loads)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    options = parser.parse_args(argv)
    base = Path(options.model_dir)
    if not base.is_dir():
        parser.error(f"--model-dir {base} is not a folder")
    if not list_versions(base):
        parser.error(f"--model-dir {base} holds no version folder (1/, 2/, ...): export a model first")
    sys.argv = sys.argv[:1]  # kserve parses sys.argv when imported; it must not see our options
    try:
        serve(
            base,
            model_name=options.model_name,
            host=options.host,
            http_port=options.http_port,
            grpc_port=options.grpc_port,
            enable_grpc=not options.no_grpc,
            access_log=options.access_log,
            version=options.version,
        )
    except VersionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------------------------- clients


def log_file(path: str | os.PathLike[str] | None, prefix: str) -> Path:
    """``path``, or a new empty temporary ``<prefix>*.log`` file: where a local server's output goes."""
    if path is None:
        handle, path = tempfile.mkstemp(prefix=prefix, suffix=".log")
        os.close(handle)
    return Path(path)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class LocalServer(str):
    """The base URL of a running local model server (a ``str``, so ``url + "/v1/models/recsys"`` works),
    with the details: ``url``, ``grpc_target``, ``http_port``, ``grpc_port``, ``model_name``, ``model_dir``,
    ``process``, ``log_path``."""

    url: str
    grpc_target: str
    http_port: int
    grpc_port: int
    model_name: str
    model_dir: Path
    process: subprocess.Popen
    log_path: Path

    def __new__(cls, url: str, **details):
        obj = super().__new__(cls, url)
        obj.url = url
        for key, value in details.items():
            setattr(obj, key, value)
        return obj

    @property
    def predict_url(self) -> str:
        return f"{self.url}/v1/models/{self.model_name}:predict"

    def log(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _http_status(url: str, timeout: float = 1.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback URL we built
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):
        return None


def wait_ready(url: str, *, timeout: float = 120.0, process: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early if ``process`` exits, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        if _http_status(url) == 200:
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the model server exited with code {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not ready after {timeout:.0f} s")
        time.sleep(delay)  # polling interval, not synchronisation: the loop checks the real state
        delay = min(delay * 1.5, 0.5)


@contextlib.contextmanager
def local_server(
    model_dir: str | os.PathLike[str],
    *,
    model_name: str = "recsys",
    http_port: int | None = None,
    grpc_port: int | None = None,
    enable_grpc: bool = True,
    access_log: bool = False,
    timeout: float = 120.0,
    threads: int = 1,
    log_path: str | os.PathLike[str] | None = None,
    version: int | None = None,
) -> Iterator[LocalServer]:
    """Start ``python -m recsys_workshop.serving`` on free loopback ports, wait until the model is ready,
    yield its :class:`LocalServer` (the base URL, e.g. ``http://127.0.0.1:40123``), stop it on exit.

    ``threads``: numpy/BLAS threads of the server process (1 leaves the other cores to the clients);
    ``version``: the version active at start (default the latest that loads). ``log_path``: where the
    server's output goes (default a temporary file, removed on exit unless the server failed to start)."""
    http_port = http_port or free_port()
    grpc_port = grpc_port or free_port()
    temporary_log = log_path is None
    log_path = log_file(log_path, "recsys-model-server-")
    command = [
        sys.executable,
        "-m",
        "recsys_workshop.serving",
        "--model-dir",
        str(model_dir),
        "--model-name",
        model_name,
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        "--host",
        "127.0.0.1",
        "--access-log" if access_log else "--no-access-log",
    ]
    if not enable_grpc:
        command.append("--no-grpc")
    if version is not None:
        command += ["--version", str(version)]
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"),
        "OMP_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "PYTHONUNBUFFERED": "1",
    }
    url = f"http://127.0.0.1:{http_port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = LocalServer(
        url,
        model_dir=Path(model_dir),
        grpc_target=f"127.0.0.1:{grpc_port}",
        http_port=http_port,
        grpc_port=grpc_port,
        model_name=model_name,
        process=process,
        log_path=log_path,
    )
    try:
        try:
            wait_ready(f"{url}/v1/models/{model_name}", timeout=timeout, process=process)
        except (RuntimeError, TimeoutError) as error:
            tail = server.log()[-3000:]
            temporary_log = False  # keep the log of a server that failed to start: the error names it
            raise RuntimeError(f"{error}\n--- model server log ({log_path}) ---\n{tail}") from None
        yield server
    finally:
        stop_process(process)
        if temporary_log:
            log_path.unlink(missing_ok=True)


def stop_process(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within ``timeout`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class GrpcClient:
    """A small Open Inference Protocol v2 client for the model server's gRPC port.

    >>> with GrpcClient("127.0.0.1:8081") as client:          # doctest: +SKIP
    ...     client.predict([196, 1], k=10)["item_ids"]
    """

    def __init__(self, target: str, model_name: str = "recsys", timeout: float = 10.0):
        import grpc
        from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
        from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

        self._pb = pb
        self.model_name, self.timeout = model_name, timeout
        self.channel = grpc.insecure_channel(target)
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)

    def ready(self) -> bool:
        request = self._pb.ModelReadyRequest(name=self.model_name)
        return self.stub.ModelReady(request, timeout=self.timeout).ready

    def predict(self, user_ids: Sequence[int], k: int = DEFAULT_K, version: int | None = None) -> dict[str, Any]:
        """``{"item_ids": (n, k) int64, "scores": (n, k) float32, "known": (n,) bool, "version": int}``."""
        pb = self._pb
        users = [int(u) for u in user_ids]
        request = pb.ModelInferRequest(
            model_name=self.model_name,
            inputs=[
                pb.ModelInferRequest.InferInputTensor(
                    name="user_id",
                    datatype="INT64",
                    shape=[len(users)],
                    contents=pb.InferTensorContents(int64_contents=users),
                ),
                pb.ModelInferRequest.InferInputTensor(
                    name="k", datatype="INT32", shape=[1], contents=pb.InferTensorContents(int_contents=[int(k)])
                ),
            ],
        )
        metadata = [(VERSION_HEADER, str(version))] if version is not None else None
        response = self.stub.ModelInfer(request, timeout=self.timeout, metadata=metadata)
        out: dict[str, Any] = {"version": int(response.model_version) if response.model_version else None}
        for tensor in response.outputs:
            shape = tuple(tensor.shape)
            if tensor.datatype == "INT64":
                values = np.asarray(tensor.contents.int64_contents, dtype=np.int64)
            elif tensor.datatype == "FP32":
                values = np.asarray(tensor.contents.fp32_contents, dtype=np.float32)
            else:
                values = np.asarray(tensor.contents.bool_contents, dtype=bool)
            out[tensor.name] = values.reshape(shape)
        return out

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(main())
