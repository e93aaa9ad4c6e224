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
``RECSYS_SEED``            seed of the bandit's random choices (none: fresh randomness)
``RECSYS_LOG_LEVEL``       ``INFO`` (one JSON line per request on stderr) or ``WARNING`` (fallbacks, errors)
``RECSYS_DATABASE_URL``    where users, feedback and bandit statistics live (SQLAlchemy URL); default an
                           SQLite file, ``artifacts/state/api.db``; on a cluster PostgreSQL (a Secret)
``RECSYS_ADMIN_TOKEN``     the admin credential (or ``RECSYS_ADMIN_TOKEN_FILE``); default: generated
                           once into ``artifacts/secrets/admin-token`` (mode 0600)
``RECSYS_SIGNING_KEY``     the HMAC key of recommendation ids (all replicas share it); default: generated
                           once into ``artifacts/secrets/signing-key``
``RECSYS_FEEDBACK_RATE``   per-client limit on ``POST /feedback`` (``120/minute``; ``off`` for none)
``RECSYS_USERS_RATE``      per-client limit on ``POST /users`` (``10/minute``)
``RECSYS_SYNC_INTERVAL``   seconds between two syncs of this replica with the database (1.0)
``RECSYS_BODY_TIMEOUT``    seconds a client may take to send each part of a request body (10)
=========================  ====================================================================

