"""The tamper detector: polls the sensors, latches the shim shut, beats.

Rules:
- A sensor's `poll()` returns a `TamperEvent` while it sees tampering, else
  None. A sensor that raises, or a polling round that does not finish within
  `sensor_timeout`, is `sensor_fault`: the shim fails closed (the seed did
  the opposite).
- `report_tamper` first stops traffic (`emergency_stop("tamper:<event>")`),
  then writes the latch durably, then emits the event. The latch survives
  restarts; only `admin_reset` (after the caller has authorised it) clears it,
  and a sensor still seeing tampering latches again at once.
- An event is reported when it starts, not on every poll while it lasts.
- `start()` returns only after the first polling round (or, if a sensor
  hangs, after `sensor_timeout` with a sensor_fault): a shim that starts
  tampered or with a broken sensor has called `emergency_stop` before its
  caller opens the gate, so no typed-ahead login gets in first.
- Heartbeats are emitted every `heartbeat_period` from the watchdog thread, so
  a stuck sensor does not silence them.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from shimmfa.shim.state.store import Latch
from shimmfa.shim.tamper.sensors import ModemSensor, TamperEvent, TamperSensor, sensor_name

log = logging.getLogger("shimmfa.tamper")

__all__ = ["HeartbeatRecord", "LatchStore", "TamperDetector"]


@dataclasses.dataclass
class HeartbeatRecord:
    shim_id: str
    monotonic: float
    epoch: float
    state: str
    boot_count: int


class LatchStore(Protocol):
    def latch(self) -> Latch | None: ...

    def set_latch(self, reason: str, at: float, detail: dict[str, Any]) -> None: ...

    def clear_latch(self, at: float, operator: str, reason: str) -> None: ...


class TamperDetector:
    """Polls sensors, latches on tampering, emits heartbeats (seed API)."""

    def __init__(
        self,
        shim_id: str,
        *,
        sensors: list[TamperSensor] | None = None,
        heartbeat_emit: Callable[[HeartbeatRecord], None],
        tamper_emit: Callable[[TamperEvent, dict[str, Any]], None],
        emergency_stop: Callable[[str], None],
        heartbeat_period: float = 60.0,
        sensor_poll_period: float = 0.02,
        sensor_timeout: float = 1.0,
        time_source: Callable[[], float] = time.time,
        monotonic_source: Callable[[], float] = time.monotonic,
        latch_store: LatchStore | None = None,
        boot_count: int = 0,
    ) -> None:
        self._shim_id = shim_id
        self._sensors = list(sensors or [])
        self._named = [(sensor, sensor_name(sensor)) for sensor in self._sensors]
        self._heartbeat_emit = heartbeat_emit
        self._tamper_emit = tamper_emit
        self._emergency_stop = emergency_stop
        self._heartbeat_period = heartbeat_period
        self._poll_period = sensor_poll_period
        self._sensor_timeout = sensor_timeout
        self._time = time_source
        self._monotonic = monotonic_source
        self._latch_store = latch_store
        self._boot_count = boot_count
        self._lock = threading.Lock()
        self._active: set[str] = set()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._round_started: float | None = None
        self._polling = ""
        self._stalled_reported = False
        self._first_round = threading.Event()
        latched = latch_store.latch() if latch_store is not None else None
        self._state = "tampered" if latched else "ok"
        self.latch_reason = latched.reason if latched else None

    @property
    def state(self) -> str:
        with self._lock:
            return self._state

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        self._first_round.clear()
        self._threads = [
            threading.Thread(target=self._poll_loop, name="tamper-poll", daemon=True),
            threading.Thread(target=self._watch_loop, name="tamper-watch", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        if not self._first_round.wait(self._sensor_timeout):
            self._report_stall()
        log.info("tamper detector started with %d sensor(s)", len(self._sensors))

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self._threads = []

    # -- reporting ------------------------------------------------------------------

    def report_tamper(self, event: TamperEvent, *, source: str = "unknown", **detail: Any) -> None:
        """Stop traffic, latch durably, emit. Every step runs even if an
        earlier one failed."""
        reason = f"tamper:{TamperEvent(event).value}"
        with self._lock:
            previous, self._state = self._state, "tampered"
            self.latch_reason = self.latch_reason or reason
        log.critical("TAMPER %s from %s (was %s)", reason, source, previous)
        try:
            self._emergency_stop(reason)
        except Exception as exc:
            log.critical("emergency stop failed: %s", exc)
        record = {
            "shim_id": self._shim_id,
            "source": source,
            "epoch": self._time(),
            "previous_state": previous,
            **detail,
        }
        if self._latch_store is not None:
            try:
                self._latch_store.set_latch(reason, record["epoch"], record)
            except Exception as exc:
                log.critical("could not write the tamper latch: %s", exc)
        try:
            self._tamper_emit(TamperEvent(event), record)
        except Exception as exc:
            log.error("tamper event emission failed: %s", exc)

    def admin_reset(self, *, authorised_by: str, reason: str) -> None:
        """Clear the latch. The caller has checked the operator's authority."""
        if self._latch_store is not None:
            self._latch_store.clear_latch(self._time(), authorised_by, reason)
        self.latched_cleared()
        log.warning("tamper latch reset by %s: %s", authorised_by, reason)

    def latched_cleared(self) -> None:
        """The latch was cleared (here or by `shimmfa tamper reset`)."""
        with self._lock:
            self._state = "ok"
            self.latch_reason = None
            self._active.clear()
            self._stalled_reported = False
        for sensor in self._sensors:
            if isinstance(sensor, ModemSensor):
                sensor.clear()

    # -- threads --------------------------------------------------------------------

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._round_started = self._monotonic()
            for sensor, name in self._named:
                self._poll_one(sensor, name)
            self._round_started = None
            self._first_round.set()
            self._stop.wait(self._poll_period)

    def _poll_one(self, sensor: TamperSensor, name: str) -> None:
        self._polling = name
        try:
            event = sensor.poll()
        except Exception as exc:
            self._once(
                f"fault:{name}",
                TamperEvent.SENSOR_FAULT,
                name,
                error=f"{type(exc).__name__}: {exc}",
            )
            return
        if event is not None:
            self._once(f"{name}:{event}", event, name)

    def _once(self, key: str, event: TamperEvent, source: str, **detail: Any) -> None:
        with self._lock:
            if key in self._active:
                return
            self._active.add(key)
        self.report_tamper(event, source=source, sensor=source, **detail)

    def _watch_loop(self) -> None:
        last_beat = self._monotonic() - self._heartbeat_period  # the first beat at start
        while not self._stop.wait(min(self._poll_period * 2, 0.05)):
            started = self._round_started
            now = self._monotonic()
            if started is not None and now - started > self._sensor_timeout:
                self._report_stall()
            if now - last_beat >= self._heartbeat_period:
                last_beat = now
                self._beat(now)

    def _report_stall(self) -> None:
        with self._lock:
            if self._stalled_reported:
                return
            self._stalled_reported = True
        self.report_tamper(
            TamperEvent.SENSOR_FAULT,
            source="watchdog",
            sensor=self._polling,
            error=f"sensor {self._polling} did not answer within {self._sensor_timeout} s",
        )

    def _beat(self, now: float) -> None:
        record = HeartbeatRecord(self._shim_id, now, self._time(), self.state, self._boot_count)
        try:
            self._heartbeat_emit(record)
        except Exception as exc:
            log.warning("heartbeat emission failed: %s", exc)
