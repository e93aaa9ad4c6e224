"""Export a fitted recommender as a versioned TensorFlow SavedModel: ``<base_dir>/<version>/``.

The layout is TensorFlow Serving's (and KServe's TensorFlow model format): one integer-named folder per
version under a base folder; a server serves the highest version unless told otherwise.

What a version holds:

- the SavedModel, with two signatures:

  - ``serving_default`` (also ``top_k``): inputs ``user_id`` int64 ``[None]`` and ``k`` int32 scalar;
    outputs ``item_ids`` int64 ``[None, k]``, ``scores`` float32 ``[None, k]`` and ``known`` bool ``[None]``
    (``False`` for a user the model has no vector for: the lists are then the most popular items);
  - ``score``: inputs ``user_id`` and ``item_id`` int64 ``[None]``; output ``scores`` float32 ``[None]``
    (``NaN`` for an item outside the catalogue, the item's popularity for an unknown user);

- the precomputed arrays as variables of the SavedModel (``user_ids``, ``item_ids``, ``user_vectors``,
  ``item_vectors``, ``user_bias``, ``item_bias``, ``global_bias``, ``popularity``), so that a server can
  read them once (``tf.saved_model.load(path).user_vectors.numpy()``) and answer top-k in numpy;
- ``metadata.json``: ``format`` (2), ``model``, ``version``, ``created_at`` (ISO 8601, UTC), ``dataset``,
  ``n_users``, ``n_items``, ``metrics``, ``train_config``, the serving stages (``retrieval``, ``ranking``,
  ``catalogue``, below) and any extra key passed in ``metadata``;
- ``retrieval.faiss`` when the version retrieves through an approximate index (:mod:`recsys_workshop.retrieval`).

Format 2 is served in two stages (issue #16): **retrieval** of ``retrieval.candidates`` items from an index
over the item vectors (``retrieval.index``: ``"hnsw"``, a faiss graph, or ``"exact"``, every item), then
**ranking** of those candidates by the model's full score (``ranking: "dot"``), the seen-item filter and the
top-k. Nothing in a factorised export is sized users x items: it grows linearly in users + items. By default
(``retrieval=None``) a catalogue of :data:`HNSW_FROM_ITEMS` items or more gets an HNSW index and a smaller one
is searched exactly (faster there, and exact). A version written before format 2 is refused by the server.

A known user's score of item ``i`` is ``user_vectors[u] . item_vectors[i] + user_bias[u] + item_bias[i] +
global_bias``. Factorised models (MatrixFactorization, TripletModel/BPR, TwoTower, NCF GMF) export their
learned vectors. NeuMF exports its GMF vectors (``p_u * h_gmf`` and ``q_i``: they retrieve) and its MLP as a
ranking head (:class:`~recsys_workshop.ranking.MLPHead`, ``ranking: "mlp-head"``), whose term the server adds
to each candidate's score, and the signatures to every item's. Any other fitted recommender with a small
enough catalogue exports its full user x item score matrix (``user_vectors`` = the scores, ``item_vectors``
= the identity): such a version is marked ``catalogue: "small"`` with the reason in ``catalogue_note``, is
always searched exactly, and its size grows with users x items (at most :data:`MAX_DENSE_SCORES` values).

The export is atomic: it is written to a hidden temporary folder beside the target and renamed into
place only when complete, so a failed export leaves no version folder behind.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from recsys_workshop import ranking
from recsys_workshop.retrieval import INDEX_FILE, HnswSearch, RetrievalConfig, augment_items

__all__ = [
    "FORMAT",
    "HNSW_FROM_ITEMS",
    "METADATA_FILE",
    "ExportError",
    "export_arrays",
    "export_model",
    "exportable_arrays",
    "list_versions",
    "load_metadata",
    "next_version",
]

METADATA_FILE = "metadata.json"
FORMAT = 2  # two-stage serving: retrieval (an index over the item vectors) -> ranking -> seen filter -> top-k
HNSW_FROM_ITEMS = 20_000  # the default index: HNSW from this many items, exact search below
MAX_DENSE_SCORES = 20_000_000  # the generic fallback stores n_users * n_items floats: at most this many
_VERSION = re.compile(r"^[0-9]+$")
# the arrays a version stores as variables (besides the scalar ``global_bias``)
ARRAY_NAMES = ("user_ids", "item_ids", "user_vectors", "item_vectors", "user_bias", "item_bias", "popularity")


class ExportError(RuntimeError):
    """The model cannot be exported (not fitted, no vectors and too large for a score matrix, ...)."""


def list_versions(base_dir: str | os.PathLike[str]) -> list[int]:
    """The versions present under ``base_dir`` (integer-named folders), ascending; [] if none or no folder."""
    base = Path(base_dir)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and _VERSION.match(p.name))


def next_version(base_dir: str | os.PathLike[str]) -> int:
    """The version an export would get: one more than the highest present, starting at 1."""
    versions = list_versions(base_dir)
    return versions[-1] + 1 if versions else 1


def load_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``metadata.json`` of a version folder (or the file itself)."""
    path = Path(path)
    file = path / METADATA_FILE if path.is_dir() else path
    try:
        return json.loads(file.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no {METADATA_FILE} in {path}: is this an exported model version?") from None


# ---------------------------------------------------------------------------------------------- arrays


def exportable_arrays(model) -> dict[str, np.ndarray]:
    """The arrays a version stores, computed from a fitted recommender (numpy only, no TensorFlow call
    except for the generic fallback of network models)."""
    if not hasattr(model, "item_ids_") or not hasattr(model, "user_ids_"):
        raise ExportError(f"{type(model).__name__} is not fitted: call fit(train) before exporting it")
    n_users, n_items = len(model.user_ids_), len(model.item_ids_)
    kind = "factors"
    head = None
    global_bias = 0.0
    user_bias = np.zeros(n_users, dtype=np.float32)
    item_bias = np.zeros(n_items, dtype=np.float32)
    if hasattr(model, "user_factors_") and hasattr(model, "item_factors_"):  # MF, TripletModel (BPR/margin)
        users, items = model.user_factors_, model.item_factors_
        if hasattr(model, "user_bias_"):
            user_bias, item_bias = model.user_bias_, model.item_bias_
            global_bias = float(getattr(model, "global_mean_", 0.0))
    elif hasattr(model, "user_vectors_") and hasattr(model, "item_vectors_"):  # TwoTower
        users, items = model.user_vectors_, model.item_vectors_
    elif getattr(model, "kind", None) == "neumf" and hasattr(model, "scorer_") and len(model.mlp_layers) > 1:
        retrieval_part, head = ranking.neumf_stages(model)  # NeuMF: the GMF dot product, then the MLP head
        users, items = retrieval_part["user_vectors"], retrieval_part["item_vectors"]
        global_bias = float(retrieval_part["global_bias"])
    elif getattr(model, "kind", None) == "gmf" and hasattr(model, "scorer_"):  # NCF GMF: h . (p * q) + b
        network = model.scorer_
        p = network.get_layer("gmf_user").get_weights()[0]
        q = network.get_layer("gmf_item").get_weights()[0]
        kernel, bias = network.get_layer("prediction").get_weights()
        users, items = p * kernel[:, 0][None, :], q
        global_bias = float(bias[0])
    else:
        if n_users * n_items > MAX_DENSE_SCORES:
            raise ExportError(
                f"{type(model).__name__} has no user/item vectors and its score matrix ({n_users} x {n_items}) "
                f"is larger than {MAX_DENSE_SCORES} values: it cannot be exported"
            )
        kind = "dense"
        users = np.vstack([model._score_rows(np.arange(s, min(s + 1024, n_users))) for s in range(0, n_users, 1024)])
        items = np.eye(n_items, dtype=np.float32)
    arrays = {
        "user_ids": np.asarray(model.user_ids_, dtype=np.int64),
        "item_ids": np.asarray(model.item_ids_, dtype=np.int64),
        "user_vectors": np.ascontiguousarray(users, dtype=np.float32),
        "item_vectors": np.ascontiguousarray(items, dtype=np.float32),
        "user_bias": np.asarray(user_bias, dtype=np.float32),
        "item_bias": np.asarray(item_bias, dtype=np.float32),
        "global_bias": np.float32(global_bias),
        "popularity": np.asarray(model.item_counts_, dtype=np.float32),
    }
    if not np.isfinite(arrays["user_vectors"]).all() or not np.isfinite(arrays["item_vectors"]).all():
        raise ExportError(f"{type(model).__name__} has non-finite vectors (NaN or inf): refusing to export it")
    arrays["kind"] = kind  # type: ignore[assignment]
    if head is not None:
        arrays["ranking_head"] = head  # type: ignore[assignment]
    return arrays


# ---------------------------------------------------------------------------------------------- SavedModel


def _module(arrays: dict[str, np.ndarray], head=None):
    """A tf.Module holding the arrays (and a ranking head's) as variables and the two serving functions."""
    import tensorflow as tf

    head_arrays = head.arrays() if head is not None else {}
    n_layers = len(head.weights) if head is not None else 0

    class RecommenderModule(tf.Module):
        def __init__(self):
            super().__init__(name="recommender")
            for name in ARRAY_NAMES:
                setattr(self, name, tf.Variable(arrays[name], trainable=False, name=name))
            self.global_bias = tf.Variable(arrays["global_bias"], trainable=False, name="global_bias")
            for name, value in head_arrays.items():
                setattr(self, name, tf.Variable(value, trainable=False, name=name))

        def _head(self, hidden):
            """The head after its first layer's sum (ReLU layers, then the output weights): (..., width)."""
            hidden = tf.nn.relu(hidden)
            for j in range(n_layers):
                hidden = tf.nn.relu(tf.tensordot(hidden, getattr(self, f"head_w{j}"), 1) + getattr(self, f"head_b{j}"))
            return tf.tensordot(hidden, self.head_output, 1)

        def _rows(self, user_id):
            """Row of each user id (clipped into range) and whether the user is known."""
            n = tf.shape(self.user_ids, out_type=tf.int64)[0]
            rows = tf.minimum(tf.searchsorted(self.user_ids, user_id, out_type=tf.int64), n - 1)
            return rows, tf.equal(tf.gather(self.user_ids, rows), user_id)

        @tf.function(
            input_signature=[tf.TensorSpec([None], tf.int64, name="user_id"), tf.TensorSpec([], tf.int32, name="k")]
        )
        def top_k(self, user_id, k):
            rows, known = self._rows(user_id)
            scores = (
                tf.matmul(tf.gather(self.user_vectors, rows), self.item_vectors, transpose_b=True)
                + tf.gather(self.user_bias, rows)[:, None]
                + self.item_bias[None, :]
                + self.global_bias
            )
            if head is not None:  # every item through the head: a TensorFlow Serving client gets NeuMF's full score
                first = tf.gather(self.head_user_first, rows)[:, None, :] + self.head_item_first[None, :, :]
                scores += self._head(first)
            popular = tf.broadcast_to(self.popularity[None, :], tf.shape(scores))
            scores = tf.where(known[:, None], scores, popular)
            k = tf.clip_by_value(k, 1, tf.shape(self.item_ids)[0])
            top = tf.math.top_k(scores, k=k, sorted=True)
            return {"item_ids": tf.gather(self.item_ids, top.indices), "scores": top.values, "known": known}

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.int64, name="user_id"),
                tf.TensorSpec([None], tf.int64, name="item_id"),
            ]
        )
        def score(self, user_id, item_id):
            rows, known = self._rows(user_id)
            n_items = tf.shape(self.item_ids, out_type=tf.int64)[0]
            cols = tf.minimum(tf.searchsorted(self.item_ids, item_id, out_type=tf.int64), n_items - 1)
            item_known = tf.equal(tf.gather(self.item_ids, cols), item_id)
            dot = tf.reduce_sum(tf.gather(self.user_vectors, rows) * tf.gather(self.item_vectors, cols), axis=1)
            scores = dot + tf.gather(self.user_bias, rows) + tf.gather(self.item_bias, cols) + self.global_bias
            if head is not None:
                scores += self._head(tf.gather(self.head_user_first, rows) + tf.gather(self.head_item_first, cols))
            scores = tf.where(known, scores, tf.gather(self.popularity, cols))
            nan = tf.fill(tf.shape(scores), tf.constant(float("nan"), tf.float32))
            return {"scores": tf.where(item_known, scores, nan)}

    return RecommenderModule()


