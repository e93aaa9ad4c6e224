"""What the store raises when the database cannot do its job, and how a URL is shown without its password.

Imports nothing heavy, so the API can import :class:`StoreUnavailable` (its 503) without SQLAlchemy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["StoreUnavailable", "guard", "hide_password"]

MAX_REASON = 200


class StoreUnavailable(RuntimeError):
    """The database failed (unreachable, locked too long, disk full, ...): nothing of the call was written.

    ``reason`` is one short line (the driver's first line, never the URL's password); the API answers 503.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def hide_password(url: object) -> str:
    """``url`` as text with its password replaced by ``***`` (any text SQLAlchemy cannot parse: ``<invalid URL>``)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, TypeError, ValueError):
        return "<invalid URL>"


def reason_of(err: BaseException, secret: str | None = None) -> str:
    """One short line saying what went wrong: the driver's own message when there is one."""
    cause = getattr(err, "orig", None) or err
    lines = str(cause).strip().splitlines()
    text = lines[0].strip() if lines else type(cause).__name__
    if secret:
        text = text.replace(secret, "***")
    return text[:MAX_REASON]


@contextlib.contextmanager
def guard(secret: str | None = None) -> Iterator[None]:
    """Turn database and disk failures inside the block into :class:`StoreUnavailable`.

    Constraint violations (``IntegrityError``) are not availability problems but bugs (the store checks its
    input first), so they pass through unchanged. ``secret`` (the URL's password) is scrubbed from the
    reason, and the original exception is only chained when its text does not contain it.
    """
    from sqlalchemy import exc

    try:
        yield
    except StoreUnavailable:
        raise
    except exc.IntegrityError:
        raise
    except (exc.DBAPIError, exc.TimeoutError, exc.DisconnectionError, OSError) as err:
        reason = reason_of(err, secret)
        leaks = bool(secret) and secret in f"{err!s}{getattr(err, 'orig', '')!s}"
        raise StoreUnavailable(reason) from (None if leaks else err)
