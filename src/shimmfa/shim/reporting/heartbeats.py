"""This shim's signed heartbeats (the format is core/heartbeat.py's).

Rules:
- `boot_count` is the durable counter "boot_count" in the state DB. The
  daemon calls `begin_boot()` once per start; the new value is committed
  before it returns and never handed out again, so `(boot_count, seq)` only
  grows, across restarts and crashes.
- `seq` is 1, 2, 3, ... within a boot, kept in memory. `make()` is
  thread-safe: heartbeats come from the tamper watchdog thread.
- `config_sha256` is the SHA-256 of the config file's bytes and
  `software_sha256` the `software_digest` of the installed package
  (`tamper.integrity`), both taken when the source is made (the daemon's
  start).
- `hardware_id` is the configured one, else derived from /etc/machine-id the
  way `systemd-id128 machine-id --app-specific=APP_ID` does (systemd asks that
  the raw machine ID not be sent anywhere), else "unknown" with a warning.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from shimmfa.core.heartbeat import heartbeat_payload, sign_heartbeat
from shimmfa.errors import ConfigError
from shimmfa.shim.state.store import BOOT_COUNTER, StateStore
from shimmfa.shim.tamper.integrity import file_sha256, package_dir, software_digest

log = logging.getLogger("shimmfa.heartbeats")

MACHINE_ID = Path("/etc/machine-id")
# Fixed application ID for the app-specific machine ID (made once, random).
APP_ID = "143cf30abb044adeac38710ab5130952"
UNKNOWN_HARDWARE = "unknown"


class Signer(Protocol):
    def sign(self, message: bytes) -> bytes: ...


def app_specific_machine_id(machine_id: str, app_id: str = APP_ID) -> str:
    """systemd's `sd_id128_get_machine_app_specific`: HMAC-SHA256 keyed with
    the machine ID over the app ID, first 16 bytes, marked a v4 UUID."""
    mac = bytearray(
        hmac.new(bytes.fromhex(machine_id), bytes.fromhex(app_id), hashlib.sha256).digest()[:16]
    )
    mac[6] = (mac[6] & 0x0F) | 0x40
    mac[8] = (mac[8] & 0x3F) | 0x80
    return mac.hex()


def machine_hardware_id(path: Path = MACHINE_ID) -> str | None:
    """The app-specific ID of this machine, or None without a usable
    machine-id file."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if len(text) != 32 or text.strip("0123456789abcdef") or not text.strip("0"):
        return None  # also "uninitialized", written early in the first boot
    return app_specific_machine_id(text)


class HeartbeatSource:
    """Makes the signed heartbeats of one daemon run: `begin_boot()` once,
    then `make()` every heartbeat period."""

    def __init__(
        self,
        storage_root: Path,
        keys: Signer,
        shim_id: str,
        hardware_id: str | None,
        config_path: Path,
        *,
        package: Path | None = None,
        machine_id_path: Path = MACHINE_ID,
        store: StateStore | None = None,
    ) -> None:
        self._root = Path(storage_root)
        self._keys = keys
        self._store = store
        self.shim_id = shim_id
        if hardware_id is None:
            hardware_id = machine_hardware_id(machine_id_path)
            if hardware_id is None:
                log.warning(
                    "no usable %s: heartbeats say hardware_id %r; set one in the config",
                    machine_id_path,
                    UNKNOWN_HARDWARE,
                )
                hardware_id = UNKNOWN_HARDWARE
        self.hardware_id = hardware_id
        try:
            self.config_sha256 = file_sha256(Path(config_path))
        except OSError as exc:
            raise ConfigError(f"{config_path}: cannot read it to hash it: {exc}") from None
        self.software_sha256 = software_digest(package or package_dir())
        # Refuse at start, not in the watchdog thread, what no heartbeat can carry.
        heartbeat_payload(
            shim_id=shim_id,
            hardware_id=hardware_id,
            seq=1,
            boot_count=1,
            uptime_s=0.0,
            sent_at=0.0,
            state="ok",
            open_session=None,
            config_sha256=self.config_sha256,
            software_sha256=self.software_sha256,
        )
        self._lock = threading.Lock()
        self._boot_count: int | None = None
        self._started = 0.0
        self._seq = 0

    @property
    def boot_count(self) -> int | None:
        """This run's boot count, None before `begin_boot()`."""
        return self._boot_count

    def begin_boot(self, monotonic: float | None = None) -> int:
        """Count this daemon start (durably) and start `seq` afresh. Uptime
        is measured from `monotonic` (default: now)."""
        with self._lock:
            if self._boot_count is not None:
                raise RuntimeError("begin_boot() is called once per daemon start")
            store = self._store or StateStore(self._root)
            try:
                self._boot_count = store.increment(BOOT_COUNTER)
            finally:
                if store is not self._store:
                    store.close()
            self._started = time.monotonic() if monotonic is None else monotonic
            self._seq = 0
            return self._boot_count

    def recovered(self) -> int:
        """`shimmfa state recover` started a new state generation while this
        daemon ran: count a new boot in it (above the anchor's) and start
        `seq` afresh, so that `(boot_count, seq)` keeps growing."""
        with self._lock:
            if self._boot_count is None or self._store is None:
                raise RuntimeError("recovered() needs begin_boot() and the daemon's store")
            self._boot_count = self._store.increment(BOOT_COUNTER)
            self._seq = 0
            return self._boot_count

    def make(
        self, state: str, open_session: str | None, now: float, monotonic: float
    ) -> dict[str, Any]:
        """The next heartbeat, signed, in wire form. `now` is epoch seconds,
        `monotonic` the same clock `begin_boot` was given."""
        with self._lock:
            if self._boot_count is None:
                raise RuntimeError("call begin_boot() before make()")
            payload = heartbeat_payload(
                shim_id=self.shim_id,
                hardware_id=self.hardware_id,
                seq=self._seq + 1,
                boot_count=self._boot_count,
                uptime_s=max(0.0, monotonic - self._started),
                sent_at=now,
                state=state,
                open_session=open_session,
                config_sha256=self.config_sha256,
                software_sha256=self.software_sha256,
            )
            wire = sign_heartbeat(payload, self._keys.sign)
            self._seq += 1
            return wire
