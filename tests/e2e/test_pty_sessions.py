"""How sessions end on real PTYs: idle timeout, technician hang-up, device
hang-up; after each, the gate is closed again and the next technician must
authenticate."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.e2e

BANNER = b"\r\nShim MFA gate. Authenticate as: <technician_id> <totp_code>\r\n> "
FAILURE = b"\r\nAuth fail: DENIED (invalid credentials)\r\n> "
FORMAT = b"\r\nFormat: <technician_id> <totp_code>\r\n> "
DEVICE_NOTICE = b"\r\nDevice not connected; try again later.\r\n"
IDLE_CLOSE = b"\r\nSession closed (idle_timeout).\r\n"


def assert_new_device_serves(rig, technician: str, line: bytes) -> None:
    """A device appears on the port: the banner comes back, `technician`
    logs in, and what they type reaches that device, and only that."""
    device = rig.new_device()
    assert rig.tech.read_until(BANNER) == BANNER
    rig.login(technician)
    rig.tech.send(line)
    device.read_until(line)
    assert device.received == line


def test_idle_timeout_ends_the_session_and_shows_the_banner(make_shim):
    rig = make_shim(gate={"echo": False}, session={"idle_timeout": 1})
    rig.login("alice@example.org")
    rig.tech.send(b"before idle\r")
    rig.dev.read_until(b"before idle\r")
    quiet_since = time.monotonic()

    closed = rig.tech.read_until(BANNER, timeout=5)

    assert closed == IDLE_CLOSE + BANNER
    assert time.monotonic() - quiet_since >= 0.9
    assert "reason=idle_timeout" in rig.daemon.log_text()
    rig.tech.send(b"after idle\r")
    assert rig.tech.read_until(b"\r\n> ") == FAILURE
    rig.dev.expect_nothing(0.3)
    rig.login("bob@example.org")
    rig.tech.send(b"bob here\r")
    rig.dev.read_until(b"bob here\r")
    assert rig.dev.received == b"before idle\rbob here\r"


def test_traffic_either_way_keeps_the_session_open(make_shim):
    rig = make_shim(gate={"echo": False}, session={"idle_timeout": 1})
    rig.login("alice@example.org")

    for n in range(3):  # 3 x 0.6 s of traffic, well past the 1 s idle timeout
        if n % 2:
            rig.tech.send(b"key %d\r" % n)
            rig.dev.read_until(b"key %d\r" % n)
        else:
            rig.dev.send(b"line %d\r\n" % n)
            assert rig.tech.read_until(b"\r\n") == b"line %d\r\n" % n
        rig.tech.expect_nothing(0.6)

    assert "reason=idle_timeout" not in rig.daemon.log_text()
    rig.tech.send(b"still open\r")
    rig.dev.read_until(b"still open\r")


def test_max_duration_ends_even_a_busy_session(make_shim):
    rig = make_shim(gate={"echo": False}, session={"idle_timeout": 60, "max_duration": 1})
    rig.login("alice@example.org")
    opened = time.monotonic()
    busy = [b"busy %d\r" % n for n in range(50)]
    for line in busy:  # typing every 0.1 s: never idle
        rig.tech.send(line)
        rig.tech.pump(0.1)
        if b"Session closed" in rig.tech.buffer:
            break

    closed = rig.tech.read_until(BANNER)
    assert closed.endswith(b"\r\nSession closed (max_duration).\r\n" + BANNER)
    assert 0.9 <= time.monotonic() - opened < 3
    rig.tech.send(b"late\r")
    rig.tech.read_until(FORMAT)
    rig.login("bob@example.org")
    rig.tech.send(b"bob here\r")
    rig.dev.read_until(b"bob here\r")
    from_alice = rig.dev.received.removesuffix(b"bob here\r")
    assert len(from_alice) > 0
    assert b"".join(busy).startswith(from_alice)
    assert from_alice.endswith(b"\r")


def test_technician_hangup_ends_the_session(make_shim):
    rig = make_shim(gate={"echo": False})
    rig.login("alice@example.org")
    rig.tech.send(b"before hangup\r")
    rig.dev.read_until(b"before hangup\r")

    rig.tech.hangup()
    rig.daemon.wait_log("reason=technician_hangup")
    newcomer = rig.new_technician()

    assert newcomer.read_until(BANNER) == BANNER
    newcomer.send(b"status\r")
    assert newcomer.read_until(b"\r\n> ") == FORMAT
    newcomer.send(b"log 100\r")
    assert newcomer.read_until(b"\r\n> ") == FAILURE
    rig.dev.expect_nothing(0.3)
    assert rig.dev.received == b"before hangup\r"
    assert rig.daemon.alive


def test_a_half_typed_line_does_not_survive_a_reconnect(make_shim):
    rig = make_shim(gate={"echo": False})
    alice = "alice@example.org"
    rig.tech.send(f"{alice} ".encode())
    rig.tech.hangup()
    newcomer = rig.new_technician()
    assert newcomer.read_until(BANNER) == BANNER

    newcomer.send(f"{rig.code(alice)}\r".encode())

    assert newcomer.read_until(b"\r\n> ") == FORMAT
    rig.login(alice)
    assert rig.dev.received == b""


def test_technician_hangup_while_the_device_streams(make_shim):
    rig = make_shim(gate={"echo": False})
    rig.login("alice@example.org")
    chunk = b"0123456789abcdef" * 256
    rig.dev.send(chunk)
    rig.tech.read_exactly(len(chunk))

    rig.tech.hangup()
    for _ in range(16):  # the device keeps talking to nobody
        rig.dev.send(chunk)
    rig.daemon.wait_log("reason=technician_hangup")
    newcomer = rig.new_technician()

    newcomer.read_until(BANNER)
    assert rig.daemon.alive, rig.daemon.log_text()
    assert "EMERGENCY" not in rig.daemon.log_text()
    rig.login("bob@example.org")
    newcomer.send(b"bob here\r")
    rig.dev.read_until(b"bob here\r")


def test_technician_hangup_first_seen_on_a_write_ends_the_session(make_shim):
    rig = make_shim(gate={"echo": False})
    rig.login("alice@example.org")
    # The device does not read: the shim stops reading the technician, so the
    # hang-up shows first when device output cannot be written to them.
    pattern = bytes(range(256))
    rig.tech.send_until_blocked(pattern)
    rig.tech.hangup()

    rig.dev.send(b"device talks\r\n")

    rig.daemon.wait_log("reason=technician_hangup")
    newcomer = rig.new_technician()
    assert newcomer.read_until(BANNER) == BANNER
    assert rig.daemon.alive, rig.daemon.log_text()
    newcomer.send(b"status\r")
    assert newcomer.read_until(b"\r\n> ") == FORMAT
    rig.login("bob@example.org")
    newcomer.send(b"bob here\r")
    rig.dev.read_until(b"bob here\r", timeout=20)
    from_alice = rig.dev.received.removesuffix(b"bob here\r")
    assert from_alice == (pattern * (len(from_alice) // 256 + 1))[: len(from_alice)]


def test_device_hangup_first_seen_on_a_write_locks_the_gate(make_shim):
    rig = make_shim(gate={"echo": False})
    rig.login("alice@example.org")
    # The technician does not read: the shim stops reading the device, so the
    # hang-up shows first when technician input cannot be written to it.
    rig.dev.send_until_blocked(b"0123456789abcdef")
    rig.dev.hangup()

    rig.tech.send(b"technician types\r")

    assert rig.tech.read_until(DEVICE_NOTICE, timeout=20).endswith(BANNER + DEVICE_NOTICE)
    rig.daemon.wait_log("reason=device_hangup")
    assert rig.daemon.alive, rig.daemon.log_text()
    assert_new_device_serves(rig, "bob@example.org", b"to the new device\r")


def test_device_hangup_locks_the_gate_until_the_device_returns(make_shim):
    rig = make_shim(gate={"echo": False})
    rig.login("alice@example.org")
    rig.tech.send(b"to the old device\r")
    rig.dev.read_until(b"to the old device\r")

    rig.dev.hangup()

    assert rig.tech.read_until(DEVICE_NOTICE) == BANNER + DEVICE_NOTICE
    rig.daemon.wait_log("reason=device_hangup")
    rig.tech.send(f"bob@example.org {rig.code('bob@example.org')}\r".encode())
    rig.tech.expect_nothing(0.3)  # no login while the device is away
    assert_new_device_serves(rig, "bob@example.org", b"to the new device\r")


def test_shim_started_without_a_device_shows_the_notice(make_shim):
    rig = make_shim(start=False, gate={"echo": False})
    rig.dev.hangup()
    rig.dev_link.unlink()
    rig.start(ready=False)

    assert rig.tech.read_until(DEVICE_NOTICE) == BANNER + DEVICE_NOTICE
    rig.tech.send(f"alice@example.org {rig.code('alice@example.org')}\r".encode())
    rig.tech.expect_nothing(0.3)
    assert_new_device_serves(rig, "alice@example.org", b"hello\r")
