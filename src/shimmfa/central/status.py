"""A shim's status, as one SQL expression (so the list endpoint filters and
pages on it in the database), and the timing rules behind it.

Status, first match wins:
- `state_reset`: its boot count went backwards; heartbeats are refused until
  an admin accepts the reset.
- `tampered`: its last heartbeat said "tampered", or it sent a `tamper` or
  `sensor_fault` event, and no later heartbeat said "ok" (nor a
  `latch_reset` event came).
- `maintenance`: now is inside one of its maintenance windows (no alarm).
- `stopped`: it announced `shim_stopping` and has not been heard since.
- `never_seen`: no heartbeat accepted yet.
- `missing`: no heartbeat for `MISSING_PERIODS` periods (the monitor raises
  the alarm), until one arrives and the monitor has raised `recovered`.
- `late`: no heartbeat for one period and a grace of min(period/2, 5 s).
- `ok`.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, case, exists, literal, or_, select

from shimmfa.central.models import MaintenanceWindow, ShimRow

__all__ = ["MISSING_PERIODS", "STATUSES", "in_maintenance", "status_of"]

MISSING_PERIODS = 3
STATUSES = (
    "never_seen",
    "ok",
    "late",
    "missing",
    "tampered",
    "maintenance",
    "stopped",
    "state_reset",
)
MAX_LATE_GRACE = 5.0


def in_maintenance(now: float) -> ColumnElement[bool]:
    """True for a shim (correlated) inside one of its windows at `now`."""
    window = MaintenanceWindow
    return exists(
        select(window.id).where(
            window.shim_pk == ShimRow.pk, window.starts_at <= now, window.ends_at > now
        )
    )


def status_of(now: float) -> ColumnElement[str]:
    s = ShimRow
    silent = literal(now) - s.last_seen_at
    grace = case((s.heartbeat_period < 2 * MAX_LATE_GRACE, s.heartbeat_period / 2), else_=5.0)
    return case(
        (s.reset_at.is_not(None), "state_reset"),
        (s.tampered_at.is_not(None), "tampered"),
        (in_maintenance(now), "maintenance"),
        (s.stopped_at.is_not(None), "stopped"),
        (s.last_seen_at.is_(None), "never_seen"),
        (
            or_(
                and_(s.alarm == "missing", s.back_at.is_(None)),
                silent >= MISSING_PERIODS * s.heartbeat_period,
            ),
            "missing",
        ),
        (silent > s.heartbeat_period + grace, "late"),
        else_="ok",
    )
