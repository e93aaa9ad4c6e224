"""What the store hands back: plain dataclasses and dicts, no SQLAlchemy objects (cheap to import)."""

from __future__ import annotations

import dataclasses
from typing import NotRequired, TypedDict

__all__ = ["FeedbackEvent", "FeedbackResult", "StoredUser"]


class FeedbackEvent(TypedDict):
    """One feedback event, the shape the API already logs and returns from ``GET /feedback``.

    ``seq`` is set on events read back from the store (their number, in commit order, per namespace).
    """

    user_id: int
    item_id: int
    action: str  # click | like | dislike
    arm: str | None
    request_id: str | None
    time: float
    recommendation_id: NotRequired[str | None]
    seq: NotRequired[int]


@dataclasses.dataclass(frozen=True)
class FeedbackResult:
    """What :meth:`Store.add_feedback` did: ``stored`` False means a retry (the key was seen before: nothing
    written); ``rewarded`` whether this call added the arm's reward; ``seq`` the event's number (the
    original event's on a retry)."""

    stored: bool
    rewarded: bool
    seq: int

    @property
    def duplicate(self) -> bool:
        return not self.stored


@dataclasses.dataclass(frozen=True)
class StoredUser:
    """A user created through the API: their picks (in order, no repeats) and optional demographics."""

    user_id: int
    liked: list[int]
    age: int | None = None
    gender: str | None = None
    occupation: str | None = None
