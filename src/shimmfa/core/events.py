"""Events and their JSON form (`syslog` renders them for the wire); the
catalogue of their kinds is `core/event_kinds.py`, re-exported here.

Rules:
- `make_event` is the way to build an event: its kind must be in
  `CATALOGUE` and it must carry that kind's required fields.
- Pure: the event ID and the time are arguments (`new_event_id(at, suffix)`),
  nothing here reads a clock or a random source or does I/O.
- An `Event` is validated when it is made, so that the renderers (here and
  in `syslog`) never raise for one, whatever its field values hold (quotes,
  brackets, backslashes, newlines, NUL, lone surrogates, any script).
- A heartbeat event carries the signed heartbeat in its wire form
  (`heartbeat`: `{"payload", "sig"}`, core/heartbeat.py), unchanged end to
  end: in JSON it is the event's `heartbeat` member, which anyone holding
  the shim's public key verifies as it stands. Its `fields` only summarise
  it (seq, boot_count, state). The payload's shim_id is the event's.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from shimmfa.core.event_kinds import CATALOGUE, EventKind
from shimmfa.core.heartbeat import checked_wire
from shimmfa.errors import HeartbeatError

__all__ = [
    "CATALOGUE",
    "Event",
    "EventKind",
    "FieldValue",
    "clean_text",
    "from_json",
    "make_event",
    "marked_late",
    "iso_time",
    "new_event_id",
    "shown_id",
    "to_json",
]

FieldValue = str | int | float | bool | None

MAX_TEXT = 2048  # characters of one string field value; longer ones are cut
_ELLIPSIS = "…"
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_RESERVED = frozenset({"event_id", "kind", "shim_id"})
_EVENT_ID = re.compile(r"[\x21-\x7e]{1,128}")


def clean_text(text: str) -> str:
    """`text` with lone surrogates (not UTF-8, not storable) as `\\udcxx`."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _check_value(name: str, value: object) -> FieldValue:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"field {name!r}: {value!r} is not a finite number")
        return value
    if isinstance(value, str):
        value = clean_text(value)
        return value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 1] + _ELLIPSIS
    raise ValueError(f"field {name!r}: a {type(value).__name__} is not a str/int/float/bool/None")


