"""Pass-through after authentication, through the real daemon on PTYs:
byte-exact both ways, without waiting for the other direction, and under
backpressure."""

from __future__ import annotations

import random

import pytest

pytestmark = pytest.mark.e2e


def test_bytes_typed_ahead_of_the_login_are_forwarded(make_shim):
    rig = make_shim(gate={"echo": False})
    alice = "alice@example.org"

    rig.tech.send(f"{alice} {rig.code(alice)}\rhello device\r".encode())

    rig.tech.read_until(b"Disconnect to end session.\r\n")
    rig.dev.read_until(b"hello device\r")
    rig.dev.expect_nothing(0.3)
    assert rig.dev.received == b"hello device\r"


def test_the_lf_of_a_crlf_login_line_is_not_forwarded_even_in_a_later_read(make_shim):
    rig = make_shim(gate={"echo": False})
    alice = "alice@example.org"
    rig.tech.send(f"{alice} {rig.code(alice)}\r".encode())
    rig.tech.read_until(b"Disconnect to end session.\r\n")

    rig.tech.send(b"\nstatus\r")

    rig.dev.read_until(b"status\r")
    assert rig.dev.received == b"status\r"


def test_device_output_reaches_the_technician_without_technician_input(make_shim):
    rig = make_shim(gate={"echo": False})
    rig.dev.send(b"output while nobody is logged in\r\n")
    rig.tech.expect_nothing(0.3)  # discarded while the gate is closed

    rig.login("alice@example.org")
    for n in range(3):
        line = b"%06d INFO rate=12.5ml/h\r\n" % n
        rig.dev.send(line)
        assert rig.tech.read_exactly(len(line)) == line

    assert b"nobody is logged in" not in rig.tech.transcript
    assert rig.dev.received == b""


def test_all_256_byte_values_pass_unchanged_both_ways(make_shim):
    rig = make_shim()
    rig.login("alice@example.org")
    every_byte = bytes(range(256))

    rig.tech.send(every_byte)
    assert rig.dev.read_exactly(256) == every_byte
    rig.dev.send(every_byte)
    assert rig.tech.read_exactly(256) == every_byte
    at_device, at_technician = rig.exchange(every_byte * 4, every_byte[::-1] * 4)
    assert at_device == every_byte * 4
    assert at_technician == every_byte[::-1] * 4


def test_one_mebibyte_each_way_arrives_intact(make_shim):
    rig = make_shim()
    rig.login("alice@example.org")
    rng = random.Random(3200)
    upstream = rng.randbytes(1 << 20)
    downstream = rng.randbytes(1 << 20)

    at_device, at_technician = rig.exchange(upstream, downstream, timeout=60)

    assert at_device == upstream
    assert at_technician == downstream
    rig.dev.expect_nothing(0.2)
    assert len(rig.dev.received) == len(upstream)
    assert rig.daemon.alive
