"""The demo's shim side: two PTY pairs, a config, an enrolled demo
technician, the simulated device and the real `shimmfa run` daemon,
heartbeating to the demo's central service, syncing a technician enrolled
there and uploading its recordings; and the terminal attached as the
technician (Ctrl-] then h hangs up, Ctrl-] then q quits).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import termios
import time
import tty
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pyrage import x25519

from shimmfa.core.gate import BANNER
from shimmfa.core.totp import TechnicianRecord, decode_secret, totp_code
from shimmfa.demo.breakglass import SHIM_ADMIN, DemoBreakglass
from shimmfa.demo.central import ADMIN, AUDITOR, DemoCentral
from shimmfa.errors import DemoError
from shimmfa.shim.config import load_config
from shimmfa.shim.recorder.files import verify_file
from shimmfa.shim.state.anchor import provision_keys
from shimmfa.shim.state.keys import read_age_identity
from shimmfa.shim.state.store import StateStore
from shimmfa.shim.state.technicians import enrol, enrol_factor, uri_for

TECHNICIAN = "demo@example.org"
VENDOR = "vic@vendor.example.org"  # enrolled through central's API, synced to the shim
SYNC_PERIOD = 5
TWO_FACTOR = "demo2@example.org"  # asked for a second factor: `Next factor: Backup`
SECOND_FACTOR = "Backup"
SHIM_ID = "demo-shim"
HARDWARE_ID = "demo-hw-0001"
HEARTBEAT_PERIOD = 5.0
QUIT = 0x1D  # Ctrl-]

CONFIG = """\
# written by `shimmfa demo`
shim:
  id: "demo-shim"
  hardware_id: "demo-hw-0001"
  description: "Demo: simulated ExampleMed VIP-3200 infusion pump on a PTY"
serial:
  technician_side_path: "{tech}"
  device_side_path: "{dev}"
  baudrate: 115200
storage:
  root: "{root}"
session:
  idle_timeout: 600
tamper:
  heartbeat_period: {period}
central:
  url: "{central_url}"
  token_file: "{token}"
  ca_file: "{ca}"
  public_key: "{central_key}"
  sync_period: {sync_period}
recording:
  recipients:
    - "{auditor}"    # the auditors' key: auditor.agekey in the demo's folder
    - "{central_recipient}"    # central's, so it can play the sessions back
"""


@dataclass
class Demo:
    workdir: Path
    tech_master: int = -1
    dev_master: int = -1
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    secret: str = ""
    vendor_secret: str = ""  # VENDOR's, from central's enrolment
    second_secrets: tuple[str, str] = ("", "")  # demo2's two factors
    central: DemoCentral | None = None
    breakglass: DemoBreakglass | None = None
    public_key: str = ""
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

    def current_code(self, secret: str | None = None) -> str:
        return totp_code(decode_secret(secret or self.secret), int(time.time() // 30), 6, "SHA1")

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

    def reconnect_technician(self) -> None:
        """Plug a fresh laptop cable in: a new PTY where the old one was."""
        if self.tech_master >= 0:
            os.close(self.tech_master)
        self.tech_master = _pty_pair(self.workdir / "tech")
        self.received = b""

    @property
    def recording_identity(self) -> Path:
        """The auditors' age identity (recordings are encrypted to it and
        to central's recording recipient)."""
        return self.workdir / "auditor.agekey"

    def shim_log_text(self) -> str:
        return self.shim_log.read_text(encoding="utf-8", errors="replace")

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
    central = demo.central = DemoCentral(workdir / "central")
    try:
        demo.tech_master = _pty_pair(workdir / "tech")
        demo.dev_master = _pty_pair(workdir / "dev")
        storage = workdir / "storage"
        storage.mkdir(mode=0o700, exist_ok=True)
        keys, _ = provision_keys(storage, time.time())
        demo.public_key = keys.public_key_text
        central.start()
        token = central.register(
            SHIM_ID, keys.public_key_text, keys.recipient, HARDWARE_ID, HEARTBEAT_PERIOD
        )
        central_key, central_recipient = central.keys()
        demo.config.write_text(
            CONFIG.format(
                tech=workdir / "tech",
                dev=workdir / "dev",
                root=storage,
                period=HEARTBEAT_PERIOD,
                central_url=central.url,
                token=token,
                ca=central.ca_file,
                central_key=central_key,
                sync_period=SYNC_PERIOD,
                auditor=_auditor_identity(demo.recording_identity),
                central_recipient=central_recipient,
            )
        )
        demo.vendor_secret = central.enrol_technician(VENDOR, SHIM_ID)
        settings = load_config(demo.config).settings
        store = StateStore(settings.storage_root)
        try:
            record = enrol(settings, store, TECHNICIAN, notes="demo technician")
            demo.secret = record.totp_secret
            _print_enrolment(TECHNICIAN, uri_for(settings, record))
            second = enrol(settings, store, TWO_FACTOR, notes="demo technician, two factors")
            uri = enrol_factor(settings, store, TWO_FACTOR, SECOND_FACTOR)
            demo.second_secrets = (second.totp_secret, uri.split("secret=")[1].split("&")[0])
            _print_enrolment(TWO_FACTOR, uri_for(settings, second), qr=False)
            _print_enrolment(f"{TWO_FACTOR}'s second factor ({SECOND_FACTOR})", uri, qr=False)
            vendor_uri = uri_for(settings, TechnicianRecord(VENDOR, demo.vendor_secret))
            _print_enrolment(f"{VENDOR} at central (synced to the shim)", vendor_uri, qr=False)
            shim_admin = enrol(settings, store, SHIM_ADMIN, notes="demo", roles=("admin",))
        finally:
            store.close()
        demo.breakglass = DemoBreakglass(workdir / "breakglass", central)
        print(demo.breakglass.provision(demo.config, demo.current_code(shim_admin.totp_secret)))  # noqa: T201
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
        central.stop()
        for fd in (demo.tech_master, demo.dev_master):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)


