"""`kill -9` of the real daemon in the middle of heavy traffic, 20 times:
every recording verifies as truncated-or-valid (never tampered, never valid
without a footer; the recorder process, which outlives the daemon, may close
it with the reason `daemon_lost`) and holds, as a byte-exact in-order prefix, everything that
was exchanged up to its last checkpoint; the next start works normally.

"Exchanged" is what the test's device and technician really read from their
PTYs, with the wall-clock time each read returned. A byte that arrived more
than fsync_interval + 0.5 s before the kill, or (within a small slack) before
the time of the last entry the last checkpoint sealed, must be in the part of
the recording that checkpoint covers."""

from __future__ import annotations

import os
import random
import select
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from recording_tools import (
    Roster,
    decrypt_entries,
    footer,
    has_footer,
    identity,
    traffic,
    verify,
)

from shimmfa.core.recording_reader import verify as read_verdict
from shimmfa.shim.recorder.files import open_recording, unwrap_dek
from waiting import wait_for

pytestmark = pytest.mark.e2e

KILLS = 20
KILLS_PER_ROOT = 4  # then a fresh storage root
FSYNC = 0.2
GRACE = FSYNC + 0.5  # what arrived this long before the kill must be recorded
# A chunk's recorded time and the moment the test reads it on the other side
# come in either order (the relay may write before it records); this covers
# the gap between them, scheduling delays included.
SLACK = 0.1
RATE = 3 << 20  # bytes per second each way: heavy, and the files stay small
CHUNK = 8192
BANNER = b"Shim MFA gate. Authenticate as: <technician_id> <totp_code>\r\n> "
ROSTER = Roster(48)  # more than the logins of one TOTP step


@dataclass
class Flow:
    """One direction: what its writer wrote, what its reader read, and when
    each read returned (wall clock, like the recording's times)."""

    sent: bytearray = field(default_factory=bytearray)
    received: bytearray = field(default_factory=bytearray)
    arrivals: list[tuple[float, int]] = field(default_factory=list)

    def received_before(self, moment: float) -> int:
        """How many bytes had arrived before `moment`."""
        total = 0
        for when, count in self.arrivals:
            if when >= moment:
                break
            total = count
        return total


def heavy_traffic(
    tech_fd: int, dev_fd: int, rng: random.Random, seconds: float
) -> tuple[Flow, Flow]:
    """For `seconds`, the device streams and the technician pastes random
    bytes (every byte value), up to RATE each way; (technician->device,
    device->technician)."""
    upstream, downstream = Flow(), Flow()
    writers = {tech_fd: upstream, dev_fd: downstream}
    readers = {dev_fd: upstream, tech_fd: downstream}
    pending = {fd: b"" for fd in writers}
    started = time.monotonic()
    until = started + seconds
    while (now := time.monotonic()) < until:
        allowed = RATE * (now - started)
        eager = [fd for fd, flow in writers.items() if len(flow.sent) < allowed]
        readable, writable, _ = select.select(list(readers), eager, [], min(until - now, 0.005))
        for fd in readable:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            flow = readers[fd]
            flow.received += data
            flow.arrivals.append((time.time(), len(flow.received)))
        for fd in writable:
            if not pending[fd]:
                pending[fd] = rng.randbytes(CHUNK)
                if not writers[fd].sent and fd == tech_fd and pending[fd][:1] == b"\n":
                    # By design the gate drops an LF right after the login
                    # line's CR (the line's CRLF): paste no LF first.
                    pending[fd] = b"-" + pending[fd][1:]
            try:
                written = os.write(fd, pending[fd])
            except BlockingIOError:
                continue
            writers[fd].sent += pending[fd][:written]
            pending[fd] = pending[fd][written:]
    return upstream, downstream


def mismatch(flow: Flow) -> str:
    """Where what arrived stops being what was sent."""
    sent, received = flow.sent, flow.received
    at = next((i for i in range(min(len(sent), len(received))) if sent[i] != received[i]), None)
    if at is None:
        return f"{len(received)} bytes arrived of {len(sent)} sent"
    return (
        f"first difference at byte {at} of {len(received)} received ({len(sent)} sent): "
        f"sent {bytes(sent[at : at + 16]).hex()}, got {bytes(received[at : at + 16]).hex()}; "
        f"the bytes got are sent at {sent.find(received[at : at + 64])}"
    )


def recording_of(rig, session_id: str) -> Path:
    (path,) = (rig.storage / "sessions").glob(f"{session_id}_*.shrec")
    return path


def wait_until_footer(path: Path, timeout: float = 10.0) -> None:
    wait_for(lambda: has_footer(path.read_bytes()), f"{path.name}'s footer", timeout)


def clean_session(rig, marker: bytes) -> Path:
    """A normal session right after a start: opens and records; its file."""
    _, session_id = ROSTER.login(rig)
    sent = (b"in " + marker, b"out " + marker)
    assert rig.exchange(*sent) == sent
    rig.tech.hangup()
    path = recording_of(rig, session_id)
    wait_until_footer(path)
    data = path.read_bytes()
    entries = decrypt_entries(data, unwrap_dek(read_verdict(data).header, identity(rig)))
    assert (traffic(entries, "in"), traffic(entries, "out")) == sent
    rig.new_technician().read_until(BANNER)
    return path


