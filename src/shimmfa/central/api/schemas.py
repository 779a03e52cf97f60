"""What the API reads and answers, as pydantic models kept apart from the
tables. Times go out as UTC ISO 8601 text (`...Z`) and come in as ISO 8601
or epoch seconds; a time without a zone is UTC."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shimmfa.central.models import EventRow, HeartbeatRow, MaintenanceWindow
from shimmfa.central.registry import ShimView
from shimmfa.core.events import iso_time

__all__ = [
    "BatchOut",
    "ErrorBody",
    "EventList",
    "EventOut",
    "HeartbeatAccepted",
    "HeartbeatList",
    "HeartbeatOut",
    "LoginFactorIn",
    "LoginIn",
    "LoginNext",
    "LoginOut",
    "MaintenanceIn",
    "MaintenanceOut",
    "ShimCreated",
    "ShimIn",
    "ShimList",
    "ShimOut",
    "epoch",
    "iso",
]


def iso(at: float | None) -> str | None:
    return None if at is None else iso_time(at)


def epoch(moment: dt.datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


class ErrorBody(BaseModel):
    code: str
    message: str


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    operator_id: str = Field(max_length=64)
    password: str = Field(max_length=1024)
    code: str = Field(max_length=64)


class LoginFactorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    login_token: str = Field(max_length=128)
    code: str = Field(max_length=64)


class LoginNext(BaseModel):
    """More factors to go: send the next code with `login_token`."""

    next_factor_label: str
    login_token: str
    steps: int | None = Field(default=None, description="Further factors in all (first reply).")
    expires_at: str | None = None


class LoginOut(BaseModel):
    operator_id: str
    role: str
    csrf_token: str
    expires_at: str | None


class ShimIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shim_id: str = Field(min_length=1, max_length=128)
    hardware_id: str = Field(min_length=1, max_length=128)
    public_key: str = Field(max_length=128, description="ed25519:<base64>, as `shimmfa keys show`")
    location: str = Field(default="", max_length=256)
    heartbeat_period: float = Field(default=60.0, ge=0.1, le=86400.0, description="seconds")
    age_recipient: str | None = Field(
        default=None,
        max_length=128,
        description="age1..., as `shimmfa keys show` prints it: technician bundles are "
        "encrypted to it (a shim without one gets no bundle)",
    )


class MaintenanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: dt.datetime
    end: dt.datetime
    reason: str = Field(default="", max_length=512)


class MaintenanceOut(BaseModel):
    id: int
    start: str | None
    end: str | None
    reason: str
    created_by: str

    @classmethod
    def of(cls, window: MaintenanceWindow) -> MaintenanceOut:
        return cls(
            id=window.id,
            start=iso(window.starts_at),
            end=iso(window.ends_at),
            reason=window.reason,
            created_by=window.created_by,
        )


class StateReset(BaseModel):
    since: str | None
    boot_count: int | None
    seq: int | None


class ShimOut(BaseModel):
    shim_id: str
    hardware_id: str
    public_key: str
    location: str
    heartbeat_period: float
    status: str
    registered_at: str | None
    last_heartbeat_at: str | None = Field(description="when central accepted it (its clock)")
    last_sent_at: str | None = Field(description="the heartbeat's sent_at (the shim's clock)")
    boot_count: int | None
    seq: int | None
    uptime_s: float | None
    tamper_state: str | None = Field(description='the last heartbeat\'s state: "ok", "tampered"')
    tampered_since: str | None
    open_session: str | None
    stopped_at: str | None
    state_reset: StateReset | None
    maintenance: list[MaintenanceOut]
    age_recipient: str | None = None

    @classmethod
    def of(cls, view: ShimView) -> ShimOut:
        row = view.row
        reset = None
        if row.reset_at is not None:
            reset = StateReset(
                since=iso(row.reset_at), boot_count=row.reset_boot_count, seq=row.reset_seq
            )
        return cls(
            shim_id=row.shim_id,
            hardware_id=row.hardware_id,
            public_key=row.public_key,
            location=row.location,
            heartbeat_period=row.heartbeat_period,
            status=view.status,
            registered_at=iso(row.registered_at),
            last_heartbeat_at=iso(row.last_seen_at),
            last_sent_at=iso(row.last_sent_at),
            boot_count=row.boot_count,
            seq=row.seq,
            uptime_s=row.uptime_s,
            tamper_state=row.hb_state,
            tampered_since=iso(row.tampered_at),
            open_session=row.open_session,
            stopped_at=iso(row.stopped_at),
            state_reset=reset,
            maintenance=[MaintenanceOut.of(w) for w in view.maintenance],
            age_recipient=row.age_recipient,
        )


class ShimCreated(ShimOut):
    credential: str = Field(description="the shim's bearer credential: shown once, keep it")


class ShimList(BaseModel):
    items: list[ShimOut]
    next_cursor: str | None


class HeartbeatOut(BaseModel):
    boot_count: int
    seq: int
    received_at: str | None
    sent_at: str | None
    state: str
    wire: dict[str, Any] = Field(description='the signed heartbeat {"payload", "sig"}')

    @classmethod
    def of(cls, row: HeartbeatRow, wire: dict[str, Any]) -> HeartbeatOut:
        return cls(
            boot_count=row.boot_count,
            seq=row.seq,
            received_at=iso(row.received_at),
            sent_at=iso(row.sent_at),
            state=row.state,
            wire=wire,
        )


class HeartbeatList(BaseModel):
    items: list[HeartbeatOut]
    next_cursor: str | None


class HeartbeatAccepted(BaseModel):
    accepted: bool
    shim_id: str
    boot_count: int
    seq: int


class BatchOut(BaseModel):
    accepted: int
    new: int
    stale: int


class EventOut(BaseModel):
    event_id: str
    source: str
    shim_id: str | None
    kind: str
    severity: int
    security: bool
    at: float
    time: str | None
    received_at: str | None
    fields: dict[str, Any]
    heartbeat: dict[str, Any] | None

    @classmethod
    def of(cls, row: EventRow) -> EventOut:
        return cls(
            event_id=row.event_id,
            source=row.source,
            shim_id=row.shim_id,
            kind=row.kind,
            severity=row.severity,
            security=row.security,
            at=row.at,
            time=iso(row.at),
            received_at=iso(row.received_at),
            fields=row.fields,
            heartbeat=row.heartbeat,
        )


class EventList(BaseModel):
    items: list[EventOut]
    next_cursor: str | None
