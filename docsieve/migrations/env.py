"""Alembic environment: runs on the connection the store hands over (``docsieve.store.upgrade``), or on
``DOCSIEVE_STORE`` when run by the ``alembic`` command."""

from alembic import context
from sqlalchemy import create_engine

from docsieve.schema import metadata
from docsieve.settings import Settings

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(Settings.from_env().store)
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run()
