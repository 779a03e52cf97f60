"""`shimmfa run`: load the config, open state, keys and outbox, wire gate,
recorder, tamper detector and relay together, and run.

Rules:
- Configuration, key and state problems stop the daemon before any port
  opens (exit codes of `shimmfa.errors`).
- Files others could change are refused first (`state.permissions`).
- The state DB is checked against its anchor (`state.anchor`) before it is
  used: a DB that was lost, replaced or rolled back latches the shim
  (`tamper:state_lost`) and sends `state_lost`; the anchor moves up only
  after a sound start has counted its boot. When `shimmfa state recover`
  clears that latch, the running daemon counts a new boot in the recovered
  generation and anchors it.
- A latched tamper state is restored before the first byte is read
  (`tamper.wiring`).
- Events go to the SIEM and, with `central:` configured, to the central
  service too: one outbox, a sender per destination, so an outage of one
  holds up neither the other nor the port. With `central:` the technician
  bundle is synced and finished recordings uploaded from their own threads
  (`reporting.central_sync`); the gate reads the synced technicians from
  the state DB at each login.
- SIGTERM and SIGINT queue `shim_stopping`, close the session (recording
  footer) and exit 0 promptly: the senders get DRAIN_AT_STOP seconds to
  deliver what is left; the outbox keeps the rest for the next start.
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
from shimmfa.shim.reporting.central import central_sink
from shimmfa.shim.reporting.central_sync import central_sync
from shimmfa.shim.reporting.heartbeats import HeartbeatSource
from shimmfa.shim.reporting.outbox import Outbox
from shimmfa.shim.reporting.records import OutboxSiem
from shimmfa.shim.settings import Settings
from shimmfa.shim.state.anchor import (
    STATE_LOST,
    AnchoredLatch,
    Check,
    inspect,
    provision_keys,
    update_anchor,
)
from shimmfa.shim.state.db import db_path, private_dir
from shimmfa.shim.state.keys import ShimKeys
from shimmfa.shim.state.login import ShimLogin
from shimmfa.shim.state.permissions import check_strict_modes
from shimmfa.shim.state.port_backoff import PortBackoff
from shimmfa.shim.state.store import StateStore
from shimmfa.shim.state.synced import SyncedTechnicians
from shimmfa.shim.state.technicians import build_gate
from shimmfa.shim.tamper.build import build_sensors
from shimmfa.shim.tamper.wiring import start_watching
from shimmfa.transport.build import build_sink
from shimmfa.transport.sender import OutboxSender

log = logging.getLogger("shimmfa.daemon")

DRAIN_AT_STOP = 0.5  # seconds the senders get at a stop to deliver what is left


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # every request to central would be a line: the syncer and uploader log what matters
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))


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
    check_strict_modes(root, config_path)
    private_dir(root)
    keys, created = provision_keys(root, time.time())
    if created:
        log.info("created keys %s; signing key %s", ", ".join(created), keys.public_key_text)
    db_existed = db_path(root).exists()
    store = StateStore(root)
    to_central = settings.central.url is not None
    outbox = Outbox(
        root,
        max_rows=settings.siem.outbox_max,
        destinations=("siem", "central") if to_central else ("siem",),
    )
    senders = [
        OutboxSender(outbox.queue("siem"), build_sink(settings.siem, hostname=settings.shim.id))
    ]
    if to_central:
        senders.append(
            OutboxSender(outbox.queue("central"), central_sink(settings.central), name="central")
        )
    selector = PassThroughSelector(SPIN)
    loop = asyncio.SelectorEventLoop(selector)
    try:
        anchored = inspect(
            root,
            keys,
            store,
            db_existed=db_existed,
            keys_existed=True,  # made now, they were anchored with the state
            now=time.time(),
        )
        for sender in senders:
            sender.start()
        alerts = Alerts(outbox, settings.shim.id)
        heartbeats = HeartbeatSource(
            root, keys, settings.shim.id, settings.shim.hardware_id, config_path, store=store
        )
        boot = heartbeats.begin_boot()
        if anchored.sound:
            update_anchor(root, keys, store, time.time())
        else:
            _state_lost(store, alerts, anchored)
        alerts.emit(
            "config_loaded",
            {
                "config_sha256": heartbeats.config_sha256,
                "boot_count": boot,
                "path": str(config_path),
            },
        )
        return _serve(
            loop, selector, settings, config_path, store, alerts, keys, heartbeats, boot, anchored
        )
    finally:
        notify.notify(notify.STOPPING)
        deadline = time.monotonic() + DRAIN_AT_STOP
        for sender in senders:  # best effort: shim_stopping and the last events out
            sender.drain(max(0.0, deadline - time.monotonic()))
        for sender in senders:
            sender.stop()
        outbox.close()
        store.close()
        loop.close()


def _state_lost(store: StateStore, alerts: Alerts, anchored: Check) -> None:
    """Fail closed: latch the shim and say so (never rewrite the anchor)."""
    log.critical(
        "STATE LOST (%s): %s; the port stays closed until `shimmfa state recover`",
        anchored.verdict,
        anchored.why,
    )
    detail: dict[str, object] = {"verdict": str(anchored.verdict), "why": anchored.why}
    if anchored.anchor is not None:
        detail["anchor_boot_count"] = anchored.anchor.boot_count
    store.set_latch(STATE_LOST, time.time(), detail)
    alerts.emit("state_lost", detail)


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
    anchored: Check,
) -> int:
    serial = settings.serial
    sound = anchored.sound
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
    sync = central_sync(
        settings,
        keys,
        alerts,
        open_session=lambda: recorder.open_session_id,
        local_ids=lambda: set(settings.technician_records()) | set(store.technician_ids()),
    )
    synced = SyncedTechnicians(store) if settings.central.public_key else None

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
        AuditedAuthenticator(
            ShimLogin.for_shim(settings, store, build_gate(settings, store, synced=synced)),
            alerts,
        ),
        RecordedSessions(
            recorder,
            alerts,
            OutboxSiem(alerts.outbox, settings.shim.id),
            on_ended=sync.session_ended if sync is not None else None,
        ),
        open_technician,
        open_device,
        idle_timeout=settings.session.idle_timeout,
        max_duration=settings.session.max_duration,
        on_ready=_ports_ready,
        on_device_carrier=modem.update if modem is not None else None,
        pass_through=selector,
        on_auth_decided=backoff.save,
    )

    def make_heartbeat(state: str, epoch: float, monotonic: float) -> dict[str, Any]:
        return heartbeats.make(state, recorder.open_session_id, epoch, monotonic)

    def on_cleared(reason: str) -> None:
        if reason == STATE_LOST:  # `shimmfa state recover` anchored a new generation
            boot = heartbeats.recovered()
            latches.sound = True
            update_anchor(settings.storage_root, keys, store, time.time())
            log.warning("state recovered: a new state generation, boot %d", boot)

    latches = AnchoredLatch(settings.storage_root, keys, store, sound=sound)
    detector = start_watching(
        loop,
        relay,
        settings,
        latches,
        alerts,
        make_heartbeat,
        sensors,
        boot,
        on_cleared=on_cleared,
    )

    def stop_requested() -> None:
        alerts.emit("shim_stopping", {"reason": "shutdown", "boot_count": heartbeats.boot_count})
        relay.shutdown()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested)
    interval = notify.watchdog_interval()
    if interval:
        loop.call_soon(_watchdog, loop, interval)
    log.info("shim %s starting (config %s, boot %d)", settings.shim.id, config_path, boot)
    log.info("relay step %s", wire.STEP)
    try:
        loop.call_soon(relay.start)
        detector.start()
        if sync is not None:
            sync.start()
        notify.notify(notify.READY)
        notify.notify("STATUS=gate closed; waiting for both serial ports")
        loop.run_until_complete(relay.stopped.wait())
    finally:
        if sync is not None:
            sync.stop()
        detector.stop()
        recorder.close()
    log.info("shim %s stopped (exit %d)", settings.shim.id, relay.exit_code)
    return relay.exit_code
