"""Session identifiers and the reasons a session ends.

A session ID is the UTC start time with milliseconds plus a random suffix,
e.g. `20261123T105459.123Z-3f9a1c2b5d7e`: sortable, unique, and safe as a
file name. The caller passes the time and the random bytes.
"""

from __future__ import annotations

import datetime as dt
import re

__all__ = [
    "DEVICE_HANGUP",
    "IDLE_TIMEOUT",
    "INTERNAL_ERROR",
    "MAX_DURATION",
    "SHUTDOWN",
    "TECHNICIAN_HANGUP",
    "new_session_id",
    "valid_session_id",
]

TECHNICIAN_HANGUP = "technician_hangup"
DEVICE_HANGUP = "device_hangup"
IDLE_TIMEOUT = "idle_timeout"
MAX_DURATION = "max_duration"
SHUTDOWN = "shutdown"
INTERNAL_ERROR = "internal_error"

# ASCII digits only (`\d` also matches other scripts' digits) and fullmatch
# (`$` also matches before a trailing newline): the ID names a file.
_PATTERN = re.compile(r"[0-9]{8}T[0-9]{6}\.[0-9]{3}Z-[0-9a-f]{12}")


def new_session_id(wall_time: float, suffix: bytes) -> str:
    """Session ID for a session starting at `wall_time` (epoch seconds);
    `suffix` is 6 random bytes."""
    if len(suffix) != 6:
        raise ValueError("the suffix must be 6 random bytes")
    moment = dt.datetime.fromtimestamp(wall_time, dt.UTC)
    return f"{moment:%Y%m%dT%H%M%S}.{moment.microsecond // 1000:03d}Z-{suffix.hex()}"


def valid_session_id(text: str) -> bool:
    return _PATTERN.fullmatch(text) is not None
