"""Tools over recording files: verify, decrypt, export (jsonl, asciicast,
raw: `core.recording_export`), play, list. The format itself is in
`core/recording*.py`.

Rules: a tampered recording is never exported or played; a truncated one is,
up to its last good frame, with a warning. Data keys are unwrapped with an
age identity file and never written anywhere.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from shimmfa.core.recording_export import (
    asciicast_lines,
    decrypt,
    jsonl_lines,
    open_dek,
    raw_bytes,
)
from shimmfa.core.recording_reader import Recording, Verdict, verify
from shimmfa.errors import RecordingError, WrongIdentityError
from shimmfa.shim.state.keys import read_age_identity

__all__ = [
    "Listing",
    "asciicast_lines",
    "jsonl_lines",
    "listing",
    "load",
    "open_recording",
    "play",
    "raw_bytes",
    "unwrap_dek",
    "verify_file",
]


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
    """The recording's data key, opened with the age identity file `identity`."""
    return open_dek(header, [read_age_identity(identity)], str(identity))


def open_recording(path: Path, identity: Path, trusted_key: bytes | None = None) -> Recording:
    """Decrypt `path`; refuse if it is tampered."""
    identities = [read_age_identity(identity)]
    try:
        return decrypt(load(path), identities, trusted_key, who=str(identity))
    except RecordingError as exc:
        if isinstance(exc, WrongIdentityError):
            raise
        raise RecordingError(f"{path}: {exc}") from None


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
