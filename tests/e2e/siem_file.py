"""What the daemon's `file` SIEM transport wrote, read back for end-to-end tests.

Rules:
- The daemon appends one JSON object per event and fsyncs it (transport/sinks.py
  `FileSink`); a line without its newline is still being written and is not
  read yet.
- Waiting is for a condition with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from waiting import wait_for


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every complete event line in `path` (none while it does not exist)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    complete = data[: data.rfind(b"\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def of_kind(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in events if event["kind"] == kind]


def wait_events(
    path: Path,
    predicate: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 10.0,
    what: str = "events",
) -> list[dict[str, Any]]:
    """The events in `path` once `predicate` holds for them."""

    def ready() -> tuple[list[dict[str, Any]]] | None:
        events = read_events(path)
        return (events,) if predicate(events) else None  # true even when empty

    def kinds() -> list[str]:
        return [event["kind"] for event in read_events(path)]

    return wait_for(ready, what, timeout, detail=kinds)[0]
