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
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import orjson
from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from recsys_workshop.api import logic

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_K = 100
MAX_USER_ID = 2**31 - 1
MAX_NEW_USERS = 100_000
CIRCUIT_COOLDOWN = 0.5  # seconds without calling a model server that just failed (then one request tries again)
LOG = logging.getLogger("recsys_workshop.api")


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
# Structured logs and metrics
# --------------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's ``extra`` fields."""

    _RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        for key in fields.keys() - self._RESERVED:
            entry[key] = fields[key]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(entry, default=str).decode()
        except TypeError:  # e.g. a lone surrogate echoed from a request: the slower, always-safe encoder
            return json.dumps(entry, default=str)


def configure_logging(level: str | None = None) -> None:
    """JSON lines on stderr for the API's logger (once)."""
    if any(isinstance(h.formatter, JsonFormatter) for h in LOG.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    LOG.addHandler(handler)
    LOG.setLevel(level or os.environ.get("RECSYS_LOG_LEVEL", "INFO").upper())
    LOG.propagate = False


class Metrics:
    """The Prometheus metrics of one app, in their own registry (several apps can live in one process)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "recsys_api_requests", "HTTP requests by route and status", ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "recsys_api_request_seconds", "HTTP request latency by route", ["route"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.recommendations = Counter(
            "recsys_api_recommendations", "Recommendation responses by source", ["source"], registry=self.registry
        )
        self.fallbacks = Counter(
            "recsys_api_fallback", "Responses answered from the fallback, by reason", ["reason"],
            registry=self.registry,
        )
        self.arms = Counter("recsys_api_arm", "Responses served by each bandit arm", ["arm"], registry=self.registry)
        self.feedback = Counter(
            "recsys_api_feedback", "Feedback events by action and arm", ["action", "arm"], registry=self.registry
        )
        self.model_latency = Histogram(
            "recsys_api_model_call_seconds", "Latency of the calls to the model server", registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0),
        )


class ObservabilityMiddleware:
    """Pure ASGI middleware: request id, request count and latency by route template, one JSON log line."""

    def __init__(self, app, service: Service):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or ())
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = [500]

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            metrics = self.service.metrics
            metrics.requests.labels(scope["method"], template, str(status[0])).inc()
            metrics.latency.labels(template).observe(seconds)
            if template != "/metrics":
                LOG.info(
                    "request",
                    extra={
                        "request_id": request_id, "method": scope["method"], "path": scope["path"],
                        "status": status[0], "ms": round(seconds * 1000, 2),
                    },
                )


# --------------------------------------------------------------------------------------------
# Model server client
# --------------------------------------------------------------------------------------------


class ModelUnavailable(Exception):
    """The model server did not give a usable answer; ``reason`` is a short label for metrics."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclasses.dataclass
class ModelAnswer:
    item_ids: list[int]
    scores: list[float]
    known: bool
    version: Any


class ModelClient:
    """Calls ``POST /v1/models/<name>:predict`` over one pooled ``aiohttp.ClientSession`` with a total timeout.

    aiohttp rather than httpx: measured on the workshop's 2-core machine against the same model server,
    httpx 0.28's async pool sustained about 150 concurrent requests/s where aiohttp sustained about
    1,500 (httpx also retries a failing ``import sniffio`` on every request when sniffio is absent).
    """

    def __init__(self, base_url: str, model_name: str, timeout: float):
        self.base_url, self.model_name, self.timeout = base_url, model_name, timeout
        self.predict_url = f"{base_url}/v1/models/{model_name}:predict"
        self.status_url = f"{base_url}/v1/models/{model_name}"
        self._session = None

    def _client(self):
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=30),
                headers={"content-type": "application/json"},
                json_serialize=lambda obj: orjson.dumps(obj).decode(),
            )
        return self._session

    async def top_k(self, user_id: int, k: int, exclude: list[int], version: str | None) -> ModelAnswer:
        import aiohttp

        body: dict[str, Any] = {"instances": [{"user_id": user_id, "k": k, "exclude": exclude}]}
        if version is not None:
            body["version"] = int(version)  # the server also reads an X-Model-Version header or ?version=
        try:
            async with self._client().post(self.predict_url, data=orjson.dumps(body)) as response:
                content = await response.read()
                status = response.status
        except TimeoutError as err:
            raise ModelUnavailable("timeout", f"no answer within {self.timeout} s") from err
        except (aiohttp.ClientError, OSError) as err:
            raise ModelUnavailable("unavailable", f"{type(err).__name__}: {err}") from err
        if status != 200:
            raise ModelUnavailable("error", f"HTTP {status}: {content[:200]!r}")
        try:
            prediction = orjson.loads(content)["predictions"][0]
            item_ids = [int(i) for i in prediction["item_ids"]]
            scores = [float(s) for s in prediction["scores"]]
            if len(item_ids) != len(scores):
                raise ValueError("item_ids and scores differ in length")
            return ModelAnswer(item_ids, scores, bool(prediction.get("known", True)), prediction.get("version"))
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise ModelUnavailable("bad_response", f"{type(err).__name__}: {err}") from err

    async def ready(self) -> bool:
        import aiohttp

        try:
            async with self._client().get(self.status_url) as response:
                return response.status == 200 and bool(orjson.loads(await response.read()).get("ready"))
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError, AttributeError):
            return False

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


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
# Request bodies
# --------------------------------------------------------------------------------------------

