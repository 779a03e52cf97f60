"""Helpers for the recording end-to-end tests.

- An independent reader of the `.shrec` layout as docs/recording-format.md
  describes it (records, seals, frames decrypted with a data key), written
  from the document and not from `core/recording_reader.py`: the tests use it
  to tell whether a file really ends with a footer and to decrypt frames
  with a DEK that Debian's `age` unwrapped.
- `Session`: a login at a rig and what each side received during it.
- `shimmfa recording verify|export` run as an operator runs them, and the
  SIEM file transport's JSON lines read back.
- `Roster`: many technicians, for tests that log in more often than TOTP's
  replay protection allows one technician.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
from blake3 import blake3
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from waiting import wait_for

MAGIC = b"SHREC/2\n"
CHAIN_START = blake3(b"shimmfa recording chain v2" + MAGIC).digest()
ENTRY = struct.Struct(">cddI")
SIGNATURE = 64
DIRECTIONS = {b"i": "in", b"o": "out", b"m": "meta"}
ALICE, BOB = "alice@example.org", "bob@example.org"  # in the harness's config
OPENED = re.compile(rb"Authenticated as \S+; session (\S+)\r\nPass-through enabled\. [^\n]+\n")
# What the shim itself says to the technician when a session ends.
CLOSED = re.compile(rb"\r\n(Session closed \(|Shim shutting down\.|Shim MFA gate\.)")
# `shimmfa recording verify` prints one line per file: "<path>: <status>: ..."
_VERDICT = re.compile(r"^(?P<path>.+?\.shrec): (?P<status>valid|truncated|tampered)\b(?P<rest>.*)$")


@dataclass(frozen=True)
class Entry:
    direction: str
    monotonic: float
    wall: float
    payload: bytes


def records(data: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """(type, body, whole record) of every complete record after MAGIC; a
    torn record at the end is left out."""
    assert data.startswith(MAGIC), "not a .shrec file"
    found = []
    offset = len(MAGIC)
    while offset + 5 <= len(data):
        (length,) = struct.unpack_from(">I", data, offset + 1)
        end = offset + 5 + length
        if end > len(data):
            break
        found.append((data[offset : offset + 1], data[offset + 5 : end], data[offset:end]))
        offset = end
    return found


def header(data: bytes) -> dict[str, Any]:
    kind, body, _ = records(data)[0]
    assert kind == b"H"
    return json.loads(body[:-SIGNATURE])


def seal_info(body: bytes) -> dict[str, Any]:
    (size,) = struct.unpack_from(">I", body, 0)
    return json.loads(body[4 : 4 + size])


def has_footer(data: bytes) -> bool:
    """True when the last complete record is a seal of kind footer."""
    found = records(data)
    return bool(found) and found[-1][0] == b"S" and seal_info(found[-1][1])["kind"] == "footer"


def footer(data: bytes) -> dict[str, Any] | None:
    return seal_info(records(data)[-1][1]) if has_footer(data) else None


def decrypt_entries(data: bytes, dek: bytes, *, sealed_only: bool = False) -> list[Entry]:
    """Every entry of every complete frame (with `sealed_only`, of the frames
    before the last seal), decrypted with `dek` (nonce: the frame index;
    associated data: the chain head before the frame)."""
    aead = ChaCha20Poly1305(dek)
    head = CHAIN_START
    index = 0
    entries: list[Entry] = []
    sealed = 0
    for kind, body, whole in records(data):
        if kind == b"F":
            nonce = b"\0\0\0\0" + index.to_bytes(8, "big")
            plain = aead.decrypt(nonce, body, head)
            index += 1
            offset = 0
            while offset < len(plain):
                code, mono, wall, length = ENTRY.unpack_from(plain, offset)
                offset += ENTRY.size
                entries.append(Entry(DIRECTIONS[code], mono, wall, plain[offset : offset + length]))
                offset += length
        elif kind == b"S":
            sealed = len(entries)
        head = blake3(head + whole).digest()
    return entries[:sealed] if sealed_only else entries


def traffic(entries: list[Entry], direction: str) -> bytes:
    return b"".join(e.payload for e in entries if e.direction == direction)


def dek_age(path: Path) -> bytes:
    """The header's `dek_age`: an age v1 file (binary)."""
    return base64.b64decode(header(path.read_bytes())["dek_age"], validate=True)


