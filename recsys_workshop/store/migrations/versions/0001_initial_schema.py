"""Initial schema: users, feedback, rewards, bandit arms and counters, all keyed by namespace.

Revision ID: 0001
Revises:
Create Date: 2026-12-03

A migration runs inside the store's migration transaction on SQLite and PostgreSQL alike: keep it
portable (``op.batch_alter_table`` for SQLite's ALTERs) and never commit inside it. Written out in full
(not imported from ``schema.py``), so it keeps building this revision when the models move on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _namespace() -> sa.Column:
    return sa.Column("namespace", sa.String(length=32), nullable=False)


def upgrade() -> None:
    op.create_table(
        "counters",
        _namespace(),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("namespace", "name", name=op.f("pk_counters")),
    )
    op.create_table(
        "users",
        _namespace(),
        sa.Column("user_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("liked", sa.JSON(), nullable=False),
        sa.Column("age", sa.Integer(), nullable=True),
        sa.Column("gender", sa.String(length=1), nullable=True),
        sa.Column("occupation", sa.String(length=40), nullable=True),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.CheckConstraint("user_id >= 1", name=op.f("ck_users_user_id_positive")),
        sa.CheckConstraint("age IS NULL OR (age >= 1 AND age <= 120)", name=op.f("ck_users_age_range")),
        sa.CheckConstraint("gender IS NULL OR gender IN ('M', 'F')", name=op.f("ck_users_gender_values")),
        sa.PrimaryKeyConstraint("namespace", "user_id", name=op.f("pk_users")),
        sa.UniqueConstraint("namespace", "idempotency_key", name=op.f("uq_users_namespace_idempotency_key")),
    )
    op.create_table(
        "feedback",
        _namespace(),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("arm", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("recommendation_id", sa.String(length=64), nullable=True),
        sa.Column("time", sa.Double(), nullable=False),
        sa.CheckConstraint("action IN ('click', 'like', 'dislike')", name=op.f("ck_feedback_action_values")),
        sa.PrimaryKeyConstraint("namespace", "seq", name=op.f("pk_feedback")),
        sa.UniqueConstraint("namespace", "idempotency_key", name=op.f("uq_feedback_namespace_idempotency_key")),
    )
    op.create_index(op.f("ix_feedback_namespace_user_id_seq"), "feedback", ["namespace", "user_id", "seq"])
    op.create_table(
        "rewards",
        _namespace(),
        sa.Column("recommendation_id", sa.String(length=64), nullable=False),
        sa.Column("arm", sa.String(length=64), nullable=False),
        sa.Column("feedback_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["namespace", "feedback_seq"],
            ["feedback.namespace", "feedback.seq"],
            name=op.f("fk_rewards_namespace_feedback_seq_feedback"),
        ),
        sa.PrimaryKeyConstraint("namespace", "recommendation_id", name=op.f("pk_rewards")),
    )
    op.create_table(
        "bandit_arms",
        _namespace(),
        sa.Column("arm", sa.String(length=64), nullable=False),
        sa.Column("pulls", sa.BigInteger(), nullable=False),
        sa.Column("rewards", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("pulls >= 0", name=op.f("ck_bandit_arms_pulls_nonnegative")),
        sa.CheckConstraint("rewards >= 0", name=op.f("ck_bandit_arms_rewards_nonnegative")),
        sa.PrimaryKeyConstraint("namespace", "arm", name=op.f("pk_bandit_arms")),
    )


def downgrade() -> None:
    op.drop_table("bandit_arms")
    op.drop_table("rewards")
    op.drop_index(op.f("ix_feedback_namespace_user_id_seq"), table_name="feedback")
    op.drop_table("feedback")
    op.drop_table("users")
    op.drop_table("counters")
