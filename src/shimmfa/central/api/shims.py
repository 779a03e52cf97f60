"""`/api/v1/shims`: the registry (admin registers and removes), its reads
(every role), maintenance windows (admin, clinical engineering), accepting
a state reset (admin), and each shim's heartbeat history."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from starlette.concurrency import run_in_threadpool

from shimmfa.central import queries, registry
from shimmfa.central.api.deps import Admin, CentralDep, Maintainer, Reader
from shimmfa.central.api.schemas import (
    ErrorBody,
    HeartbeatList,
    HeartbeatOut,
    MaintenanceIn,
    MaintenanceOut,
    ShimCreated,
    ShimIn,
    ShimList,
    ShimOut,
    epoch,
)
from shimmfa.central.problems import Invalid
from shimmfa.central.status import STATUSES

__all__ = ["router"]

router = APIRouter(prefix="/shims", tags=["shims"])

ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody} for status in (401, 403, 404, 409, 422)
}
ShimId = Annotated[str, Path(min_length=1, max_length=128)]
Limit = Annotated[int, Query(ge=1, le=1000)]


def _encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError):
        raise Invalid("cursor: not a cursor this API gave", "bad_cursor") from None


@router.post("", status_code=201, response_model=ShimCreated, responses=ERRORS)
async def post_shim(body: ShimIn, principal: Admin, central: CentralDep) -> ShimCreated:
    """Register a shim; the answer holds its credential, shown once."""
    if "/" in body.shim_id:
        raise Invalid("shim_id must not contain '/'")
    row, credential = await run_in_threadpool(
        lambda: registry.register_shim(
            central,
            shim_id=body.shim_id,
            hardware_id=body.hardware_id,
            public_key=body.public_key,
            location=body.location,
            heartbeat_period=body.heartbeat_period,
            actor=principal.actor,
            age_recipient=body.age_recipient,
        )
    )
    view = await run_in_threadpool(registry.get_shim, central, row.shim_id)
    return ShimCreated(**ShimOut.of(view).model_dump(), credential=credential)


@router.get("", response_model=ShimList, responses=ERRORS)
async def get_shims(
    _: Reader,
    central: CentralDep,
    status: Annotated[str | None, Query(description=" | ".join(STATUSES))] = None,
    location: Annotated[str | None, Query(max_length=256, description="substring")] = None,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
    limit: Limit = 100,
) -> ShimList:
    """The fleet, by shim ID; `next_cursor` gives the next page."""
    after = _decode(cursor)
    views = await run_in_threadpool(
        lambda: registry.list_shims(
            central, status=status, location=location, after=after, limit=limit
        )
    )
    more = len(views) == limit
    return ShimList(
        items=[ShimOut.of(view) for view in views],
        next_cursor=_encode(views[-1].row.shim_id) if more and views else None,
    )


@router.get("/{shim_id}", response_model=ShimOut, responses=ERRORS)
async def get_shim(shim_id: ShimId, _: Reader, central: CentralDep) -> ShimOut:
    """One shim: status, last heartbeat, boot count, seq, tamper state,
    open session, location, maintenance windows now and to come."""
    return ShimOut.of(await run_in_threadpool(registry.get_shim, central, shim_id))


@router.delete("/{shim_id}", status_code=204, responses=ERRORS)
async def delete_shim(shim_id: ShimId, principal: Admin, central: CentralDep) -> Response:
    """Remove a shim: its credential stops working at once."""
    await run_in_threadpool(lambda: registry.remove_shim(central, shim_id, actor=principal.actor))
    return Response(status_code=204)


@router.post(
    "/{shim_id}/maintenance", status_code=201, response_model=MaintenanceOut, responses=ERRORS
)
async def post_maintenance(
    shim_id: ShimId, body: MaintenanceIn, principal: Maintainer, central: CentralDep
) -> MaintenanceOut:
    """Schedule an expected absence: no alarm while it lasts."""
    window = await run_in_threadpool(
        lambda: registry.add_maintenance(
            central,
            shim_id,
            start=epoch(body.start),
            end=epoch(body.end),
            reason=body.reason,
            actor=principal.actor,
        )
    )
    return MaintenanceOut.of(window)


@router.get("/{shim_id}/maintenance", response_model=list[MaintenanceOut], responses=ERRORS)
async def get_maintenance(shim_id: ShimId, _: Reader, central: CentralDep) -> list[MaintenanceOut]:
    windows = await run_in_threadpool(registry.list_maintenance, central, shim_id)
    return [MaintenanceOut.of(window) for window in windows]


@router.delete("/{shim_id}/maintenance/{window_id}", status_code=204, responses=ERRORS)
async def delete_maintenance(
    shim_id: ShimId,
    window_id: Annotated[int, Path(ge=1, le=2**62)],
    principal: Maintainer,
    central: CentralDep,
) -> Response:
    await run_in_threadpool(
        lambda: registry.remove_maintenance(central, shim_id, window_id, actor=principal.actor)
    )
    return Response(status_code=204)


@router.post("/{shim_id}/accept-reset", response_model=ShimOut, responses=ERRORS)
async def post_accept_reset(shim_id: ShimId, principal: Admin, central: CentralDep) -> ShimOut:
    """Accept a shim whose state went backwards (audited): the heartbeat
    that revealed it becomes the last accepted one."""
    await run_in_threadpool(lambda: registry.accept_reset(central, shim_id, actor=principal.actor))
    return ShimOut.of(await run_in_threadpool(registry.get_shim, central, shim_id))


@router.get("/{shim_id}/heartbeats", response_model=HeartbeatList, responses=ERRORS)
async def get_heartbeats(
    shim_id: ShimId,
    _: Reader,
    central: CentralDep,
    cursor: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Limit = 100,
) -> HeartbeatList:
    """Accepted heartbeats, oldest first, each in its signed wire form."""
    rows = await run_in_threadpool(
        lambda: queries.list_heartbeats(central, shim_id, after=cursor, limit=limit)
    )
    items = [HeartbeatOut.of(row, json.loads(row.wire)) for row in rows]
    return HeartbeatList(
        items=items, next_cursor=str(rows[-1].id) if len(rows) == limit and rows else None
    )
