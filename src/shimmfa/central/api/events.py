"""`GET /api/v1/events`: what shims sent and what central raised (alarms,
audit), oldest first, filtered, keyset-paginated (`queries.list_events`)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from shimmfa.central import queries
from shimmfa.central.api.deps import CentralDep, Reader
from shimmfa.central.api.schemas import ErrorBody, EventList, EventOut, epoch

__all__ = ["router"]

router = APIRouter(tags=["events"])


@router.get(
    "/events",
    response_model=EventList,
    responses={status: {"model": ErrorBody} for status in (401, 403, 422)},
)
async def get_events(
    _: Reader,
    central: CentralDep,
    shim_id: Annotated[str | None, Query(max_length=128)] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    severity: Annotated[
        int | None, Query(ge=0, le=7, description="this syslog severity or more severe")
    ] = None,
    since: Annotated[dt.datetime | None, Query(description="event time >= since")] = None,
    until: Annotated[dt.datetime | None, Query(description="event time < until")] = None,
    source: Annotated[str | None, Query(pattern="^(shim|central)$")] = None,
    cursor: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventList:
    rows = await run_in_threadpool(
        lambda: queries.list_events(
            central,
            shim_id=shim_id,
            kind=kind,
            severity=severity,
            since=None if since is None else epoch(since),
            until=None if until is None else epoch(until),
            source=source,
            after=cursor,
            limit=limit,
        )
    )
    return EventList(
        items=[EventOut.of(row) for row in rows],
        next_cursor=str(rows[-1].id) if len(rows) == limit and rows else None,
    )
