"""Per-client limits on the API's writes (``POST /feedback``, ``POST /users``): a 429 with ``Retry-After``.

The counting is the ``limits`` library's moving window (the library behind Flask-Limiter and SlowAPI),
kept in this process's memory: with two replicas a client gets up to twice the limit, which is what a
limit against runaway scripts needs; a hard quota across replicas would keep its counters in a shared store
(``limits`` also speaks Redis). Limits are strings like ``"20/second"`` or ``"600/minute"``, from
``RECSYS_FEEDBACK_RATE`` and ``RECSYS_USERS_RATE``; ``"off"`` disables one (a load test from a single
machine is one client: see ``bench/serving.py``).

The client is the connection's peer address. Behind a proxy every request comes from the proxy: put the
limit in the proxy (an ingress controller's rate limit) or trust its ``X-Forwarded-For`` there, not here.
"""

from __future__ import annotations

import math
import time

__all__ = ["RateLimiter", "parse_rate"]


def parse_rate(text: str, variable: str = "rate"):
    """``"20/second"`` -> a ``limits`` item; ``"off"`` or empty -> None; a clear error otherwise."""
    from limits import parse

    text = (text or "").strip()
    if text.lower() in ("", "off", "none", "0"):
        return None
    try:
        return parse(text)
    except ValueError:
        raise ValueError(f"{variable} must look like '20/second' or '600/minute' (or 'off'), got {text!r}") from None


class RateLimiter:
    """``check(scope, key)`` -> None if allowed, else the seconds until the next request may pass."""

    def __init__(self, rates: dict[str, object]):
        from limits import storage, strategies

        self._rates = {scope: rate for scope, rate in rates.items() if rate is not None}
        self._limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())

    def check(self, scope: str, key: str) -> int | None:
        rate = self._rates.get(scope)
        if rate is None or self._limiter.hit(rate, scope, key):
            return None
        reset = self._limiter.get_window_stats(rate, scope, key).reset_time
        return max(1, math.ceil(reset - time.time()))

    def describe(self) -> dict[str, str]:
        return {scope: str(rate) for scope, rate in self._rates.items()}
