"""Alembic's entry point for the store's migrations.

:func:`recsys_workshop.store.engine.migrate` runs them: it passes an open connection, already inside the
transaction that holds the migration lock, as ``config.attributes["connection"]``. Run by the ``alembic``
command line instead (``alembic -x url=sqlite:///scratch.db revision --autogenerate -m "..."`` with
``script_location`` pointing here), it connects to ``-x url=...`` or ``$RECSYS_DATABASE_URL`` itself.
"""

from __future__ import annotations

from alembic import context

from recsys_workshop.store import engine as store_engine
from recsys_workshop.store.schema import Base


def run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():  # a no-op inside migrate()'s transaction
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    url = store_engine.database_url(context.get_x_argument(as_dictionary=True).get("url"))
    engine = store_engine.create_engine(url)
    try:
        with engine.connect() as conn:
            run(conn)
            conn.commit()
    finally:
        engine.dispose()
