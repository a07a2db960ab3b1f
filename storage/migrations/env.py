"""Alembic environment: migrations run from code (storage.migrate), not from a CLI ini."""
from alembic import context

import storage.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from sqlmodel import SQLModel

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        from storage.db import make_engine
        connectable = make_engine(config.get_main_option("sqlalchemy.url")).connect()
    context.configure(connection=connectable, target_metadata=target_metadata,
                      render_as_batch=connectable.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
