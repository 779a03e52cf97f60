"""`shimmfa demo`: the whole shim on this machine, no hardware needed.

It makes two PTY pairs, writes a config, enrols a demo technician with a
fresh secret (QR code + URI), starts the simulated device and the real
`shimmfa run` daemon, then attaches the terminal as the technician
(Ctrl-] quits). `--check` runs the same flow unattended and prints a PASS
report; without a terminal on stdin the demo runs the check.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shimmfa.core.gate import BANNER
from shimmfa.core.totp import decode_secret, totp_code
from shimmfa.errors import DemoError
from shimmfa.shim.config import load_config
from shimmfa.shim.recorder.files import open_recording, raw_bytes, verify_file
from shimmfa.shim.state.store import StateStore
from shimmfa.shim.state.technicians import enrol, uri_for

TECHNICIAN = "demo@example.org"
QUIT = 0x1D  # Ctrl-]

CONFIG = """\
# written by `shimmfa demo`
shim:
  id: "demo-shim"
  description: "Demo: simulated ExampleMed VIP-3200 infusion pump on a PTY"
serial:
  technician_side_path: "{tech}"
  device_side_path: "{dev}"
  baudrate: 115200
storage:
  root: "{root}"
session:
  idle_timeout: 600
"""


@dataclass
class Demo:
    workdir: Path
    tech_master: int = -1
    dev_master: int = -1
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    secret: str = ""
    received: bytes = b""

    @property
    def config(self) -> Path:
        return self.workdir / "shim.yaml"

    @property
    def shim_log(self) -> Path:
        return self.workdir / "shim.log"

    @property
    def device_record(self) -> Path:
        return self.workdir / "device-received.bin"

    def current_code(self) -> str:
        return totp_code(decode_secret(self.secret), int(time.time() // 30), 6, "SHA1")

    def read_until(self, marker: bytes, timeout: float = 10.0) -> bytes:
        """Read the technician side until `marker` shows up; all of it."""
        deadline = time.monotonic() + timeout
        while marker not in self.received:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DemoError(
                    f"timed out waiting for {marker!r}; got {self.received[-200:]!r} "
                    f"(shim log: {self.shim_log})"
                )
            ready, _, _ = select.select([self.tech_master], [], [], left)
            if ready:
                try:
                    self.received += os.read(self.tech_master, 65536)
                except BlockingIOError:
                    pass
                except OSError:  # EIO: the shim has not opened its side yet
                    time.sleep(0.05)
        head, _, _ = self.received.partition(marker)
        self.received = self.received[len(head) + len(marker) :]
        return head + marker

    def send(self, data: bytes) -> None:
        os.write(self.tech_master, data)

    @property
    def recording_identity(self) -> Path:
        return self.workdir / "storage" / "keys" / "recording.agekey"

    def wait_for_recording(self, timeout: float = 10.0) -> Path:
        """The first session's recording, once its footer is written."""
        deadline = time.monotonic() + timeout
        while True:
            for path in sorted((self.workdir / "storage" / "sessions").glob("*.shrec")):
                if verify_file(path).status == "valid":
                    return path
            if time.monotonic() > deadline:
                raise DemoError("no complete session recording appeared")
            time.sleep(0.05)


def _pty_pair(link: Path) -> int:
    master, slave = os.openpty()
    tty.setraw(slave, termios.TCSANOW)
    link.unlink(missing_ok=True)
    link.symlink_to(os.ttyname(slave))
    os.close(slave)
    os.set_blocking(master, False)
    return master


def _spawn(args: list[str], log: Path, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "shimmfa", *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            pass_fds=pass_fds,
        )


@contextlib.contextmanager
def running_demo(workdir: Path) -> Iterator[Demo]:
    demo = Demo(workdir)
    try:
        demo.tech_master = _pty_pair(workdir / "tech")
        demo.dev_master = _pty_pair(workdir / "dev")
        demo.config.write_text(
            CONFIG.format(tech=workdir / "tech", dev=workdir / "dev", root=workdir / "storage")
        )
        settings = load_config(demo.config).settings
        store = StateStore(settings.storage_root)
        try:
            record = enrol(settings, store, TECHNICIAN, notes="demo technician")
            demo.secret = record.totp_secret
            _print_enrolment(uri_for(settings, record))
        finally:
            store.close()
        demo.processes.append(
            _spawn(
                ["devsim", "--fd", str(demo.dev_master), "--record", str(demo.device_record)],
                workdir / "devsim.log",
                (demo.dev_master,),
            )
        )
        demo.processes.append(_spawn(["run", "--config", str(demo.config)], demo.shim_log))
        demo.read_until(BANNER)
        yield demo
    finally:
        for process in reversed(demo.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in demo.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
        for fd in (demo.tech_master, demo.dev_master):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)


def _print_enrolment(uri: str) -> None:
    import segno

    print(f"Enrolled the demo technician {TECHNICIAN}; scan with an authenticator app:")  # noqa: T201
    segno.make(uri, error="m").terminal(compact=True)
    print(uri, flush=True)  # noqa: T201


