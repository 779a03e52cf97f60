"""Alembic's environment for the central database: the connection comes
from `shimmfa.central.schema` (`config.attributes["connection"]`); there is
no alembic.ini and no URL in a file."""

from __future__ import annotations

from alembic import context

from shimmfa.central import tables  # noqa: F401 - registers issue 17's tables on Base
from shimmfa.central.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through shimmfa.central.schema (`shimmfa central init`)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