Security. ``GET /feedback`` (every user's events) is an admin call: ``Authorization: Bearer <token>``,
401 without it, 403 with a wrong one. ``POST /feedback`` must carry the ``recommendation_id`` of the
answer it is about (:mod:`.recommendation_ids`: signed, so fabricated clicks are refused and the arm
rewarded is the one that really answered); a retry (same ``Idempotency-Key`` header, or the same
recommendation, item and action) stores nothing twice. Writes are limited per client (429 with
``Retry-After``), bodies are capped (64 KiB, 413) and must keep arriving (408). State: :mod:`.state`.

Endpoints: ``GET /recommendations/{user_id}?k=10``, ``POST /feedback``, ``POST /users``,
``GET /users/{user_id}`` (history), ``GET /items?q=`` (title search), ``GET /`` (the UI),
``GET /feedback`` (recent events), ``GET /bandit`` (the arms' counts), ``GET /healthz``, ``GET /readyz``,
``GET /metrics`` (Prometheus) and ``GET /openapi.json``.

Layout: this module holds the settings, the service (:class:`Service`) and :func:`create_app`; the state
shared by replicas (users, feedback, bandit statistics in the database) is :mod:`.state`;
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
import contextlib
import dataclasses
import gc
import os
import time

import numpy as np
from fastapi import FastAPI

from recsys_workshop import security
from recsys_workshop.api import logic, routes
from recsys_workshop.api.model_client import ModelAnswer, ModelClient, ModelUnavailable
from recsys_workshop.api.observability import (
    LOG,
    JsonFormatter,
    Metrics,
    ObservabilityMiddleware,
    configure_logging,
)
from recsys_workshop.api.ratelimit import RateLimiter, parse_rate
from recsys_workshop.api.recommendation_ids import RecommendationSigner
from recsys_workshop.api.responses import register_error_handlers
from recsys_workshop.api.routes.ui import STATIC_DIR
from recsys_workshop.api.schemas import MAX_K, MAX_USER_ID, FeedbackIn, ItemId, NewUserIn
from recsys_workshop.api.state import NewUser, SharedState
from recsys_workshop.asgi_limits import BodyLimits
from recsys_workshop.security import AdminGuard

__all__ = [
    "CIRCUIT_COOLDOWN",
    "LOG",
    "MAX_K",
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

MAX_BODY_BYTES = 64 * 1024
BODY_TIMEOUT = 10.0
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
    seed: int | None = None
    database_url: str | None = dataclasses.field(default=None, repr=False)
    admin_token: str | None = dataclasses.field(default=None, repr=False)
    signing_key: str | None = dataclasses.field(default=None, repr=False)
    feedback_rate: str = "120/minute"
    users_rate: str = "10/minute"
    sync_interval: float = 1.0
    body_timeout: float = BODY_TIMEOUT

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
            seed=int(seed) if seed else None,
            database_url=env.get("RECSYS_DATABASE_URL") or None,
            admin_token=security.admin_token(env),
            signing_key=env.get("RECSYS_SIGNING_KEY") or None,
            feedback_rate=env.get("RECSYS_FEEDBACK_RATE", cls.feedback_rate),
            users_rate=env.get("RECSYS_USERS_RATE", cls.users_rate),
            sync_interval=number("RECSYS_SYNC_INTERVAL", cls.sync_interval, 0.05, 60.0),
            body_timeout=number("RECSYS_BODY_TIMEOUT", cls.body_timeout, 0.1, 300.0),
        )
        logic.make_bandit(settings.policy, settings.arms)  # fail at start-up on a bad policy name
        settings.rates()  # and on a bad rate
        return settings

    def rates(self) -> dict[str, object]:
        return {"feedback": parse_rate(self.feedback_rate, "RECSYS_FEEDBACK_RATE"),
                "users": parse_rate(self.users_rate, "RECSYS_USERS_RATE")}

    def resolved_secrets(self) -> tuple[str, str]:
        """``(admin token, signing key)``: the configured ones, else local mode's generated files."""
        admin = self.admin_token or security.local_admin_token()
        key = self.signing_key or security.local_secret("signing-key")
        if len(key) < 16:
            raise ValueError("RECSYS_SIGNING_KEY must hold at least 16 characters")
        return admin, key


# --------------------------------------------------------------------------------------------
# The service: state precomputed at start-up, and what each endpoint does
# --------------------------------------------------------------------------------------------


class Service:
    """Everything the endpoints share: catalogue, histories, the shared state (users, feedback, bandit, in
    the database), metrics, the model client, the signer of recommendation ids and the write limits."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.metrics = Metrics()
        self.ready = False
        self.catalogue: logic.Catalogue | None = None
        self.histories: logic.Histories | None = None
        self.profiles: dict[int, tuple[int | None, str | None, str | None]] = {}
        self.bandit = logic.make_bandit(settings.policy, settings.arms, epsilon=settings.epsilon, seed=settings.seed)
        self.state: SharedState | None = None
        self.model: ModelClient | None = None
        self._exclude: dict[int, list[int]] = {}
        self.model_down_until = 0.0  # circuit breaker: skip the model server until then (perf_counter time)
        self.admin_token, signing_key = settings.resolved_secrets()
        self.signer = RecommendationSigner(signing_key)
        self.limiter = RateLimiter(settings.rates())
        self._sync_task: asyncio.Task | None = None

    # ---- start-up and shut-down
    def load(self) -> None:
        from recsys_workshop import data
        from recsys_workshop.store import Store

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
        store = Store.open(self.settings.database_url, namespace=self.settings.dataset)
        self.state = SharedState(store, self.bandit, first_id=max(self.histories.seen) + 1)
        self.state.on_feedback_applied = lambda user: self._exclude.pop(user, None)
        self.state.sync_once()  # replay what is committed: users, feedback, bandit statistics
        LOG.info(
            "loaded",
            extra={"dataset": self.settings.dataset, "items": len(self.catalogue), "users": len(self.histories.seen),
                   "api_users": len(self.state.new_users), "feedback_seq": self.state.feedback_cursor,
                   "database": store.url, "seconds": round(time.perf_counter() - started, 2)},
        )

    async def start(self) -> None:
        self.model = ModelClient(self.settings.model_url, self.settings.model_name, self.settings.model_timeout)
        if self.catalogue is None:
            await asyncio.to_thread(self.load)
        # The catalogue and histories are hundreds of thousands of long-lived objects: move them out of the
        # garbage collector's reach, or every full collection walks them all, in the middle of a request
        # (the p99 latency). Same trick as Instagram's Django servers (gc.freeze, Python 3.7+).
        gc.collect()
        gc.freeze()
        self._sync_task = asyncio.create_task(self.state.run(self.settings.sync_interval))
        self.ready = True
        LOG.info("ready", extra={"model_url": self.settings.model_url, "arms": list(self.settings.arms),
                                 "policy": self.bandit.policy})

    async def stop(self) -> None:
        self.ready = False
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
        if self.state is not None:
            with contextlib.suppress(Exception):  # write the last pull counts; the database may be gone
                await self.state.sync()
            self.state.store.close()
        if self.model is not None:
            await self.model.aclose()

    # ---- users
    @property
    def new_users(self) -> dict:
        return self.state.new_users

    def is_known(self, user_id: int) -> bool:
        return user_id in self.histories.seen or user_id in self.state.new_users

    async def knows(self, user_id: int) -> bool:
        """:meth:`is_known`, or created through the API on another replica since the last sync."""
        return self.is_known(user_id) or await self.state.lookup_user(user_id)

    def seen(self, user_id: int) -> frozenset[int] | set[int]:
        """Rated films, films given feedback, and a new user's picks (do not modify the result)."""
        base = self.histories.seen.get(user_id, frozenset())
        extra = self.state.extra_seen.get(user_id)
        if user_id in self.state.new_users:
            base = base | set(self.state.new_users[user_id].liked)
        return base | extra if extra else base

    def exclude_list(self, user_id: int, seen) -> list[int]:
        """``sorted(seen)``, cached per user until their next feedback (it goes in every model request)."""
        cached = self._exclude.get(user_id)
        if cached is None:
            cached = self._exclude[user_id] = sorted(seen)
        return cached

    def liked(self, user_id: int) -> list[int]:
        """Liked items, most recent first: feedback likes, then the new user's picks or the rating history."""
        recent = self.state.extra_liked.get(user_id, [])
        new_users = self.state.new_users
        past = new_users[user_id].liked if user_id in new_users else self.histories.liked.get(user_id, [])
        return list(dict.fromkeys([*reversed(recent), *past]))

    # ---- recommendations
    async def recommend(self, user_id: int, k: int, lam: float) -> dict:
        catalogue = self.catalogue
        seen = self.seen(user_id)
        liked = self.liked(user_id)
        arm = self.bandit.choose()
        source, reason, version = "model", None, None
        ids: list[int] = []
        scores: list[float] = []
        if user_id in self.state.new_users:
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
            self.state.record_pull(arm)
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
            "recommendation_id": self.signer.issue(user_id, arm, ids),
            "source": source,
            "arm": arm,
            "model_version": version,
            "fallback_reason": reason,
            "policy": self.bandit.policy,
        }

    def fallback_candidates(self, user_id: int, liked: list[int], seen: set[int], n: int):
        """Cold start: metadata scores (liked films' genres + demographics + popularity), unseen only."""
        profile = self.state.new_users.get(user_id)
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
    async def record_feedback(self, event: dict, idempotency_key: str, rec_digest: str, arm: str):
        """Store ``event`` (committed before this returns), reward ``arm`` once per recommendation, and
        count it; a retry of the same ``idempotency_key`` stores and counts nothing."""
        result = await self.state.add_feedback(event, idempotency_key, rec_digest, arm)
        if result.stored:
            self._exclude.pop(event["user_id"], None)
            label = arm if arm in self.bandit.pulls or arm == "fallback" else "other"
            self.metrics.feedback.labels(event["action"], label).inc()
            LOG.info("feedback", extra=event)
        return result


# --------------------------------------------------------------------------------------------
# The app
# --------------------------------------------------------------------------------------------


def is_admin_route(method: str, path: str) -> bool:
    """The API's admin calls: reading the feedback log (every user's events)."""
    return path.rstrip("/") == "/feedback" and method == "GET"


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
    app.add_middleware(AdminGuard, token=service.admin_token, is_admin_route=is_admin_route)
    app.add_middleware(BodyLimits, max_bytes=MAX_BODY_BYTES, read_timeout=service.settings.body_timeout)
    register_error_handlers(app)
    routes.register_all(app, service)
    return app
