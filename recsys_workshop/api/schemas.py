"""What the API accepts: the limits of its path and query parameters and the request bodies (strict:
unknown fields, wrong types and out-of-range values are a 422)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_K = 100
MAX_USER_ID = 2**31 - 1

ItemId = Annotated[int, Field(ge=1, le=MAX_USER_ID)]
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: Annotated[int, Field(ge=1, le=MAX_USER_ID, description="a MovieLens user or one created by POST /users")]
    item_id: ItemId
    action: Literal["click", "like", "dislike"]
    recommendation_id: Annotated[
        str, Field(min_length=1, max_length=4096, description="the `recommendation_id` of the answer shown")
    ]
    arm: Annotated[
        str | None, Field(max_length=64, description="optional: if given, must be the `arm` of that answer")
    ] = None


class NewUserIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    liked_item_ids: Annotated[list[ItemId], Field(max_length=200, description="films the new user likes")] = []
    age: Annotated[int | None, Field(ge=1, le=120)] = None
    gender: Literal["M", "F"] | None = None
    occupation: Annotated[str | None, Field(min_length=1, max_length=40)] = None
