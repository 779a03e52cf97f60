"""Heartbeats: the payload, its canonical encoding, signing and verifying.

Rules:
- A payload has exactly the ten `FIELDS`, each checked on the way out
  (`heartbeat_payload`, `sign_heartbeat`) and on the way in
  (`verify_heartbeat`), so the shim never sends what a receiver refuses:
  IDs are 1-128 characters without spaces or control characters, `seq` and
  `boot_count` are 1 to 2**63-1, `uptime_s` is a finite number of seconds
  >= 0, `sent_at` is UTC `YYYY-MM-DDTHH:MM:SS.mmmZ`, `state` is "ok" or
  "tampered", `open_session` a session ID or null, digests 64 lowercase hex.
- `canonical(obj)`: JSON with sorted keys, separators `,` and `:`, UTF-8
  without `\\u` escapes for non-ASCII, no NaN or Infinity.
- Wire form: `{"payload": {...}, "sig": "<base64 of the 64-byte Ed25519
  signature over canonical(payload)>"}`, nothing else. The signed message
  always starts with `{`; a recording signature's message never does
  (core/recording.py), so one cannot stand for the other.
- The verifier re-encodes the payload it parsed: whitespace, key order and
  escapes on the wire do not matter, values do (`5` and `5.0` differ).
- `verify_heartbeat` checks shape and every field, then that the shim is
  known, then the signature, then that `(boot_count, seq)` is strictly
  greater than the last accepted one. Any input gives a `VerifiedHeartbeat`
  or a `HeartbeatError` whose `reason` is a `Rejection`; it changes nothing
  (`HeartbeatVerifier` records what it accepted).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shimmfa.core.session import valid_session_id
from shimmfa.errors import HeartbeatError

__all__ = [
    "FIELDS",
    "MAX_COUNTER",
    "MAX_WIRE_BYTES",
    "STATES",
    "HeartbeatVerifier",
    "Rejection",
    "VerifiedHeartbeat",
    "canonical",
    "checked_wire",
    "format_sent_at",
    "heartbeat_payload",
    "sign_heartbeat",
    "verify_heartbeat",
]

FIELDS = frozenset(
    {
        "shim_id",
        "hardware_id",
        "seq",
        "boot_count",
        "uptime_s",
        "sent_at",
        "state",
        "open_session",
        "config_sha256",
        "software_sha256",
    }
)
STATES = frozenset({"ok", "tampered"})
MAX_COUNTER = 2**63 - 1  # fits a signed 64-bit SQL integer
MAX_UPTIME = 1e10  # seconds, some 300 years
MAX_ID = 128
MAX_WIRE_BYTES = 16384
_SIGNATURE_BYTES = 64
_KEY_BYTES = 32
_DIGEST = re.compile(r"[0-9a-f]{64}")
_SENT_AT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_WIRE_KEYS = frozenset({"payload", "sig"})


class Rejection(StrEnum):
    """Why a heartbeat was refused (`HeartbeatError.reason`)."""

    MALFORMED = "malformed"
    UNKNOWN_SHIM = "unknown_shim"
    BAD_SIGNATURE = "bad_signature"
    NOT_NEWER = "not_newer"


@dataclass(frozen=True, slots=True)
class VerifiedHeartbeat:
    """A heartbeat whose signature and order were checked."""

    shim_id: str
    hardware_id: str
    seq: int
    boot_count: int
    uptime_s: float
    sent_at: str
    state: str
    open_session: str | None
    config_sha256: str
    software_sha256: str

    @property
    def position(self) -> tuple[int, int]:
        """`(boot_count, seq)`: what the next heartbeat must exceed."""
        return (self.boot_count, self.seq)

    @property
    def sent_at_epoch(self) -> float:
        return _sent_at_time(self.sent_at).timestamp()

    def as_payload(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in sorted(FIELDS)}


def _sent_at_time(text: str) -> dt.datetime:
    """`sent_at` (already matched by `_SENT_AT`) as an aware UTC time;
    ValueError for a date that does not exist. fromisoformat, not strptime:
    a tenth of the cost, on central's hot path."""
    return dt.datetime.fromisoformat(text)