def _auditor_identity(path: Path) -> str:
    """An auditor's age identity (0600) in the demo's folder; its recipient."""
    if path.exists():  # a demo run again in its folder
        return str(read_age_identity(path).to_public())
    identity = x25519.Identity.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(
            f"# the demo auditor's key\n# public key: {identity.to_public()}\n{identity}\n"
        )
    return str(identity.to_public())


def _print_enrolment(who: str, uri: str, *, qr: bool = True) -> None:
    import segno

    print(f"Enrolled {who}; scan with an authenticator app:")  # noqa: T201
    if qr:
        segno.make(uri, error="m").terminal(compact=True)
    print(uri, flush=True)  # noqa: T201


def _menu(stdin: int) -> str:
    """After Ctrl-]: h unplugs the laptop's cable (the session ends, its
    recording goes to central, a new cable is plugged in), anything else
    quits."""
    os.write(
        sys.stdout.fileno(),
        b"\r\n[demo] h: hang up (unplug the cable: the session ends and its recording "
        b"goes to central), any other key: quit > ",
    )
    key = os.read(stdin, 1)
    os.write(sys.stdout.fileno(), b"\r\n")
    return "hangup" if key in (b"h", b"H") else "quit"


def attach(demo: Demo) -> None:
    central = demo.central
    if central is not None:
        print(  # noqa: T201
            f"\r\nThe central service is at {central.url} (API docs at {central.url}/docs;"
            f" its CA: {central.ca_file}).\r\n"
            f"Operator login: {ADMIN}, password {central.password}, TOTP secret in "
            f"{central.workdir / 'admin.totp'} (current code {central.admin_code()}), then "
            f"the second factor's in {central.workdir / 'admin.totp.second'}; "
            f"an admin API token is in {central.workdir / 'admin.token'}.\r\n"
            f"Auditor login (plays sessions back): {AUDITOR}, password "
            f"{central.auditor[0] if central.auditor else '?'}, TOTP secret in "
            f"{central.auditor[1] if central.auditor else '?'}.\r\n"
            f"The fleet: shimmfa central status --database-url {central.database_url}\r\n",
            flush=True,
        )
    breakglass = demo.breakglass
    if breakglass is not None and central is not None:
        folder = breakglass.workdir
        print(  # noqa: T201
            "\r\nBreak-glass: the shim's deal is registered at central; holders clara, carl, "
            "cody (clinical engineering, 2 needed) AND iris, ivo (infosec, 1 needed), their "
            f"age keys, API tokens and Tocs in {folder}. Request the code as the admin "
            f"(Break-glass page, or POST /api/v1/breakglass/requests), then each holder:\r\n"
            f"  shimmfa quorum approve --url {central.url}/quorum --session <session_id> "
            f"--tek <tek> --toc-file {breakglass.deal} --player clinical/clara "
            f"--identity {folder}/clara.agekey --token-file {folder}/clara.token "
            f"--ca-file {central.ca_file}\r\n"
            "and type `breakglass <code>` at the port.\r\n",
            flush=True,
        )
    print(  # noqa: T201
        f"\r\nThe shim is up. Log in as:  {TECHNICIAN} <code from your app>\r\n"
        f"(current code: {demo.current_code()}). Then press Enter for the device's "
        "login: user service, password vip3200. Ctrl-] then h hangs up (ends the session), "
        "Ctrl-] then q quits.\r\n"
        f"Or with two factors: {TWO_FACTOR} {demo.current_code(demo.second_secrets[0])}, "
        f"then at `Next factor: {SECOND_FACTOR}` {demo.current_code(demo.second_secrets[1])} "
        "(codes of now).\r\n"
        f"Or as {VENDOR}, enrolled at central and synced to the shim: "
        f"{demo.current_code(demo.vendor_secret)}; its recording is uploaded to central when "
        f"the session ends (Sessions page of the UI, as {AUDITOR}).\r\n"
        f"To see the shim go missing at central: kill -9 {demo.processes[-1].pid}\r\n",
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
                if not data:
                    return
                if QUIT in data:
                    demo.send(data[: data.index(QUIT)])
                    if _menu(stdin) != "hangup":
                        return
                    demo.reconnect_technician()  # the shim ends the session, then greets anew
                    continue
                demo.send(data)
            if demo.tech_master in ready:
                try:
                    os.write(sys.stdout.fileno(), os.read(demo.tech_master, 65536))
                except BlockingIOError:
                    pass
                except OSError:  # EIO: a new cable, the shim has not opened its end yet
                    time.sleep(0.05)
    finally:
        termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        print("\r\nDemo ended.", flush=True)  # noqa: T201
        sessions = demo.workdir / "storage" / "sessions"
        print(  # noqa: T201
            f"Recordings are in {sessions}; replay one with:\n"
            f"  shimmfa recording play {sessions}/<file>.shrec --identity {demo.recording_identity}"
        )
