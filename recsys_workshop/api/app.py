"""The workshop's API layer: FastAPI in front of the model server, with the business logic of
:mod:`recsys_workshop.api.logic`.

Run it with ``uvicorn recsys_workshop.api:app`` (or :func:`recsys_workshop.api.local_stack`). Settings
come from the environment (:class:`Settings`):

=========================  ====================================================================
``RECSYS_MODEL_URL``       the model server, default ``http://127.0.0.1:8080``
``RECSYS_MODEL_NAME``      its model name, default ``recsys``
``RECSYS_MODEL_TIMEOUT``   seconds to wait for it before answering from the fallback (0.5)
``RECSYS_DATASET``         MovieLens release for titles, genres and histories (``ml-100k``)
``RECSYS_ARMS``            model versions the bandit chooses between, e.g. ``1,2``; empty: one arm,
                           ``latest`` (whatever the model server serves by default)
``RECSYS_POLICY``          ``thompson`` (default) or ``epsilon-greedy``
``RECSYS_EPSILON``         exploration rate of epsilon-greedy (0.1)
``RECSYS_MMR_LAMBDA``      default diversity trade-off, 1 = the model's order (0.7)
``RECSYS_FEEDBACK_LOG``    a JSONL file that every feedback event is appended to (none by default)
``RECSYS_SEED``            seed of the bandit's random choices (none: fresh randomness)
``RECSYS_LOG_LEVEL``       ``INFO`` (one JSON line per request on stderr) or ``WARNING`` (fallbacks, errors)
=========================  ====================================================================

Endpoints: ``GET /recommendations/{user_id}?k=10``, ``POST /feedback``, ``POST /users``,
``GET /users/{user_id}`` (history), ``GET /items?q=`` (title search), ``GET /`` (the UI),
``GET /feedback`` (recent events), ``GET /bandit`` (the arms' counts), ``GET /healthz``, ``GET /readyz``,
``GET /metrics`` (Prometheus) and ``GET /openapi.json``.

Layout: this module holds the settings, the app's shared state (:class:`Service`) and :func:`create_app`;
each resource's routes are in :mod:`recsys_workshop.api.routes` (one module per resource, each given the
service explicitly); request bodies and limits in :mod:`.schemas`; response and error shapes in
:mod:`.responses`; logs, metrics and the request middleware in :mod:`.observability`; the model-server
client in :mod:`.model_client`. Their public names stay importable from here.

The model server is called over HTTP (the V1 protocol) with one shared connection pool and a timeout;
if it is down, slow, erroring or does not know the user, the answer comes from the cold-start fallback
and says so (``"source": "fallback"`` and a ``fallback_reason``): model-server trouble is never a 5xx.
After a connection failure or a timeout the API leaves the model server alone for half a second
(``fallback_reason`` ``circuit_open``), so a dead server does not cost every request a failed call.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import gc
import json
import os
import time
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException

from recsys_workshop.api import logic, routes
from recsys_workshop.api.model_client import ModelAnswer, ModelClient, ModelUnavailable
from recsys_workshop.api.observability import (
    LOG,
    JsonFormatter,
    Metrics,
    ObservabilityMiddleware,
    configure_logging,
)
from recsys_workshop.api.responses import register_error_handlers
from recsys_workshop.api.routes.ui import STATIC_DIR
from recsys_workshop.api.schemas import MAX_K, MAX_USER_ID, FeedbackIn, ItemId, NewUserIn

__all__ = [
    "CIRCUIT_COOLDOWN",
    "LOG",
    "MAX_K",
    "MAX_NEW_USERS",
    "MAX_USER_ID",
    "STATIC_DIR",
    "FeedbackIn",
    "ItemId",
    "JsonFormatter",
    "Metrics",
    "ModelAnswer",
    "ModelClient",
    "ModelUnavailable",
    "NewUser",
    "NewUserIn",
    "ObservabilityMiddleware",
    "Service",
    "Settings",
    "configure_logging",
    "create_app",
]

MAX_NEW_USERS = 100_000
CIRCUIT_COOLDOWN = 0.5  # seconds without calling a model server that just failed (then one request tries again)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
    model_url: str = "http://127.0.0.1:8080"
    model_name: str = "recsys"
    model_timeout: float = 0.5
    dataset: str = "ml-100k"
    arms: tuple[str, ...] = ("latest",)
    policy: str = "thompson"
    epsilon: float = 0.1
    mmr_lambda: float = 0.7
    feedback_log: str | None = None
    seed: int | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def number(name: str, default: float, low: float, high: float) -> float:
            raw = env.get(name, "")
            try:
                value = float(raw) if raw.strip() else default
            except ValueError:
                raise ValueError(f"{name} must be a number, got {raw!r}") from None
            if not low <= value <= high:
                raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
            return value

        arms = tuple(a.strip() for a in env.get("RECSYS_ARMS", "").split(",") if a.strip()) or ("latest",)
        for arm in arms:
            if arm != "latest" and not arm.isdigit():
                raise ValueError(f"RECSYS_ARMS holds model versions (integers) or 'latest', got {arm!r}")
        seed = env.get("RECSYS_SEED", "").strip()
        settings = cls(
            model_url=env.get("RECSYS_MODEL_URL", cls.model_url).rstrip("/"),
            model_name=env.get("RECSYS_MODEL_NAME", cls.model_name),
            model_timeout=number("RECSYS_MODEL_TIMEOUT", cls.model_timeout, 0.001, 60.0),
            dataset=env.get("RECSYS_DATASET", cls.dataset),
            arms=arms,
            policy=env.get("RECSYS_POLICY", cls.policy),
            epsilon=number("RECSYS_EPSILON", cls.epsilon, 0.0, 1.0),
            mmr_lambda=number("RECSYS_MMR_LAMBDA", cls.mmr_lambda, 0.0, 1.0),
            feedback_log=env.get("RECSYS_FEEDBACK_LOG") or None,
            seed=int(seed) if seed else None,
        )
        logic.make_bandit(settings.policy, settings.arms)  # fail at start-up on a bad policy name
        return settings


# --------------------------------------------------------------------------------------------
# The service: state precomputed at start-up, and what each endpoint does
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class NewUser:
    liked: list[int]
    age: int | None = None
    gender: str | None = None
    occupation: str | None = None


class Service:
    """Everything the endpoints share: catalogue, histories, bandit, feedback, metrics, model client."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.metrics = Metrics()
        self.ready = False
        self.catalogue: logic.Catalogue | None = None
        self.histories: logic.Histories | None = None
        self.profiles: dict[int, tuple[int | None, str | None, str | None]] = {}
        self.new_users: dict[int, NewUser] = {}
        self.next_user_id = 1
        self.extra_seen: dict[int, set[int]] = collections.defaultdict(set)
        self.extra_liked: dict[int, list[int]] = collections.defaultdict(list)
        self.feedback: collections.deque[dict] = collections.deque(maxlen=100_000)
        self.bandit = logic.make_bandit(settings.policy, settings.arms, epsilon=settings.epsilon, seed=settings.seed)
        self.model: ModelClient | None = None
        self._exclude: dict[int, list[int]] = {}
        self.model_down_until = 0.0  # circuit breaker: skip the model server until then (perf_counter time)
        self._feedback_log = None

    # ---- start-up and shut-down
    def load(self) -> None:
        from recsys_workshop import data

        started = time.perf_counter()
        try:
            movielens = data.load(self.settings.dataset, progress=False)
        except (data.MovieLensError, ValueError) as err:
            LOG.error("cannot load the catalogue", extra={"dataset": self.settings.dataset, "reason": str(err)})
            raise RuntimeError(
                f"the API cannot load {self.settings.dataset!r} (RECSYS_DATASET): {err}\n"
                "Point MOVIELENS_DIR at a local copy, or let the loader download it once."
            ) from err
        self.catalogue = logic.Catalogue.build(movielens.items, movielens.ratings, movielens.users)
        self.histories = logic.Histories.build(movielens.ratings)
        if movielens.users is not None:
            for row in movielens.users.itertuples(index=False):
                self.profiles[int(row.user_id)] = (int(row.age), str(row.gender), str(row.occupation))
        self.next_user_id = max(self.histories.seen) + 1
        LOG.info(
            "loaded",
            extra={"dataset": self.settings.dataset, "items": len(self.catalogue), "users": len(self.histories.seen),
                   "seconds": round(time.perf_counter() - started, 2)},
        )

    async def start(self) -> None:
        self.model = ModelClient(self.settings.model_url, self.settings.model_name, self.settings.model_timeout)
        if self.catalogue is None:
            await asyncio.to_thread(self.load)
        if self.settings.feedback_log:
            path = Path(self.settings.feedback_log)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._feedback_log = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        # The catalogue and histories are hundreds of thousands of long-lived objects: move them out of the
        # garbage collector's reach, or every full collection walks them all, in the middle of a request
        # (the p99 latency). Same trick as Instagram's Django servers (gc.freeze, Python 3.7+).
        gc.collect()
        gc.freeze()
        self.ready = True
        LOG.info("ready", extra={"model_url": self.settings.model_url, "arms": list(self.settings.arms),
                                 "policy": self.bandit.policy})

    async def stop(self) -> None:
        self.ready = False
        if self.model is not None:
            await self.model.aclose()
        if self._feedback_log is not None:
            self._feedback_log.close()

    # ---- users
    def is_known(self, user_id: int) -> bool:
        return user_id in self.histories.seen or user_id in self.new_users

    def seen(self, user_id: int) -> frozenset[int] | set[int]:
        """Rated films, films given feedback, and a new user's picks (do not modify the result)."""
        base = self.histories.seen.get(user_id, frozenset())
        extra = self.extra_seen.get(user_id)
        if user_id in self.new_users:
            base = base | set(self.new_users[user_id].liked)
        return base | extra if extra else base

    def exclude_list(self, user_id: int, seen) -> list[int]:
        """``sorted(seen)``, cached per user until their next feedback (it goes in every model request)."""
        cached = self._exclude.get(user_id)
        if cached is None:
            cached = self._exclude[user_id] = sorted(seen)
        return cached

    def liked(self, user_id: int) -> list[int]:
        """Liked items, most recent first: feedback likes, then the new user's picks or the rating history."""
        recent = self.extra_liked.get(user_id, [])
        past = self.new_users[user_id].liked if user_id in self.new_users else self.histories.liked.get(user_id, [])
        return list(dict.fromkeys([*reversed(recent), *past]))

    def add_user(self, liked: list[int], age: int | None, gender: str | None, occupation: str | None) -> int:
        if len(self.new_users) >= MAX_NEW_USERS:
            raise HTTPException(429, detail=f"too many new users in this process (limit {MAX_NEW_USERS})")
        user_id = self.next_user_id
        self.next_user_id += 1
        self.new_users[user_id] = NewUser(list(dict.fromkeys(liked)), age, gender, occupation)
        return user_id

    # ---- recommendations
    async def recommend(self, user_id: int, k: int, lam: float) -> dict:
        catalogue = self.catalogue
        seen = self.seen(user_id)
        liked = self.liked(user_id)
        arm = self.bandit.choose()
        source, reason, version = "model", None, None
        ids: list[int] = []
        scores: list[float] = []
        if user_id in self.new_users:
            reason = "new_user"
        else:
            n_candidates = min(len(catalogue), k + max(k, 20))
            started = time.perf_counter()
            try:
                if started < self.model_down_until:
                    raise ModelUnavailable("circuit_open", "the model server failed a moment ago")
                answer = await self.model.top_k(
                    user_id, n_candidates, self.exclude_list(user_id, seen), None if arm == "latest" else arm
                )
                if not answer.known:
                    raise ModelUnavailable("unknown_to_model")
                ids, scores = logic.filter_seen(answer.item_ids, answer.scores, seen)
                ids_scores = [(i, s) for i, s in zip(ids, scores, strict=True) if i in catalogue.row_of]
                ids, scores = [i for i, _ in ids_scores], [s for _, s in ids_scores]
                version = answer.version
            except ModelUnavailable as err:
                reason = err.reason
                if reason in ("unavailable", "timeout"):  # do not queue every request behind a dead server
                    self.model_down_until = time.perf_counter() + CIRCUIT_COOLDOWN
                LOG.warning("fallback", extra={"user_id": user_id, "reason": err.reason, "detail": str(err)})
            finally:
                self.metrics.model_latency.observe(time.perf_counter() - started)
        if reason is not None:
            source, arm = "fallback", "fallback"
            ids, scores = self.fallback_candidates(user_id, liked, seen, k + max(k, 20))
            self.metrics.fallbacks.labels(reason).inc()
        else:
            self.bandit.record_pull(arm)
        if ids:
            rows = catalogue.rows(ids)
            ids, scores = logic.mmr_rerank(ids, scores, catalogue.genre_unit[rows], k, lam)
        if len(ids) < k:  # the model returned too few unseen items: top up with popular ones
            extra = logic.popular_items(catalogue.popular, set(seen).union(ids), k - len(ids))
            ids, scores = ids + extra, scores + [None] * len(extra)
        self.metrics.arms.labels(arm).inc()
        self.metrics.recommendations.labels(source).inc()
        return {
            "user_id": user_id,
            "items": self.describe(ids, scores, liked),
            "source": source,
            "arm": arm,
            "model_version": version,
            "fallback_reason": reason,
            "policy": self.bandit.policy,
        }

    def fallback_candidates(self, user_id: int, liked: list[int], seen: set[int], n: int):
        """Cold start: metadata scores (liked films' genres + demographics + popularity), unseen only."""
        profile = self.new_users.get(user_id)
        age, gender, occupation = (
            (profile.age, profile.gender, profile.occupation) if profile else self.profiles.get(user_id, (None,) * 3)
        )
        scores = logic.metadata_scores(self.catalogue, liked[:20], age=age, gender=gender, occupation=occupation)
        m = min(n + len(seen), len(scores))
        top = np.argpartition(-scores, m - 1)[:m] if m < len(scores) else np.arange(len(scores))
        order = top[np.lexsort((top, -scores[top]))]  # best first, ties by row: deterministic
        ids = self.catalogue.item_ids[order].tolist()
        return logic.filter_seen(ids, scores[order].tolist(), seen, n)

    def describe(self, ids: list[int], scores: list[float | None], liked: list[int]) -> list[dict]:
        catalogue = self.catalogue
        because = logic.because_you_liked(catalogue, ids, liked)
        out = []
        for item, score, reason_item in zip(ids, scores, because, strict=True):
            row = catalogue.row_of[item]
            if reason_item is not None:
                reason = f"because you liked {catalogue.titles[catalogue.row_of[reason_item]]}"
            elif score is None or not liked:
                reason = "popular with MovieLens users"
            else:
                reason = "recommended for you"
            out.append(
                {
                    "item_id": item,
                    "title": catalogue.titles[row],
                    "genres": catalogue.genres[row],
                    "score": None if score is None else logic.finite_or_none(score),
                    "reason": reason,
                }
            )
        return out

    # ---- feedback
    def record_feedback(self, event: dict) -> None:
        user, item, action, arm = event["user_id"], event["item_id"], event["action"], event.get("arm")
        self.extra_seen[user].add(item)
        self._exclude.pop(user, None)
        if action == "like":
            self.extra_liked[user].append(item)
        if arm in self.bandit.pulls and action in ("click", "like"):
            self.bandit.record_reward(arm, 1.0)
        self.metrics.feedback.labels(action, arm if arm in self.bandit.pulls or arm == "fallback" else "other").inc()
        self.feedback.append(event)
        if self._feedback_log is not None:
            self._feedback_log.write(json.dumps(event) + "\n")
            self._feedback_log.flush()
        LOG.info("feedback", extra=event)


# --------------------------------------------------------------------------------------------
# The app
# --------------------------------------------------------------------------------------------


def create_app(settings: Settings | None = None, *, service: Service | None = None) -> FastAPI:
    """A new app; ``settings`` default to :meth:`Settings.from_env`. Data load at start-up (lifespan)."""
    configure_logging()
    service = service or Service(settings or Settings.from_env())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="recsys-workshop API",
        version="0.1.0",
        description="Movie recommendations with business logic in front of the model server.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(ObservabilityMiddleware, service=service)
    register_error_handlers(app)
    routes.register_all(app, service)
    return app
