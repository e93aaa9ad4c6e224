"""Connecting to the store's database and bringing its schema to the newest revision.

- :func:`database_url`: ``$RECSYS_DATABASE_URL``, else an SQLite file under ``artifacts/state``;
- :func:`create_engine`: an engine set up for the store (SQLite: WAL, ``synchronous=FULL``, a busy
  timeout, foreign keys, and ``BEGIN IMMEDIATE`` for writes; PostgreSQL: psycopg 3, a connect timeout, and
  connections checked before use, so a restarted server costs no failed request);
- :func:`migrate`: Alembic's ``upgrade head``, programmatically, under a lock that lets two processes start
  at once (PostgreSQL: ``pg_advisory_xact_lock``; SQLite: the write lock of ``BEGIN IMMEDIATE``). The
  whole upgrade is one transaction on both databases (their DDL is transactional): a crash in the middle
  leaves the schema as it was.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from recsys_workshop.store.errors import StoreUnavailable

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection, Engine

__all__ = ["ENV_DATABASE_URL", "MIGRATIONS_DIR", "create_engine", "database_url", "head_revision", "migrate"]

ENV_DATABASE_URL = "RECSYS_DATABASE_URL"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_SECONDS = 30.0  # how long an SQLite writer waits for another one before "database is locked"
CONNECT_TIMEOUT_SECONDS = 5  # PostgreSQL: how long to wait for the server before the call fails (a 503)
# pg_advisory_xact_lock takes a bigint: one fixed key for "migrating the recsys store" on a server.
MIGRATION_LOCK_KEY = zlib.crc32(b"recsys_workshop.store.migrations")
# Execution option that makes a connection's transaction a writer's (SQLite: BEGIN IMMEDIATE).
WRITE_OPTION = "recsys_store_write"


def database_url(url: str | URL | None = None) -> URL:
    """The URL to use: ``url``, else ``$RECSYS_DATABASE_URL``, else ``artifacts/state/api.db`` (SQLite).

    ``postgresql://`` and ``postgres://`` (what a cluster's Secret usually holds) mean psycopg 3. Raises
    ``ValueError`` (without the URL's text, which may hold a password) for a URL it cannot use.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if url is None:
        url = os.environ.get(ENV_DATABASE_URL) or None
    if url is None:
        from recsys_workshop import paths

        return make_url(f"sqlite:///{paths.ARTIFACTS_DIR / 'state' / 'api.db'}")
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ValueError(f"not a database URL (check {ENV_DATABASE_URL}); expected sqlite:///path or "
                         "postgresql://user:password@host/database") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise ValueError(f"unsupported database {parsed.drivername!r}: use sqlite:/// or postgresql://")
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ValueError("an SQLite store needs a file (sqlite:///path/to/api.db), not an in-memory database")
    return parsed


def create_engine(url: URL) -> Engine:
    """An engine for ``url`` (from :func:`database_url`), with the settings the store relies on."""
    import sqlalchemy

    if url.get_backend_name() == "sqlite":
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sqlalchemy.create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS})
        _configure_sqlite(engine)
        return engine
    return sqlalchemy.create_engine(
        url,
        pool_pre_ping=True,  # a connection the server dropped (restart, failover) is replaced, not used
        pool_size=5,
        max_overflow=5,
        pool_timeout=10,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS, "application_name": "recsys-workshop"},
    )


def _configure_sqlite(engine: Engine) -> None:
    """Pragmas on every new connection, and SQLAlchemy emitting BEGIN itself (not the sqlite3 module).

    Writers begin with ``BEGIN IMMEDIATE``: they take the write lock first (waiting up to the busy timeout
    for another writer) instead of failing with "database is locked" when a read turns into a write.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # no implicit BEGIN from the sqlite3 module
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_SECONDS * 1000)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")  # a commit that returned survives a power cut too
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _alembic_config(connection: Connection):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision of the migrations shipped with this package."""
    from alembic.script import ScriptDirectory

    config = _alembic_config(None)
    return ScriptDirectory.from_config(config).get_current_head()


@contextlib.contextmanager
def _sqlite_open_lock(engine: Engine) -> Iterator[None]:
    """SQLite: an exclusive ``flock`` on ``<database>.lock`` while the first connection is made (its pragmas
    switch the file to WAL, which needs the file to itself and may answer "database is locked" without
    waiting) and the schema migrated; two processes opening a new database at once take turns. A no-op
    for PostgreSQL (its advisory lock does the same job inside the transaction)."""
    if engine.dialect.name != "sqlite":
        yield
        return
    import fcntl

    lock_path = Path(engine.url.database).expanduser().with_name(Path(engine.url.database).name + ".lock")
    with open(lock_path, "a") as lock:  # noqa: PTH123 - a plain file handle for flock
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def migrate(engine: Engine) -> str:
    """Upgrade the database to the newest revision (a no-op when it is there); returns that revision.

    Runs in one writer transaction that first takes the migration lock, so two processes starting at once
    migrate one after the other, and the second finds nothing to do.
    """
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.util import CommandError
    from sqlalchemy import text

    with _sqlite_open_lock(engine), engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        try:
            command.upgrade(_alembic_config(conn), "head")
        except CommandError as err:  # e.g. a database migrated by a newer version of the workshop
            raise StoreUnavailable(f"cannot migrate the database: {str(err).splitlines()[0][:160]}") from None
        return MigrationContext.configure(conn).get_current_revision()
