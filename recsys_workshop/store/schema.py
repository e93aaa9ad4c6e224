"""The store's tables, as typed SQLAlchemy 2 declarative classes (the schema Alembic's migrations build).

Every table is keyed by ``namespace`` first (the MovieLens release the API serves), so the users, feedback
and bandit statistics of two datasets never mix, even in one database. The migrations under
``migrations/versions`` create exactly these tables; a test compares the two (``alembic check``-style), so
a change here needs a new migration (``Store``'s docstring says how to write one).

Tables:

- ``users``: users created through ``POST /users`` (their picks, demographics, idempotency key);
- ``feedback``: one row per click / like / dislike, numbered by ``seq`` (per namespace, in commit order);
- ``rewards``: the recommendations already rewarded (at most one reward per recommendation id);
- ``bandit_arms``: each arm's pulls and rewards;
- ``counters``: the last number handed out per namespace and name (``user_id``, ``feedback_seq``); its
  row lock, held until commit, is what makes ids unique and ``seq`` follow commit order across processes.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Double,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["ACTIONS", "Arm", "Base", "Counter", "Feedback", "Reward", "User"]

ACTIONS = ("click", "like", "dislike")
NAMESPACE_LENGTH = 32
KEY_LENGTH = 128  # idempotency keys
ID_LENGTH = 64  # arms, request ids, recommendation ids

# Named constraints, so a later migration can drop or alter them by name on every database.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Counter(Base):
    """The last value handed out of a per-namespace sequence (``user_id``, ``feedback_seq``)."""

    __tablename__ = "counters"

    namespace: Mapped[str] = mapped_column(String(NAMESPACE_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class User(Base):
    """A user created through the API (MovieLens' own users are not stored: they come with the dataset)."""

    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("namespace", "idempotency_key"),
        CheckConstraint("user_id >= 1", name="user_id_positive"),
        CheckConstraint("age IS NULL OR (age >= 1 AND age <= 120)", name="age_range"),
        CheckConstraint("gender IS NULL OR gender IN ('M', 'F')", name="gender_values"),
    )

    namespace: Mapped[str] = mapped_column(String(NAMESPACE_LENGTH), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    liked: Mapped[list[int]] = mapped_column(JSON)
    age: Mapped[int | None] = mapped_column(Integer)
    gender: Mapped[str | None] = mapped_column(String(1))
    occupation: Mapped[str | None] = mapped_column(String(40))
    idempotency_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    created_at: Mapped[float] = mapped_column(Double)


class Feedback(Base):
    """A click, like or dislike; ``seq`` numbers a namespace's events in commit order (replicas tail it)."""

    __tablename__ = "feedback"
    __table_args__ = (
        UniqueConstraint("namespace", "idempotency_key"),
        CheckConstraint("action IN ('click', 'like', 'dislike')", name="action_values"),
        Index(None, "namespace", "user_id", "seq"),
    )

    namespace: Mapped[str] = mapped_column(String(NAMESPACE_LENGTH), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    idempotency_key: Mapped[str] = mapped_column(String(KEY_LENGTH))
    user_id: Mapped[int] = mapped_column(Integer)
    item_id: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(8))
    arm: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    request_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    recommendation_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    time: Mapped[float] = mapped_column(Double)


class Reward(Base):
    """A recommendation that earned its arm a reward (the primary key makes that happen at most once)."""

    __tablename__ = "rewards"
    __table_args__ = (ForeignKeyConstraint(["namespace", "feedback_seq"], ["feedback.namespace", "feedback.seq"]),)

    namespace: Mapped[str] = mapped_column(String(NAMESPACE_LENGTH), primary_key=True)
    recommendation_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    arm: Mapped[str] = mapped_column(String(ID_LENGTH))
    feedback_seq: Mapped[int] = mapped_column(BigInteger)


class Arm(Base):
    """The bandit's statistics of one arm (a model version, or ``latest``)."""

    __tablename__ = "bandit_arms"
    __table_args__ = (
        CheckConstraint("pulls >= 0", name="pulls_nonnegative"),
        CheckConstraint("rewards >= 0", name="rewards_nonnegative"),
    )

    namespace: Mapped[str] = mapped_column(String(NAMESPACE_LENGTH), primary_key=True)
    arm: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    pulls: Mapped[int] = mapped_column(BigInteger, default=0)
    rewards: Mapped[int] = mapped_column(BigInteger, default=0)
