"""End-to-end harness: the real `shimmfa run` daemon between two PTY pairs.

Rules:
- Each side is a PTY pair made here. The daemon opens the slave through a
  symlink in tmp_path (like socat's `link=`), so a reconnect is a new pair
  plus re-pointing the link; the test holds the master.
- Waiting is always for a condition with a deadline (select, or `wait_for`
  polling); never a fixed sleep standing in for synchronisation.
- Every byte read from a master is kept in `PtySide.transcript`, so a test
  can assert exactly what reached the device.
- The daemon is always stopped at teardown (SIGTERM, then SIGKILL), and its
  stderr is attached to the report of a failing test.
"""

from __future__ import annotations

import base64
import copy
import errno
import os
import re
import select
import signal
import subprocess
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyotp
import pytest
import yaml

from waiting import wait_for

POLL = 0.01
DEFAULT_TIMEOUT = 10.0
HARNESS_BANNER = b"Shim MFA gate. Authenticate as: <technician_id> <totp_code>\r\n> "
_SUCCESS = re.compile(
    rb"Authenticated as (?P<id>\S+); session (?P<sid>\S+)\r\n"
    rb"Pass-through enabled\. Disconnect to end session\.\r\n"
)
_REPLY_ENDS = (b"Disconnect to end session.\r\n", b")\r\n> ", b"<totp_code>\r\n> ", b"later.\r\n")
_RIGS = pytest.StashKey[list["ShimRig"]]()

# Technicians written into every config: (id, base32 secret, period).
TECHNICIANS = {
    "alice@example.org": (base64.b32encode(b"e2e-alice-secret-160").decode(), 10),
    "bob@example.org": (base64.b32encode(b"e2e-bob-secret-160b!").decode(), 10),
}


def _tail(data: bytes | bytearray, size: int = 300) -> str:
    """What a failure message shows of `data`: all of it, or its last bytes."""
    if len(data) <= size:
        return repr(bytes(data))
    return f"...{bytes(data[-size:])!r}"


