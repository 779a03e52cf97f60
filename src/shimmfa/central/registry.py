"""The shim registry: register, read, list, remove; maintenance windows;
accepting a state reset. Used by the API and by `shimmfa central shim`.

Rules:
- Registration checks every field (shim and hardware IDs as the heartbeat
  payload's rules, the public key `ed25519:<base64 of 32 bytes>`, a period
  of 0.1 s to one day) and returns the shim's credential once; only its hash
  is stored.
- Every change is audited (`records.record`) in the same transaction.
- A maintenance window change sets the shim's `check_at` to now, so the
  monitor re-evaluates it at its next pass.
- Listing is keyset-paginated on the shim ID; filters: status (computed in
  SQL by `status.status_of`) and a location substring.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shimmfa.central.context import Central
from shimmfa.central.credentials import (
    SHIM_CREDENTIAL_PREFIX,
    check_age_recipient,
    new_token,
    parse_public_key,
    token_hash,
)
from shimmfa.central.models import MaintenanceWindow, ShimRow
from shimmfa.central.problems import Conflict, Invalid, NotFound
from shimmfa.central.records import record
from shimmfa.central.status import STATUSES, status_of

__all__ = [
    "MAX_PERIOD",
    "MIN_PERIOD",
    "ShimView",
    "accept_reset",
    "add_maintenance",
    "check_id",
    "get_shim",
    "list_maintenance",
    "list_shims",
    "register_shim",
    "remove_maintenance",
    "remove_shim",
]

MIN_PERIOD = 0.1
MAX_PERIOD = 86400.0
MAX_WINDOW = 366 * 86400.0


@dataclass(frozen=True, slots=True)
class ShimView:
    """A shim row and its status at the time it was read."""

    row: ShimRow
    status: str
    maintenance: tuple[MaintenanceWindow, ...] = ()


def check_id(value: object, name: str) -> str:
    """An ID by the heartbeat payload's rules (`core.heartbeat`): 1-128
    characters, no spaces, control or surrogate characters - so that the
    shim's heartbeats can carry it."""
    if not isinstance(value, str) or not 1 <= len(value) <= 128:
        raise Invalid(f"{name} must be 1 to 128 characters")
    for ch in value:
        code = ord(ch)
        if ch.isspace() or code < 0x20 or code == 0x7F or 0xD800 <= code <= 0xDFFF:
            raise Invalid(f"{name} must not contain spaces or control characters")
    return value


def register_shim(
    central: Central,
    *,
    shim_id: str,
    hardware_id: str,
    public_key: str,
    location: str,
    heartbeat_period: float,
    actor: str,
    age_recipient: str | None = None,
) -> tuple[ShimRow, str]:
    """The new shim row and its credential (shown once)."""
    check_id(shim_id, "shim_id")
    check_id(hardware_id, "hardware_id")
    try:
        parse_public_key(public_key)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    if not MIN_PERIOD <= heartbeat_period <= MAX_PERIOD:
        raise Invalid(f"heartbeat_period must be {MIN_PERIOD} to {MAX_PERIOD:.0f} seconds")
    if len(location) > 256:
        raise Invalid("location is at most 256 characters")
    if age_recipient is not None:
        try:
            check_age_recipient(age_recipient)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
    credential = new_token(SHIM_CREDENTIAL_PREFIX)
    now = central.clock()
    row = ShimRow(
        shim_id=shim_id,
        hardware_id=hardware_id,
        public_key=public_key,
        location=location,
        heartbeat_period=float(heartbeat_period),
        credential_hash=token_hash(credential),
        registered_at=now,
        age_recipient=age_recipient,
        bundle_version=0,
        alarm="",
        tamper_alarmed=False,
    )
    try:
        with central.sessions.begin() as session:
            session.add(row)
            session.flush()
            record(
                session,
                "shim_registered",
                now=now,
                shim_id=shim_id,
                fields={"by": actor, "location": location, "hardware_id": hardware_id},
                forward=central.forward,
            )
    except IntegrityError:
        raise Conflict(f"shim {shim_id!r} is registered already", "exists") from None
    return row, credential


