"""A recording decrypted and exported: its data key opened with age
identities, the frames read, and the three export forms (the seed's JSON
lines, asciicast v2 for asciinema-player, raw bytes). Pure: bytes in,
lines out; the shim's file tools and the central service's playback both
use it.

Rules: a tampered recording is refused (`decrypt` raises); a truncated one
is returned up to its last good frame. The data key is never kept.
"""

from __future__ import annotations

import base64
import codecs
import json
from collections.abc import Iterator, Sequence
from typing import Any

import pyrage
from pyrage import x25519

from shimmfa.core.recording import iso_utc
from shimmfa.core.recording_reader import Recording, Status, read, verify
from shimmfa.errors import RecordingError, WrongIdentityError

__all__ = ["asciicast_lines", "decrypt", "jsonl_lines", "open_dek", "raw_bytes"]


def open_dek(header: dict[str, Any], identities: Sequence[x25519.Identity], who: str) -> bytes:
    """The recording's 32-byte data key, opened with one of `identities`
    (`who` names them in the error)."""
    try:
        wrapped = base64.b64decode(header["dek_age"], validate=True)
        dek = pyrage.decrypt(wrapped, list(identities))
    except Exception:
        raise WrongIdentityError(
            f"{who} cannot open this recording's data key (it was encrypted to "
            f"{', '.join(header.get('recipients', [])) or 'other recipients'})"
        ) from None
    if len(dek) != 32:
        raise RecordingError("the recording's data key is malformed")
    return bytes(dek)


def decrypt(
    data: bytes,
    identities: Sequence[x25519.Identity],
    trusted_key: bytes | None = None,
    *,
    who: str = "this identity",
) -> Recording:
    """The recording in `data`, decrypted; RecordingError if it is tampered."""
    dek = open_dek(verify(data, trusted_key=trusted_key).header, identities, who)
    recording = read(data, dek, trusted_key=trusted_key)
    if recording.verdict.status is Status.TAMPERED:
        raise RecordingError(f"{recording.verdict.message}; refusing to export it")
    return recording


def jsonl_lines(recording: Recording) -> Iterator[str]:
    """The seed prototype's line layout."""
    header = recording.verdict.header
    yield json.dumps(
        {
            "type": "session_header",
            "session_id": header["session_id"],
            "technician_id": header["technician_id"],
            "shim_id": header["shim_id"],
            "started_at_epoch": header["started_at"],
            "started_at_iso": iso_utc(header["started_at"]),
            "version": "1.0",
        }
    )
    for frame in recording.frames:
        if frame.direction == "meta":
            try:
                event = json.loads(frame.payload)
            except ValueError:
                event = {"type": "meta", "epoch": frame.wall, "raw_hex": frame.payload.hex()}
            yield json.dumps(event if isinstance(event, dict) else {"type": "meta", "value": event})
            continue
        yield json.dumps(
            {
                "type": "traffic",
                "direction": frame.direction.value,
                "len": len(frame.payload),
                "monotonic": frame.monotonic,
                "epoch": frame.wall,
                "data_hex": frame.payload.hex(),
            }
        )
    footer = recording.verdict.footer
    if footer is not None:
        yield json.dumps(
            {
                "type": "session_footer",
                "ended_at_epoch": footer["ended_at"],
                "ended_at_iso": iso_utc(footer["ended_at"]),
                "duration_seconds": footer["duration_seconds"],
                "bytes_inbound": footer["bytes_inbound"],
                "bytes_outbound": footer["bytes_outbound"],
                "terminal_reason": footer["terminal_reason"],
            }
        )


def asciicast_lines(recording: Recording, width: int = 80, height: int = 24) -> Iterator[str]:
    """asciicast v2: device output as "o" events, technician input as "i"."""
    header = recording.verdict.header
    yield json.dumps(
        {
            "version": 2,
            "width": width,
            "height": height,
            "timestamp": int(header["started_at"]),
            "title": f"shimmfa session {header['session_id']} ({header['technician_id']})",
            "env": {"TERM": "xterm-256color", "SHELL": "/bin/sh"},
        }
    )
    last = 0.0
    decoders = {
        "out": codecs.getincrementaldecoder("utf-8")("replace"),
        "in": codecs.getincrementaldecoder("utf-8")("replace"),
    }
    for frame in recording.frames:
        if frame.direction == "meta":
            continue
        text = decoders[frame.direction.value].decode(frame.payload)
        if text:
            kind = "o" if frame.direction == "out" else "i"
            yield json.dumps([round(frame.monotonic, 6), kind, text])
        last = frame.monotonic
    for direction, decoder in decoders.items():
        tail = decoder.decode(b"", final=True)
        if tail:
            yield json.dumps([round(last, 6), "o" if direction == "out" else "i", tail])


def raw_bytes(recording: Recording, direction: str) -> Iterator[bytes]:
    for frame in recording.frames:
        if frame.direction != "meta" and direction in ("both", frame.direction.value):
            yield frame.payload
