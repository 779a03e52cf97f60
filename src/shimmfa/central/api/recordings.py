"""`/api/v1/recordings` and `/api/v1/sessions`: what shims uploaded and the
session index. Every role lists them; only `auditor` and `infosec` play
back (`/asciicast`) and export, each time audited (`playback.py`)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from shimmfa.central import playback, sessions
from shimmfa.central.api.deps import CentralDep, Player, Reader
from shimmfa.central.api.schemas import ErrorBody, epoch, iso
from shimmfa.central.tables import RecordingRow

__all__ = ["router"]

router = APIRouter(tags=["recordings"])

ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody} for status in (401, 403, 404, 409, 422, 503)
}
RecordingId = Annotated[int, Path(ge=1, le=2**62)]
ASCIICAST = "application/x-asciicast"


class RecordingOut(BaseModel):
    id: int
    shim_id: str
    session_id: str
    technician_id: str
    started_at: str | None
    ended_at: str | None
    bytes: int
    terminal_reason: str | None
    status: str = Field(description="verification on arrival: valid")
    message: str
    sha256: str
    break_glass: bool
    received_at: str | None

    @classmethod
    def of(cls, row: RecordingRow) -> RecordingOut:
        return cls(
            id=row.id,
            shim_id=row.shim_id,
            session_id=row.session_id,
            technician_id=row.technician_id,
            started_at=iso(row.started_at),
            ended_at=iso(row.ended_at),
            bytes=row.bytes,
            terminal_reason=row.terminal_reason,
            status=row.status,
            message=row.message,
            sha256=row.sha256,
            break_glass=row.break_glass,
            received_at=iso(row.received_at),
        )


class RecordingList(BaseModel):
    items: list[RecordingOut]
    next_cursor: str | None


class SessionOut(BaseModel):
    shim_id: str
    session_id: str
    technician_id: str | None
    started_at: str | None
    ended_at: str | None
    terminal_reason: str | None
    break_glass: bool
    recording: RecordingOut | None = Field(description="the verified recording, once uploaded")
    verification: str = Field(description="the recording's status, or not_uploaded")

    @classmethod
    def of(cls, view: sessions.SessionView) -> SessionOut:
        row = view.row
        return cls(
            shim_id=row.shim_id,
            session_id=row.session_id,
            technician_id=row.technician_id,
            started_at=iso(row.started_at),
            ended_at=iso(row.ended_at),
            terminal_reason=row.terminal_reason,
            break_glass=row.break_glass,
            recording=RecordingOut.of(view.recording) if view.recording else None,
            verification=view.recording.status if view.recording else "not_uploaded",
        )


class SessionList(BaseModel):
    items: list[SessionOut]
    next_cursor: str | None


@router.get("/recordings", response_model=RecordingList, responses=ERRORS)
async def get_recordings(
    _: Reader,
    central: CentralDep,
    shim_id: Annotated[str | None, Query(max_length=128)] = None,
    technician_id: Annotated[str | None, Query(max_length=128)] = None,
    cursor: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> RecordingList:
    """Stored recordings, newest first."""
    rows = await run_in_threadpool(
        lambda: playback.list_recordings(
            central, shim_id=shim_id, technician_id=technician_id, before=cursor, limit=limit
        )
    )
    more = len(rows) == limit and rows
    return RecordingList(
        items=[RecordingOut.of(row) for row in rows],
        next_cursor=str(rows[-1].id) if more else None,
    )


@router.get("/recordings/{recording_id}", response_model=RecordingOut, responses=ERRORS)
async def get_recording(recording_id: RecordingId, _: Reader, central: CentralDep) -> RecordingOut:
    return RecordingOut.of(await run_in_threadpool(playback.get_recording, central, recording_id))


@router.get(
    "/recordings/{recording_id}/asciicast",
    responses={**ERRORS, 200: {"content": {ASCIICAST: {}}}},
    response_class=Response,
)
async def get_asciicast(
    recording_id: RecordingId, principal: Player, central: CentralDep
) -> Response:
    """The recording decrypted in memory as asciicast v2 (what
    asciinema-player plays); auditor and infosec only; audited."""
    text = await run_in_threadpool(
        lambda: playback.asciicast(central, recording_id, actor=principal.actor)
    )
    return Response(text, media_type=ASCIICAST, headers={"Cache-Control": "no-store"})


@router.get(
    "/recordings/{recording_id}/export",
    responses={**ERRORS, 200: {"content": {"application/octet-stream": {}}}},
    response_class=Response,
)
async def get_export(
    recording_id: RecordingId,
    principal: Player,
    central: CentralDep,
    format: Annotated[str, Query(pattern="^(jsonl|raw|shrec)$")] = "jsonl",  # noqa: A002
) -> Response:
    """The verified recording as JSON lines (the seed's layout), the
    device's raw output, or the signed `.shrec` file; audited."""
    made = await run_in_threadpool(
        lambda: playback.export(central, recording_id, format, actor=principal.actor)
    )
    return Response(
        made.content,
        media_type=made.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{made.filename}"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/sessions", response_model=SessionList, responses=ERRORS)
async def get_sessions(
    _: Reader,
    central: CentralDep,
    shim_id: Annotated[str | None, Query(max_length=128)] = None,
    technician_id: Annotated[str | None, Query(max_length=128)] = None,
    since: Annotated[dt.datetime | None, Query(description="started at or after")] = None,
    until: Annotated[dt.datetime | None, Query(description="started before")] = None,
    break_glass: bool | None = None,
    terminal_reason: Annotated[str | None, Query(max_length=64)] = None,
    recorded: bool | None = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> SessionList:
    """Technicians' sessions, newest first, each with its recording's
    verification state."""
    before = sessions.parse_cursor(cursor)
    views = await run_in_threadpool(
        lambda: sessions.list_sessions(
            central,
            shim_id=shim_id,
            technician_id=technician_id,
            since=None if since is None else epoch(since),
            until=None if until is None else epoch(until),
            break_glass=break_glass,
            terminal_reason=terminal_reason,
            recorded=recorded,
            before=before,
            limit=limit,
        )
    )
    more = len(views) == limit and views
    return SessionList(
        items=[SessionOut.of(view) for view in views],
        next_cursor=sessions.cursor_of(views[-1]) if more else None,
    )
