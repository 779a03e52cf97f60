"""The fleet pages: every shim with its status (live: htmx polls the
table's fragment every `POLL_SECONDS` without reloading the page), and one
shim's page (heartbeat timeline, events, sessions, technicians valid
there, groups, maintenance windows, tamper state). Every role reads them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from shimmfa.central import fleet, groups, registry, sessions
from shimmfa.central.api.deps import Reader
from shimmfa.central.status import STATUSES
from shimmfa.central.tables import TechnicianRow
from shimmfa.central.ui.render import page
from shimmfa.central.ui.timeline import timeline_svg

__all__ = ["POLL_SECONDS", "router"]

router = APIRouter(prefix="/ui", include_in_schema=False)

POLL_SECONDS = 2
PAGE = 50
Search = Annotated[str | None, Query(max_length=128)]
Status = Annotated[str | None, Query(max_length=16)]
Cursor = Annotated[str | None, Query(max_length=128)]


async def _fleet(
    request: Request, search: str | None, status: str | None, after: str | None
) -> dict[str, Any]:
    central = request.app.state.central
    status = status if status in STATUSES else None
    found = await run_in_threadpool(
        lambda: fleet.fleet_page(central, search=search, status=status, after=after, limit=PAGE)
    )
    counts = await run_in_threadpool(fleet.status_counts, central)
    return {
        "shims": found.items,
        "more": found.more,
        "counts": counts,
        "statuses": STATUSES,
        "search": search or "",
        "status": status or "",
        "cursor": after or "",
        "next_cursor": found.items[-1].row.shim_id if found.more and found.items else "",
        "poll": POLL_SECONDS,
    }


@router.get("")
@router.get("/")
async def home() -> Response:
    return RedirectResponse("/ui/fleet", status_code=303)


@router.get("/fleet")
async def fleet_view(
    request: Request, principal: Reader, q: Search = None, status: Status = None,
    cursor: Cursor = None,
) -> Response:  # fmt: skip
    context = await _fleet(request, q, status, cursor)
    return page(request, "fleet.html", principal, nav="fleet", **context)


@router.get("/fleet/live")
async def fleet_live(
    request: Request, principal: Reader, q: Search = None, status: Status = None,
    cursor: Cursor = None,
) -> Response:  # fmt: skip
    """The fragment htmx swaps in: counts, table and pager."""
    context = await _fleet(request, q, status, cursor)
    return page(request, "_fleet_live.html", principal, **context)


@router.get("/shims/{shim_id}")
async def shim_view(
    request: Request, principal: Reader, shim_id: Annotated[str, Path(max_length=128)]
) -> Response:
    central = request.app.state.central
    view = await run_in_threadpool(registry.get_shim, central, shim_id)
    row = view.row

    def gather() -> dict[str, Any]:
        beats = fleet.recent_heartbeats(central, row.pk)
        with central.sessions() as session:
            people: list[TechnicianRow] = groups.valid_at_shim(
                session, row.pk, states=("active", "pending")
            )
        return {
            "timeline": timeline_svg(beats, row.heartbeat_period, central.clock()),
            "beats": len(beats),
            "events": fleet.recent_events(central, shim_id=shim_id, limit=25).items,
            "sessions": sessions.list_sessions(central, shim_id=shim_id, limit=15),
            "technicians": people,
            "groups": groups.shim_groups(central, shim_id),
            "windows": registry.list_maintenance(central, shim_id),
        }

    context = await run_in_threadpool(gather)
    return page(request, "shim.html", principal, nav="fleet", shim=view, **context)