class Tally:
    """What the kills found."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.torn_reported_valid = 0
        self.frames_lost = 0
        self.problems: list[str] = []


def check_after_restart(
    rig,
    killed: Path,
    clean: Path,
    flows: tuple[Flow, Flow],
    killed_at: float,
    tally: Tally,
    what: str,
) -> None:
    """The killed session's file is truncated (or valid) and holds what was
    exchanged; the session after the restart is valid."""
    exit_code, statuses = verify(killed, clean, identity=identity(rig))
    data = killed.read_bytes()
    closing = footer(data)
    if closing is not None and closing["terminal_reason"] != "daemon_lost":
        # The recorder process outlives a killed daemon and closes the file
        # itself; its footer must say so, never claim an ordinary end.
        tally.problems.append(f"{what}: footer says {closing['terminal_reason']!r} after a kill")
    if exit_code not in (0, 3):  # the worst of the two files
        tally.problems.append(f"{what}: verify exit {exit_code} ({statuses})")
    if statuses[killed] == "valid" and not has_footer(data):
        tally.torn_reported_valid += 1
    if statuses[clean] != "valid":
        tally.problems.append(f"{what}: the session after the restart is {statuses[clean]}")

    verdict = read_verdict(data)  # without the key: up to the last checkpoint only
    checkpoint = verdict.last_good_time or 0.0
    dek = unwrap_dek(verdict.header, identity(rig))
    entries = decrypt_entries(data, dek)
    sealed = decrypt_entries(data, dek, sealed_only=True)
    product = open_recording(killed, identity(rig)).frames  # the product's reader
    for direction, flow in zip(("in", "out"), flows, strict=True):
        if not flow.sent.startswith(flow.received):
            tally.problems.append(f"{what}: the relay altered {direction}: {mismatch(flow)}")
        everything, checkpointed = traffic(entries, direction), traffic(sealed, direction)
        if b"".join(f.payload for f in product if f.direction == direction) != everything:
            tally.problems.append(f"{what}: the product reads other {direction} bytes")
        if not flow.sent.startswith(everything) or not everything.startswith(checkpointed):
            tally.problems.append(f"{what}: {direction} is not a prefix of what was sent")
        needed = max(
            flow.received_before(killed_at - GRACE), flow.received_before(checkpoint - SLACK)
        )
        if len(checkpointed) < needed:
            tally.frames_lost += 1
            tally.problems.append(
                f"{what}: {direction}: {len(checkpointed)} bytes up to the last checkpoint, "
                f"but {needed} had been exchanged"
            )


def check_every_file(rig, tally: Tally) -> None:
    """Whatever happened to it, each file is valid with a footer and
    truncated without one."""
    files = sorted((rig.storage / "sessions").glob("*.shrec"))
    exit_code, statuses = verify(*files)
    if exit_code not in (0, 3):
        tally.problems.append(f"{rig.storage}: verify exit {exit_code}")
    for path in files:
        expected = "valid" if has_footer(path.read_bytes()) else "truncated"
        if statuses[path] != expected:
            tally.problems.append(f"{path.name}: {statuses[path]}, expected {expected}")
            if expected == "truncated" and statuses[path] == "valid":
                tally.torn_reported_valid += 1


def test_kill_9_under_heavy_traffic_loses_nothing_before_the_last_checkpoint(make_shim):
    tally = Tally(random.randrange(1 << 32))
    rng = random.Random(tally.seed)
    rig = None
    for kill in range(KILLS):
        if kill % KILLS_PER_ROOT == 0:
            if rig is not None:
                check_every_file(rig, tally)
                rig.daemon.signal_and_wait(signal.SIGTERM)
            rig = make_shim(
                gate={"echo": False},
                recording={"fsync_interval": FSYNC},
                technicians=ROSTER.config(),
            )
        _, session_id = ROSTER.login(rig)
        assert not rig.tech.buffer and not rig.dev.buffer
        # A deliberate random delay: the kill lands at a random moment of
        # the session, at least one fsync interval after it opened.
        seconds = rng.uniform(FSYNC * 1.5, 1.1)
        upstream, downstream = heavy_traffic(rig.tech.fd, rig.dev.fd, rng, seconds)
        killed_at = time.time()
        code, _ = rig.daemon.signal_and_wait(signal.SIGKILL)
        assert code == -signal.SIGKILL

        rig.tech.hangup()
        rig.dev.hangup()
        rig.new_technician()
        rig.new_device()
        rig.start()  # on the same storage root
        clean = clean_session(rig, b"after kill %d" % kill)
        what = f"kill {kill} after {seconds:.2f} s (seed {tally.seed})"
        killed = recording_of(rig, session_id)
        flows = (upstream, downstream)
        check_after_restart(rig, killed, clean, flows, killed_at, tally, what)
    check_every_file(rig, tally)
    rig.daemon.signal_and_wait(signal.SIGTERM)

    print(  # noqa: T201 -- the chaos numbers, shown with pytest -s
        f"\nkill -9 chaos ({KILLS} kills, seed {tally.seed}): torn file reported valid: "
        f"{tally.torn_reported_valid}; frames lost before the last fsync: {tally.frames_lost}"
    )
    assert tally.problems == []
    assert tally.torn_reported_valid == 0
    assert tally.frames_lost == 0
