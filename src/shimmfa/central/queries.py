"""Reading heartbeat history and events, keyset-paginated.

Rules:
- Pages are ordered by arrival (the row's `id`), oldest first; the cursor
  is the last `id` of a page, so a client polling with it sees every new
  row once, whatever arrives meanwhile.
- Event filters: `shim_id`, `kind`, `severity` (this severity or more
  severe: syslog numbers, 0 is the most severe), `since`/`until` (the
  event's own time, epoch seconds; `until` exclusive), `source`.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from shimmfa.central.context import Central
from shimmfa.central.models import EventRow, HeartbeatRow, ShimRow
from shimmfa.central.problems import NotFound

__all__ = ["list_events", "list_heartbeats"]


def list_heartbeats(
    central: Central, shim_id: str, *, after: int | None, limit: int
) -> Sequence[HeartbeatRow]:
    with central.sessions() as session:
        pk = session.scalar(select(ShimRow.pk).where(ShimRow.shim_id == shim_id))
        if pk is None:
            raise NotFound(f"no shim {shim_id!r} is registered")
        query = (
            select(HeartbeatRow)
            .where(HeartbeatRow.shim_pk == pk)
            .order_by(HeartbeatRow.id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(HeartbeatRow.id > after)
        return session.scalars(query).all()


def list_events(
    central: Central,
    *,
    shim_id: str | None = None,
    kind: str | None = None,
    severity: int | None = None,
    since: float | None = None,
    until: float | None = None,
    source: str | None = None,
    after: int | None = None,
    limit: int = 100,
) -> Sequence[EventRow]:
    query = select(EventRow).order_by(EventRow.id).limit(limit)
    if shim_id is not None:
        query = query.where(EventRow.shim_id == shim_id)
    if kind is not None:
        query = query.where(EventRow.kind == kind)
    if severity is not None:
        query = query.where(EventRow.severity <= severity)
    if since is not None:
        query = query.where(EventRow.at >= since)
    if until is not None:
        query = query.where(EventRow.at < until)
    if source is not None:
        query = query.where(EventRow.source == source)
    if after is not None:
        query = query.where(EventRow.id > after)
    with central.sessions() as session:
        return session.scalars(query).all()