ItemId = Annotated[int, Field(ge=1, le=MAX_USER_ID)]


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: Annotated[int, Field(ge=1, le=MAX_USER_ID, description="a MovieLens user or one created by POST /users")]
    item_id: ItemId
    action: Literal["click", "like", "dislike"]
    arm: Annotated[str | None, Field(max_length=64, description="the `arm` of the response shown")] = None


class NewUserIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    liked_item_ids: Annotated[list[ItemId], Field(max_length=200, description="films the new user likes")] = []
    age: Annotated[int | None, Field(ge=1, le=120)] = None
    gender: Literal["M", "F"] | None = None
    occupation: Annotated[str | None, Field(min_length=1, max_length=40)] = None


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _safe_json(payload: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    """For echoes of client input: ASCII-escaped (lone surrogates survive), NaN and infinity refused."""
    body = json.dumps(payload, ensure_ascii=True, allow_nan=False, default=str).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _error(status: int, message: str, **extra) -> Response:
    return _json({"error": message, **extra}, status)


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

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        # only location, message and type: the offending input may not even be JSON (NaN, lone surrogates)
        errors = [
            {"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", "invalid")),
             "type": str(err.get("type", ""))}
            for err in exc.errors()[:20]
        ]
        reasons = [f"{'.'.join(err['loc'])}: {err['msg']}" for err in errors[:5]]
        payload = {"error": "invalid request: " + "; ".join(reasons), "detail": errors}
        return _safe_json(payload, 422)

    @app.exception_handler(StarletteHTTPException)  # also FastAPI's HTTPException and the router's 404/405
    async def http_error(request: Request, exc: StarletteHTTPException):
        return _safe_json({"error": str(exc.detail)}, exc.status_code, exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # a bug: say so briefly, log the traceback
        LOG.exception("unhandled error", extra={"path": request.url.path})
        return _safe_json({"error": f"internal error ({type(exc).__name__})"}, 500)

    def not_ready() -> Response | None:
        return None if service.ready else _error(503, "the API is still loading its data")

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz():
        return _json({"status": "ok"})

    @app.get("/readyz", summary="Readiness: data loaded (and whether the model server answers)")
    async def readyz():
        if (busy := not_ready()) is not None:
            return busy
        model_ready = await service.model.ready()
        return _json({"ready": True, "model_server": "ready" if model_ready else "unavailable",
                      "model_url": service.settings.model_url})

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/recommendations/{user_id}",
        summary="Top-k films for a user, after the business logic",
        responses={404: {"description": "unknown user"}, 422: {"description": "invalid user id or k"}},
    )
    async def recommendations(
        request: Request,
        user_id: Annotated[int, PathParam(ge=1, le=MAX_USER_ID)],
        k: Annotated[int, Query(ge=1, le=MAX_K, description="number of films")] = 10,
        mmr_lambda: Annotated[
            float | None, Query(ge=0.0, le=1.0, description="diversity trade-off: 1 = the model's order")
        ] = None,
    ):
        if (busy := not_ready()) is not None:
            return busy
        if not service.is_known(user_id):
            return _error(404, f"unknown user {user_id}: use a MovieLens user id or create one with POST /users")
        lam = service.settings.mmr_lambda if mmr_lambda is None else mmr_lambda
        payload = await service.recommend(user_id, k, lam)
        payload["request_id"] = request.scope["state"]["request_id"]
        return _json(payload)

    @app.post("/feedback", status_code=202, summary="Record a click, like or dislike")
    async def feedback(request: Request, event: Annotated[FeedbackIn, Body()]):
        if (busy := not_ready()) is not None:
            return busy
        if not service.is_known(event.user_id):
            return _error(422, f"unknown user_id {event.user_id}")
        if event.item_id not in service.catalogue.row_of:
            return _error(422, f"unknown item_id {event.item_id}: not in the {service.settings.dataset} catalogue")
        record = {**event.model_dump(), "request_id": request.scope["state"]["request_id"],
                  "time": time.time()}
        service.record_feedback(record)
        return _json({"accepted": True}, 202)

    @app.get("/feedback", summary="The most recent feedback events (newest last)")
    async def recent_feedback(
        user_id: Annotated[int | None, Query(ge=1, le=MAX_USER_ID)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ):
        events = [e for e in service.feedback if user_id is None or e["user_id"] == user_id]
        return _safe_json({"events": events[-limit:], "total": len(service.feedback)}, 200)

    @app.post("/users", status_code=201, summary="Create a new user from a few liked films (cold start)")
    async def create_user(profile: Annotated[NewUserIn, Body()]):
        if (busy := not_ready()) is not None:
            return busy
        unknown = [i for i in profile.liked_item_ids if i not in service.catalogue.row_of]
        if unknown:
            return _error(422, f"unknown item ids in liked_item_ids: {unknown[:10]}")
        user_id = service.add_user(profile.liked_item_ids, profile.age, profile.gender, profile.occupation)
        return _json({"user_id": user_id}, 201)

    @app.get("/users/{user_id}", summary="A user's liked films (most recent first) and profile")
    async def user(
        user_id: Annotated[int, PathParam(ge=1, le=MAX_USER_ID)],
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ):
        if (busy := not_ready()) is not None:
            return busy
        if not service.is_known(user_id):
            return _error(404, f"unknown user {user_id}")
        liked = service.liked(user_id)
        catalogue = service.catalogue
        return _json({
            "user_id": user_id,
            "new": user_id in service.new_users,
            "n_seen": len(service.seen(user_id)),
            "liked": [
                {"item_id": i, "title": catalogue.titles[catalogue.row_of[i]],
                 "genres": catalogue.genres[catalogue.row_of[i]]}
                for i in liked[:limit]
            ],
        })

    @app.get("/items", summary="Search films by title (most popular first)")
    async def items(
        q: Annotated[str, Query(max_length=100, description="part of a title, case-insensitive")] = "",
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ):
        if (busy := not_ready()) is not None:
            return busy
        catalogue, needle = service.catalogue, q.strip().lower()
        found = []
        for item in catalogue.popular:
            row = catalogue.row_of[item]
            if needle in catalogue.titles[row].lower():
                found.append({"item_id": item, "title": catalogue.titles[row], "genres": catalogue.genres[row]})
                if len(found) >= limit:
                    break
        return _json({"items": found})

    @app.get("/bandit", summary="The bandit's arms: pulls, rewards and click rate")
    async def bandit():
        return _json({"policy": service.bandit.policy, "arms": service.bandit.state()})

    return app
