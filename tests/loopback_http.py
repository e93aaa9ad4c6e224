"""A real HTTP server on 127.0.0.1 for the download tests (MovieLens, Kubeflow CRDs)."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def serve(handler: type[http.server.BaseHTTPRequestHandler], prefix: str) -> Iterator[http.server.HTTPServer]:
    """Serve ``handler`` on a free loopback port; the server gets ``.handler`` and ``.url`` (``prefix`` under it)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.handler = handler
    server.url = f"http://127.0.0.1:{server.server_port}/{prefix}"
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