class PtySide:
    """The test's end of one PTY pair; the daemon opens the slave via `link`."""

    def __init__(self, link: Path, name: str) -> None:
        self.name = name
        master, slave = os.openpty()
        tty.setraw(slave, termios.TCSANOW)
        slave_path = os.ttyname(slave)
        os.close(slave)  # only the daemon holds the slave: its close is our EIO
        os.set_blocking(master, False)
        self.fd = master
        self.transcript = bytearray()  # every byte ever read from the master
        self.buffer = bytearray()  # read but not yet consumed by read_until
        staging = link.with_name(link.name + ".new")
        staging.unlink(missing_ok=True)
        staging.symlink_to(slave_path)
        os.replace(staging, link)

    def _read_once(self, timeout: float) -> int:
        """Wait up to `timeout` for data and read it; the number of bytes read."""
        if self.fd < 0:
            raise AssertionError(f"{self.name}: side already hung up")
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0.0))
        if not ready:
            return 0
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return 0
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            # The daemon has not opened (or has closed) the slave: not yet.
            time.sleep(min(POLL, max(timeout, 0.0)))
            return 0
        self.transcript += data
        self.buffer += data
        return len(data)

    def pump(self, duration: float) -> None:
        """Collect whatever arrives during `duration` seconds."""
        deadline = time.monotonic() + duration
        while (left := deadline - time.monotonic()) > 0:
            self._read_once(left)

    def read_until(self, *markers: bytes, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """Everything up to and including the first of `markers` to arrive
        (consumed from the buffer)."""
        deadline = time.monotonic() + timeout
        while True:
            ends = [self.buffer.find(m) + len(m) for m in markers if m in self.buffer]
            if ends:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"{self.name}: none of {markers!r} within {timeout} s; "
                    f"got {len(self.buffer)} bytes: {_tail(self.buffer)}"
                )
            self._read_once(left)
        end = min(ends)
        head = bytes(self.buffer[:end])
        del self.buffer[:end]
        return head

    def read_exactly(self, size: int, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """The next `size` bytes (consumed from the buffer)."""
        deadline = time.monotonic() + timeout
        while len(self.buffer) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"{self.name}: {len(self.buffer)} of {size} bytes within {timeout} s; "
                    f"got {_tail(self.buffer)}"
                )
            self._read_once(left)
        head = bytes(self.buffer[:size])
        del self.buffer[:size]
        return head

    def expect_nothing(self, duration: float) -> None:
        """Fail if any byte arrives during the next `duration` seconds."""
        before = len(self.transcript)
        self.pump(duration)
        arrived = bytes(self.transcript[before:])
        assert arrived == b"", f"{self.name}: {len(arrived)} unexpected bytes: {_tail(arrived)}"

    def send(self, data: bytes, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Write all of `data`, reading what comes back meanwhile (no deadlock)."""
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: {len(view)} bytes not written in {timeout} s")
            readable, writable, _ = select.select([self.fd], [self.fd], [], left)
            if readable:
                self._read_once(0)
            if writable:
                try:
                    view = view[os.write(self.fd, view) :]
                except BlockingIOError:
                    pass

    def send_until_blocked(self, pattern: bytes, stall: float = 0.5, limit: int = 8 << 20) -> int:
        """Write `pattern` over and over until the PTY takes no byte for
        `stall` seconds (whoever should read it has stopped). Returns how many
        bytes of the endless repetition of `pattern` were written."""
        written = 0
        while written < limit:
            _, writable, _ = select.select([], [self.fd], [], stall)
            if not writable:
                return written
            try:
                written += os.write(self.fd, pattern[written % len(pattern) :])
            except BlockingIOError:
                pass
        raise AssertionError(f"{self.name}: still taking bytes after {limit}")

    def hangup(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Technician(PtySide):
    """The technician's laptop: holds the master of the technician-side PTY."""


class Device(PtySide):
    """The medical device: everything the shim wrote to it is in `transcript`."""

    @property
    def received(self) -> bytes:
        return bytes(self.transcript)


def exchange(
    tech: PtySide, to_device: bytes, dev: PtySide, to_tech: bytes, timeout: float = 30.0
) -> tuple[bytes, bytes]:
    """Write both directions at once and read both sides until each has got
    as many bytes as the other side sent. Returns (at device, at technician)."""
    pending = {tech.fd: memoryview(to_device), dev.fd: memoryview(to_tech)}
    want = {dev: len(dev.buffer) + len(to_device), tech: len(tech.buffer) + len(to_tech)}
    deadline = time.monotonic() + timeout
    while any(pending.values()) or any(len(s.buffer) < n for s, n in want.items()):
        left = deadline - time.monotonic()
        if left <= 0:
            got = {s.name: f"{len(s.buffer)}/{n}" for s, n in want.items()}
            raise AssertionError(f"exchange incomplete after {timeout} s: {got} bytes")
        writers = [fd for fd, view in pending.items() if view]
        readable, writable, _ = select.select([tech.fd, dev.fd], writers, [], left)
        for side in (tech, dev):
            if side.fd in readable:
                side._read_once(0)
        for fd in writable:
            try:
                pending[fd] = pending[fd][os.write(fd, pending[fd]) :]
            except BlockingIOError:
                pass
    return dev.read_exactly(len(to_device)), tech.read_exactly(len(to_tech))


class Daemon:
    """One `shimmfa run` process; its stdout and stderr go to `log`."""

    def __init__(self, config: Path, log: Path, prefix: Sequence[str] = ()) -> None:
        """`prefix`: a command that restricts itself, then execs the daemon's
        command line given as its last arguments (the hardening tests)."""
        self.config = config
        self.log = log
        self.signalled = False  # the test stopped it on purpose
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [*prefix, sys.executable, "-m", "shimmfa", "run", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_log(self, text: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        wait_for(lambda: text in self.log_text(), f"{text!r} in the daemon log", timeout)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def signal_and_wait(
        self, signum: int = signal.SIGTERM, timeout: float = 5.0
    ) -> tuple[int, float]:
        """Send `signum`; return (exit code, seconds until the process ended)."""
        started = time.monotonic()
        self.signalled = True
        self.process.send_signal(signum)
        code = self.process.wait(timeout=timeout)
        return code, time.monotonic() - started

    def terminate(self) -> str | None:
        """Stop the daemon; what was wrong with how it ended, if anything."""
        if self.signalled:
            self.process.wait()
            return None
        code = self.process.poll()
        if code is not None:
            return f"{self.log.name}: shimmfa run exited by itself with code {code}"
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return f"{self.log.name}: shimmfa run ignored SIGTERM for 5 s; killed"
        return None if code == 0 else f"{self.log.name}: SIGTERM exit code {code}, not 0"


class ShimRig:
    """A config, two PTY sides and the daemon(s) running on them."""

    def __init__(self, root: Path, overrides: dict[str, Any]) -> None:
        self.root = root
        self.tech_link = root / "tech"
        self.dev_link = root / "dev"
        self.storage = root / "storage"
        self.config = root / "shim.yaml"
        self.settings = _merge(self._base_settings(), overrides)
        self.config.write_text(yaml.safe_dump(self.settings, sort_keys=False), encoding="utf-8")
        self.daemons: list[Daemon] = []
        self.sides: list[PtySide] = []
        self.tech = self.new_technician()
        self.dev = self.new_device()

    def _base_settings(self) -> dict[str, Any]:
        return {
            "shim": {"id": "e2e-shim", "description": "end-to-end test"},
            "serial": {
                "technician_side_path": str(self.tech_link),
                "device_side_path": str(self.dev_link),
                "baudrate": 115200,
            },
            "storage": {"root": str(self.storage)},
            "totp": {"max_failures": 5, "lockout_seconds": 300},
            "session": {"idle_timeout": 60},
            "gate": {"backoff_initial": 0},
            "technicians": [
                {"technician_id": tid, "totp_secret": secret, "period": period}
                for tid, (secret, period) in TECHNICIANS.items()
            ],
        }

    # -- sides -------------------------------------------------------------

    def new_technician(self) -> Technician:
        """Plug a new technician in: a new PTY pair at the technician link."""
        side = Technician(self.tech_link, "technician")
        self.sides.append(side)
        self.tech = side
        return side

    def new_device(self) -> Device:
        side = Device(self.dev_link, "device")
        self.sides.append(side)
        self.dev = side
        return side

    # -- the daemon ----------------------------------------------------------

    @property
    def daemon(self) -> Daemon:
        return self.daemons[-1]

    def start(self, *, ready: bool = True, prefix: Sequence[str] = ()) -> Daemon:
        """Start `shimmfa run` (through `prefix`, see `Daemon`); with
        `ready`, wait for (and consume) its banner."""
        daemon = Daemon(self.config, self.root / f"daemon-{len(self.daemons)}.log", prefix)
        self.daemons.append(daemon)
        deadline = time.monotonic() + DEFAULT_TIMEOUT
        while ready and HARNESS_BANNER not in self.tech.buffer:
            assert daemon.alive, f"shimmfa run exited with {daemon.process.returncode} at start"
            assert time.monotonic() < deadline, f"no banner: {_tail(self.tech.buffer)}"
            self.tech._read_once(0.05)
        if ready:
            self.tech.read_until(HARNESS_BANNER)
        return daemon

    def close(self) -> list[str]:
        """Stop every daemon and hang up every side; the problems found."""
        problems = [p for daemon in self.daemons if (p := daemon.terminate())]
        for side in self.sides:
            side.hangup()
        return problems

    # -- technicians and codes -------------------------------------------------

    def totp(self, technician_id: str) -> pyotp.TOTP:
        secret, period = TECHNICIANS[technician_id]
        return pyotp.TOTP(secret, interval=period)

    def code(self, technician_id: str) -> str:
        return self.totp(technician_id).now()

    def wrong_code(self, technician_id: str) -> str:
        """A well-formed code that matches no time step near now."""
        totp = self.totp(technician_id)
        now = time.time()
        near = {totp.at(now + step * totp.interval) for step in range(-3, 4)}
        candidate = int(totp.at(now))
        while f"{candidate:06d}" in near:
            candidate = (candidate + 1) % 1_000_000
        return f"{candidate:06d}"

    def login(self, technician_id: str, code: str | None = None) -> str:
        """Authenticate at the gate; the session ID. Fails on any other reply."""
        line = f"{technician_id} {code or self.code(technician_id)}\r".encode()
        self.tech.send(line)
        reply = self.tech.read_until(*_REPLY_ENDS)
        match = _SUCCESS.search(reply)
        assert match is not None, f"login as {technician_id} failed: {reply!r}"
        assert match["id"].decode() == technician_id
        return match["sid"].decode()

    def exchange(
        self, to_device: bytes, to_technician: bytes, timeout: float = 30.0
    ) -> tuple[bytes, bytes]:
        """Both directions at once; (what the device got, what the technician got)."""
        return exchange(self.tech, to_device, self.dev, to_technician, timeout)

    @staticmethod
    def cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """`shimmfa ARGS` as a subprocess."""
        return subprocess.run(
            [sys.executable, "-m", "shimmfa", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@pytest.fixture
def make_shim(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., ShimRig]]:
    """`make_shim(start=True, ready=True, **config_sections)` -> a running rig.
    With `ready`, the technician's banner has been read already."""
    rigs = request.node.stash.setdefault(_RIGS, [])

    def make(*, start: bool = True, ready: bool = True, **overrides: Any) -> ShimRig:
        root = tmp_path / f"rig{len(rigs)}"
        root.mkdir()
        rig = ShimRig(root, overrides)
        rigs.append(rig)
        if start:
            rig.start(ready=ready)
        return rig

    yield make
    problems = [problem for rig in rigs for problem in rig.close()]
    if problems:
        pytest.fail("; ".join(problems))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        for rig in item.stash.get(_RIGS, []):
            for daemon in rig.daemons:
                status = daemon.process.poll()
                report.sections.append(
                    (f"shimmfa daemon {daemon.log.name} (exit {status})", daemon.log_text())
                )
    return report
