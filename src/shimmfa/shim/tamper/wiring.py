"""The tamper detector wired to the rest of the daemon, through the narrow
seams it needs: the gate it locks (`Gate`, the relay), where it reports
(`Reporter`, the alerts) and how a heartbeat is made.

Rules:
- Tamper callbacks come from the detector's threads; the gate is only ever
  touched on the loop thread (`call_soon_threadsafe`).
- A latch found on disk at start locks the gate before the first byte is
  read; its notice names the reason.
- The latch is watched on the loop: when `shimmfa tamper reset` or
  `shimmfa state recover` clears it in the state DB, the gate opens again
  without a restart, and `on_cleared(reason)` hears which latch it was.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from shimmfa.shim.settings import Settings
from shimmfa.shim.state.anchor import STATE_LOST
from shimmfa.shim.tamper.detector import HeartbeatRecord, LatchStore, TamperDetector
from shimmfa.shim.tamper.sensors import TamperEvent, TamperSensor

__all__ = ["LATCH_POLL", "Gate", "Reporter", "lock_notice", "start_watching"]

log = logging.getLogger("shimmfa.tamper")

LATCH_POLL = 0.5


class Gate(Protocol):
    """The relay, as the tamper detector sees it."""

    @property
    def stopped(self) -> asyncio.Event: ...

    def emergency(self, reason: str, notice: str) -> None: ...

    def lock_tamper(self, notice: str) -> None: ...

    def release_tamper_lock(self) -> None: ...


class Reporter(Protocol):
    def emit(
        self,
        kind: str,
        fields: Mapping[str, Any],
        *,
        at: float | None = None,
        heartbeat: Mapping[str, Any] | None = None,
    ) -> bool: ...


def lock_notice(reason: str) -> str:
    """What the technician reads under the banner while the shim is latched."""
    if reason == STATE_LOST:
        return (
            f"Locked: {reason}. The shim's memory was lost or replaced; service access is "
            "disabled until an administrator recovers it."
        )
    return (
        f"Locked: {reason}. Service access is disabled until an administrator "
        "inspects the shim and resets it."
    )


def _scalars(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if isinstance(v, str | int | float | bool) or v is None}


def start_watching(
    loop: asyncio.AbstractEventLoop,
    gate: Gate,
    settings: Settings,
    latches: LatchStore,
    reporter: Reporter,
    make_heartbeat: Callable[[str, float, float], dict[str, Any]],
    sensors: list[TamperSensor],
    boot: int,
    *,
    on_cleared: Callable[[str], None] | None = None,
) -> TamperDetector:
    """The detector (not started), the gate locked if a latch is on disk, and
    the latch watched. `make_heartbeat(state, epoch, monotonic)` signs one."""

    def emergency_stop(reason: str) -> None:
        loop.call_soon_threadsafe(gate.emergency, reason, lock_notice(reason))

    def tamper_emit(event: TamperEvent, record: dict[str, Any]) -> None:
        kind = "sensor_fault" if event is TamperEvent.SENSOR_FAULT else "tamper"
        reporter.emit(kind, {"event": event.value, **_scalars(record)})

    def heartbeat_emit(beat: HeartbeatRecord) -> None:
        wire = make_heartbeat(beat.state, beat.epoch, beat.monotonic)
        payload = wire["payload"]
        summary = {name: payload[name] for name in ("seq", "boot_count", "state")}
        reporter.emit("heartbeat", summary, at=beat.epoch, heartbeat=wire)

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
        latch_store=latches,
        boot_count=boot,
    )
    if detector.latch_reason:
        log.critical("the tamper latch is set (%s): logins refused", detector.latch_reason)
        gate.lock_tamper(lock_notice(detector.latch_reason))

    held = [detector.latch_reason]  # the latch on disk since the last reset, if any

    def watch_latch() -> None:
        if gate.stopped.is_set():
            return
        latch = latches.latch()
        if latch is not None and held[0] is None:
            held[0] = latch.reason
        elif latch is not None and latch.reason != held[0]:  # a recovery kept another latch
            reason, held[0] = held[0], latch.reason
            log.warning("the tamper latch (%s) was reset; %s stays", reason, latch.reason)
            if on_cleared is not None and reason is not None:
                on_cleared(reason)
            gate.lock_tamper(lock_notice(latch.reason))
        elif latch is None and held[0] is not None:  # cleared by `tamper reset` or a recovery
            reason, held[0] = held[0], None
            log.warning("the tamper latch (%s) was reset; logins accepted again", reason)
            detector.latched_cleared()
            if on_cleared is not None:
                on_cleared(reason)
            gate.release_tamper_lock()
        loop.call_later(LATCH_POLL, watch_latch)

    loop.call_soon(watch_latch)
    return detector
