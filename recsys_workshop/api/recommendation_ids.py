"""Signed recommendation ids: feedback is accepted only on a recommendation the API really made.

Every answer of ``GET /recommendations/{user_id}`` carries a ``recommendation_id``: the user, the arm that
answered, the items shown, when, and a random nonce, followed by an HMAC-SHA256 tag made with the API's
signing key (``RECSYS_SIGNING_KEY``; in local mode a generated key in ``artifacts/secrets/``). ``POST
/feedback`` must send it back: the API checks the tag (in constant time), the age, that the feedback's user
is the one the recommendation was made for and that the item was among those shown. The arm credited with
a reward is the one *inside* the id, never one the client names, so nobody can steer the bandit with
fabricated clicks; and a recommendation earns its arm at most one reward (the store remembers which ids
were rewarded).

The id is stateless (nothing is stored when a recommendation is made, so recommending stays a read), and
any replica holding the same key verifies an id another replica issued.

Format: ``v1.<base64url payload>.<base64url tag>``, payload ``user|arm|issued|nonce|item,item,...``; the tag
is the first 16 bytes of ``HMAC-SHA256(key, "v1." + payload)``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence

__all__ = ["InvalidRecommendationId", "Recommendation", "RecommendationSigner"]

VERSION = "v1"
TAG_BYTES = 16
MAX_ID_LENGTH = 4096  # 100 items of 10 digits, base64: ~1.5 kB


class InvalidRecommendationId(ValueError):
    """The id is malformed, forged, expired or does not match the feedback; ``status`` is the HTTP answer."""

    def __init__(self, reason: str, status: int = 403):
        super().__init__(reason)
        self.status = status


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """What a verified recommendation id says."""

    id: str
    user_id: int
    arm: str
    issued: int
    items: tuple[int, ...]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


class RecommendationSigner:
    """Issues and verifies recommendation ids with ``key`` (at least 16 bytes); ids older than ``max_age``
    seconds are refused."""

    def __init__(self, key: bytes | str, max_age: float = 24 * 3600.0):
        key = key.encode() if isinstance(key, str) else key
        if len(key) < 16:
            raise ValueError("the signing key must hold at least 16 bytes")
        self._key = key
        self.max_age = max_age

    def _tag(self, payload: str) -> bytes:
        return hmac.new(self._key, f"{VERSION}.{payload}".encode(), hashlib.sha256).digest()[:TAG_BYTES]

    def issue(self, user_id: int, arm: str, items: Sequence[int], now: float | None = None) -> str:
        """A new id for the recommendation of ``items`` to ``user_id`` by ``arm``."""
        if "|" in arm or "," in arm:
            raise ValueError(f"an arm name cannot hold '|' or ',': {arm!r}")
        issued = int(time.time() if now is None else now)
        payload = f"{int(user_id)}|{arm}|{issued}|{secrets.token_hex(8)}|{','.join(str(int(i)) for i in items)}"
        return f"{VERSION}.{_b64(payload.encode())}.{_b64(self._tag(payload))}"

    def verify(self, rec_id: str, now: float | None = None) -> Recommendation:
        """The recommendation ``rec_id`` stands for; :class:`InvalidRecommendationId` if it is malformed
        (400), forged or expired (403)."""
        if not isinstance(rec_id, str) or len(rec_id) > MAX_ID_LENGTH:
            raise InvalidRecommendationId("malformed recommendation_id", 400)
        parts = rec_id.split(".")
        if len(parts) != 3 or parts[0] != VERSION:
            raise InvalidRecommendationId("malformed recommendation_id", 400)
        try:
            payload, tag = _unb64(parts[1]).decode("ascii"), _unb64(parts[2])
        except (ValueError, UnicodeDecodeError):
            raise InvalidRecommendationId("malformed recommendation_id", 400) from None
        if not hmac.compare_digest(tag, self._tag(payload)):
            raise InvalidRecommendationId("recommendation_id was not issued by this service")
        user, arm, issued, _nonce, items = payload.split("|")
        age = (time.time() if now is None else now) - int(issued)
        if age > self.max_age:
            raise InvalidRecommendationId(f"recommendation_id expired ({age:.0f} s old, limit {self.max_age:.0f} s)")
        return Recommendation(rec_id, int(user), arm, int(issued), tuple(int(i) for i in items.split(",") if i))

    def check_feedback(self, rec_id: str, user_id: int, item_id: int, now: float | None = None) -> Recommendation:
        """:meth:`verify`, and that the feedback's user and item are those of the recommendation."""
        rec = self.verify(rec_id, now)
        if rec.user_id != user_id:
            raise InvalidRecommendationId(f"recommendation_id was made for another user, not {user_id}")
        if item_id not in rec.items:
            raise InvalidRecommendationId(f"item {item_id} was not in the recommendation")
        return rec