def canonical(obj: Mapping[str, Any]) -> bytes:
    """The one byte encoding of a payload (or a wire form) that is signed."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def format_sent_at(epoch: float) -> str:
    """Epoch seconds -> `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, milliseconds)."""
    try:
        moment = dt.datetime.fromtimestamp(epoch, dt.UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise HeartbeatError(f"sent_at: {epoch!r} is not a usable time ({exc})") from None
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def heartbeat_payload(
    *,
    shim_id: str,
    hardware_id: str,
    seq: int,
    boot_count: int,
    uptime_s: float,
    sent_at: float,
    state: str,
    open_session: str | None,
    config_sha256: str,
    software_sha256: str,
) -> dict[str, object]:
    """A checked payload. `sent_at` is epoch seconds (the caller's clock);
    `uptime_s` is kept to the millisecond."""
    if not _is_number(uptime_s) or not 0 <= uptime_s <= MAX_UPTIME:
        raise _malformed(f"uptime_s must be a number of seconds from 0 to {MAX_UPTIME:g}")
    return _checked_payload(
        {
            "shim_id": shim_id,
            "hardware_id": hardware_id,
            "seq": seq,
            "boot_count": boot_count,
            "uptime_s": round(float(uptime_s), 3),
            "sent_at": format_sent_at(sent_at),
            "state": state,
            "open_session": open_session,
            "config_sha256": config_sha256,
            "software_sha256": software_sha256,
        }
    )


def sign_heartbeat(payload: Mapping[str, Any], sign: Callable[[bytes], bytes]) -> dict[str, Any]:
    """The wire form of `payload`, signed with `sign` (e.g. `ShimKeys.sign`)."""
    checked = _checked_payload(payload)
    signature = sign(canonical(checked))
    if not isinstance(signature, bytes) or len(signature) != _SIGNATURE_BYTES:
        raise HeartbeatError("the signing function did not return a 64-byte Ed25519 signature")
    return {"payload": checked, "sig": base64.b64encode(signature).decode("ascii")}


def verify_heartbeat(
    wire: bytes | str | Mapping[str, Any],
    keys: Mapping[str, bytes],
    last: Mapping[str, tuple[int, int]],
) -> VerifiedHeartbeat:
    """Check a heartbeat received from a shim.

    `keys`: shim ID -> raw 32-byte Ed25519 public key. `last`: shim ID ->
    `(boot_count, seq)` of the last heartbeat accepted from it."""
    checked = checked_wire(wire)
    payload, signature = checked["payload"], _signature(checked["sig"])
    shim_id = payload["shim_id"]
    raw_key = keys.get(shim_id)
    if raw_key is None:
        raise HeartbeatError(
            f"heartbeat from unknown shim {shim_id!r}: register its public key "
            "(`shimmfa keys show` on the shim) first",
            Rejection.UNKNOWN_SHIM,
        )
    if not isinstance(raw_key, bytes) or len(raw_key) != _KEY_BYTES:
        raise HeartbeatError(
            f"the key registered for shim {shim_id!r} is not a raw 32-byte Ed25519 public key",
            Rejection.UNKNOWN_SHIM,
        )
    try:
        Ed25519PublicKey.from_public_bytes(raw_key).verify(signature, canonical(payload))
    except InvalidSignature:
        raise HeartbeatError(
            f"heartbeat from shim {shim_id!r} has a bad signature: forged, altered, or the "
            "shim's key changed",
            Rejection.BAD_SIGNATURE,
        ) from None
    heartbeat = VerifiedHeartbeat(**payload)
    previous = last.get(shim_id)
    if previous is not None and heartbeat.position <= tuple(previous):
        what = "a replay" if heartbeat.position == tuple(previous) else "older"
        raise HeartbeatError(
            f"heartbeat from shim {shim_id!r} is {what}: (boot_count, seq) "
            f"{heartbeat.position} is not after the last accepted {tuple(previous)}",
            Rejection.NOT_NEWER,
        )
    return heartbeat


def checked_wire(wire: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    """The wire form with its shape and every field checked, not its
    signature: a copy with exactly "payload" and "sig". HeartbeatError
    (MALFORMED) otherwise."""
    document = _parse(wire)
    if not isinstance(document, Mapping) or set(document) != _WIRE_KEYS:
        raise _malformed('the heartbeat must be an object with exactly "payload" and "sig"')
    payload = _checked_payload(document["payload"])
    _signature(document["sig"])
    return {"payload": payload, "sig": document["sig"]}


class HeartbeatVerifier:
    """`verify_heartbeat` that remembers, in memory, the last accepted
    `(boot_count, seq)` of each shim. `keys` is consulted at every call."""

    def __init__(
        self, keys: Mapping[str, bytes], last: Mapping[str, tuple[int, int]] | None = None
    ) -> None:
        self._keys = keys
        self._last: dict[str, tuple[int, int]] = dict(last or {})

    @property
    def last(self) -> dict[str, tuple[int, int]]:
        return dict(self._last)

    def verify(self, wire: bytes | str | Mapping[str, Any]) -> VerifiedHeartbeat:
        heartbeat = verify_heartbeat(wire, self._keys, self._last)
        self._last[heartbeat.shim_id] = heartbeat.position
        return heartbeat


# -- checks -----------------------------------------------------------------------------------


def _malformed(message: str) -> HeartbeatError:
    return HeartbeatError(f"malformed heartbeat: {message}", Rejection.MALFORMED)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _malformed(f"key {key!r} appears twice")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise _malformed(f"{name} is not a JSON number")


def _parse(wire: bytes | str | Mapping[str, Any]) -> Any:
    if isinstance(wire, Mapping):
        return wire
    if isinstance(wire, str):
        if len(wire) > MAX_WIRE_BYTES:
            raise _malformed(f"longer than {MAX_WIRE_BYTES} characters")
        text = wire
    elif isinstance(wire, bytes | bytearray | memoryview):
        if len(wire) > MAX_WIRE_BYTES:
            raise _malformed(f"longer than {MAX_WIRE_BYTES} bytes")
        try:
            text = bytes(wire).decode("utf-8")
        except UnicodeDecodeError:
            raise _malformed("not UTF-8") from None
    else:
        raise _malformed(f"expected bytes, str or a mapping, not {type(wire).__name__}")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except HeartbeatError:
        raise
    except (ValueError, RecursionError):  # RecursionError: deeply nested, unsigned JSON
        raise _malformed("not valid JSON") from None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: object, name: str) -> str:
    """An ID: 1-128 characters, no spaces or control characters, encodable."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID:
        raise _malformed(f"{name} must be a string of 1 to {MAX_ID} characters")
    for ch in value:
        code = ord(ch)
        if ch.isspace() or code < 0x20 or code == 0x7F or 0xD800 <= code <= 0xDFFF:
            raise _malformed(f"{name} contains a space, control or surrogate character")
    return value


def _counter(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNTER:
        raise _malformed(f"{name} must be an integer from 1 to 2**63-1")
    return value


def _checked_payload(value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _malformed("payload must be an object")
    if not all(isinstance(key, str) for key in value):
        raise _malformed("payload keys must be strings")
    names = set(value)
    if names != FIELDS:
        missing, extra = sorted(FIELDS - names), sorted(names - FIELDS)
        raise _malformed(f"payload fields missing {missing}, unexpected {extra}")
    uptime = value["uptime_s"]
    # Range first: NaN fails it, and it never converts a huge int to float.
    if not _is_number(uptime) or not 0 <= uptime <= MAX_UPTIME:
        raise _malformed(f"uptime_s must be a number of seconds from 0 to {MAX_UPTIME:g}")
    sent_at = value["sent_at"]
    if not isinstance(sent_at, str) or not _SENT_AT.fullmatch(sent_at):
        raise _malformed("sent_at must be UTC time YYYY-MM-DDTHH:MM:SS.mmmZ")
    try:
        _sent_at_time(sent_at)
    except ValueError:
        raise _malformed(f"sent_at {sent_at!r} is not a real date and time") from None
    if not isinstance(value["state"], str) or value["state"] not in STATES:
        raise _malformed(f"state must be one of {sorted(STATES)}")
    session = value["open_session"]
    if session is not None and not (isinstance(session, str) and valid_session_id(session)):
        raise _malformed("open_session must be null or a session ID")
    for name in ("config_sha256", "software_sha256"):
        digest = value[name]
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise _malformed(f"{name} must be 64 lowercase hexadecimal digits")
    return {
        "shim_id": _text(value["shim_id"], "shim_id"),
        "hardware_id": _text(value["hardware_id"], "hardware_id"),
        "seq": _counter(value["seq"], "seq"),
        "boot_count": _counter(value["boot_count"], "boot_count"),
        "uptime_s": uptime,
        "sent_at": sent_at,
        "state": value["state"],
        "open_session": session,
        "config_sha256": value["config_sha256"],
        "software_sha256": value["software_sha256"],
    }


def _signature(value: object) -> bytes:
    if not isinstance(value, str) or len(value) > 4 * MAX_ID:
        raise _malformed("sig must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed("sig is not valid base64") from None
    # Only the canonical spelling: any change to the text is a change.
    if len(raw) != _SIGNATURE_BYTES or base64.b64encode(raw).decode("ascii") != value:
        raise _malformed("sig must be the base64 of a 64-byte Ed25519 signature")
    return raw
