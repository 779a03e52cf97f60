"""The heartbeat's fast path on PostgreSQL: the accepting statement
(`ingest.move`, compiled once) run on a few psycopg async connections in
the worker's event loop, with no hop to a thread.

Why: a heartbeat is a short CPU step (verify the signature) and one round
trip to the database. Through a thread pool, twenty threads per worker
fought the event loop for the interpreter lock, and a worker answered a
fraction of the requests its CPU allowed (`benchmarks/central_ingest.py`).

Rules:
- Only `move` runs here, on autocommit connections: one statement, atomic
  alone, exactly as on the synchronous path. What `move` refuses goes to
  the synchronous `ingest.refusal` (rare: a replay, a reset).
- At most `pool_size` connections per worker; a connection that fails is
  dropped and the request fails with the database error (the caller maps
  it to a JSON 503/500, never a hang), the next request opens a new one.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine import make_url

from shimmfa.central.context import ShimIdentity
from shimmfa.central.ingest import MOVED_WITH_HISTORY, move_params
from shimmfa.core.heartbeat import VerifiedHeartbeat

__all__ = ["AsyncMover"]

_COMPILED = MOVED_WITH_HISTORY.compile(dialect=PGDialect_psycopg())  # type: ignore[no-untyped-call]
_SQL = str(_COMPILED)


def conninfo(database_url: str) -> str:
    """A libpq connection string from the service's SQLAlchemy URL."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class AsyncMover:
    def __init__(self, database_url: str, size: int) -> None:
        self._conninfo = conninfo(database_url)
        self._size = size
        self._idle: asyncio.Queue[psycopg.AsyncConnection[Any]] | None = None
        self._opened = 0

    async def _take(self) -> psycopg.AsyncConnection[Any]:
        if self._idle is None:
            self._idle = asyncio.Queue()
        if self._idle.empty() and self._opened < self._size:
            self._opened += 1
            try:
                return await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, prepare_threshold=0
                )
            except BaseException:
                self._opened -= 1
                raise
        return await self._idle.get()

    def _give(self, connection: psycopg.AsyncConnection[Any], healthy: bool) -> None:
        if healthy and self._idle is not None:
            self._idle.put_nowait(connection)
            return
        self._opened -= 1
        asyncio.get_running_loop().create_task(connection.close())

    async def move(
        self, identity: ShimIdentity, h: VerifiedHeartbeat, wire: str, now: float
    ) -> bool:
        """`ingest.move` on an async connection: True if accepted."""
        params = _COMPILED.construct_params(move_params(identity, h, wire, now))
        connection = await self._take()
        healthy = False
        try:
            cursor = await connection.execute(_SQL, params)
            row = await cursor.fetchone()
            healthy = True
            return row is not None
        finally:
            self._give(connection, healthy)

    async def close(self) -> None:
        if self._idle is None:
            return
        while not self._idle.empty():
            await self._idle.get_nowait().close()
