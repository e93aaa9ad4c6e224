"""The model server: a KServe predictor answering top-k recommendations from exported SavedModels.

Run it with ``python -m recsys_workshop.serving --model-dir <base> [--model-name recsys] [--http-port 8080]
[--grpc-port 8081] [--host 127.0.0.1] [--version N] [--no-access-log] [--max-body-bytes B]
[--max-upload-bytes B] [--body-timeout S] [--grace-period S] [--wait-for-model [--poll-interval S]]``, or
from Python with :func:`local_server`, which starts it as a subprocess on free loopback ports and stops it on
exit. ``<base>`` holds one folder per version, as written by :func:`recsys_workshop.export.export_model` (``<base>/1/``,
``<base>/2/``, ...).

Without a model yet. By default a server whose ``<base>`` holds no version that loads exits with the reason.
With ``--wait-for-model`` (a cluster's model server, which starts before the training job has exported
anything) it stays up and *not ready*: ``/v2/health/live`` answers 200 (liveness: no restart), the model-ready
route, predict and infer answer 503 (gRPC ``UNAVAILABLE``); every ``--poll-interval`` seconds it looks for a
complete version (:mod:`.watch`) and loads the first that appears, then it is ready. No crash loop.

How it answers. Every version is loaded once with ``tf.saved_model.load``; its precomputed user and item
vectors, biases and item popularity are read out as numpy arrays, and each request is one matrix product
plus a partial sort (``argpartition``) over all its instances at once: no TensorFlow call per request.
The SavedModel's own signatures (``serving_default``, ``score``) give the same items and scores; they are
what TensorFlow Serving uses in the cluster's TensorFlow-format InferenceService.

REST, V1 protocol (TensorFlow Serving's API):

- ``GET /v1/models/recsys``: ``{"name": "recsys", "ready": true}``; ``GET /v2/models/recsys/ready`` is 200
  only while a version is active (the pod's readiness probe; ``GET /v2/health/live``, 200 while the process
  answers, is its startup and liveness probe);
- ``POST /v1/models/recsys:predict`` with ``{"instances": [{"user_id": 196, "k": 10}, ...]}``:
  ``{"predictions": [{"user_id", "item_ids", "scores", "known", "version"}, ...]}``. Per instance:
  ``k`` (default 10, 1 to 1000), ``exclude`` (item ids never returned, e.g. already seen). With
  ``"item_ids": [...]`` instead of ``k`` an instance asks for the scores of those items. An unknown user
  gets ``"known": false`` and the most popular items.
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
- Version archives (how a pipeline that cannot mount the server's disk pushes a model, :mod:`.archive`):
  ``GET /v1/models/recsys/versions/{v|latest}/archive`` answers the version folder as a ``.tar.gz``;
  ``POST /v1/models/recsys/versions`` with a ``.tar.gz`` body (``Content-Type: application/gzip``, at most
  ``--max-upload-bytes``) checks it (safe member names, regular files only, bounded size, a complete
  version that loads), publishes it as the next version (an atomic rename) and answers 201
  ``{"version": N}``; a refused archive gets 400, 413, 415 or 422 with the reason and leaves no folder.
  Like any new version, it is served when pinned or after ``:activate``.

Admin routes need ``Authorization: Bearer <admin token>`` (401 without, 403 with a wrong one): ``:activate``,
``:rollback``, the version archives (download and upload) and KServe's repository routes (REST
``/v2/repository/models/{name}/load|unload``, gRPC
``RepositoryModelLoad``/``RepositoryModelUnload``). The token comes from ``$RECSYS_ADMIN_TOKEN`` or
``$RECSYS_ADMIN_TOKEN_FILE``; a server started by hand without either uses the local token file
``artifacts/secrets/admin-token`` and says so. :func:`local_server` hands it over: ``server.admin_headers()``.

Client errors. Every malformed request gets a 4xx (gRPC ``INVALID_ARGUMENT``) with ``{"error": reason}``,
a short reason quoting little of the request and no server path; bodies over ``--max-body-bytes`` (the
upload: ``--max-upload-bytes``) get 413
(gRPC ``RESOURCE_EXHAUSTED``), a body that stops arriving for ``--body-timeout`` seconds gets 408. On SIGTERM
the server stops accepting, lets in-flight requests finish (``--grace-period``) and exits 0.

gRPC, Open Inference Protocol v2 (``ModelInfer``): inputs ``user_id`` (INT64, ``[n]``) and optionally
``k`` (INT32 or INT64, ``[1]``); outputs ``item_ids`` (INT64, ``[n, k]``), ``scores`` (FP32, ``[n, k]``)
and ``known`` (BOOL, ``[n]``); the version is pinned by the ``x-model-version`` metadata. A client:
:class:`GrpcClient`. The same tensors work over REST at ``POST /v2/models/recsys/infer`` (and
``/v2/models/recsys/versions/{v}/infer``).

KServe 0.21 binds REST to 0.0.0.0 and gRPC to [::]; this server binds both to ``--host`` (127.0.0.1 by
default; a cluster pod passes ``--host 0.0.0.0``). This package never imports the training code, and
importing it imports neither TensorFlow nor KServe.

Modules: :mod:`.model` (versions, top-k), :mod:`.parsing` (request checks), :mod:`.predictor` (the
``kserve.Model``), :mod:`.routes` (extra routes, admin predicates, error handlers), :mod:`.archive`
(version archives: packing, checked unpacking, publishing), :mod:`.server`
(running it), :mod:`.watch` (waiting for the first version), :mod:`.local` (:func:`local_server`,
:class:`GrpcClient`), :mod:`.cli`.
"""

from __future__ import annotations

# Also importable from here, as before the split (labs, bench/ and tests use some of them): the process
# helpers (now in recsys_workshop.procs), the command line, the request checks and the limits.
from recsys_workshop.procs import free_port, log_file, stop_process, wait_ready  # noqa: F401
from recsys_workshop.serving.cli import build_parser, main
from recsys_workshop.serving.local import GrpcClient, LocalServer, local_server
from recsys_workshop.serving.model import LoadedVersion, RequestError, VersionError, _top_k_rows  # noqa: F401
from recsys_workshop.serving.parsing import (  # noqa: F401
    DEFAULT_K,
    MAX_INSTANCES,
    MAX_ITEMS_PER_INSTANCE,
    MAX_K,
    VERSION_HEADER,
    header_version,
    parse_instances,
)
from recsys_workshop.serving.predictor import build_predictor, predict_instances  # noqa: F401
from recsys_workshop.serving.server import serve  # noqa: F401
from recsys_workshop.serving.versions import VersionManager

__all__ = [
    "GrpcClient",
    "LoadedVersion",
    "LocalServer",
    "RequestError",
    "VersionError",
    "VersionManager",
    "build_parser",
    "local_server",
    "main",
]