def _check(demo: Demo) -> list[str]:
    steps: list[tuple[str, Callable[[], None]]] = []
    report: list[str] = []

    def step(name: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
        def add(fn: Callable[[], None]) -> Callable[[], None]:
            steps.append((name, fn))
            return fn

        return add

    @step("malformed login line refused, nothing reaches the device")
    def _() -> None:
        demo.send(b"hello\r")
        demo.read_until(b"Format: <technician_id> <totp_code>\r\n> ")

    @step(f"authenticated as {TECHNICIAN} with the current code")
    def _() -> None:
        demo.send(f"{TECHNICIAN} {demo.current_code()}\r".encode())
        demo.read_until(b"Pass-through enabled. Disconnect to end session.\r\n")

    @step("device login with its hard-coded password")
    def _() -> None:
        demo.send(b"\r")
        demo.read_until(b"login: ")
        demo.send(b"service\r")
        demo.read_until(b"password: ")
        demo.send(b"vip3200\r")
        demo.read_until(b"svc> ")

    @step("device status and a 200-line log stream")
    def _() -> None:
        demo.send(b"status\r")
        demo.read_until(b"state: RUNNING")
        demo.send(b"log 200\r")
        demo.read_until(b"end of log\r\n")

    @step("session ends when the technician hangs up")
    def _() -> None:
        os.close(demo.tech_master)
        demo.tech_master = -1
        deadline = time.monotonic() + 10
        while b"reason=technician_hangup" not in demo.shim_log.read_bytes():
            if time.monotonic() > deadline:
                raise DemoError("the shim did not log the end of the session")
            time.sleep(0.05)

    @step("the device never saw the unauthenticated line")
    def _() -> None:
        seen = demo.device_record.read_bytes()
        if b"hello" in seen or TECHNICIAN.encode() in seen:
            raise DemoError("unauthenticated bytes reached the device")

    @step("the session recording verifies and holds the device's output, encrypted")
    def _() -> None:
        path = demo.wait_for_recording()
        recording = open_recording(path, demo.recording_identity)
        if recording.verdict.status != "valid":
            raise DemoError(f"{path.name}: {recording.verdict.message}")
        if b"end of log" not in b"".join(raw_bytes(recording, "out")):
            raise DemoError("the recording lacks the device's output")
        if b"end of log" in path.read_bytes():
            raise DemoError("the recording holds plaintext")

    for name, fn in steps:
        started = time.monotonic()
        fn()
        report.append(f"  PASS  {name} ({(time.monotonic() - started) * 1000:.0f} ms)")
    return report


def _attach(demo: Demo) -> None:
    print(  # noqa: T201
        f"\r\nThe shim is up. Log in as:  {TECHNICIAN} <code from your app>\r\n"
        f"(current code: {demo.current_code()}). Then press Enter for the device's "
        "login: user service, password vip3200. Ctrl-] quits.\r\n",
        flush=True,
    )
    stdin = sys.stdin.fileno()
    saved = termios.tcgetattr(stdin)
    sys.stdout.buffer.write(BANNER + demo.received)
    sys.stdout.flush()
    tty.setraw(stdin)
    try:
        while True:
            ready, _, _ = select.select([stdin, demo.tech_master], [], [])
            if stdin in ready:
                data = os.read(stdin, 1024)
                if not data or QUIT in data:
                    return
                demo.send(data)
            if demo.tech_master in ready:
                with contextlib.suppress(BlockingIOError):
                    os.write(sys.stdout.fileno(), os.read(demo.tech_master, 65536))
    finally:
        termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        print("\r\nDemo ended.", flush=True)  # noqa: T201
        sessions = demo.workdir / "storage" / "sessions"
        print(  # noqa: T201
            f"Recordings are in {sessions}; replay one with:\n"
            f"  shimmfa recording play {sessions}/<file>.shrec --identity {demo.recording_identity}"
        )


def main(*, check: bool, workdir: Path | None) -> int:
    if not check and not sys.stdin.isatty():
        print("stdin is not a terminal: running the unattended check instead.")  # noqa: T201
        check = True
    temporary = workdir is None
    root = Path(tempfile.mkdtemp(prefix="shimmfa-demo-")) if workdir is None else workdir
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        with running_demo(root) as demo:
            if not check:
                _attach(demo)
                return 0
            report = _check(demo)
            shim = demo.processes[-1]
            shim.send_signal(signal.SIGTERM)
            code = shim.wait(timeout=5)
            report.append(f"  {'PASS' if code == 0 else 'FAIL'}  shim exits {code} on SIGTERM")
        print("\nshimmfa demo --check")  # noqa: T201
        print("\n".join(report))  # noqa: T201
        ok = all(line.startswith("  PASS") for line in report)
        print(f"{'PASS' if ok else 'FAIL'} in {time.monotonic() - started:.1f} s")  # noqa: T201
        return 0 if ok else 1
    finally:
        if temporary and check:  # an interactive demo keeps its recordings to replay
            shutil.rmtree(root, ignore_errors=True)
