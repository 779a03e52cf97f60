"""The session index: one row per technician session at a shim, built from
what the shim reported (`session_start`, `session_end` events) and from
its uploaded recording; and each technician's last login per shim (from
`auth_success` events).

Rules:
- Kept up to date in the transaction that stores the event or the
  recording (`note_event` from the event ingest, `note_recording` from the
  upload), so the list is an indexed query whatever the number of events.
  Migration 0002 filled it from the events stored before it.
- Each source sets only what it knows; they arrive in any order. A value a
  recording carries (signed by the shim) wins over an event's.
- The list is newest first (`at`, then row ID), keyset-paginated; filters:
  shim, technician, time range (the session's start), break-glass,
  terminal reason, and whether a verified recording is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from shimmfa.central.context import Central
from shimmfa.central.problems import Invalid
from shimmfa.central.tables import RecordingRow, SessionRow, TechnicianLogin

__all__ = [
    "INDEXED_KINDS",
    "SessionView",
    "cursor_of",
    "list_sessions",
    "note_event",
    "note_recording",
    "parse_cursor",
]

INDEXED_KINDS = frozenset({"session_start", "session_end", "auth_success"})


@dataclass(frozen=True, slots=True)
class SessionView:
    row: SessionRow
    recording: RecordingRow | None


def _text(value: object, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _insert(session: Session) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def _locked(session: Session, shim_id: str, session_id: str, at: float) -> SessionRow:
    insert = _insert(session)
    session.execute(
        insert(SessionRow)
        .values(shim_id=shim_id, session_id=session_id, at=at, break_glass=False)
        .on_conflict_do_nothing(index_elements=["shim_id", "session_id"])
    )
    row = session.scalars(
        select(SessionRow)
        .where(SessionRow.shim_id == shim_id, SessionRow.session_id == session_id)
        .with_for_update()
    ).one()
    return row


def note_event(
    session: Session, shim_id: str, kind: str, at: float, fields: Mapping[str, Any]
) -> None:
    """Index one stored shim event of an `INDEXED_KINDS` kind."""
    technician = _text(fields.get("technician_id"), 128)
    session_id = _text(fields.get("session_id"), 64)
    if kind == "auth_success":
        if technician is None:
            return
        insert = _insert(session)
        values = {"technician_id": technician, "shim_id": shim_id, "at": at}
        statement = insert(TechnicianLogin).values(**values, session_id=session_id)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["technician_id", "shim_id"],
                set_={"at": statement.excluded.at, "session_id": statement.excluded.session_id},
                where=TechnicianLogin.at <= statement.excluded.at,
            )
        )
        return
    if session_id is None:
        return
    row = _locked(session, shim_id, session_id, at)
    row.at = min(row.at, at)
    if row.technician_id is None:
        row.technician_id = technician
    if kind == "session_start":
        row.started_at = row.started_at if row.started_at is not None else at
        row.break_glass = row.break_glass or fields.get("break_glass") is True
    elif kind == "session_end":
        row.ended_at = row.ended_at if row.ended_at is not None else at
        reason = _text(fields.get("terminal_reason"), 64)
        row.terminal_reason = row.terminal_reason or reason
    session.flush()


def note_recording(session: Session, recording: RecordingRow) -> None:
    """Index a stored, verified recording: its signed header and footer win."""
    row = _locked(session, recording.shim_id, recording.session_id, recording.started_at)
    row.at = recording.started_at
    row.started_at = recording.started_at
    row.technician_id = recording.technician_id
    row.ended_at = recording.ended_at if recording.ended_at is not None else row.ended_at
    row.terminal_reason = recording.terminal_reason or row.terminal_reason
    row.break_glass = row.break_glass or recording.break_glass
    row.recording_id = recording.id
    session.flush()


def parse_cursor(cursor: str | None) -> tuple[float, int] | None:
    if not cursor:
        return None
    at, _, row_id = cursor.partition("_")
    try:
        return float(at), int(row_id)
    except ValueError:
        raise Invalid("cursor: not a cursor this API gave", "bad_cursor") from None


def list_sessions(
    central: Central,
    *,
    shim_id: str | None = None,
    technician_id: str | None = None,
    since: float | None = None,
    until: float | None = None,
    break_glass: bool | None = None,
    terminal_reason: str | None = None,
    recorded: bool | None = None,
    before: tuple[float, int] | None = None,
    limit: int = 50,
) -> list[SessionView]:
    s = SessionRow
    query = (
        select(SessionRow, RecordingRow)
        .outerjoin(RecordingRow, RecordingRow.id == s.recording_id)
        .order_by(s.at.desc(), s.id.desc())
        .limit(limit)
    )
    if shim_id:
        query = query.where(s.shim_id == shim_id)
    if technician_id:
        query = query.where(s.technician_id == technician_id)
    if since is not None:
        query = query.where(s.at >= since)
    if until is not None:
        query = query.where(s.at < until)
    if break_glass is not None:
        query = query.where(s.break_glass == break_glass)
    if terminal_reason:
        query = query.where(s.terminal_reason == terminal_reason)
    if recorded is not None:
        query = query.where(s.recording_id.is_not(None) if recorded else s.recording_id.is_(None))
    if before is not None:
        at, row_id = before
        query = query.where((s.at < at) | ((s.at == at) & (s.id < row_id)))
    with central.sessions() as session:
        return [SessionView(row, recording) for row, recording in session.execute(query).all()]


def cursor_of(view: SessionView) -> str:
    return f"{view.row.at!r}_{view.row.id}"