def export_model(
    model,
    base_dir: str | os.PathLike[str],
    *,
    version: int | None = None,
    metadata: dict[str, Any] | None = None,
    retrieval: RetrievalConfig | None = None,
) -> Path:
    """Write ``model`` as ``<base_dir>/<version>/`` (a SavedModel + ``metadata.json``, + the retrieval index)
    and return that path.

    ``version``: default one more than the highest present (1 for an empty folder); an existing version
    is never overwritten. ``metadata``: extra keys for ``metadata.json`` (``dataset``, ``metrics``,
    ``train_config``, ...). ``retrieval``: the first serving stage (default: see :data:`HNSW_FROM_ITEMS`).
    Atomic: on any error nothing is left under ``base_dir``.
    """
    info = {"model": type(model).__name__, "name": getattr(model, "name", type(model).__name__)}
    json.dumps(dict(metadata or {}), default=_json_default)  # fail before any work if it cannot be written
    arrays = exportable_arrays(model)
    return export_arrays(arrays, base_dir, version=version, metadata={**info, **(metadata or {})}, retrieval=retrieval)


def export_arrays(
    arrays: dict[str, Any],
    base_dir: str | os.PathLike[str],
    *,
    version: int | None = None,
    metadata: dict[str, Any] | None = None,
    retrieval: RetrievalConfig | None = None,
) -> Path:
    """:func:`export_model` from the arrays themselves (``user_ids``, ``item_ids``, ``user_vectors``,
    ``item_vectors``, ``popularity``; optional ``user_bias``, ``item_bias``, ``global_bias`` and ``kind``
    ``"factors"`` or ``"dense"``): what :func:`exportable_arrays` returns, or a synthetic catalogue."""
    base = Path(base_dir)
    version = _checked_version(base, version)
    target = base / str(version)
    if target.exists():
        raise FileExistsError(f"version {version} already exists at {target}: versions are never overwritten")
    extra = dict(metadata or {})
    json.dumps(extra, default=_json_default)  # fail before any work if the metadata cannot be written
    arrays = _complete(arrays)
    kind = arrays.pop("kind")
    head = arrays.pop("ranking_head")
    retrieval = _retrieval_for(kind, len(arrays["item_ids"]), retrieval)

    import tensorflow as tf

    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".export-{version}-", dir=base))
    try:
        build_seconds = _write_index(arrays, retrieval, staging)
        module = _module(arrays, head)
        tf_logger = tf.get_logger()
        level = tf_logger.level
        tf_logger.setLevel("ERROR")  # no "INFO: Assets written to <temporary folder>" in the learner's output
        try:
            tf.saved_model.save(
                module,
                str(staging),
                signatures={"serving_default": module.top_k, "top_k": module.top_k, "score": module.score},
            )
        finally:
            tf_logger.setLevel(level)
        info = {
            "format": FORMAT,
            "model": "arrays",
            "name": "arrays",
            "version": version,
            "created_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "dataset": None,
            "n_users": int(len(arrays["user_ids"])),
            "n_items": int(len(arrays["item_ids"])),
            "n_factors": int(arrays["user_vectors"].shape[1]),
            "vectors": kind,
            **_stages(kind, retrieval, build_seconds, head),
            "metrics": {},
            "train_config": {},
            **{key: value for key, value in extra.items() if key not in ("version", "created_at", "format")},
        }
        (staging / METADATA_FILE).write_text(json.dumps(info, indent=2, default=_json_default) + "\n")
        os.chmod(staging, 0o755)  # mkdtemp makes it 0700; a server running as another user must read it
        os.rename(staging, target)  # atomic on one file system; fails if the target appeared meanwhile
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _checked_version(base: Path, version: int | None) -> int:
    if version is None:
        return next_version(base)
    if isinstance(version, bool) or not isinstance(version, int | np.integer) or version < 1:
        raise ValueError(f"version must be a positive integer, got {version!r}")
    return int(version)


