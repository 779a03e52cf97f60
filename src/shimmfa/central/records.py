"""Recording what central raises (alarms, audit) as events, inside the
caller's transaction, and queueing them for the hospital SIEM.

Rules:
- One function, `record`: an event row with `source` "central", a fresh
  event ID (`core.events.new_event_id`, from the clock and `os.urandom`) and
  the kind's severity; plus a `siem_outbox` row unless forwarding is off.
- It commits nothing: the alarm and the state change that caused it commit
  together, or neither does (so an alarm is raised once).
"""

from __future__ import annotations

import os

from sqlalchemy.orm import Session

from shimmfa.central.catalogue import CENTRAL_KINDS
from shimmfa.central.models import EventRow, SiemOutboxRow
from shimmfa.core.events import FieldValue, new_event_id

__all__ = ["record"]


def record(
    session: Session,
    kind: str,
    *,
    now: float,
    shim_id: str | None = None,
    fields: dict[str, FieldValue] | None = None,
    forward: bool = True,
) -> EventRow:
    entry = CENTRAL_KINDS[kind]
    row = EventRow(
        event_id=new_event_id(now, os.urandom(10)),
        source="central",
        shim_id=shim_id,
        kind=kind,
        severity=entry.severity,
        security=True,
        at=now,
        received_at=now,
        fields=dict(fields or {}),
        heartbeat=None,
    )
    session.add(row)
    if forward:
        session.flush()
        session.add(SiemOutboxRow(event_pk=row.id))
    return row
