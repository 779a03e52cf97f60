"""`shimmfa run`: load the config, open state, keys and outbox, wire gate,
recorder, tamper detector and relay together, and run.

Rules:
- Configuration, key and state problems stop the daemon before any port
  opens (exit codes of `shimmfa.errors`).
- A latched tamper state is restored before the first byte is read.
- Tamper callbacks come from the detector's threads; the relay is only ever
  touched on the loop thread (`call_soon_threadsafe`). The latch is watched
  on the loop: when `shimmfa tamper reset` clears it in the state DB, the
  gate opens again without a restart.
- SIGTERM and SIGINT close the session (recording footer) and exit 0
  promptly; the outbox keeps what was not yet delivered.
- With systemd (`NOTIFY_SOCKET`): READY=1 once running, WATCHDOG=1 from the
  event loop (a hung loop is restarted), STOPPING=1 on the way out.
- The process exit code is the relay's: 0 after a requested shutdown, 70
  after a fail-safe stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from shimmfa.core.gate import GateConfig, GateMachine
from shimmfa.shim.config import load_config
from shimmfa.shim.link import wire
from shimmfa.shim.link.passthrough import PassThroughSelector
from shimmfa.shim.link.pumps import SPIN
from shimmfa.shim.link.relay import Relay
from shimmfa.shim.link.serialport import Endpoint, open_endpoint
from shimmfa.shim.recorder.process import RecorderProcess
from shimmfa.shim.recorder.sessions import RecordedSessions
from shimmfa.shim.reporting import notify
from shimmfa.shim.reporting.alerts import Alerts, AuditedAuthenticator
from shimmfa.shim.reporting.heartbeats import HeartbeatSource
from shimmfa.shim.reporting.outbox import Outbox
from shimmfa.shim.reporting.records import OutboxSiem
from shimmfa.shim.settings import Settings
from shimmfa.shim.state.keys import ShimKeys, init_keys
from shimmfa.shim.state.port_backoff import PortBackoff
from shimmfa.shim.state.store import StateStore
from shimmfa.shim.state.technicians import build_gate
from shimmfa.shim.tamper.build import build_sensors
from shimmfa.shim.tamper.detector import HeartbeatRecord, TamperDetector
from shimmfa.shim.tamper.sensors import TamperEvent, TamperSensor
from shimmfa.transport.build import build_sink
from shimmfa.transport.sender import OutboxSender

log = logging.getLogger("shimmfa.daemon")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _gate_machine(settings: Settings) -> GateMachine:
    return GateMachine(
        GateConfig(
            echo=settings.gate.echo,
            max_line=settings.gate.max_line,
            backoff_initial=settings.gate.backoff_initial,
            backoff_max=settings.gate.backoff_max,
        )
    )


def _ports_ready() -> None:
    log.info("both ports open; the gate is ready")
    notify.notify("STATUS=both ports open; gate ready")


def _watchdog(loop: asyncio.AbstractEventLoop, interval: float) -> None:
    notify.notify(notify.WATCHDOG)
    loop.call_later(interval, _watchdog, loop, interval)


def run(config_path: Path) -> int:
    loaded = load_config(config_path)
    settings = loaded.settings
    for warning in loaded.warnings:
        log.warning("%s", warning)
    root = settings.storage_root
    root.mkdir(parents=True, exist_ok=True)
    keys, created = init_keys(root)
    if created:
        log.info("created keys %s; signing key %s", ", ".join(created), keys.public_key_text)
    store = StateStore(root)
    outbox = Outbox(root, max_rows=settings.siem.outbox_max)
    sender = OutboxSender(outbox, build_sink(settings.siem, hostname=settings.shim.id))
    selector = PassThroughSelector(SPIN)
    loop = asyncio.SelectorEventLoop(selector)
    try:
        sender.start()
        alerts = Alerts(outbox, settings.shim.id)
        heartbeats = HeartbeatSource(
            root, keys, settings.shim.id, settings.shim.hardware_id, config_path, store=store
        )
        boot = heartbeats.begin_boot()
        alerts.emit(
            "config_loaded",
            {
                "config_sha256": heartbeats.config_sha256,
                "boot_count": boot,
                "path": str(config_path),
            },
        )
        return _serve(loop, selector, settings, config_path, store, alerts, keys, heartbeats, boot)
    finally:
        notify.notify(notify.STOPPING)
        sender.stop()
        outbox.close()
        store.close()
        loop.close()


def _serve(
    loop: asyncio.AbstractEventLoop,
    selector: PassThroughSelector,
    settings: Settings,
    config_path: Path,
    store: StateStore,
    alerts: Alerts,
    keys: ShimKeys,
    heartbeats: HeartbeatSource,
    boot: int,
) -> int:
    serial = settings.serial
    recording = settings.recording
    relay: Relay | None = None

    def on_problem(reason: str) -> None:
        if relay is not None:
            loop.call_soon_threadsafe(relay.recording_problem, reason)

    recorder = RecorderProcess(
        settings.storage_root,
        settings.shim.id,
        options={
            "recipients": recording.recipients,
            "fsync_interval": recording.fsync_interval,
            "budget_bytes": settings.storage.budget_bytes,
            "min_free_bytes": settings.storage.min_free_bytes,
        },
        max_bytes=recording.max_bytes,
        on_problem=on_problem,
        call_later=loop.call_later,
    )
    for warning in recorder.warnings:
        log.warning("%s", warning)
    sensors, modem = build_sensors(settings, keys, config_path)

    def open_technician() -> Endpoint:
        return open_endpoint(serial.technician_side_path, serial, technician_side=True)

    def open_device() -> Endpoint:
        return open_endpoint(serial.device_side_path, serial, technician_side=False)

    gate = _gate_machine(settings)
    backoff = PortBackoff(store, gate)
    backoff.restore()
    relay = Relay(
        loop,
        gate,
        AuditedAuthenticator(build_gate(settings, store), alerts),
        RecordedSessions(recorder, alerts, OutboxSiem(alerts.outbox, settings.shim.id)),
        open_technician,
        open_device,
        idle_timeout=settings.session.idle_timeout,
        max_duration=settings.session.max_duration,
        on_ready=_ports_ready,
        on_device_carrier=modem.update if modem is not None else None,
        pass_through=selector,
        on_auth_decided=backoff.save,
    )
    detector = wire_detector(
        loop, relay, settings, store, alerts, heartbeats, recorder, sensors, boot
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, relay.shutdown)
    interval = notify.watchdog_interval()
    if interval:
        loop.call_soon(_watchdog, loop, interval)
    log.info("shim %s starting (config %s, boot %d)", settings.shim.id, config_path, boot)
    log.info("relay step %s", wire.STEP)
    try:
        loop.call_soon(relay.start)
        detector.start()
        notify.notify(notify.READY)
        notify.notify("STATUS=gate closed; waiting for both serial ports")
        loop.run_until_complete(relay.stopped.wait())
    finally:
        detector.stop()
        recorder.close()
    log.info("shim %s stopped (exit %d)", settings.shim.id, relay.exit_code)
    return relay.exit_code


# -- the tamper detector, wired to the relay and the outbox -----------------------

LATCH_POLL = 0.5


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
        payload = wire["payload"]
        summary = {name: payload[name] for name in ("seq", "boot_count", "state")}
        alerts.emit("heartbeat", summary, at=beat.epoch, heartbeat=wire)

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
