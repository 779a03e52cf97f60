"""Opening the central database: the engine, its sessions, and the schema
check.

Rules:
- SQLite (the embedded default): WAL, foreign keys on, a busy timeout, and
  every transaction `BEGIN IMMEDIATE`, so concurrent writers wait for each
  other instead of failing on an upgraded lock.
- PostgreSQL (`postgresql+psycopg://`): READ COMMITTED; the ingest and the
  monitor are race-free by conditional UPDATEs and row locks, not by
  isolation level. No ping per checkout (a round trip per request): a
  connection found dead fails one request and the pool is renewed.
- `dialect(engine)` is "sqlite" or "postgresql"; nothing else is supported.
- The URL is never logged or put in an error with its password.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from shimmfa.errors import CentralError

__all__ = ["SessionFactory", "dialect", "open_engine", "safe_url", "session_factory"]

SessionFactory = sessionmaker[Session]
SQLITE_BUSY_MS = 30000


def safe_url(url: str) -> str:
    """`url` with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<an unreadable database URL>"


def open_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine for `url`; CentralError for a URL we cannot use."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise CentralError(
            "--database-url: not a database URL; use sqlite:///path.db or "
            "postgresql+psycopg://user@host/db"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = create_engine(
            parsed, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_MS / 1000}
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(
            parsed,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_recycle=3600,
        )
    raise CentralError(
        f"{safe_url(url)}: unsupported database {backend!r}; use SQLite or PostgreSQL"
    )


def session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(engine, expire_on_commit=False)


def dialect(engine: Engine) -> str:
    return engine.dialect.name


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")
