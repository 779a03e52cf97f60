"""`shimmfa run`: load the config, open state, keys and outbox, wire gate,
recorder, tamper detector and relay together, and run.

Rules:
- Configuration, key and state problems stop the daemon before any port
  opens (exit codes of `shimmfa.errors`).
- A latched tamper state is restored before the first byte is read.
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
import time
from pathlib import Path

from shimmfa.core.gate import GateConfig, GateMachine
from shimmfa.core.totp import TotpGate
from shimmfa.errors import ConfigError
from shimmfa.shim import notify, wire
from shimmfa.shim.alerts import Alerts, AuditedAuthenticator, RecordedSessions
from shimmfa.shim.config import load_config
from shimmfa.shim.heartbeats import HeartbeatSource
from shimmfa.shim.keys import ShimKeys, init_keys
from shimmfa.shim.outbox import Outbox, OutboxSender
from shimmfa.shim.passthrough import PassThroughSelector
from shimmfa.shim.port_backoff import PortBackoff
from shimmfa.shim.pumps import SPIN
from shimmfa.shim.recorder_events import OutboxSiem
from shimmfa.shim.recorder_process import RecorderProcess
from shimmfa.shim.relay import Relay
from shimmfa.shim.sensors import build_sensors, wire_detector
from shimmfa.shim.serialport import Endpoint, open_endpoint
from shimmfa.shim.settings import Settings
from shimmfa.shim.sinks import build_sink
from shimmfa.shim.state import StateStore
from shimmfa.shim.technicians import TechnicianDirectory

log = logging.getLogger("shimmfa.daemon")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def build_gate(settings: Settings, store: StateStore) -> TotpGate:
    directory = TechnicianDirectory(settings.technician_records(), store)
    clash = directory.conflicts()
    if clash:
        raise ConfigError(
            f"technicians {', '.join(map(repr, clash))} are both in the config file and "
            "the state DB; remove one of the two entries"
        )
    totp = settings.totp
    return TotpGate(
        directory,
        time_source=time.time,
        period=totp.period,
        digits=totp.digits,
        window=totp.window,
        max_failures=totp.max_failures,
        lockout_seconds=totp.lockout_seconds,
        algorithm=totp.algorithm,
        store=store,
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
