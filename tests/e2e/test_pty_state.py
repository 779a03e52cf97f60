"""Durable state across a daemon restart, seen from the port: a used code
stays used, a lockout stays until an operator unlocks it."""

from __future__ import annotations

import re
import signal

import pytest

pytestmark = pytest.mark.e2e

FAILURE = b"\r\nAuth fail: DENIED (invalid credentials)\r\n> "


def auth_results(log: str) -> list[str]:
    return re.findall(r"auth failure technician=\S+ result=(\w+)", log)


def stop_within_a_second(rig) -> None:
    code, elapsed = rig.daemon.signal_and_wait(signal.SIGTERM)
    assert code == 0, rig.daemon.log_text()
    assert elapsed < 1.0


def test_a_code_used_before_a_restart_is_a_replay_after_it(make_shim):
    rig = make_shim(gate={"echo": False})
    alice = "alice@example.org"
    code = rig.code(alice)
    rig.login(alice, code)

    stop_within_a_second(rig)
    rig.start()
    rig.tech.send(f"{alice} {code}\r".encode())

    assert rig.tech.read_until(b"\r\n> ") == FAILURE
    assert auth_results(rig.daemon.log_text()) == ["REPLAY"]
    rig.login("bob@example.org")
    rig.tech.send(b"bob here\r")
    rig.dev.read_until(b"bob here\r")
    assert rig.dev.received == b"bob here\r"


def test_a_lockout_survives_a_restart_until_unlocked(make_shim):
    rig = make_shim(gate={"echo": False}, totp={"max_failures": 3, "lockout_seconds": 300})
    alice = "alice@example.org"
    for _ in range(3):
        rig.tech.send(f"{alice} {rig.wrong_code(alice)}\r".encode())
        assert rig.tech.read_until(b"\r\n> ") == FAILURE
    rig.tech.send(f"{alice} {rig.code(alice)}\r".encode())
    assert rig.tech.read_until(b"\r\n> ") == FAILURE
    assert auth_results(rig.daemon.log_text()) == ["BAD_CODE"] * 3 + ["LOCKED_OUT"]

    stop_within_a_second(rig)
    rig.start()
    rig.tech.send(f"{alice} {rig.code(alice)}\r".encode())
    assert rig.tech.read_until(b"\r\n> ") == FAILURE
    assert auth_results(rig.daemon.log_text()) == ["LOCKED_OUT"]
    listed = rig.cli("technician", "list", "--config", str(rig.config))
    assert listed.returncode == 0, listed.stderr
    alice_row = next(line for line in listed.stdout.splitlines() if alice in line)
    assert "locked" in alice_row

    unlocked = rig.cli("technician", "unlock", alice, "--config", str(rig.config))

    assert unlocked.returncode == 0, unlocked.stderr
    assert unlocked.stdout.strip() == f"{alice} unlocked."
    rig.login(alice)  # the running daemon sees the unlock without a restart
    rig.tech.send(b"alice is back\r")
    rig.dev.read_until(b"alice is back\r")
    assert rig.dev.received == b"alice is back\r"


def test_a_restart_does_not_reset_the_ports_backoff(make_shim):
    rig = make_shim(gate={"echo": False, "backoff_initial": 30, "backoff_max": 30})
    alice = "alice@example.org"
    rig.tech.send(f"{alice} {rig.wrong_code(alice)}\r".encode())
    assert rig.tech.read_until(b"\r\n> ") == FAILURE

    stop_within_a_second(rig)
    rig.start()
    rig.tech.send(f"{alice} {rig.code(alice)}\r".encode())

    notice = rig.tech.read_until(b"\r\n> ")
    match = re.fullmatch(
        rb"\r\nToo many failed attempts: input ignored for (\d+) s\.\r\n> ", notice
    )
    assert match is not None, notice
    assert 20 <= int(match.group(1)) <= 30
    assert auth_results(rig.daemon.log_text()) == []
    assert "1 failed login(s) in a row before the restart" in rig.daemon.log_text()
    assert rig.dev.received == b""
