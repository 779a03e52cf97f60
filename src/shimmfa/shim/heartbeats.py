"""This shim's signed heartbeats (the format is core/heartbeat.py's).

Rules:
- `boot_count` is the durable counter "boot_count" in the state DB. The
  daemon calls `begin_boot()` once per start; the new value is committed
  before it returns and never handed out again, so `(boot_count, seq)` only
  grows, across restarts and crashes.
- `seq` is 1, 2, 3, ... within a boot, kept in memory. `make()` is
  thread-safe: heartbeats come from the tamper watchdog thread.
- `config_sha256` is the SHA-256 of the config file's bytes and
  `software_sha256` the `software_digest` of the installed package, both
  taken when the source is made (the daemon's start).
- `software_manifest` is `sha256sum` output for every file under the package
  directory, sorted by path, `__pycache__` and `*.pyc` left out; `cd
  <package dir> && sha256sum -c` checks it, and `software_digest` is its
  SHA-256. Names with `\\`, CR or LF are escaped the way GNU sha256sum does,
  so no two trees share a manifest.
- `hardware_id` is the configured one, else derived from /etc/machine-id the
  way `systemd-id128 machine-id --app-specific=APP_ID` does (systemd asks that
  the raw machine ID not be sent anywhere), else "unknown" with a warning.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import shimmfa
from shimmfa.core.heartbeat import heartbeat_payload, sign_heartbeat
from shimmfa.errors import ConfigError
from shimmfa.shim.state import StateStore

log = logging.getLogger("shimmfa.heartbeats")

BOOT_COUNTER = "boot_count"
MACHINE_ID = Path("/etc/machine-id")
# Fixed application ID for the app-specific machine ID (made once, random).
APP_ID = "143cf30abb044adeac38710ab5130952"
UNKNOWN_HARDWARE = "unknown"
_SKIPPED_DIRS = frozenset({"__pycache__"})
_SKIPPED_SUFFIXES = (".pyc", ".pyo")
_CHUNK = 1 << 16


class Signer(Protocol):
    def sign(self, message: bytes) -> bytes: ...


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _manifest_line(relative: bytes, digest: str) -> bytes:
    if any(ch in relative for ch in b"\\\n\r"):
        escaped = relative.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
        return b"\\" + digest.encode() + b"  " + escaped + b"\n"
    return digest.encode() + b"  " + relative + b"\n"


def software_manifest(package_dir: Path) -> bytes:
    """`sha256sum` lines for every file under `package_dir` (symlinks
    followed, as `import` does), sorted by path bytes."""
    root = Path(package_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    entries: list[tuple[bytes, Path]] = []
    seen: set[tuple[int, int]] = set()
    for directory, subdirs, files in os.walk(root, followlinks=True):
        status = os.stat(directory)
        if (status.st_dev, status.st_ino) in seen:  # a symlink loop
            subdirs.clear()
            continue
        seen.add((status.st_dev, status.st_ino))
        subdirs[:] = [name for name in subdirs if name not in _SKIPPED_DIRS]
        for name in files:
            if name.endswith(_SKIPPED_SUFFIXES):
                continue
            path = Path(directory, name)
            if path.is_file():
                entries.append((os.fsencode(path.relative_to(root)), path))
    entries.sort(key=lambda entry: entry[0])
    return b"".join(_manifest_line(relative, file_sha256(path)) for relative, path in entries)


def software_digest(package_dir: Path) -> str:
    """SHA-256 of `software_manifest(package_dir)`."""
    return hashlib.sha256(software_manifest(package_dir)).hexdigest()


def package_dir() -> Path:
    """The directory of the installed shimmfa package."""
    return Path(shimmfa.__file__).resolve().parent


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
