"""The heartbeat's fast path on PostgreSQL: group commit. The heartbeats a
worker receives while its statements run wait in a queue; the next
statement accepts all of them at once (`ingest.MOVED_BATCH`, one round trip
and one commit for the batch), on a few psycopg async connections in the
worker's event loop, with no hop to a thread.

Why: a heartbeat is a short CPU step (verify the signature) and one
durable write. One statement and one WAL flush per heartbeat cost the
database most of the machine (`benchmarks/central_ingest.py`); in a batch
they are shared. Under light load a batch is one heartbeat, answered as
fast as before; under heavy load the batches grow by themselves.

Rules:
- A heartbeat is answered only after the statement that accepted it has
  committed (autocommit: one statement, atomic alone): nothing answered
  200 is lost.
- A batch holds at most one heartbeat per shim (one UPDATE cannot move a
  row twice): a second one of the same shim waits for a later batch. Two
  of one shim in batches running at once (a resend) are settled by the
  conditional UPDATE, as across workers: only a newer one moves the shim.
- What the statement did not accept resolves False; the caller asks the
  synchronous `ingest.refusal` why (rare: a replay, a reset).
- At most `connections` statements run at once per worker. Two batches
  share a shim only when its heartbeat was sent again (or reached two
  workers); should they deadlock on their rows, the one PostgreSQL aborts
  is retried. Any other database error is logged once and answers that
  batch's requests 503 `database_unavailable` (send again; never a hang),
  and its connection is dropped: the next batch opens a new one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine import make_url

from shimmfa.central.context import ShimIdentity
from shimmfa.central.ingest import MOVED_BATCH, heartbeat_values
from shimmfa.central.problems import Unavailable
from shimmfa.core.heartbeat import VerifiedHeartbeat

__all__ = ["AsyncMover"]

log = logging.getLogger(__name__)

_COMPILED = MOVED_BATCH.compile(dialect=PGDialect_psycopg())  # type: ignore[no-untyped-call]
_SQL = str(_COMPILED)
MAX_BATCH = 500
DEADLOCK_RETRIES = 3


def conninfo(database_url: str) -> str:
    """A libpq connection string from the service's SQLAlchemy URL."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


@dataclass(slots=True)
class _Waiting:
    pk: int
    row: dict[str, Any]  # `ingest.heartbeat_values`
    answer: asyncio.Future[bool] = field(repr=False)


def batch_params(batch: list[_Waiting]) -> dict[str, Any]:
    """The statement's parameters: the rows as one JSON array and their
    pks (both in pk order)."""
    ordered = sorted(batch, key=lambda waiting: waiting.pk)
    rows = json.dumps([w.row for w in ordered], ensure_ascii=False, separators=(",", ":"))
    params = {"rows": rows, "pks": [w.pk for w in ordered]}
    return _COMPILED.construct_params(params)  # type: ignore[no-any-return]


class AsyncMover:
    def __init__(self, database_url: str, connections: int = 2) -> None:
        self._conninfo = conninfo(database_url)
        self._size = connections
        self._queue: deque[_Waiting] = deque()
        self._running = 0
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def move(
        self, identity: ShimIdentity, h: VerifiedHeartbeat, wire: str, now: float
    ) -> bool:
        """Accept `h` if it is newer than the shim's position (True), once
        committed; False if not."""
        row = heartbeat_values(identity, h, wire, now)
        waiting = _Waiting(identity.pk, row, asyncio.get_running_loop().create_future())
        self._queue.append(waiting)
        self._start()
        return await waiting.answer

    def _start(self) -> None:
        while self._queue and self._running < self._size:
            batch = self._take_batch()
            if not batch:
                return
            self._running += 1
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take_batch(self) -> list[_Waiting]:
        """Up to MAX_BATCH waiting heartbeats, one per shim, oldest first;
        a shim's later ones stay queued, in order. Abandoned ones (their
        request was cancelled) are dropped."""
        batch: list[_Waiting] = []
        seen: set[int] = set()
        left: deque[_Waiting] = deque()
        while self._queue:
            waiting = self._queue.popleft()
            if waiting.answer.done():
                continue
            if waiting.pk in seen or len(batch) >= MAX_BATCH:
                left.append(waiting)
                continue
            seen.add(waiting.pk)
            batch.append(waiting)
        self._queue = left
        return batch

    async def _run(self, batch: list[_Waiting]) -> None:
        try:
            moved = await self._execute(batch_params(batch))
        except BaseException as exc:  # logged once; each request answers 503
            log.error("a batch of %d heartbeats failed", len(batch), exc_info=exc)
            for waiting in batch:
                if not waiting.answer.done():
                    waiting.answer.set_exception(
                        Unavailable(
                            "the database did not take the heartbeat; send it again",
                            "database_unavailable",
                        )
                    )
            if not isinstance(exc, Exception):
                raise  # cancelled: the server is stopping
        else:
            for waiting in batch:
                if not waiting.answer.done():
                    waiting.answer.set_result(waiting.pk in moved)
        finally:
            self._running -= 1
            self._start()

    async def _execute(self, params: dict[str, Any]) -> set[int]:
        for attempt in range(DEADLOCK_RETRIES + 1):
            connection = await self._connection()
            healthy = False
            try:
                cursor = await connection.execute(_SQL, params)
                rows = await cursor.fetchall()
                healthy = True
                return {row[0] for row in rows}
            except psycopg.errors.DeadlockDetected:
                healthy = True  # autocommit: rolled back, the connection is idle
                if attempt == DEADLOCK_RETRIES:
                    raise
            finally:
                self._give(connection, healthy)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._idle:
            return self._idle.pop()
        return await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, prepare_threshold=0
        )

    def _give(self, connection: psycopg.AsyncConnection[Any], healthy: bool) -> None:
        if healthy:
            self._idle.append(connection)
            return
        task = asyncio.get_running_loop().create_task(connection.close())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        while self._idle:
            await self._idle.pop().close()
