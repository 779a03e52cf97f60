"""Alembic's environment for the central database: the connection comes
from `shimmfa.central.schema` (`config.attributes["connection"]`); there is
no alembic.ini and no URL in a file.

The schema is central's own tables (`models.Base.metadata`, with
`tables` and `breakglass_tables` registered on it) and the quorum
oracle's (`quorum.store_sql.metadata`: `quorum_sessions`, `quorum_tocs`,
`quorum_groups`), which the oracle mounted at `/quorum` keeps in this
database: migration 0004 creates them, and `alembic check` compares both
metadata with the migrations, so neither can drift."""

from __future__ import annotations

from alembic import context

from shimmfa.central import breakglass_tables, tables  # noqa: F401 - register their tables
from shimmfa.central.models import Base
from shimmfa.quorum.store_sql import metadata as quorum_metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through shimmfa.central.schema (`shimmfa central init`)")

context.configure(
    connection=connection,
    target_metadata=[Base.metadata, quorum_metadata],
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
