"""Alembic environment: the engine comes from the caller (``pypi-upload2 db upgrade``)."""

from alembic import context

from pypi_upload2.db import Base
from pypi_upload2 import models  # noqa: F401  (registers the tables on Base.metadata)

config = context.config


def run_migrations_online():
    engine = config.attributes["engine"]
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata,
                          render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
