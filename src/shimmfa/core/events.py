"""The event catalogue and its wire formats (JSON, RFC 5424, CEF).

Rules:
- One catalogue, `CATALOGUE`: every kind the shim reports, with its syslog
  severity, whether it is a security event (all but `heartbeat`: the outbox
  may drop heartbeats when full, never security events), its human title and
  the fields it must carry. `make_event` is the way to build an event.
- Pure: the event ID and the time are arguments (`new_event_id(at, suffix)`),
  nothing here reads a clock or a random source or does I/O.
- An `Event` is validated when it is made; renderers never raise for a valid
  event, whatever its field values hold (quotes, brackets, backslashes,
  newlines, NUL, lone surrogates, any script).
- RFC 5424: facility 13 (log audit), one SD element `shimmfa@32473` carrying
  event_id, kind, shim_id and the fields (`None` fields are left out), values
  escaped as §6.3.3 says; header fields are reduced to printable US-ASCII and
  cut to the RFC's lengths, `-` when empty. MSG is short printable ASCII.
- CEF (ArcSight CEF 0) travels as the MSG of an RFC 5424 line with NILVALUE
  structured data; our fields are extension keys `shimmfa_<name>`.
- Framing for TCP is RFC 6587 octet counting (`octet_frame`).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

__all__ = [
    "CATALOGUE",
    "FACILITY_AUDIT",
    "SD_ID",
    "Event",
    "EventKind",
    "FieldValue",
    "cef",
    "cef_message",
    "cef_severity",
    "from_json",
    "make_event",
    "marked_late",
    "new_event_id",
    "octet_frame",
    "rfc5424",
    "to_json",
]

FieldValue = str | int | float | bool | None

FACILITY_AUDIT = 13
SD_ID = "shimmfa@32473"
MAX_TEXT = 2048  # characters of one string field value; longer ones are cut
_ELLIPSIS = "…"
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_RESERVED = frozenset({"event_id", "kind", "shim_id"})
_EVENT_ID = re.compile(r"[\x21-\x7e]{1,128}")

# syslog severities
EMERGENCY, ALERT, CRITICAL, ERROR, WARNING, NOTICE, INFO, DEBUG = range(8)


@dataclass(frozen=True, slots=True)
class EventKind:
    name: str
    title: str
    severity: int
    security: bool
    required: tuple[str, ...] = ()
    summary: tuple[str, ...] = ()  # fields named in the human text


def _kinds(*kinds: EventKind) -> Mapping[str, EventKind]:
    return MappingProxyType({kind.name: kind for kind in kinds})


CATALOGUE: Mapping[str, EventKind] = _kinds(
    EventKind(
        "auth_success",
        "Technician authenticated",
        NOTICE,
        True,
        ("technician_id",),
        ("technician_id", "session_id"),
    ),
    EventKind(
        "auth_failure",
        "Authentication failed",
        WARNING,
        True,
        ("technician_id", "result", "detail"),
        ("technician_id", "result"),
    ),
    EventKind(
        "session_start",
        "Session started",
        NOTICE,
        True,
        ("session_id", "technician_id"),
        ("session_id", "technician_id"),
    ),
    EventKind(
        "session_end",
        "Session ended",
        NOTICE,
        True,
        ("session_id",),
        ("session_id", "terminal_reason"),
    ),
    EventKind("session_meta", "Session note", NOTICE, True, ("session_id",), ("session_id",)),
    EventKind("tamper", "TAMPER DETECTED", ALERT, True, (), ("event", "source")),
    EventKind("sensor_fault", "Tamper sensor fault", CRITICAL, True, (), ("sensor",)),
    EventKind("latch_reset", "Tamper latch reset", WARNING, True, (), ("authorised_by",)),
    EventKind("storage_exhausted", "Storage exhausted", CRITICAL, True, (), ("reason",)),
    EventKind("storage_alert", "Storage alert", WARNING, True, (), ("reason",)),
    EventKind("config_loaded", "Configuration loaded", NOTICE, True, (), ("config_sha256",)),
    EventKind("heartbeat", "Heartbeat", INFO, False, (), ("seq", "state")),
    EventKind("outbox_filling", "SIEM outbox filling", WARNING, True, (), ("rows", "max_rows")),
)


def _unicode(text: str) -> str:
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
        value = _unicode(value)
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

    def __post_init__(self) -> None:
        kind = CATALOGUE.get(self.kind) if isinstance(self.kind, str) else None
        if kind is None:
            raise ValueError(f"unknown event kind {self.kind!r}")
        if not isinstance(self.event_id, str) or not _EVENT_ID.fullmatch(self.event_id):
            raise ValueError("event_id must be 1-128 printable ASCII characters")
        if not isinstance(self.shim_id, str):
            raise ValueError("shim_id must be a string")
        object.__setattr__(self, "shim_id", _unicode(self.shim_id))
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


def make_event(
    kind: str,
    *,
    event_id: str,
    at: float,
    shim_id: str,
    fields: Mapping[str, FieldValue] | None = None,
    severity: int | None = None,
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


def new_event_id(at: float, suffix: bytes) -> str:
    """A unique, roughly time-ordered event ID: milliseconds since the epoch
    (12 hex digits) and `suffix` (10 random bytes), 32 hex characters."""
    if len(suffix) != 10:
        raise ValueError("the suffix must be 10 random bytes")
    millis = min(max(int(at * 1000), 0), (1 << 48) - 1)
    return f"{millis:012x}{suffix.hex()}"


# -- JSON ---------------------------------------------------------------------------------


def _iso(at: float) -> str | None:
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
    `allow_nan=False` accepts it)."""
    return {
        "event_id": event.event_id,
        "kind": event.kind,
        "at": event.at,
        "time": _iso(event.at),
        "shim_id": event.shim_id,
        "severity": event.severity,
        "security": event.security,
        "fields": dict(event.fields),
    }


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
        )
    except KeyError as exc:
        raise ValueError(f"event lacks {exc.args[0]!r}") from None


