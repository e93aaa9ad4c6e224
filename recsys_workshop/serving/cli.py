"""``python -m recsys_workshop.serving``: the command line of the model server (the manifests' container args
are tested against :func:`build_parser`)."""

from __future__ import annotations

import argparse
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from recsys_workshop import security
from recsys_workshop.asgi_limits import DEFAULT_MAX_BYTES, DEFAULT_READ_TIMEOUT
from recsys_workshop.export import list_versions
from recsys_workshop.serving.model import VersionError
from recsys_workshop.serving.server import DEFAULT_GRACE_PERIOD, DEFAULT_MAX_UPLOAD_BYTES, serve
from recsys_workshop.serving.watch import DEFAULT_POLL_INTERVAL

__all__ = ["build_parser", "main", "resolve_admin_token"]


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m recsys_workshop.serving``."""
    from recsys_workshop import serving

    description = (serving.__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m recsys_workshop.serving", description=description)
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
    parser.add_argument(
        "--max-body-bytes",
        type=_positive_int,
        default=DEFAULT_MAX_BYTES,
        help=f"largest request body (REST) or message (gRPC) accepted (default {DEFAULT_MAX_BYTES})",
    )
    parser.add_argument(
        "--max-upload-bytes",
        type=_positive_int,
        default=DEFAULT_MAX_UPLOAD_BYTES,
        help="largest body of a version upload, POST /v1/models/<name>/versions (default "
        f"{DEFAULT_MAX_UPLOAD_BYTES}); every other route keeps --max-body-bytes",
    )
    parser.add_argument(
        "--body-timeout",
        type=_positive_float,
        default=DEFAULT_READ_TIMEOUT,
        help="seconds to wait for the next part of a request body before answering 408 "
        f"(default {DEFAULT_READ_TIMEOUT:g})",
    )
    parser.add_argument("--grace-period", type=_positive_int, default=DEFAULT_GRACE_PERIOD,
                        help="seconds in-flight requests may take to finish after SIGTERM "
                        f"(default {DEFAULT_GRACE_PERIOD})")  # fmt: skip
    parser.add_argument("--wait-for-model", action="store_true",
                        help="start even when --model-dir holds no version yet (or none that loads): stay up, "
                        "not ready, and load the first complete version that appears (a cluster's model server "
                        "starts before the training job has exported a model)")  # fmt: skip
    parser.add_argument("--poll-interval", type=_positive_float, default=DEFAULT_POLL_INTERVAL,
                        help="with --wait-for-model: seconds between two looks at --model-dir "
                        f"(default {DEFAULT_POLL_INTERVAL:g})")  # fmt: skip
    parser.add_argument("--candidates", type=_positive_int, default=None,
                        help="items the retrieval stage hands to the ranking stage (default: each version's own, "
                        "from its metadata.json; versions searched exactly score every item anyway)")  # fmt: skip
    parser.add_argument("--ef-search", type=_positive_int, default=None,
                        help="HNSW candidates kept while searching the graph, raised to --candidates when "
                        "smaller (default: each version's own): higher finds more of the exact top-k, "
                        "slower")  # fmt: skip
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def resolve_admin_token() -> str:
    """The configured admin token; when none is (a server started by hand), the local token file's, and one
    line saying where it is (never the token itself). A server that cannot write that file still starts:
    its admin routes then refuse every call."""
    token = security.admin_token()
    if token is not None:
        return token
    path = security.local_token_path()
    try:
        token = security.local_admin_token(path)
    except OSError as error:
        print(f"admin token: none configured (${security.ADMIN_TOKEN_ENV} or ${security.ADMIN_TOKEN_FILE_ENV}) "
              f"and {path} cannot be written ({error.strerror}): admin routes are disabled", flush=True)  # fmt: skip
        return secrets.token_urlsafe(32)
    print(f"admin token: none configured, using the local token file {path} "
          "(send it as 'Authorization: Bearer <token>')", flush=True)  # fmt: skip
    return token


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    options = parser.parse_args(argv)
    base = Path(options.model_dir)
    if not options.wait_for_model:  # with it, the folder and its first version may appear later
        if not base.is_dir():
            parser.error(f"--model-dir {base} is not a folder")
        if not list_versions(base):
            parser.error(f"--model-dir {base} holds no version folder (1/, 2/, ...): export a model first "
                         "(or start with --wait-for-model)")  # fmt: skip
    try:
        token = resolve_admin_token()
    except security.AdminTokenError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    sys.argv = sys.argv[:1]  # kserve parses sys.argv when imported; it must not see our options
    try:
        serve(
            base,
            admin_token=token,
            model_name=options.model_name,
            host=options.host,
            http_port=options.http_port,
            grpc_port=options.grpc_port,
            enable_grpc=not options.no_grpc,
            access_log=options.access_log,
            version=options.version,
            max_body_bytes=options.max_body_bytes,
            max_upload_bytes=options.max_upload_bytes,
            body_timeout=options.body_timeout,
            grace_period=options.grace_period,
            wait_for_model=options.wait_for_model,
            poll_interval=options.poll_interval,
            candidates=options.candidates,
            ef_search=options.ef_search,
        )
    except VersionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
