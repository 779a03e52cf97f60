"""Tamper sensors: each answers `poll()` with a `TamperEvent` while it sees
tampering, else None.

Rules:
- A sensor that raises is a `sensor_fault` (the detector fails closed).
- A sensor is known by its `name`; one written to the seed's protocol (only
  `poll()`) is known by its class name (`sensor_name`).
- A configured sensor that cannot be set up becomes a `BrokenSensor`, which
  faults at its first poll: it is never skipped.
"""

from __future__ import annotations

import threading
from enum import StrEnum
from pathlib import Path
from typing import Protocol

__all__ = [
    "BrokenSensor",
    "FileSensor",
    "GpioSensor",
    "ModemSensor",
    "NullSensor",
    "TamperEvent",
    "TamperSensor",
    "sensor_name",
]


class TamperEvent(StrEnum):
    CASE_OPENED = "case_opened"
    MAGNETIC_ANOMALY = "magnetic_anomaly"
    UNEXPECTED_MOTION = "unexpected_motion"
    BOOT_INTEGRITY_VIOLATED = "boot_integrity_violated"
    HEARTBEAT_MISSED = "heartbeat_missed"
    CABLE_PULLED = "cable_pulled"
    SENSOR_FAULT = "sensor_fault"


class TamperSensor(Protocol):
    """The seed's protocol: `poll()` only. A `name` attribute is optional."""

    def poll(self) -> TamperEvent | None: ...


def sensor_name(sensor: object) -> str:
    """The sensor's `name`, or its class name when it has none (the seed's
    sensors have only `poll()`)."""
    name = getattr(sensor, "name", None)
    return name if isinstance(name, str) and name else type(sensor).__name__


class NullSensor:
    """Never fires (development)."""

    name = "null"

    def poll(self) -> TamperEvent | None:
        return None


class FileSensor:
    """A file whose content equals `triggered` while tampering is seen: a
    sysfs GPIO value file on real hardware, a plain file in tests. A missing
    or unreadable file raises (-> sensor_fault)."""

    def __init__(
        self,
        path: str | Path,
        triggered: str = "1",
        event: TamperEvent = TamperEvent.CASE_OPENED,
        name: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.triggered = triggered.strip()
        self.event = event
        self.name = name or f"file:{self.path}"

    def poll(self) -> TamperEvent | None:
        with self.path.open("rb") as handle:
            value = handle.read(64).decode("ascii", "replace").strip()
        return self.event if value == self.triggered else None


class GpioSensor:
    """A GPIO line read through libgpiod (the `gpiod` package, v2 API)."""

    def __init__(
        self,
        chip: str,
        line: int,
        active_value: int = 1,
        event: TamperEvent = TamperEvent.CASE_OPENED,
        name: str | None = None,
    ) -> None:
        import gpiod
        from gpiod.line import Direction as LineDirection
        from gpiod.line import Value

        self._active = Value.ACTIVE if active_value else Value.INACTIVE
        self._line = line
        self.event = event
        self.name = name or f"gpio:{chip}:{line}"
        self._request = gpiod.request_lines(
            chip,
            consumer="shimmfa-tamper",
            config={line: gpiod.LineSettings(direction=LineDirection.INPUT)},
        )

    def poll(self) -> TamperEvent | None:
        return self.event if self._request.get_value(self._line) == self._active else None


class ModemSensor:
    """Device-side DCD/DSR dropping (the cable to the device was pulled). The
    relay, which owns the port, pushes the line states with `update()`."""

    def __init__(self, event: TamperEvent = TamperEvent.CABLE_PULLED) -> None:
        self.event = event
        self.name = "modem"
        self._lock = threading.Lock()
        self._last: tuple[bool, bool] | None = None
        self._dropped = False

    def update(self, lines: tuple[bool, bool] | None) -> None:
        with self._lock:
            if lines is not None and self._last is not None:
                if (self._last[0] and not lines[0]) or (self._last[1] and not lines[1]):
                    self._dropped = True
            self._last = lines

    def poll(self) -> TamperEvent | None:
        with self._lock:
            return self.event if self._dropped else None

    def clear(self) -> None:
        with self._lock:
            self._dropped = False


class BrokenSensor:
    """A configured sensor that could not be set up: faults when polled."""

    def __init__(self, name: str, error: str) -> None:
        self.name = name
        self._error = error

    def poll(self) -> TamperEvent | None:
        raise RuntimeError(self._error)
