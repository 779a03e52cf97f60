"""Fixtures of the quorum tests: the oracle over each store (memory, SQLite,
and PostgreSQL from a session-wide throwaway server, one database per
test), on a manual clock, with a registry of dealt groups."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy import Engine

from central.postgres import PostgresServer, postgres_available
from quorum.kit import ManualClock
from shimmfa.central.db import open_engine
from shimmfa.quorum.oracle import Oracle
from shimmfa.quorum.store_memory import MemoryGroupRegistry, MemorySessionStore
from shimmfa.quorum.store_sql import (
    SqlGroupRegistry,
    SqlSessionStore,
    create_tables,
    metadata,
)

needs_postgres = pytest.mark.skipif(
    not postgres_available(), reason="needs Debian's postgresql (make test installs it)"
)
_numbers = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    if not postgres_available():
        pytest.skip("needs Debian's postgresql (make test installs it)")
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


def new_pg_database(server: PostgresServer) -> str:
    """A fresh database on `server` (dropped with the server)."""
    name = f"quorum_{next(_numbers)}"
    DatabaseJanitor(user=server.user, host=server.host, port=server.port, dbname=name).init()
    return server.url(name)


@pytest.fixture(scope="session")
def pg_shared_url(pg_server: PostgresServer) -> str:
    url = new_pg_database(pg_server)
    engine = open_engine(url)
    create_tables(engine)
    engine.dispose()
    return url


@pytest.fixture
def pg_url(pg_shared_url: str) -> str:
    """The session's PostgreSQL database with empty quorum tables (creating
    a database per test would cost 0.4 s each)."""
    engine = open_engine(pg_shared_url)
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    engine.dispose()
    return pg_shared_url


@pytest.fixture
def engines() -> Iterator[list[Engine]]:
    made: list[Engine] = []
    yield made
    for engine in made:
        engine.dispose()


@dataclass
class Rig:
    """One oracle and what it stands on; `another_store()` is the same
    sessions through another engine (another worker or host), `another()`
    an oracle over it."""

    kind: str
    oracle: Oracle
    store: MemorySessionStore | SqlSessionStore
    registry: MemoryGroupRegistry | SqlGroupRegistry
    clock: ManualClock
    another_store: Callable[[], MemorySessionStore | SqlSessionStore]

    def another(self) -> Oracle:
        return Oracle(self.another_store(), self.registry, clock=self.clock)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=needs_postgres)])
def rig(request: pytest.FixtureRequest, tmp_path: Path, engines: list[Engine]) -> Rig:
    """The oracle over each store (the registry is empty until a test
    registers a deal)."""
    clock = ManualClock()
    if request.param == "memory":
        store, registry = MemorySessionStore(), MemoryGroupRegistry()
        oracle = Oracle(store, registry, clock=clock)
        return Rig("memory", oracle, store, registry, clock, lambda: store)
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'quorum.db'}"
    else:
        url = request.getfixturevalue("pg_url")

    def engine() -> Engine:
        engines.append(made := open_engine(url))
        return made

    first = engine()
    create_tables(first)
    sql_store, sql_registry = SqlSessionStore(first), SqlGroupRegistry(first, clock)

    oracle = Oracle(sql_store, sql_registry, clock=clock)
    return Rig(
        request.param, oracle, sql_store, sql_registry, clock, lambda: SqlSessionStore(engine())
    )
