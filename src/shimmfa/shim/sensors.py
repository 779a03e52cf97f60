"""Builds the configured tamper sensors and wires the detector to the daemon.

Rules:
- A sensor that cannot be set up (no GPIO chip, bad line) is not skipped: it
  becomes a sensor that faults at its first poll, so the shim latches closed.
- Tamper callbacks come from the detector's threads; the relay is only ever
  touched on the loop thread (`call_soon_threadsafe`).
- The latch is watched on the loop: when `shimmfa tamper reset` clears it in
  the state DB, the gate opens again without a restart.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from shimmfa.shim.alerts import Alerts
from shimmfa.shim.heartbeats import HeartbeatSource
from shimmfa.shim.integrity import BootIntegritySensor
from shimmfa.shim.keys import ShimKeys
from shimmfa.shim.recorder_process import RecorderProcess
from shimmfa.shim.relay import Relay
from shimmfa.shim.settings import (
    BootIntegritySensorEntry,
    FileSensorEntry,
    GpioSensorEntry,
    ModemSensorEntry,
    Settings,
)
from shimmfa.shim.state import StateStore
from shimmfa.shim.tamper import (
    FileSensor,
    GpioSensor,
    HeartbeatRecord,
    ModemSensor,
    TamperDetector,
    TamperEvent,
    TamperSensor,
)

log = logging.getLogger("shimmfa.tamper")

LATCH_POLL = 0.5


class BrokenSensor:
    """A configured sensor that could not be set up: faults when polled."""

    def __init__(self, name: str, error: str) -> None:
        self.name = name
        self._error = error

    def poll(self) -> TamperEvent | None:
        raise RuntimeError(self._error)


def build_sensors(
    settings: Settings, keys: ShimKeys, config_path: Path
) -> tuple[list[TamperSensor], ModemSensor | None]:
    sensors: list[TamperSensor] = []
    modem: ModemSensor | None = None
    for entry in settings.tamper.sensors:
        if isinstance(entry, FileSensorEntry):
            sensors.append(FileSensor(entry.path, entry.triggered, TamperEvent(entry.event)))
        elif isinstance(entry, GpioSensorEntry):
            try:
                sensors.append(
                    GpioSensor(entry.chip, entry.line, entry.active_value, TamperEvent(entry.event))
                )
            except Exception as exc:
                name = f"gpio:{entry.chip}:{entry.line}"
                log.critical("tamper sensor %s cannot be set up: %s", name, exc)
                sensors.append(BrokenSensor(name, f"{type(exc).__name__}: {exc}"))
        elif isinstance(entry, ModemSensorEntry):
            modem = ModemSensor(TamperEvent(entry.event))
            sensors.append(modem)
        elif isinstance(entry, BootIntegritySensorEntry):
            sensors.append(
                BootIntegritySensor(settings.storage_root, keys.public_key_raw, config_path)
            )
    return sensors, modem


def lock_notice(reason: str) -> str:
    return (
        f"Locked: {reason}. Service access is disabled until an administrator "
        "inspects the shim and resets it."
    )


def _scalars(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if isinstance(v, str | int | float | bool) or v is None}


def wire_detector(
    loop: asyncio.AbstractEventLoop,
    relay: Relay,
    settings: Settings,
    store: StateStore,
    alerts: Alerts,
    heartbeats: HeartbeatSource,
    recorder: RecorderProcess,
    sensors: list[TamperSensor],
    boot: int,
) -> TamperDetector:
    def emergency_stop(reason: str) -> None:
        loop.call_soon_threadsafe(relay.emergency, reason, lock_notice(reason))

    def tamper_emit(event: TamperEvent, record: dict[str, Any]) -> None:
        kind = "sensor_fault" if event is TamperEvent.SENSOR_FAULT else "tamper"
        alerts.emit(kind, {"event": event.value, **_scalars(record)})

    def heartbeat_emit(beat: HeartbeatRecord) -> None:
        wire = heartbeats.make(beat.state, recorder.open_session_id, beat.epoch, beat.monotonic)
        alerts.emit("heartbeat", {**wire["payload"], "sig": wire["sig"]})

    tamper = settings.tamper
    detector = TamperDetector(
        settings.shim.id,
        sensors=sensors,
        heartbeat_emit=heartbeat_emit,
        tamper_emit=tamper_emit,
        emergency_stop=emergency_stop,
        heartbeat_period=tamper.heartbeat_period,
        sensor_poll_period=tamper.sensor_poll_period,
        sensor_timeout=tamper.sensor_timeout,
        latch_store=store,
        boot_count=boot,
    )
    if detector.latch_reason:
        log.critical("the tamper latch is set (%s): logins refused", detector.latch_reason)
        relay.lock_tamper(lock_notice(detector.latch_reason))

    seen = [detector.latch_reason is not None]  # a latch was on disk since the last reset

    def watch_latch() -> None:
        if relay.stopped.is_set():
            return
        latched = store.latch() is not None
        if latched:
            seen[0] = True
        elif seen[0]:  # cleared by `shimmfa tamper reset`
            seen[0] = False
            log.warning("the tamper latch was reset; logins accepted again")
            detector.latched_cleared()
            relay.release_tamper_lock()
        loop.call_later(LATCH_POLL, watch_latch)

    loop.call_soon(watch_latch)
    return detector
