"""Tools over recording files: verify, decrypt, export (jsonl, asciicast,
raw), play, list. The format itself is in `core/recording*.py`.

Rules: a tampered recording is never exported or played; a truncated one is,
up to its last good frame, with a warning. Data keys are unwrapped with an
age identity file and never written anywhere.
"""

from __future__ import annotations

import base64
import codecs
import json
import mmap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyrage

from shimmfa.core.recording import iso_utc
from shimmfa.core.recording_reader import Recording, Status, Verdict, read, verify
from shimmfa.errors import RecordingError, WrongIdentityError
from shimmfa.shim.state.keys import read_age_identity


def load(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            if path.stat().st_size == 0:
                return b""
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                return bytes(mapped)
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read: {exc.strerror or exc}") from None


def verify_file(
    path: Path, trusted_key: bytes | None = None, identity: Path | None = None
) -> Verdict:
    data = load(path)
    dek = None
    if identity is not None:
        dek = unwrap_dek(verify(data, trusted_key=trusted_key).header, identity)
    return verify(data, trusted_key=trusted_key, dek=dek)


def unwrap_dek(header: dict[str, Any], identity: Path) -> bytes:
    key = read_age_identity(identity)
    try:
        wrapped = base64.b64decode(header["dek_age"], validate=True)
        dek = pyrage.decrypt(wrapped, [key])
    except Exception:
        raise WrongIdentityError(
            f"{identity} cannot open this recording's data key (it was encrypted to "
            f"{', '.join(header.get('recipients', [])) or 'other recipients'})"
        ) from None
    if len(dek) != 32:
        raise RecordingError("the recording's data key is malformed")
    return bytes(dek)


def open_recording(path: Path, identity: Path, trusted_key: bytes | None = None) -> Recording:
    """Decrypt `path`; refuse if it is tampered."""
    data = load(path)
    dek = unwrap_dek(verify(data, trusted_key=trusted_key).header, identity)
    recording = read(data, dek, trusted_key=trusted_key)
    if recording.verdict.status is Status.TAMPERED:
        raise RecordingError(f"{path}: {recording.verdict.message}; refusing to export it")
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


@dataclass(frozen=True, slots=True)
class Listing:
    path: Path
    session_id: str
    technician_id: str
    started_at: float
    duration: float | None
    bytes_in: int | None
    bytes_out: int | None
    reason: str
    status: str


def listing(path: Path, trusted_key: bytes | None) -> Listing:
    try:
        verdict = verify(load(path), trusted_key=trusted_key)
    except RecordingError as exc:
        return Listing(path, path.stem, "?", 0.0, None, None, None, "-", f"unreadable: {exc}")
    header, footer = verdict.header, verdict.footer
    started = float(header["started_at"])
    if footer is not None:
        return Listing(
            path,
            header["session_id"],
            header["technician_id"],
            started,
            float(footer["duration_seconds"]),
            int(footer["bytes_inbound"]),
            int(footer["bytes_outbound"]),
            str(footer["terminal_reason"]),
            verdict.status.value,
        )
    last = verdict.last_good_time
    return Listing(
        path,
        header["session_id"],
        header["technician_id"],
        started,
        (last - started) if last else None,
        None,
        None,
        "-",
        verdict.status.value,
    )


def play(recording: Recording, out: BinaryIO, speed: float, max_idle: float, sleep: Any) -> None:
    """Write the device's output to `out` with its original timing."""
    previous = 0.0
    for frame in recording.frames:
        if frame.direction != "out":
            continue
        delay = min(max(frame.monotonic - previous, 0.0), max_idle) / speed
        previous = frame.monotonic
        if delay > 0:
            sleep(delay)
        out.write(frame.payload)
        out.flush()
