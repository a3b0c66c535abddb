"""Alembic environment: the engine comes from the caller (``pypi-upload2 db upgrade``).

The plugin keeps its own version table, so that its history lives beside a host
application's (Warehouse's ``alembic_version``) in one database; autogenerate compares
only the plugin's ``upload2_*`` tables.
"""

from alembic import context

from pypi_upload2.db import Base, VERSION_TABLE
from pypi_upload2 import models  # noqa: F401  (registers the tables on Base.metadata)
from pypi_upload2.builtin import models as builtin_models  # noqa: F401

config = context.config


def include_name(name, type_, parent_names):
    return type_ != "table" or name.startswith("upload2_")


def run_migrations_online():
    engine = config.attributes["engine"]
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE,
                          include_name=include_name, render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
