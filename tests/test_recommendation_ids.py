"""Signed recommendation ids (HMAC) and the per-client write limits of the API."""

from __future__ import annotations

import base64

import pytest

from recsys_workshop.api.ratelimit import RateLimiter, parse_rate
from recsys_workshop.api.recommendation_ids import InvalidRecommendationId, RecommendationSigner

pytestmark = pytest.mark.unit

KEY = b"k" * 32


def test_an_issued_id_verifies_and_says_what_was_recommended():
    signer = RecommendationSigner(KEY)
    rec_id = signer.issue(196, "2", [50, 172, 7], now=1_000_000)
    rec = signer.check_feedback(rec_id, 196, 172, now=1_000_060)
    assert (rec.user_id, rec.arm, rec.items, rec.issued) == (196, "2", (50, 172, 7), 1_000_000)
    assert signer.issue(196, "2", [50], now=1) != signer.issue(196, "2", [50], now=1)  # a fresh nonce each time


@pytest.mark.parametrize(
    ("user", "item", "reason"),
    [(197, 50, "another user"), (196, 99, "not in the recommendation")],
)
def test_feedback_must_match_the_recommendation(user, item, reason):
    signer = RecommendationSigner(KEY)
    rec_id = signer.issue(196, "1", [50, 172], now=10)
    with pytest.raises(InvalidRecommendationId, match=reason) as caught:
        signer.check_feedback(rec_id, user, item, now=11)
    assert caught.value.status == 403


def test_a_forged_id_is_refused():
    """Changing the arm (or anything else) inside the payload breaks the tag; so does another key."""
    signer = RecommendationSigner(KEY)
    version, payload, tag = signer.issue(196, "1", [50], now=10).split(".")
    text = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    forged_payload = base64.urlsafe_b64encode(text.replace("|1|", "|2|", 1).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidRecommendationId, match="not issued by this service"):
        signer.verify(f"{version}.{forged_payload}.{tag}", now=11)
    other = RecommendationSigner(b"x" * 32).issue(196, "1", [50], now=10)
    with pytest.raises(InvalidRecommendationId, match="not issued by this service"):
        signer.verify(other, now=11)


@pytest.mark.parametrize("rec_id", ["", "v1.abc", "v2.a.b", "v1.!!!.???", "v1." + "a" * 5000 + ".b", 42])
def test_a_malformed_id_is_a_400(rec_id):
    with pytest.raises(InvalidRecommendationId, match="malformed") as caught:
        RecommendationSigner(KEY).verify(rec_id)
    assert caught.value.status == 400


def test_an_old_id_expires():
    signer = RecommendationSigner(KEY, max_age=60)
    rec_id = signer.issue(1, "latest", [5], now=1000)
    assert signer.verify(rec_id, now=1060).user_id == 1
    with pytest.raises(InvalidRecommendationId, match="expired"):
        signer.verify(rec_id, now=1061)


def test_a_short_key_is_refused():
    with pytest.raises(ValueError, match="16 bytes"):
        RecommendationSigner(b"short")


def test_the_write_limit_counts_per_client_and_says_when_to_retry():
    limiter = RateLimiter({"feedback": parse_rate("3/minute"), "users": parse_rate("off")})
    assert [limiter.check("feedback", "a") for _ in range(3)] == [None, None, None]
    retry = limiter.check("feedback", "a")
    assert retry is not None and 1 <= retry <= 60
    assert limiter.check("feedback", "b") is None  # another client has its own window
    assert all(limiter.check("users", "a") is None for _ in range(100))  # "off"


@pytest.mark.parametrize("text", ["3 per minute please", "x/second", "/minute"])
def test_a_bad_rate_is_a_clear_error(text):
    with pytest.raises(ValueError, match="RECSYS_FEEDBACK_RATE must look like"):
        parse_rate(text, "RECSYS_FEEDBACK_RATE")