@dataclass(frozen=True, slots=True)
class Event:
    """One thing the SIEM must hear about. Validated when made."""

    event_id: str
    kind: str
    at: float
    shim_id: str
    severity: int
    fields: Mapping[str, FieldValue] = field(hash=False)
    security: bool
    heartbeat: Mapping[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        kind = CATALOGUE.get(self.kind) if isinstance(self.kind, str) else None
        if kind is None:
            raise ValueError(f"unknown event kind {self.kind!r}")
        if not isinstance(self.event_id, str) or not _EVENT_ID.fullmatch(self.event_id):
            raise ValueError("event_id must be 1-128 printable ASCII characters")
        if not isinstance(self.shim_id, str):
            raise ValueError("shim_id must be a string")
        object.__setattr__(self, "shim_id", clean_text(self.shim_id))
        if isinstance(self.at, bool) or not isinstance(self.at, int | float):
            raise ValueError(f"event time {self.at!r} is not a number")
        try:
            at = float(self.at)
        except OverflowError:
            at = math.inf
        if not math.isfinite(at):
            raise ValueError(f"event time {self.at!r} is not a finite epoch")
        if isinstance(self.severity, bool) or self.severity not in range(8):
            raise ValueError(f"severity {self.severity!r} is not a syslog severity 0-7")
        if self.security is not kind.security:
            raise ValueError(f"{self.kind} events have security={kind.security}")
        if not isinstance(self.fields, Mapping):
            raise ValueError("event fields must be a mapping")
        checked: dict[str, FieldValue] = {}
        for name, value in self.fields.items():
            if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
                raise ValueError(f"field name {name!r} is not [a-z][a-z0-9_]*, 1-32 characters")
            if name in _RESERVED:
                raise ValueError(f"field name {name!r} is reserved")
            checked[name] = _check_value(name, value)
        missing = [name for name in kind.required if name not in checked]
        if missing:
            raise ValueError(f"{self.kind} events need the fields {', '.join(missing)}")
        object.__setattr__(self, "at", at)
        object.__setattr__(self, "fields", MappingProxyType(dict(sorted(checked.items()))))
        if self.heartbeat is not None:
            object.__setattr__(self, "heartbeat", _heartbeat_of(self))


def _heartbeat_of(event: Event) -> Mapping[str, Any]:
    if event.kind != "heartbeat":
        raise ValueError(f"a {event.kind} event cannot carry a heartbeat")
    try:
        wire = checked_wire(event.heartbeat or {})
    except HeartbeatError as exc:
        raise ValueError(str(exc)) from None
    if wire["payload"]["shim_id"] != event.shim_id:
        raise ValueError("the heartbeat's shim_id is not the event's")
    return MappingProxyType({"payload": MappingProxyType(wire["payload"]), "sig": wire["sig"]})


def make_event(
    kind: str,
    *,
    event_id: str,
    at: float,
    shim_id: str,
    fields: Mapping[str, FieldValue] | None = None,
    severity: int | None = None,
    heartbeat: Mapping[str, Any] | None = None,
) -> Event:
    """An event of `kind` with the catalogue's severity (unless given) and
    security flag. Raises ValueError for an unknown kind or bad fields."""
    entry = CATALOGUE.get(kind)
    if entry is None:
        raise ValueError(f"unknown event kind {kind!r}")
    return Event(
        event_id=event_id,
        kind=kind,
        at=at,
        shim_id=shim_id,
        severity=entry.severity if severity is None else severity,
        fields=dict(fields or {}),
        security=entry.security,
        heartbeat=heartbeat,
    )


LATE_AFTER = 120.0  # seconds between an event and its delivery that make it "late"


def marked_late(event: Event, now: float, after: float = LATE_AFTER) -> Event:
    """`event` as delivered at `now`: when it waited more than `after`
    seconds (an outage; DESIGN §7 "delivered later, marked late"), with the
    fields `late` and `delivered_after_s`. Its ID and content are unchanged,
    so receivers still deduplicate and heartbeat signatures still verify."""
    waited = now - event.at
    if waited <= after or "late" in event.fields:
        return event
    fields = {**event.fields, "late": True, "delivered_after_s": round(waited, 3)}
    return replace(event, fields=fields)


def shown_id(technician_id: str) -> str:
    """A technician ID as logs and events may show it: one that is only
    digits looks like a TOTP code typed into the wrong field, and is
    redacted (its length kept, for the audit)."""
    if technician_id.isascii() and technician_id.isdigit():
        return f"<redacted: {len(technician_id)} digits>"
    return technician_id


def new_event_id(at: float, suffix: bytes) -> str:
    """A unique, roughly time-ordered event ID: milliseconds since the epoch
    (12 hex digits) and `suffix` (10 random bytes), 32 hex characters."""
    if len(suffix) != 10:
        raise ValueError("the suffix must be 10 random bytes")
    millis = min(max(int(at * 1000), 0), (1 << 48) - 1)
    return f"{millis:012x}{suffix.hex()}"


# -- JSON ---------------------------------------------------------------------------------


def iso_time(at: float) -> str | None:
    try:
        moment = dt.datetime.fromtimestamp(at, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}."
        f"{moment.microsecond:06d}Z"
    )


def to_json(event: Event) -> dict[str, Any]:
    """The event as a JSON-ready dict (keys stable; `json.dumps` with
    `allow_nan=False` accepts it); a heartbeat's wire form as `heartbeat`."""
    data: dict[str, Any] = {
        "event_id": event.event_id,
        "kind": event.kind,
        "at": event.at,
        "time": iso_time(event.at),
        "shim_id": event.shim_id,
        "severity": event.severity,
        "security": event.security,
        "fields": dict(event.fields),
    }
    if event.heartbeat is not None:
        data["heartbeat"] = {
            "payload": dict(event.heartbeat["payload"]),
            "sig": event.heartbeat["sig"],
        }
    return data


def from_json(data: object) -> Event:
    """The inverse of `to_json`; ValueError for anything it did not make."""
    if not isinstance(data, Mapping):
        raise ValueError("an event must be a JSON object")
    try:
        fields = data["fields"]
        if not isinstance(fields, Mapping):
            raise ValueError("event fields must be a JSON object")
        return Event(
            event_id=data["event_id"],
            kind=data["kind"],
            at=data["at"],
            shim_id=data["shim_id"],
            severity=data["severity"],
            fields=fields,
            security=data["security"],
            heartbeat=data.get("heartbeat"),
        )
    except KeyError as exc:
        raise ValueError(f"event lacks {exc.args[0]!r}") from None
