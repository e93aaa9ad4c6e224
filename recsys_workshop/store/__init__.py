"""The API's state in a real database: users created through the API, feedback events and the bandit's
statistics, with SQLAlchemy 2 and Alembic. An SQLite file locally, PostgreSQL (psycopg 3) on a cluster::

    from recsys_workshop.store import Store, StoreUnavailable

    with Store.open() as store:   # $RECSYS_DATABASE_URL, else artifacts/state/api.db; migrates at open
        user_id = store.create_user([50, 172], 31, "F", "writer", first_id=944, idempotency_key="k1")
        store.add_feedback({"user_id": user_id, "item_id": 50, "action": "like", "arm": "2",
                            "request_id": "r1", "time": 1.7e9},
                           idempotency_key="f1", reward=("rec-1", "2"))
        store.add_pulls({"2": 1})
        store.bandit_counts()      # {"2": (1, 1)}
        store.feedback_frame()     # user_id, item_id, action, arm, time: the pipeline's new interactions

``namespace`` (``Store.open(url, namespace="ml-1m")``, the MovieLens release) scopes everything, so two
datasets share a database without mixing. Every write is one transaction, committed before it returns;
a failure of the database or the disk raises :class:`StoreUnavailable` (the API's 503) and writes nothing;
a URL's password never appears in logs or errors.

Modules: :mod:`.core` (:class:`Store`), :mod:`.schema` (the tables), :mod:`.engine` (URLs, engines,
migrations under a lock), :mod:`.records` (what the methods return), :mod:`.errors`. The schema changes
only through Alembic migrations in ``migrations/versions``: after editing :mod:`.schema`, generate one with
``alembic -c <ini with script_location = recsys_workshop/store/migrations> -x url=sqlite:///scratch.db
revision --autogenerate --rev-id 0002 -m "..."``, read it, and keep it portable (SQLite and PostgreSQL).

Importing this package is cheap: SQLAlchemy loads on first use of :class:`Store`.
"""

from __future__ import annotations

from typing import Any

from recsys_workshop.store.errors import StoreUnavailable, hide_password
from recsys_workshop.store.records import FeedbackEvent, FeedbackResult, StoredUser

__all__ = [
    "ENV_DATABASE_URL",
    "FeedbackEvent",
    "FeedbackResult",
    "Store",
    "StoreUnavailable",
    "StoredUser",
    "database_url",
    "hide_password",
]



def __getattr__(name: str) -> Any:
    if name == "Store":
        from recsys_workshop.store.core import Store

        return Store
    if name in ("database_url", "ENV_DATABASE_URL"):
        from recsys_workshop.store import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