# -- RFC 5424 -----------------------------------------------------------------------------


def _text(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _header(text: str, limit: int) -> str:
    cleaned = "".join(ch if "!" <= ch <= "~" else "_" for ch in text)[:limit]
    return cleaned or "-"


def _sd_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _structured_data(event: Event) -> bytes:
    params = {"event_id": event.event_id, "kind": event.kind, "shim_id": event.shim_id}
    params.update({k: _text(v) for k, v in event.fields.items() if v is not None})
    body = "".join(f' {name}="{_sd_value(value)}"' for name, value in params.items())
    return f"[{SD_ID}{body}]".encode()


def _printable(text: str) -> str:
    out = []
    for ch in text:
        if " " <= ch <= "~":
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape", "backslashreplace").decode("ascii"))
    return "".join(out)


def _summary(event: Event, limit: int = 240) -> str:
    kind = CATALOGUE[event.kind]
    parts = [
        f"{name}={_text(event.fields[name])}"
        for name in kind.summary
        if event.fields.get(name) is not None
    ]
    text = _printable(kind.title + (": " + " ".join(parts) if parts else ""))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _line(event: Event, hostname: str, app: str, procid: str | int, sd: bytes, msg: bytes) -> bytes:
    pri = FACILITY_AUDIT * 8 + event.severity
    header = " ".join(
        (
            f"<{pri}>1",
            _iso(event.at) or "-",
            _header(hostname, 255),
            _header(app, 48),
            _header(str(procid), 128),
            _header(event.kind, 32),
        )
    )
    return header.encode("ascii") + b" " + sd + (b" " + msg if msg else b"")


def rfc5424(event: Event, hostname: str, app: str = "shimmfa", procid: str | int = "-") -> bytes:
    """One RFC 5424 syslog message (without framing)."""
    return _line(event, hostname, app, procid, _structured_data(event), _summary(event).encode())


# -- CEF ----------------------------------------------------------------------------------

_CEF_SEVERITY = (10, 9, 8, 7, 5, 3, 1, 0)  # by syslog severity 0 (emergency) .. 7 (debug)


def cef_severity(severity: int) -> int:
    """The CEF severity (0-10, 10 most severe) of a syslog severity (0-7)."""
    return _CEF_SEVERITY[severity]


def _cef_header(text: str) -> str:
    text = text.replace("\\", "\\\\").replace("|", "\\|")
    return text.replace("\r", " ").replace("\n", " ")


def _cef_value(text: str) -> str:
    text = text.replace("\\", "\\\\").replace("=", "\\=")
    return text.replace("\n", "\\n").replace("\r", "\\r")


def cef_message(event: Event, version: str) -> str:
    """The event as one CEF:0 line (no syslog header)."""
    kind = CATALOGUE[event.kind]
    header = "|".join(
        _cef_header(part)
        for part in (
            "CEF:0",
            "shimmfa",
            "shimmfa",
            _unicode(version),
            event.kind,
            kind.title,
            str(cef_severity(event.severity)),
        )
    )
    extension = {
        "rt": str(round(event.at * 1000)),
        "dvchost": event.shim_id,
        "externalId": event.event_id,
        "cat": "security" if event.security else "health",
    }
    extension.update({f"shimmfa_{k}": _text(v) for k, v in event.fields.items() if v is not None})
    return header + "|" + " ".join(f"{k}={_cef_value(v)}" for k, v in extension.items())


def cef(
    event: Event,
    hostname: str,
    app: str = "shimmfa",
    procid: str | int = "-",
    *,
    version: str = "0",
) -> bytes:
    """An RFC 5424 message whose MSG is the event in CEF."""
    return _line(event, hostname, app, procid, b"-", cef_message(event, version).encode())


# -- framing ------------------------------------------------------------------------------


def octet_frame(msg: bytes) -> bytes:
    """RFC 6587 octet-counting frame: the length, a space, the message."""
    return b"%d " % len(msg) + msg
