"""The :class:`Store`: the API's users, feedback and bandit statistics in one database.

Every write is one transaction, committed before the method returns; every failure of the database or the
disk raises :class:`~recsys_workshop.store.errors.StoreUnavailable` with nothing of the call written.
Numbers that must never repeat (new user ids, feedback ``seq``) come from a row of ``counters`` that the
writer locks until it commits: ids stay unique across processes, and ``seq`` follows commit order, so a
replica that tails ``feedback_after(last_seq)`` never skips an event that committed late.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from recsys_workshop.store import engine as engines
from recsys_workshop.store.errors import StoreUnavailable, guard
from recsys_workshop.store.records import FeedbackEvent, FeedbackResult, StoredUser
from recsys_workshop.store.schema import ACTIONS, ID_LENGTH, KEY_LENGTH, NAMESPACE_LENGTH

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import URL, Connection, Engine

__all__ = ["Store"]

LOG = logging.getLogger("recsys_workshop.store")
FRAME_COLUMNS = ("user_id", "item_id", "action", "arm", "time")


class _Raced(Exception):
    """Another writer stored the same idempotency key between our check and our insert: roll back."""


class Store:
    """The API's state in a database (see the package docstring); open it with :meth:`Store.open`.

    Safe to share between threads (each call takes its own pooled connection) and between processes on
    one database. ``namespace`` (the MovieLens release) scopes everything it reads and writes.
    """

    def __init__(self, engine: Engine, namespace: str, url: URL, revision: str | None):
        self._engine: Engine | None = engine
        self._writer = engine.execution_options(**{engines.WRITE_OPTION: True})
        self._secret = url.password
        self.namespace = namespace
        self.url = url.render_as_string(hide_password=True)
        self.revision = revision
        self.dialect = engine.dialect.name

    # ---- life cycle
    @classmethod
    def open(cls, url: str | URL | None = None, namespace: str = "ml-100k") -> Store:
        """Connect to ``url`` (default ``$RECSYS_DATABASE_URL``, else ``artifacts/state/api.db``) and
        migrate its schema to the newest revision (two processes may do this at once)."""
        _check_text("namespace", namespace, NAMESPACE_LENGTH)
        parsed = engines.database_url(url)
        with guard(parsed.password):
            engine = engines.create_engine(parsed)
            try:
                revision = engines.migrate(engine)
            except BaseException:
                engine.dispose()
                raise
        store = cls(engine, namespace, parsed, revision)
        LOG.info("store open", extra={"database": store.url, "namespace": namespace, "revision": revision})
        return store

    def close(self) -> None:
        """Close the pooled connections; later calls raise :class:`StoreUnavailable`."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r}, namespace={self.namespace!r})"

    def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the database answers (the API's readiness check)."""
        from sqlalchemy import text

        with self._transaction(write=False) as conn:
            conn.execute(text("SELECT 1"))

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for tests and maintenance; the API uses the methods)."""
        if self._engine is None:
            raise StoreUnavailable("the store is closed")
        return self._engine

    @contextlib.contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Connection]:
        """One transaction, committed at the end of the block, rolled back on any error."""
        if self._engine is None:
            raise StoreUnavailable("the store is closed")
        with guard(self._secret), (self._writer if write else self._engine).begin() as conn:
            yield conn

    # ---- users
    def create_user(
        self,
        liked: Iterable[int],
        age: int | None,
        gender: str | None,
        occupation: str | None,
        *,
        first_id: int,
        idempotency_key: str | None = None,
    ) -> int:
        """Store a new user and return their id: ``>= first_id`` (the dataset's largest user id + 1), never
        handed out twice. The same ``idempotency_key`` again returns the first call's id, storing nothing."""
        from sqlalchemy import select

        from recsys_workshop.store.schema import User

        _check_id("first_id", first_id)
        if idempotency_key is not None:
            _check_text("idempotency_key", idempotency_key, KEY_LENGTH)
        picks = list(dict.fromkeys(_check_id("liked item id", i) for i in liked))
        if age is not None and _check_id("age", age) > 120:
            raise ValueError(f"age must be at most 120, got {age!r}")
        if gender not in (None, "M", "F"):
            raise ValueError(f"gender must be 'M', 'F' or None, got {gender!r}")
        _check_text("occupation", occupation, 40, optional=True)
        key_is = (User.namespace == self.namespace) & (User.idempotency_key == idempotency_key)
        try:
            with self._transaction(write=True) as conn:
                if idempotency_key is not None and (known := conn.scalar(select(User.user_id).where(key_is))):
                    return known
                user_id = _next_value(conn, self.namespace, "user_id", first_id)
                row = {"namespace": self.namespace, "user_id": user_id, "liked": picks, "age": age, "gender": gender,
                       "occupation": occupation, "idempotency_key": idempotency_key, "created_at": time.time()}
                insert = _insert(conn, User).values(**row).on_conflict_do_nothing(
                    index_elements=["namespace", "idempotency_key"]
                )
                if conn.execute(insert.returning(User.user_id)).first() is None:
                    raise _Raced
                return user_id
        except _Raced:
            with self._transaction(write=False) as conn:
                return conn.scalar(select(User.user_id).where(key_is))

    def get_user(self, user_id: int) -> StoredUser | None:
        """A user created through the API, or None (MovieLens' own users are not stored here)."""
        from sqlalchemy import select

        from recsys_workshop.store.schema import User

        with self._transaction(write=False) as conn:
            row = conn.execute(
                select(User.__table__).where(User.namespace == self.namespace, User.user_id == user_id)
            ).first()
        return None if row is None else _user(row)

    def users_after(self, cursor: int = 0, limit: int = 1000) -> tuple[list[StoredUser], int]:
        """Users with an id above ``cursor`` (in creation order), and the cursor to continue from.

        A replica calls it with the last cursor it got to pick up users created by other processes.
        """
        from sqlalchemy import select

        from recsys_workshop.store.schema import User

        with self._transaction(write=False) as conn:
            rows = conn.execute(
                select(User.__table__)
                .where(User.namespace == self.namespace, User.user_id > cursor)
                .order_by(User.user_id)
                .limit(limit)
            ).all()
        users = [_user(row) for row in rows]
        return users, users[-1].user_id if users else cursor

    # ---- feedback
    def add_feedback(
        self, event: Mapping[str, Any], *, idempotency_key: str, reward: tuple[str, str] | None = None
    ) -> FeedbackResult:
        """Store one feedback event and, given ``reward=(recommendation_id, arm)``, reward that arm once
        per recommendation id; one transaction. A known ``idempotency_key`` stores nothing (a retry)."""
        from sqlalchemy import select

        from recsys_workshop.store.schema import Feedback

        row = _feedback_row(event, idempotency_key, reward)
        key_is = (Feedback.namespace == self.namespace) & (Feedback.idempotency_key == idempotency_key)
        try:
            with self._transaction(write=True) as conn:
                if (known := conn.scalar(select(Feedback.seq).where(key_is))) is not None:
                    return FeedbackResult(stored=False, rewarded=False, seq=known)
                seq = _next_value(conn, self.namespace, "feedback_seq", 1)
                insert = _insert(conn, Feedback).values(namespace=self.namespace, seq=seq, **row)
                insert = insert.on_conflict_do_nothing(index_elements=["namespace", "idempotency_key"])
                if conn.execute(insert.returning(Feedback.seq)).first() is None:
                    raise _Raced
                rewarded = reward is not None and _reward(conn, self.namespace, seq, *reward)
                return FeedbackResult(stored=True, rewarded=rewarded, seq=seq)
        except _Raced:
            with self._transaction(write=False) as conn:
                return FeedbackResult(stored=False, rewarded=False, seq=conn.scalar(select(Feedback.seq).where(key_is)))

    def feedback_after(self, seq: int = 0, limit: int = 1000) -> tuple[list[FeedbackEvent], int]:
        """Events numbered above ``seq``, oldest first, and the ``seq`` to continue from (replicas tail
        this; ``seq`` follows commit order, so nothing committed later gets a smaller number)."""
        from sqlalchemy import select

        from recsys_workshop.store.schema import Feedback

        with self._transaction(write=False) as conn:
            rows = conn.execute(
                select(Feedback.__table__)
                .where(Feedback.namespace == self.namespace, Feedback.seq > seq)
                .order_by(Feedback.seq)
                .limit(limit)
            ).all()
        events = [_event(row) for row in rows]
        return events, events[-1]["seq"] if events else seq

    def recent_feedback(self, user_id: int | None = None, limit: int = 100) -> tuple[list[FeedbackEvent], int]:
        """The ``limit`` newest events (of one user, or of everyone), newest last, and how many such
        events there are in all."""
        from sqlalchemy import func, select

        from recsys_workshop.store.schema import Feedback

        where = [Feedback.namespace == self.namespace]
        if user_id is not None:
            where.append(Feedback.user_id == user_id)
        with self._transaction(write=False) as conn:
            newest = select(Feedback.__table__).where(*where).order_by(Feedback.seq.desc()).limit(limit)
            rows = conn.execute(newest).all()
            total = conn.scalar(select(func.count()).select_from(Feedback).where(*where))
        return [_event(row) for row in reversed(rows)], int(total)

    def feedback_frame(self) -> pd.DataFrame:
        """All feedback of the namespace, oldest first: columns user_id, item_id, action, arm, time (the
        continuous-training pipeline's new interactions)."""
        import pandas as pd
        from sqlalchemy import select

        from recsys_workshop.store.schema import Feedback

        columns = [getattr(Feedback, name) for name in FRAME_COLUMNS]
        with self._transaction(write=False) as conn:
            rows = conn.execute(select(*columns).where(Feedback.namespace == self.namespace).order_by(Feedback.seq))
            frame = pd.DataFrame.from_records(list(rows), columns=list(FRAME_COLUMNS))
        return frame.astype({"user_id": "int64", "item_id": "int64", "action": "object", "arm": "object",
                             "time": "float64"})

    # ---- bandit
    def add_pulls(self, counts: Mapping[str, int]) -> None:
        """Add ``counts[arm]`` to each arm's pulls, in one transaction (``pulls = pulls + n``: increments
        from several processes add up exactly)."""
        for arm, n in counts.items():
            _check_text("arm", arm, ID_LENGTH)
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(f"pulls must be a non-negative integer, got {n!r} for arm {arm!r}")
        with self._transaction(write=True) as conn:
            for arm in sorted(counts):  # one lock order for every writer: no deadlock between two of them
                if counts[arm]:
                    _increment_arm(conn, self.namespace, arm, pulls=counts[arm])

    def bandit_counts(self) -> dict[str, tuple[int, int]]:
        """``{arm: (pulls, rewards)}`` of every arm with a pull or a reward."""
        from sqlalchemy import select

        from recsys_workshop.store.schema import Arm

        with self._transaction(write=False) as conn:
            rows = conn.execute(
                select(Arm.arm, Arm.pulls, Arm.rewards).where(Arm.namespace == self.namespace).order_by(Arm.arm)
            ).all()
        return {arm: (int(pulls), int(rewards)) for arm, pulls, rewards in rows}


# --------------------------------------------------------------------------------------------
# Statements shared by the methods
# --------------------------------------------------------------------------------------------


def _insert(conn: Connection, entity: Any):
    """The dialect's INSERT (SQLite and PostgreSQL both have ``on_conflict_do_nothing``)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(entity)


def _next_value(conn: Connection, namespace: str, name: str, first: int) -> int:
    """The next number of a counter, at least ``first``; the counter's row stays locked until commit."""
    from sqlalchemy import case, update

    from recsys_workshop.store.schema import Counter

    bump = (
        update(Counter)
        .where(Counter.namespace == namespace, Counter.name == name)
        .values(value=case((Counter.value < first - 1, first), else_=Counter.value + 1))
        .returning(Counter.value)
    )
    value = conn.scalar(bump)
    if value is None:  # the counter's first use: create it, then bump it like everyone else
        start = _insert(conn, Counter).values(namespace=namespace, name=name, value=first - 1)
        conn.execute(start.on_conflict_do_nothing())
        value = conn.scalar(bump)
    return int(value)


def _increment_arm(conn: Connection, namespace: str, arm: str, *, pulls: int = 0, rewards: int = 0) -> None:
    """``pulls += pulls, rewards += rewards`` on the arm's row, creating the row first if it is missing."""
    from sqlalchemy import update

    from recsys_workshop.store.schema import Arm

    add = (
        update(Arm)
        .where(Arm.namespace == namespace, Arm.arm == arm)
        .values(pulls=Arm.pulls + pulls, rewards=Arm.rewards + rewards)
    )
    if conn.execute(add).rowcount == 0:
        new_arm = _insert(conn, Arm).values(namespace=namespace, arm=arm, pulls=0, rewards=0)
        conn.execute(new_arm.on_conflict_do_nothing())
        conn.execute(add)


def _reward(conn: Connection, namespace: str, seq: int, recommendation_id: str, arm: str) -> bool:
    """Mark the recommendation rewarded and add 1 to the arm's rewards, unless it was rewarded before."""
    from recsys_workshop.store.schema import Reward

    insert = _insert(conn, Reward).values(
        namespace=namespace, recommendation_id=recommendation_id, arm=arm, feedback_seq=seq
    )
    insert = insert.on_conflict_do_nothing(index_elements=["namespace", "recommendation_id"])
    if conn.execute(insert.returning(Reward.recommendation_id)).first() is None:
        return False
    _increment_arm(conn, namespace, arm, rewards=1)
    return True


# --------------------------------------------------------------------------------------------
# Checking what comes in, shaping what goes out
# --------------------------------------------------------------------------------------------


def _check_id(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_text(name: str, value: object, max_length: int, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not 1 <= len(value) <= max_length:
        raise ValueError(f"{name} must be a string of 1 to {max_length} characters, got {value!r}")


def _feedback_row(event: Mapping[str, Any], idempotency_key: str, reward: tuple[str, str] | None) -> dict:
    """The ``feedback`` row of ``event`` (checked: a bad event raises ValueError before any SQL)."""
    _check_text("idempotency_key", idempotency_key, KEY_LENGTH)
    if event.get("action") not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got {event.get('action')!r}")
    recommendation_id = event.get("recommendation_id")
    if reward is not None:
        _check_text("reward recommendation id", reward[0], ID_LENGTH)
        _check_text("reward arm", reward[1], ID_LENGTH)
        recommendation_id = recommendation_id or reward[0]
    for name, value in (("arm", event.get("arm")), ("request_id", event.get("request_id")),
                        ("recommendation_id", recommendation_id)):
        _check_text(name, value, ID_LENGTH, optional=True)
    moment = event.get("time", time.time())
    if isinstance(moment, bool) or not isinstance(moment, int | float):
        raise ValueError(f"time must be seconds since the epoch, got {moment!r}")
    return {
        "idempotency_key": idempotency_key,
        "user_id": _check_id("user_id", event.get("user_id")),
        "item_id": _check_id("item_id", event.get("item_id")),
        "action": event["action"],
        "arm": event.get("arm"),
        "request_id": event.get("request_id"),
        "recommendation_id": recommendation_id,
        "time": float(moment),
    }


def _event(row: Any) -> FeedbackEvent:
    """A ``feedback`` row as the event dict the API returns."""
    return {
        "user_id": row.user_id,
        "item_id": row.item_id,
        "action": row.action,
        "arm": row.arm,
        "request_id": row.request_id,
        "time": row.time,
        "recommendation_id": row.recommendation_id,
        "seq": row.seq,
    }


def _user(row: Any) -> StoredUser:
    return StoredUser(row.user_id, list(row.liked), row.age, row.gender, row.occupation)
