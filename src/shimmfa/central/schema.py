"""The central database's schema: migrate to head (`shimmfa central init`),
check that it is at head (`serve` refuses to start otherwise), and compare
the models with the migrations (`alembic check`, used by a test).

Rules:
- Alembic runs programmatically on a connection we give it: no alembic.ini,
  no URL in a file. The scripts live in `shimmfa/central/migrations/`.
- `require_head` raises `SchemaError` (exit code 2) with one line saying what
  to run; it never changes the database.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from shimmfa.central.db import safe_url
from shimmfa.errors import SchemaError

__all__ = [
    "MIGRATIONS",
    "alembic_config",
    "check_models",
    "current_revision",
    "head_revision",
    "require_head",
    "upgrade",
]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise SchemaError("the central service's migrations are missing: reinstall shimmfa")
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Create or upgrade the schema to head (idempotent)."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def check_models(engine: Engine) -> None:
    """`alembic check`: raises if the models and the migrations differ."""
    config = alembic_config()
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        command.check(config)


def require_head(engine: Engine) -> None:
    """SchemaError unless the database is at the head revision."""
    try:
        current = current_revision(engine)
    except SQLAlchemyError as exc:
        raise SchemaError(
            f"{safe_url(str(engine.url))}: cannot open the database "
            f"({type(getattr(exc, 'orig', None) or exc).__name__}); check --database-url"
        ) from None
    head = head_revision()
    if current is None:
        raise SchemaError(
            f"{safe_url(str(engine.url))} has no shimmfa schema: run `shimmfa central init` first"
        )
    if current != head:
        raise SchemaError(
            f"{safe_url(str(engine.url))} is at schema {current}, this version needs {head}: "
            "run `shimmfa central init` to upgrade it"
        )
