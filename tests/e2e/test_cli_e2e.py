"""The `shimmfa` command line as an operator uses it, against a running shim:
technician management takes effect without a restart; the demo passes."""

from __future__ import annotations

import re
import subprocess
import sys

import pyotp
import pytest

pytestmark = pytest.mark.e2e

FAILURE = b"\r\nAuth fail: DENIED (invalid credentials)\r\n> "
IDLE_CLOSE = b"Session closed (idle_timeout).\r\n"
BANNER = b"\r\nShim MFA gate. Authenticate as: <technician_id> <totp_code>\r\n> "
URI = re.compile(r"otpauth://totp/\S+")


def test_technician_add_list_uri_remove_against_a_running_daemon(make_shim):
    rig = make_shim(gate={"echo": False}, session={"idle_timeout": 1})
    config = str(rig.config)
    dave = "dave@example.org"

    added = rig.cli("technician", "add", dave, "--config", config, "--period", "10")

    assert added.returncode == 0, added.stderr
    uris = URI.findall(added.stdout)
    assert len(uris) == 1, added.stdout
    totp = pyotp.parse_uri(uris[0])
    assert (totp.name, totp.issuer, totp.interval, totp.digits) == (dave, "ShimMFA", 10, 6)
    assert len(totp.byte_secret()) * 8 == 160

    listed = rig.cli("technician", "list", "--config", config)
    assert listed.returncode == 0, listed.stderr
    dave_row = next((line for line in listed.stdout.splitlines() if dave in line), "")
    assert "state DB" in dave_row, listed.stdout
    assert "alice@example.org" in listed.stdout
    shown = rig.cli("technician", "uri", dave, "--config", config, "--no-qr")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == uris[0]

    rig.login(dave, totp.now())  # the running daemon, not restarted
    rig.tech.send(b"dave was here\r")
    rig.dev.read_until(b"dave was here\r")
    rig.tech.read_until(IDLE_CLOSE + BANNER, timeout=5)

    removed = rig.cli("technician", "remove", dave, "--config", config)
    assert removed.returncode == 0, removed.stderr
    rig.tech.send(f"{dave} {totp.now()}\r".encode())
    assert rig.tech.read_until(b"\r\n> ") == FAILURE
    results = re.findall(r"result=(\w+)", rig.daemon.log_text())
    assert results == ["BAD_USER"]
    listed = rig.cli("technician", "list", "--config", config)
    assert dave not in listed.stdout
    assert rig.dev.received == b"dave was here\r"


def test_technician_commands_refuse_bad_requests(make_shim):
    rig = make_shim(start=False)
    config = str(rig.config)

    in_file = rig.cli("technician", "remove", "alice@example.org", "--config", config)
    unknown = rig.cli("technician", "unlock", "nobody@example.org", "--config", config)
    twice = [rig.cli("technician", "add", "erin@example.org", "--config", config, "--no-qr")]
    twice.append(rig.cli("technician", "add", "erin@example.org", "--config", config))

    for result in (in_file, unknown, twice[1]):
        assert result.returncode != 0
        assert result.stderr.startswith("shimmfa: "), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert twice[0].returncode == 0, twice[0].stderr


def test_demo_check_passes():
    result = subprocess.run(
        [sys.executable, "-m", "shimmfa", "demo", "--check"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
    passed = [line for line in result.stdout.splitlines() if line.startswith("  PASS")]
    assert len(passed) >= 18, result.stdout  # every step, break-glass's included
    assert "both departments sign off and it closes" in result.stdout
