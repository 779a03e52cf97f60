"""Events on the wire to a SIEM: RFC 5424 syslog, CEF, and TCP framing.

Rules:
- Pure, and total: for any valid `Event` (see `events`) the renderers return
  bytes and never raise.
- RFC 5424: facility 13 (log audit), one SD element `shimmfa@32473` carrying
  event_id, kind, shim_id and the fields (`None` fields are left out), values
  escaped as §6.3.3 says; header fields are reduced to printable US-ASCII and
  cut to the RFC's lengths, `-` when empty. MSG is short printable ASCII.
- CEF (ArcSight CEF 0) travels as the MSG of an RFC 5424 line with NILVALUE
  structured data; our fields are extension keys `shimmfa_<name>`.
- A heartbeat event's parameters are its signed payload's nine fields other
  than shim_id (the event's own), flat, and `sig`; `open_session` is left
  out while null. `heartbeat_from_params` turns them back into the wire form,
  which then verifies with the shim's key like any other (README).
- Framing for TCP is RFC 6587 octet counting (`octet_frame`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shimmfa.core.events import CATALOGUE, Event, FieldValue, clean_text, iso_time
from shimmfa.core.heartbeat import FIELDS, Rejection, checked_wire
from shimmfa.errors import HeartbeatError

__all__ = [
    "FACILITY_AUDIT",
    "SD_ID",
    "cef",
    "cef_message",
    "cef_severity",
    "heartbeat_from_params",
    "octet_frame",
    "rfc5424",
]

FACILITY_AUDIT = 13
SD_ID = "shimmfa@32473"


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


def _fields(event: Event) -> dict[str, FieldValue]:
    """The event's flat parameters: its fields, and a heartbeat's payload and
    signature (the payload wins where a summary field repeats it)."""
    fields: dict[str, FieldValue] = dict(event.fields)
    if event.heartbeat is not None:
        payload = event.heartbeat["payload"]
        fields.update({k: v for k, v in payload.items() if k != "shim_id"})
        fields["sig"] = event.heartbeat["sig"]
    return fields


_INTEGERS = frozenset({"seq", "boot_count"})


def heartbeat_from_params(params: Mapping[str, str]) -> dict[str, Any]:
    """The wire form of a heartbeat from the SD-PARAMs of its syslog line
    (already unescaped): the payload's fields as they were rendered, typed
    back, and `sig`. HeartbeatError (MALFORMED) when they do not make one."""
    try:
        payload: dict[str, Any] = {name: params[name] for name in FIELDS if name != "open_session"}
        payload["open_session"] = params.get("open_session")
        for name in _INTEGERS:
            payload[name] = int(params[name])
        payload["uptime_s"] = float(params["uptime_s"])
        return checked_wire({"payload": payload, "sig": params["sig"]})
    except (KeyError, ValueError) as exc:
        raise HeartbeatError(
            f"malformed heartbeat: its syslog parameters lack or garble {exc}", Rejection.MALFORMED
        ) from None


def _structured_data(event: Event) -> bytes:
    params = {"event_id": event.event_id, "kind": event.kind, "shim_id": event.shim_id}
    params.update({k: _text(v) for k, v in _fields(event).items() if v is not None})
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
            iso_time(event.at) or "-",
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
            clean_text(version),
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
    extension.update({f"shimmfa_{k}": _text(v) for k, v in _fields(event).items() if v is not None})
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
