"""What the fleet pages read: a page of shims with their status, the
count of shims in each status, a shim's recent heartbeats for its
timeline, and the events of a shim or of everyone, newest first.

Rules:
- Status is `status.status_of(now)`, computed in SQL, so filtering and
  counting by it never loads the fleet into Python.
- Pages are keyset-paginated (shim ID ascending; event ID descending) and
  read at most `limit + 1` rows: the extra row only says there is a next
  page. Search is a case-insensitive substring of the shim ID or location.
- Every query here is bounded: fast with 10,000 shims and 100,000 events
  (benchmarks/central_ui.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import func, or_, select

from shimmfa.central.catalogue import AUDIT
from shimmfa.central.context import Central
from shimmfa.central.models import EventRow, HeartbeatRow, ShimRow
from shimmfa.central.problems import Invalid
from shimmfa.central.registry import ShimView
from shimmfa.central.status import STATUSES, status_of

__all__ = ["Page", "fleet_page", "recent_events", "recent_heartbeats", "status_counts"]


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    more: bool


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def fleet_page(
    central: Central,
    *,
    search: str | None = None,
    status: str | None = None,
    after: str | None = None,
    limit: int = 50,
) -> Page[ShimView]:
    if status and status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}")
    state = status_of(central.clock())
    query = select(ShimRow, state).order_by(ShimRow.shim_id).limit(limit + 1)
    if search:
        pattern = _like(search)
        query = query.where(
            or_(
                ShimRow.shim_id.ilike(pattern, escape="\\"),
                ShimRow.location.ilike(pattern, escape="\\"),
            )
        )
    if status:
        query = query.where(state == status)
    if after:
        query = query.where(ShimRow.shim_id > after)
    with central.sessions() as session:
        rows = session.execute(query).all()
    views = [ShimView(row, value) for row, value in rows[:limit]]
    return Page(views, len(rows) > limit)


def status_counts(central: Central) -> dict[str, int]:
    state = status_of(central.clock()).label("status")
    inner = select(state).subquery()
    with central.sessions() as session:
        rows = session.execute(select(inner.c.status, func.count()).group_by(inner.c.status)).all()
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({str(name): int(n) for name, n in rows})
    return counts


def recent_heartbeats(central: Central, shim_pk: int, limit: int = 240) -> Sequence[HeartbeatRow]:
    """The shim's last `limit` accepted heartbeats, oldest first."""
    with central.sessions() as session:
        rows = session.scalars(
            select(HeartbeatRow)
            .where(HeartbeatRow.shim_pk == shim_pk)
            .order_by(HeartbeatRow.id.desc())
            .limit(limit)
        ).all()
    return list(reversed(rows))


def recent_events(
    central: Central,
    *,
    shim_id: str | None = None,
    kind: str | None = None,
    source: str | None = None,
    severity: int | None = None,
    since: float | None = None,
    until: float | None = None,
    audit_only: bool = False,
    before: int | None = None,
    limit: int = 50,
) -> Page[EventRow]:
    """Events newest first; `audit_only` keeps central's audit trail."""
    query = select(EventRow).order_by(EventRow.id.desc()).limit(limit + 1)
    if shim_id:
        query = query.where(EventRow.shim_id == shim_id)
    if kind:
        query = query.where(EventRow.kind == kind)
    if source:
        query = query.where(EventRow.source == source)
    if severity is not None:
        query = query.where(EventRow.severity <= severity)
    if since is not None:
        query = query.where(EventRow.at >= since)
    if until is not None:
        query = query.where(EventRow.at < until)
    if audit_only:
        query = query.where(EventRow.kind.in_(sorted(AUDIT)))
    if before is not None:
        query = query.where(EventRow.id < before)
    with central.sessions() as session:
        rows = list(session.scalars(query).all())
    return Page(rows[:limit], len(rows) > limit)
