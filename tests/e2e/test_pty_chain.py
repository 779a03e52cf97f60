"""Two-factor logins at the real daemon's port, from a terminal that sends
CR for Enter (picocom's default): the login line, `Next factor: <label>`,
the second code; any failure back to the one failure text; factors from
the config file and from `shimmfa technician add --factor`."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import termios
import tty

import pyotp
import pytest
import yaml

from waiting import wait_for

pytestmark = pytest.mark.e2e

ALICE = "alice@example.org"
BACKUP = "KRUGKIDROVUWG2ZAMJZG653OEBTG66BA"  # noqa: S105 - test secret
FAILURE = b"\r\nAuth fail: DENIED (invalid credentials)\r\n> "
SUCCESS = re.compile(rb"\r\nAuthenticated as (\S+); session (\S+)\r\n")


def two_factor_shim(make_shim, **gate):
    rig = make_shim(start=False, gate={"echo": False, **gate})
    for entry in rig.settings["technicians"]:
        if entry["technician_id"] == ALICE:
            entry["factors"] = [{"label": "Backup token", "totp_secret": BACKUP, "period": 10}]
    rig.config.write_text(yaml.safe_dump(rig.settings, sort_keys=False), encoding="utf-8")
    rig.start()
    return rig


def backup_code() -> str:
    return pyotp.TOTP(BACKUP, interval=10).now()


def test_a_two_factor_login_from_a_cr_terminal_opens_the_port(make_shim):
    rig = two_factor_shim(make_shim)
    rig.tech.send(f"{ALICE} {rig.code(ALICE)}\r".encode())
    assert rig.tech.read_until(b"\r\n> ") == b"\r\nNext factor: Backup token\r\n> "
    assert rig.dev.received == b""
    rig.tech.send(f"{backup_code()}\rstatus\r".encode())  # typed ahead behind the code
    assert SUCCESS.search(rig.tech.read_until(b"Disconnect to end session.\r\n"))
    rig.dev.read_until(b"status\r")
    assert rig.dev.received == b"status\r"
    log = rig.daemon.log_text()
    assert "session opened technician=alice@example.org" in log


def test_a_wrong_second_code_restarts_from_the_first_with_the_one_failure(make_shim):
    rig = two_factor_shim(make_shim)
    rig.tech.send(f"{ALICE} {rig.code(ALICE)}\r".encode())
    rig.tech.read_until(b"Next factor: Backup token\r\n> ")
    rig.tech.send(b"000000\r")
    assert rig.tech.read_until(b"\r\n> ") == FAILURE
    rig.tech.send(f"{backup_code()}\r".encode())  # a lone code is no login line now
    assert b"Format: <technician_id> <totp_code>" in rig.tech.read_until(b"\r\n> ")
    assert rig.dev.received == b""
    assert "auth failure technician='alice@example.org' result=BAD_CODE" in rig.daemon.log_text()
    assert "Backup token" in rig.daemon.log_text()  # the precise reason, in the log only


def test_factors_enrolled_with_the_cli_are_asked_for_at_the_port(make_shim):
    rig = make_shim(start=False, gate={"echo": False})
    added = rig.cli(
        "technician", "add", "carol@example.org", "--factor", "Phone 2", "--no-qr",
        "--period", "10", "--config", str(rig.config),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    secrets = re.findall(r"secret=([A-Z2-7]+)", added.stdout)
    assert len(secrets) == 2 and secrets[0] != secrets[1]
    assert "Factor 'Phone 2' of carol@example.org" in added.stdout
    rig.start()
    first, second = (pyotp.TOTP(secret, interval=10) for secret in secrets)
    rig.tech.send(f"carol@example.org {first.now()}\r".encode())
    assert rig.tech.read_until(b"\r\n> ") == b"\r\nNext factor: Phone 2\r\n> "
    rig.tech.send(f"{second.now()}\r".encode())
    assert SUCCESS.search(rig.tech.read_until(b"Disconnect to end session.\r\n"))


@pytest.mark.skipif(shutil.which("picocom") is None, reason="needs picocom (make test installs it)")
def test_a_two_factor_login_from_picocom(make_shim, tmp_path):
    """picocom, on a PTY wired to the shim's port by socat (a null-modem
    cable), typed into as a person would: Enter is CR."""
    rig = two_factor_shim(make_shim)
    laptop, laptop_slave = os.openpty()  # picocom's serial port
    tty.setraw(laptop_slave, termios.TCSANOW)
    port = os.ttyname(laptop_slave)  # held open until picocom has it: else socat reads EIO
    screen, screen_slave = os.openpty()  # the terminal picocom runs in
    os.set_blocking(screen, False)
    cable = subprocess.Popen(  # noqa: S603 - Debian's socat
        ["socat", f"FD:{rig.tech.fd}", f"FD:{laptop}"], pass_fds=(rig.tech.fd, laptop)
    )
    picocom = subprocess.Popen(  # noqa: S603 - Debian's picocom
        ["picocom", "--baud", "115200", "--noreset", port],
        stdin=screen_slave,
        stdout=screen_slave,
        stderr=screen_slave,
        start_new_session=True,
    )
    os.close(screen_slave)
    seen = bytearray()

    def read_screen(marker: bytes) -> bytes:
        wait_for(
            lambda: _pull(screen, seen) and marker in seen,
            f"picocom shows {marker!r}",
            10,
            detail=lambda: (bytes(seen[-300:]), rig.daemon.log_text()[-1500:]),
        )
        head, _, tail = bytes(seen).partition(marker)
        seen[:] = tail
        return head + marker

    try:
        read_screen(b"Terminal ready")
        os.close(laptop_slave)
        laptop_slave = -1
        # picocom flushes what was typed before it set its terminal raw: wait for that
        wait_for(lambda: not termios.tcgetattr(screen)[3] & termios.ICANON, "picocom's raw mode")
        os.write(screen, f"{ALICE} {rig.code(ALICE)}\r".encode())
        read_screen(b"Next factor: Backup token\r\n> ")
        assert rig.dev.received == b""
        os.write(screen, f"{backup_code()}\r".encode())
        assert SUCCESS.search(read_screen(b"Pass-through enabled. Disconnect to end session.\r\n"))
        os.write(screen, b"status\r")
        rig.dev.read_until(b"status\r")
        os.write(screen, b"\x01\x18")  # C-a C-x: picocom exits
        picocom.wait(timeout=10)
    finally:
        for process in (picocom, cable):
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        for fd in (screen, laptop, laptop_slave):
            if fd >= 0:
                os.close(fd)


def _pull(fd: int, into: bytearray) -> bool:
    """Read what `fd` has now into `into`; True (for `wait_for`'s predicate)."""
    with contextlib.suppress(BlockingIOError, OSError):
        into += os.read(fd, 65536)
    return True
