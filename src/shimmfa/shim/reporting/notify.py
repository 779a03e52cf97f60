"""A minimal systemd notify client (the sd_notify protocol, no dependency).

Rules:
- `notify(message)` sends one datagram to `$NOTIFY_SOCKET`: a path, or an
  abstract socket when it starts with `@`. Without the variable (not run by
  systemd, or `Type=` is not notify) it does nothing and returns False.
- It never raises for a socket problem: it logs and returns False, so a
  missing supervisor never stops the relay. A malformed message (empty, or
  not `NAME=value` lines) is a bug and raises ValueError.
- `watchdog_interval()` is how often to send `WATCHDOG=1`: half of
  `$WATCHDOG_USEC`, or None when the watchdog is off or meant for another
  process (`$WATCHDOG_PID`).
- The daemon sends `READY=1` once it runs with its gate closed (config, keys,
  state and sensors checked; the ports may still be missing: `STATUS=` says
  so), `WATCHDOG=1` from its event loop (so a hung loop is restarted),
  `STOPPING=1` on shutdown.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Mapping

log = logging.getLogger("shimmfa.notify")

READY = "READY=1"
WATCHDOG = "WATCHDOG=1"
STOPPING = "STOPPING=1"
_DECIMAL = re.compile(r"[0-9]{1,20}")


def _address(value: str) -> str | bytes | None:
    if value.startswith("@"):
        return b"\0" + os.fsencode(value[1:])
    if value.startswith("/"):
        return value
    return None  # e.g. vsock:..., which this client does not speak


def notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send `message` (e.g. `READY=1`) to systemd. True when it was sent."""
    lines = message.split("\n")
    if not message or not all("=" in line and not line.startswith("=") for line in lines):
        raise ValueError(f"not a notify message of NAME=value lines: {message!r}")
    env = os.environ if environ is None else environ
    value = env.get("NOTIFY_SOCKET", "")
    if not value:
        return False
    address = _address(value)
    if address is None:
        log.warning("NOTIFY_SOCKET=%r is not a path or @abstract name; not notifying", value)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode("utf-8"), address)
    except OSError as exc:
        log.warning("could not notify systemd at %s: %s", value, exc)
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between `WATCHDOG=1` messages (half the watchdog period), or
    None when systemd expects none from this process."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not _DECIMAL.fullmatch(usec) or int(usec) == 0:
        return None
    if pid and not (_DECIMAL.fullmatch(pid) and int(pid) == os.getpid()):
        return None
    return int(usec) / 2_000_000
