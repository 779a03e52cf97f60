"""Starting and stopping `shimmfa run`: prompt exit 0 on SIGTERM/SIGINT,
and configuration or state problems stop it before any port opens."""

from __future__ import annotations

import re
import signal

import pytest

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("state", ["gate", "session", "backlog"])
def test_signal_exits_zero_within_a_second(make_shim, signum, state):
    rig = make_shim(gate={"echo": False})
    if state != "gate":
        rig.login("alice@example.org")
        rig.tech.send(b"in session\r")
        rig.dev.read_until(b"in session\r")
    if state == "backlog":  # the device stopped reading: the shim holds a backlog
        rig.tech.send_until_blocked(b"queued for the device ")

    code, elapsed = rig.daemon.signal_and_wait(signum)

    assert code == 0, rig.daemon.log_text()
    assert elapsed < 1.0
    rig.tech.read_until(b"\r\nShim shutting down.\r\n", timeout=2)
    if state != "gate":
        assert "reason=shutdown" in rig.daemon.log_text()


def test_sigterm_while_waiting_for_the_technician_port_exits_zero(make_shim):
    rig = make_shim(start=False)
    rig.tech.hangup()
    rig.tech_link.unlink()
    daemon = rig.start(ready=False)
    daemon.wait_log("waiting for the technician port")

    code, elapsed = daemon.signal_and_wait(signal.SIGTERM)

    assert code == 0, daemon.log_text()
    assert elapsed < 1.0


def test_unknown_config_key_exits_2_naming_the_key(make_shim):
    rig = make_shim(start=False, gate={"backoff_initial": 0, "colour_scheme": "blue"})

    result = rig.cli("run", "--config", str(rig.config))

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "gate.colour_scheme" in lines[0]
    assert "Traceback" not in result.stderr
    rig.tech.pump(0.1)
    assert rig.tech.transcript == b""


def test_corrupt_state_db_exits_nonzero_without_opening_the_port(make_shim):
    rig = make_shim(start=False)
    db = rig.storage / "state" / "shim.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not an SQLite database\x00" * 200)

    result = rig.cli("run", "--config", str(rig.config))

    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("shimmfa: state DB"), result.stderr
    assert "Traceback" not in result.stderr
    assert not re.search(r"port \S+ open", result.stderr), result.stderr
    rig.tech.pump(0.1)
    assert rig.tech.transcript == b""
    rig.dev.pump(0.1)
    assert rig.dev.received == b""
    assert db.read_bytes() == b"this is not an SQLite database\x00" * 200