def _complete(arrays: dict[str, Any]) -> dict[str, Any]:
    """The arrays with the optional ones filled in and every dtype and shape checked."""
    missing = {"user_ids", "item_ids", "user_vectors", "item_vectors", "popularity"} - set(arrays)
    if missing:
        raise ExportError(f"the arrays lack {sorted(missing)}")
    out: dict[str, Any] = {
        "user_ids": np.asarray(arrays["user_ids"], dtype=np.int64),
        "item_ids": np.asarray(arrays["item_ids"], dtype=np.int64),
        "user_vectors": np.ascontiguousarray(arrays["user_vectors"], dtype=np.float32),
        "item_vectors": np.ascontiguousarray(arrays["item_vectors"], dtype=np.float32),
        "popularity": np.asarray(arrays["popularity"], dtype=np.float32),
        "global_bias": np.float32(arrays.get("global_bias", 0.0)),
        "kind": arrays.get("kind", "factors"),
        "ranking_head": arrays.get("ranking_head"),
    }
    n_users, n_items = len(out["user_ids"]), len(out["item_ids"])
    for name, n in (("user_bias", n_users), ("item_bias", n_items)):
        out[name] = np.asarray(arrays[name] if arrays.get(name) is not None else np.zeros(n), dtype=np.float32)
    for name in ("user_ids", "item_ids"):
        if np.any(np.diff(out[name]) <= 0):
            raise ExportError(f"{name} must be strictly increasing (the server finds ids by binary search)")
    dim = out["user_vectors"].shape[1]
    expected = {"user_vectors": (n_users, dim), "item_vectors": (n_items, dim), "user_bias": (n_users,),
                "item_bias": (n_items,), "popularity": (n_items,)}  # fmt: skip
    for name, shape in expected.items():
        if out[name].shape != shape:
            raise ExportError(f"{name} has shape {out[name].shape}, expected {shape}")
    if not np.isfinite(out["user_vectors"]).all() or not np.isfinite(out["item_vectors"]).all():
        raise ExportError("the user or item vectors hold non-finite values (NaN or inf): refusing to export them")
    if out["kind"] not in ("factors", "dense"):
        raise ExportError(f"kind must be 'factors' or 'dense', got {out['kind']!r}")
    head = out["ranking_head"]
    if head is not None and (len(head.user_first) != n_users or len(head.item_first) != n_items):
        raise ExportError(f"the ranking head covers {len(head.user_first)} users and {len(head.item_first)} items, "
                          f"the vectors {n_users} and {n_items}")  # fmt: skip
    return out