def _row(session: Session, shim_id: str, *, lock: bool = False) -> ShimRow:
    query = select(ShimRow).where(ShimRow.shim_id == shim_id)
    row = session.scalars(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound(f"no shim {shim_id!r} is registered")
    return row


def get_shim(central: Central, shim_id: str) -> ShimView:
    now = central.clock()
    with central.sessions() as session:
        found = session.execute(
            select(ShimRow, status_of(now)).where(ShimRow.shim_id == shim_id)
        ).first()
        if found is None:
            raise NotFound(f"no shim {shim_id!r} is registered")
        windows = session.scalars(
            select(MaintenanceWindow)
            .where(MaintenanceWindow.shim_pk == found[0].pk, MaintenanceWindow.ends_at > now)
            .order_by(MaintenanceWindow.starts_at)
        ).all()
        return ShimView(found[0], found[1], tuple(windows))


def list_shims(
    central: Central,
    *,
    status: str | None = None,
    location: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> list[ShimView]:
    if status is not None and status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}")
    now = central.clock()
    state = status_of(now)
    query = select(ShimRow, state).order_by(ShimRow.shim_id).limit(limit)
    if status is not None:
        query = query.where(state == status)
    if location:
        escaped = location.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(ShimRow.location.like(f"%{escaped}%", escape="\\"))
    if after is not None:
        query = query.where(ShimRow.shim_id > after)
    with central.sessions() as session:
        return [ShimView(row, value) for row, value in session.execute(query).all()]


def remove_shim(central: Central, shim_id: str, *, actor: str) -> None:
    now = central.clock()
    with central.sessions.begin() as session:
        row = _row(session, shim_id, lock=True)
        central.identities.forget(row.credential_hash)
        session.delete(row)
        record(
            session,
            "shim_removed",
            now=now,
            shim_id=shim_id,
            fields={"by": actor},
            forward=central.forward,
        )


def add_maintenance(
    central: Central, shim_id: str, *, start: float, end: float, reason: str, actor: str
) -> MaintenanceWindow:
    if not end > start:
        raise Invalid("a maintenance window must end after it starts")
    if end - start > MAX_WINDOW:
        raise Invalid("a maintenance window lasts at most 366 days")
    if len(reason) > 512:
        raise Invalid("reason is at most 512 characters")
    now = central.clock()
    with central.sessions.begin() as session:
        row = _row(session, shim_id, lock=True)
        window = MaintenanceWindow(
            shim_pk=row.pk,
            starts_at=start,
            ends_at=end,
            reason=reason,
            created_by=actor,
            created_at=now,
        )
        session.add(window)
        row.check_at = now
        session.flush()
        record(
            session,
            "maintenance_scheduled",
            now=now,
            shim_id=shim_id,
            fields={"by": actor, "window": window.id, "start": start, "end": end, "reason": reason},
            forward=central.forward,
        )
        return window


def list_maintenance(central: Central, shim_id: str) -> list[MaintenanceWindow]:
    with central.sessions() as session:
        row = _row(session, shim_id)
        return list(
            session.scalars(
                select(MaintenanceWindow)
                .where(MaintenanceWindow.shim_pk == row.pk)
                .order_by(MaintenanceWindow.starts_at)
            )
        )


def remove_maintenance(central: Central, shim_id: str, window_id: int, *, actor: str) -> None:
    now = central.clock()
    with central.sessions.begin() as session:
        row = _row(session, shim_id, lock=True)
        gone = session.execute(
            delete(MaintenanceWindow).where(
                MaintenanceWindow.id == window_id, MaintenanceWindow.shim_pk == row.pk
            )
        )
        if getattr(gone, "rowcount", 0) != 1:
            raise NotFound(f"shim {shim_id!r} has no maintenance window {window_id}")
        row.check_at = now
        record(
            session,
            "maintenance_cancelled",
            now=now,
            shim_id=shim_id,
            fields={"by": actor, "window": window_id},
            forward=central.forward,
        )


def accept_reset(central: Central, shim_id: str, *, actor: str) -> ShimRow:
    """Take the position of the heartbeat that revealed the reset as the
    shim's last accepted one; its next heartbeats are accepted again."""
    now = central.clock()
    with central.sessions.begin() as session:
        row = _row(session, shim_id, lock=True)
        if row.reset_at is None:
            raise Conflict(f"shim {shim_id!r} is not in state_reset", "not_reset")
        before = (row.boot_count, row.seq)
        session.execute(
            update(ShimRow)
            .where(ShimRow.pk == row.pk)
            .values(
                boot_count=row.reset_boot_count,
                seq=row.reset_seq,
                reset_at=None,
                reset_boot_count=None,
                reset_seq=None,
                reboot_from=None,
                check_at=now,
            )
        )
        record(
            session,
            "reset_accepted",
            now=now,
            shim_id=shim_id,
            fields={
                "by": actor,
                "boot_count": row.reset_boot_count,
                "seq": row.reset_seq,
                "previous_boot_count": before[0],
                "previous_seq": before[1],
            },
            forward=central.forward,
        )
    return _fresh(central, shim_id)


def _fresh(central: Central, shim_id: str) -> ShimRow:
    return get_shim(central, shim_id).row
