"""Storage limits through the real daemon: a full recording budget or a full
disk refuses new sessions even to a valid code ("Storage exhausted"), tells
the SIEM, and never harms the recordings already made."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import select
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from recording_tools import (
    ALICE,
    BOB,
    Session,
    decrypt_entries,
    has_footer,
    identity,
    shimmfa,
    siem_events,
    traffic,
    verify,
)

from shimmfa.core.recording_reader import verify as read_verdict
from shimmfa.shim.recorder.files import unwrap_dek
from waiting import wait_for

pytestmark = pytest.mark.e2e

BANNER = b"Shim MFA gate. Authenticate as: <technician_id> <totp_code>\r\n> "
STORAGE_NOTICE = b"\r\nStorage exhausted; no new sessions can be recorded.\r\n"
OPENED = b"Pass-through enabled"
BUDGET = 1 << 20  # the smallest budget the config allows


def wait_for_event(siem: Path, kind: str, timeout: float = 10.0) -> dict:
    found = wait_for(
        lambda: [e for e in siem_events(siem) if e["kind"] == kind], f"a {kind} event", timeout
    )
    return found[0]


def refused_with_a_valid_code(rig, technician: str, *, notice: bool) -> None:
    """A valid code (and bytes typed after it) opens no session and reaches
    nothing. With `notice`, the technician is told that storage is exhausted
    (else the gate is known to be locked already, and said so before)."""
    before = bytes(rig.dev.transcript)
    rig.tech.send(f"{technician} {rig.code(technician)}\rtyped after the code\r".encode())
    if notice:
        assert OPENED not in rig.tech.read_until(STORAGE_NOTICE)
    rig.tech.pump(0.3)
    assert OPENED not in rig.tech.buffer
    rig.dev.expect_nothing(0.2)
    assert bytes(rig.dev.transcript) == before


def digests(rig) -> dict[Path, str]:
    return {
        path: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted((rig.storage / "sessions").glob("*.shrec"))
    }


def test_a_full_budget_refuses_a_valid_code_and_keeps_the_recordings(make_shim, tmp_path):
    siem = tmp_path / "siem.jsonl"
    rig = make_shim(
        gate={"echo": False},
        storage={"budget_bytes": BUDGET},
        siem={"transport": "file", "path": str(siem)},
    )
    session = Session(rig, ALICE)
    rng = random.Random(6)
    sent = (rng.randbytes(BUDGET // 2), rng.randbytes(BUDGET // 2))
    assert rig.exchange(*sent, timeout=60) == sent
    rig.tech.hangup()
    path = session.wait_closed()
    assert path.stat().st_size >= BUDGET  # the budget is used up by a real session
    before = digests(rig)
    rig.new_technician().read_until(BANNER)

    refused_with_a_valid_code(rig, BOB, notice=True)

    event = wait_for_event(siem, "storage_exhausted")
    assert str(BUDGET) in event["fields"]["reason"]
    assert digests(rig) == before  # no new file, the old one untouched
    code, statuses = verify(path, identity=identity(rig))
    assert (code, statuses[path]) == (0, "valid")
    assert "Storage exhausted" in rig.daemon.log_text()

    rig.daemon.signal_and_wait()  # a restart finds the budget used up at once
    rig.start(ready=True)
    rig.tech.read_until(STORAGE_NOTICE)
    refused_with_a_valid_code(rig, ALICE, notice=False)
    assert bytes(rig.dev.transcript) == sent[0]
    assert digests(rig) == before


def _run(*command: str) -> str:
    """Run `command`; its error output, empty when it succeeded."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    return "" if done.returncode == 0 else f"{' '.join(command)}: {done.stderr.strip()}"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB file system to fill up: tmpfs, else an ext4 loop file."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir(mode=0o700)
    failed = _run("mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mountpoint))
    if failed:
        image = tmp_path / "disk.img"
        with image.open("wb") as handle:
            handle.truncate(4 << 20)
        loop = _run("mkfs.ext4", "-q", "-F", str(image)) or _run(
            "mount", "-o", "loop", str(image), str(mountpoint)
        )
        if loop:
            pytest.skip(f"cannot mount a small file system here: {failed}; {loop}")
        mountpoint.chmod(0o700)
    try:
        yield mountpoint
    finally:  # after the daemon has stopped (this fixture is set up first)
        _run("umount", str(mountpoint)) and _run("umount", "-l", str(mountpoint))


def fill(directory: Path) -> int:
    """Write a file until the disk is full; the bytes written."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    written = 0
    try:
        while True:
            try:
                written += os.write(fd, b"\0" * 65536)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return written
    finally:
        os.close(fd)


# min_free_bytes 0: only the failed write tells that the disk is full.
@pytest.mark.parametrize("min_free", [256 << 10, 0], ids=["min_free", "no_min_free"])
def test_a_full_disk_ends_the_session_and_refuses_new_ones(
    small_disk, make_shim, tmp_path, min_free
):
    siem = tmp_path / "siem.jsonl"
    rig = make_shim(
        gate={"echo": False},
        storage={"root": str(small_disk), "min_free_bytes": min_free},
        recording={"fsync_interval": 0.2},
        siem={"transport": "file", "path": str(siem)},
    )
    session = Session(rig, ALICE)
    early = (b"before the disk filled\r", b"device before\r\n")
    assert rig.exchange(*early) == early
    dek = unwrap_dek(read_verdict(session.path.read_bytes()).header, identity(rig))

    def checkpointed() -> bool:
        entries = decrypt_entries(session.path.read_bytes(), dek, sealed_only=True)
        return (traffic(entries, "in"), traffic(entries, "out")) == early

    wait_for(checkpointed, "the early bytes to reach a checkpoint", timeout=10)

    assert fill(small_disk) > 0
    rng = random.Random(7)
    streamed = bytearray()
    deadline = time.monotonic() + 20
    while b"Session closed (" not in rig.tech.buffer:
        assert time.monotonic() < deadline, f"the session went on: {len(streamed)} bytes"
        readable, writable, _ = select.select([rig.tech.fd], [rig.dev.fd], [], 1.0)
        if readable:
            rig.tech._read_once(0)
        if writable:
            chunk = rng.randbytes(4096)
            streamed += chunk[: os.write(rig.dev.fd, chunk)]
    rig.tech.read_until(STORAGE_NOTICE)
    assert rig.daemon.alive
    assert "Session closed (recording_failed)" in rig.tech.transcript.decode("latin-1")

    refused_with_a_valid_code(rig, BOB, notice=False)

    files = sorted((small_disk / "sessions").glob("*.shrec"))
    assert files == [session.path]
    code, statuses = verify(*files, identity=identity(rig))
    assert code in (0, 3)
    data = session.path.read_bytes()
    assert statuses[session.path] == ("valid" if has_footer(data) else "truncated")
    entries = decrypt_entries(data, dek)
    assert traffic(entries, "in").startswith(early[0])
    assert (early[1] + bytes(streamed)).startswith(traffic(entries, "out"))
    assert traffic(entries, "out").startswith(early[1])
    connection = sqlite3.connect(f"file:{small_disk / 'state' / 'shim.db'}?mode=ro", uri=True)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        connection.close()
    listed = shimmfa("technician", "list", "--config", str(rig.config))
    assert listed.returncode == 0, listed.stderr
    assert ALICE in listed.stdout.decode()