def _retrieval_for(kind: str, n_items: int, retrieval: RetrievalConfig | None) -> RetrievalConfig:
    if kind == "dense":
        if retrieval is not None and retrieval.index != "exact":
            raise ExportError("a dense export (the user x item score matrix) has no item vectors to index: "
                              "only retrieval index 'exact' applies")  # fmt: skip
        return retrieval or RetrievalConfig(index="exact")
    if retrieval is None:
        return RetrievalConfig(index="hnsw" if n_items >= HNSW_FROM_ITEMS else "exact")
    return retrieval


def _write_index(arrays: dict[str, Any], retrieval: RetrievalConfig, folder: Path) -> float | None:
    """Build and save the HNSW index into ``folder`` (its build time in seconds); None for exact search."""
    if retrieval.index != "hnsw":
        return None
    import time

    started = time.perf_counter()
    searcher = HnswSearch.build(augment_items(arrays["item_vectors"], arrays["item_bias"]), retrieval)
    seconds = time.perf_counter() - started
    searcher.save(folder / INDEX_FILE)
    return round(seconds, 3)


def _stages(kind: str, retrieval: RetrievalConfig, build_seconds: float | None, head=None) -> dict[str, Any]:
    """The serving stages of a version, as ``metadata.json`` states them: ``ranking`` is ``"dot"`` (the vectors'
    dot product and biases) or ``"mlp-head"`` (that plus an :class:`~recsys_workshop.ranking.MLPHead` with
    ``ranking_layers`` layers after its first)."""
    stages: dict[str, Any] = {"retrieval": retrieval.to_metadata(), "ranking": "dot", "catalogue": "any"}
    if head is not None:
        stages["ranking"], stages["ranking_layers"] = "mlp-head", len(head.weights)
    if build_seconds is not None:
        stages["index_build_seconds"] = build_seconds
    if kind == "dense":
        stages["catalogue"] = "small"
        stages["catalogue_note"] = (
            "this model has no user and item vectors: its export is the user x item score matrix, whose size "
            f"grows with users x items (at most {MAX_DENSE_SCORES:,} values), searched exactly"
        )
    return stages


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(value)
    raise TypeError(f"metadata value {value!r} is not JSON serialisable")
