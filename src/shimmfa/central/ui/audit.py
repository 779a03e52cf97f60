"""The audit pages: technicians' sessions (filters, each recording's
verification state), a recording's page (played in the browser by
asciinema-player from the asciicast endpoint, downloads of the verified
exports: auditor and infosec only), the events of the fleet, and central's
own audit trail (who enrolled, assigned, revoked, played back).

Filters come from the query string; a value that does not parse is
reported next to its field and ignored, never a server error.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from shimmfa.central import fleet, playback, sessions
from shimmfa.central.access import Principal
from shimmfa.central.api.deps import Reader
from shimmfa.central.catalogue import AUDIT
from shimmfa.central.problems import Invalid
from shimmfa.central.ui.render import page
from shimmfa.core.events import CATALOGUE

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)

PAGE = 50


def _text(request: Request, name: str, limit: int = 128) -> str:
    return (request.query_params.get(name) or "").strip()[:limit]


def _date(
    request: Request, name: str, errors: dict[str, str], *, end: bool = False
) -> float | None:
    """A `YYYY-MM-DD` (UTC) as epoch seconds; the end of that day if `end`."""
    text = _text(request, name, 32)
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        errors[name] = "Write the date as YYYY-MM-DD, e.g. 2026-12-07."
        return None
    moment = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    return (moment + dt.timedelta(days=1 if end else 0)).timestamp()


def _int(request: Request, name: str) -> int | None:
    text = _text(request, name, 24)
    return int(text) if text.isdigit() else None


@router.get("/sessions")
async def sessions_view(request: Request, principal: Reader) -> Response:
    errors: dict[str, str] = {}
    flags = {"yes": True, "no": False}
    filters = {
        "shim_id": _text(request, "shim_id") or None,
        "technician_id": _text(request, "technician_id") or None,
        "since": _date(request, "since", errors),
        "until": _date(request, "until", errors, end=True),
        "break_glass": flags.get(_text(request, "break_glass")),
        "terminal_reason": _text(request, "terminal_reason", 64) or None,
        "recorded": flags.get(_text(request, "recorded")),
    }
    cursor = _text(request, "cursor", 64)
    try:
        before = sessions.parse_cursor(cursor or None)
    except Invalid:
        before = None
    central = request.app.state.central
    views = await run_in_threadpool(
        lambda: sessions.list_sessions(central, before=before, limit=PAGE + 1, **filters)  # type: ignore[arg-type]
    )
    more = len(views) > PAGE
    views = views[:PAGE]
    names = ("shim_id", "technician_id", "since", "until", "break_glass", "terminal_reason",
             "recorded")  # fmt: skip
    query = {k: _text(request, k) for k in names}
    return page(
        request, "sessions.html", principal, nav="sessions", sessions=views, errors=errors,
        query=query, next_cursor=sessions.cursor_of(views[-1]) if more and views else "",
    )  # fmt: skip


@router.get("/recordings/{recording_id}")
async def recording_view(
    request: Request, principal: Reader, recording_id: Annotated[int, Path(ge=1, le=2**62)]
) -> Response:
    """The recording's facts; for auditor and infosec the player and the
    downloads (each playback and download is audited by the API)."""
    row = await run_in_threadpool(playback.get_recording, request.app.state.central, recording_id)
    return page(request, "recording.html", principal, nav="sessions", recording=row)


async def _events(request: Request, principal: Principal, *, audit: bool) -> Response:
    errors: dict[str, str] = {}
    kind = _text(request, "kind", 32) or None
    severity = _int(request, "severity")
    source = _text(request, "source", 8) or None
    filters = {
        "shim_id": _text(request, "shim_id") or None,
        "kind": kind if kind in CATALOGUE else None,
        "source": "central" if audit else (source if source in ("shim", "central") else None),
        "severity": severity if severity is not None and severity <= 7 else None,
        "since": _date(request, "since", errors),
        "until": _date(request, "until", errors, end=True),
        "before": _int(request, "cursor"),
    }
    if kind and kind not in CATALOGUE:
        errors["kind"] = "No event has that kind; pick one from the list."
    central = request.app.state.central
    found = await run_in_threadpool(
        lambda: fleet.recent_events(central, audit_only=audit, limit=PAGE, **filters)  # type: ignore[arg-type]
    )
    kinds = sorted(AUDIT) if audit else sorted(CATALOGUE)
    query = {k: _text(request, k) for k in ("shim_id", "kind", "severity", "source", "since",
                                               "until")}  # fmt: skip
    return page(
        request, "events.html", principal, nav="audit" if audit else "events", audit=audit,
        events=found.items, errors=errors, query=query, kinds=kinds, catalogue=CATALOGUE,
        next_cursor=str(found.items[-1].id) if found.more and found.items else "",
    )  # fmt: skip


@router.get("/events")
async def events_view(request: Request, principal: Reader) -> Response:
    return await _events(request, principal, audit=False)


@router.get("/audit")
async def audit_view(request: Request, principal: Reader) -> Response:
    return await _events(request, principal, audit=True)
