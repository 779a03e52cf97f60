"""The heartbeat's group commit on PostgreSQL (`ingest_async.AsyncMover`):
heartbeats waiting together are accepted by one statement, each judged as
if alone; a shim's heartbeats keep their order; a database that fails
answers 503 and accepts nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from central.conftest import needs_postgres
from central.kit import SimShim
from shimmfa.central.context import Central, ShimIdentity
from shimmfa.central.ingest import authenticate_shim, verify_for
from shimmfa.central.ingest_async import AsyncMover
from shimmfa.central.models import HeartbeatRow, ShimRow
from shimmfa.central.problems import Unavailable
from shimmfa.central.registry import register_shim
from shimmfa.central.settings import CentralSettings

pytestmark = needs_postgres


@pytest.fixture
def central(pg_url: str, clock: Any) -> Iterator[Central]:
    made = Central(CentralSettings(database_url=pg_url, pool_size=2), clock=clock)
    try:
        yield made
    finally:
        made.close()


def registered(central: Central, count: int) -> list[tuple[SimShim, ShimIdentity]]:
    shims = []
    for n in range(count):
        sim = SimShim(f"shim-{n:03d}")
        _, credential = register_shim(
            central,
            shim_id=sim.shim_id,
            hardware_id=sim.hardware_id,
            public_key=sim.public_key,
            location="ICU",
            heartbeat_period=60.0,
            actor="test",
        )
        shims.append((sim, authenticate_shim(central, credential)))
    return shims


def moving(
    mover: AsyncMover, central: Central, identity: ShimIdentity, wire: dict[str, Any]
) -> Any:
    h = verify_for(identity, wire)
    return mover.move(identity, h, json.dumps(wire, separators=(",", ":")), central.clock())


def positions(central: Central) -> dict[str, tuple[int | None, int | None, int]]:
    """shim ID -> (boot_count, seq, history rows)."""
    with central.sessions() as session:
        counts = dict(
            session.execute(
                select(HeartbeatRow.shim_pk, func.count()).group_by(HeartbeatRow.shim_pk)
            ).all()
        )
        rows = session.execute(select(ShimRow.pk, ShimRow.shim_id, ShimRow.boot_count, ShimRow.seq))
        return {r.shim_id: (r.boot_count, r.seq, counts.get(r.pk, 0)) for r in rows}


def test_many_shims_at_once_are_all_accepted_in_few_statements(
    central: Central, pg_url: str
) -> None:
    shims = registered(central, 60)
    statements = 0

    async def run() -> list[bool]:
        nonlocal statements
        mover = AsyncMover(pg_url, connections=1)
        execute = mover._execute

        async def counted(params: dict[str, Any]) -> set[int]:
            nonlocal statements
            statements += 1
            return await execute(params)

        mover._execute = counted  # type: ignore[method-assign]
        try:
            beats = [moving(mover, central, i, sim.heartbeat()) for sim, i in shims]
            return list(await asyncio.gather(*beats))
        finally:
            await mover.close()

    assert asyncio.run(run()) == [True] * 60
    assert statements < 60  # waiting together, they shared statements
    assert positions(central) == {sim.shim_id: (1, 1, 1) for sim, _ in shims}
    by_pk = {identity.pk: identity for _, identity in shims}
    with central.sessions() as session:
        history = session.scalars(select(HeartbeatRow)).all()
    for row in history:  # each row holds its own heartbeat, verifiable as stored
        h = verify_for(by_pk[row.shim_pk], json.loads(row.wire))
        assert (row.boot_count, row.seq, row.state) == (h.boot_count, h.seq, h.state)
        assert (row.sent_at, row.received_at) == (h.sent_at_epoch, central.clock())


def test_one_shims_heartbeats_keep_their_order_within_a_batch(
    central: Central, pg_url: str
) -> None:
    (sim, identity), (other, other_identity) = registered(central, 2)

    async def run() -> list[bool]:
        mover = AsyncMover(pg_url, connections=1)
        try:
            beats = [
                moving(mover, central, identity, sim.heartbeat(seq=2)),
                moving(mover, central, identity, sim.heartbeat(seq=3)),
                moving(mover, central, other_identity, other.heartbeat(seq=9)),
                moving(mover, central, other_identity, other.heartbeat(seq=8)),  # older
                moving(mover, central, identity, sim.heartbeat(seq=3)),  # a replay
            ]
            return list(await asyncio.gather(*beats))
        finally:
            await mover.close()

    assert asyncio.run(run()) == [True, True, True, False, False]
    assert positions(central) == {"shim-000": (1, 3, 2), "shim-001": (1, 9, 1)}


def test_a_database_that_fails_answers_503_and_accepts_nothing(
    central: Central, pg_url: str
) -> None:
    (sim, identity), (other, other_identity) = registered(central, 2)
    unreachable = pg_url.rsplit("/", 1)[0] + "/no_such_database"

    async def run() -> list[BaseException | bool]:
        mover = AsyncMover(unreachable, connections=1)
        beats = [
            moving(mover, central, identity, sim.heartbeat()),
            moving(mover, central, other_identity, other.heartbeat()),
        ]
        return list(await asyncio.gather(*beats, return_exceptions=True))

    answers = asyncio.run(run())
    assert [type(a) for a in answers] == [Unavailable, Unavailable]
    assert all(getattr(a, "code", None) == "database_unavailable" for a in answers)
    assert positions(central) == {"shim-000": (None, None, 0), "shim-001": (None, None, 0)}


def test_an_abandoned_heartbeat_is_not_sent(central: Central, pg_url: str) -> None:
    """A request given up while its heartbeat waits for the running
    statement (the client hung up) leaves it out of the next one."""
    (sim, identity), (other, other_identity) = registered(central, 2)

    async def run() -> bool:
        mover = AsyncMover(pg_url, connections=1)
        execute, running, release = mover._execute, asyncio.Event(), asyncio.Event()

        async def held(params: dict[str, Any]) -> set[int]:
            running.set()
            await release.wait()
            return await execute(params)

        mover._execute = held  # type: ignore[method-assign]
        try:
            first = asyncio.ensure_future(moving(mover, central, identity, sim.heartbeat()))
            await running.wait()  # the only statement slot is taken: the next one waits
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(
                    moving(mover, central, other_identity, other.heartbeat()), 0.05
                )
            release.set()
            return bool(await first)
        finally:
            await mover.close()

    assert asyncio.run(run()) is True
    assert positions(central) == {"shim-000": (1, 1, 1), "shim-001": (None, None, 0)}