# -- sessions at a rig -----------------------------------------------------------------


class Session:
    """One session at `rig`: its ID, and where in the technician's
    transcript the bytes that came from the device start."""

    def __init__(self, rig: Any, technician: str = ALICE, typed_ahead: bytes = b"") -> None:
        self.rig = rig
        rig.tech.send(f"{technician} {rig.code(technician)}\r".encode() + typed_ahead)
        reply = rig.tech.read_until(b"Disconnect to end session.\r\n")
        match = OPENED.search(reply)
        assert match is not None, reply
        self.id = match[1].decode()
        self.tech_start = len(rig.tech.transcript) - len(rig.tech.buffer)
        self.dev_start = len(rig.dev.transcript)

    @property
    def path(self) -> Path:
        (path,) = (storage_root(self.rig) / "sessions").glob(f"{self.id}_*.shrec")
        return path

    def at_device(self) -> bytes:
        """What the device received during the session."""
        return bytes(self.rig.dev.transcript[self.dev_start :])

    def at_technician(self) -> bytes:
        """What the technician received from the device during the session
        (up to the shim's own closing notice, if any)."""
        received = bytes(self.rig.tech.transcript[self.tech_start :])
        return received[: m.start()] if (m := CLOSED.search(received)) else received

    def wait_closed(self, timeout: float = 10.0) -> Path:
        """The recording, once its footer is on disk."""
        wait_for(lambda: has_footer(self.path.read_bytes()), f"{self.path.name}'s footer", timeout)
        return self.path


def storage_root(rig: Any) -> Path:
    """`storage.root` of the rig's config."""
    return Path(rig.settings["storage"]["root"])


def identity(rig: Any) -> Path:
    """The local recording identity (no `recording.recipients` configured)."""
    return storage_root(rig) / "keys" / "recording.agekey"


# -- the command line ---------------------------------------------------------------


def shimmfa(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "shimmfa", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def verify(*paths: Path, identity: Path | None = None) -> tuple[int, dict[Path, str]]:
    """`shimmfa recording verify`: (exit code, {path: the status it printed})."""
    extra = ["--identity", str(identity)] if identity is not None else []
    done = shimmfa("recording", "verify", *map(str, paths), *extra)
    statuses = {}
    for line in done.stdout.decode().splitlines():
        match = _VERDICT.match(line)
        if match:
            statuses[Path(match["path"])] = match["status"]
    assert set(statuses) == set(paths), (done.returncode, done.stdout, done.stderr)
    return done.returncode, statuses


def export(path: Path, identity: Path, fmt: str, direction: str = "out") -> bytes:
    """`shimmfa recording export`; fails the test on a non-zero exit."""
    args = ["--identity", str(identity), "--format", fmt, "--direction", direction]
    done = shimmfa("recording", "export", str(path), *args)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def jsonl(path: Path, identity: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in export(path, identity, "jsonl").splitlines()]


def siem_events(path: Path) -> list[dict[str, Any]]:
    """The SIEM file transport's events (JSON lines) so far."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


class Roster:
    """Technicians for a test that logs in many times. TOTP refuses a second
    login of one technician within one time step (replay), so every login
    takes a technician who has not logged in during the current step."""

    def __init__(self, count: int, period: int = 30) -> None:
        self.period = period
        self.totps = {
            f"tech{n:02d}@example.org": pyotp.TOTP(
                base64.b32encode(hashlib.sha256(b"recording e2e %d" % n).digest()[:20]).decode(),
                interval=period,
            )
            for n in range(count)
        }
        self._last_step: dict[str, int] = {}

    def config(self) -> list[dict[str, Any]]:
        """The `technicians` section."""
        return [
            {"technician_id": tid, "totp_secret": totp.secret, "period": self.period}
            for tid, totp in self.totps.items()
        ]

    def login(self, rig: Any) -> tuple[str, str]:
        """Authenticate at `rig`'s gate: (technician ID, session ID)."""
        now = time.time()
        step = int(now // self.period)
        for tid, totp in self.totps.items():
            if self._last_step.get(tid, -1) < step:
                self._last_step[tid] = step
                return tid, rig.login(tid, totp.at(now))
        raise AssertionError(f"all {len(self.totps)} technicians logged in during this step")
