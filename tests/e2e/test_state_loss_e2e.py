"""A shim's memory cannot be wiped to reset its defences (issue 18), tried
with the real daemon on PTYs as an attacker with a few minutes at the box
would: `state/` moved aside, deleted or replaced by an older copy; input
typed while the daemon was down; a kill -9 right after a login; files
others can write. The port stays closed, `state_lost` goes out, and only
`shimmfa state recover` with an admin's code reopens it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from siem_file import of_kind, read_events, wait_events

pytestmark = pytest.mark.e2e

ADMIN, BOB = "alice@example.org", "bob@example.org"
FAILURE = b"\r\nAuth fail: DENIED (invalid credentials)\r\n> "
LOCKED = b"Locked: tamper:state_lost."


def guarded_shim(make_shim, tmp_path: Path, **overrides):
    """A rig whose alice is an admin, with the `file` SIEM transport."""
    siem = tmp_path / "siem.jsonl"
    rig = make_shim(
        start=False, gate={"echo": False}, siem={"transport": "file", "path": str(siem)},
        **overrides,
    )  # fmt: skip
    for entry in rig.settings["technicians"]:
        if entry["technician_id"] == ADMIN:
            entry["roles"] = ["admin"]
    rig.config.write_text(yaml.safe_dump(rig.settings, sort_keys=False), encoding="utf-8")
    rig.siem = siem
    rig.start()
    return rig


def next_code(rig, technician_id: str) -> str:
    """The code of the next time step (inside the window, above a floor set now)."""
    totp = rig.totp(technician_id)
    return totp.at(time.time() + totp.interval)


def refused_at_a_locked_gate(rig, line: bytes) -> None:
    """`line` at a locked gate: no reply, no session, not a byte to the device."""
    before = len(rig.dev.transcript)
    rig.tech.send(line)
    rig.tech.expect_nothing(0.4)
    assert len(rig.dev.transcript) == before


def recover(rig, code: str) -> subprocess.CompletedProcess[str]:
    return rig.cli(
        "state", "recover", "--config", str(rig.config), "--operator", ADMIN,
        "--code", code, "--reason", "state/ found moved aside; restored by the on-call engineer",
    )  # fmt: skip


def restart(rig) -> None:
    code, _ = rig.daemon.signal_and_wait(signal.SIGTERM)
    assert code == 0, rig.daemon.log_text()
    rig.start(ready=False)


@pytest.mark.parametrize("how", ["moved aside", "deleted"])
def test_lost_state_keeps_the_port_closed_until_an_admin_recovers_it(make_shim, tmp_path, how):
    rig = guarded_shim(make_shim, tmp_path)
    used = rig.code(BOB)
    rig.login(BOB, used)
    rig.daemon.signal_and_wait(signal.SIGTERM)
    state = rig.storage / "state"
    if how == "moved aside":
        state.rename(tmp_path / "state.aside")
    else:
        shutil.rmtree(state)
    rig.new_technician()
    rig.start(ready=False)

    rig.tech.read_until(LOCKED)
    refused_at_a_locked_gate(rig, f"{BOB} {used}\r".encode())  # the used code: a replay
    refused_at_a_locked_gate(rig, f"{BOB} {next_code(rig, BOB)}\r".encode())  # even a fresh one
    (lost,) = of_kind(wait_events(rig.siem, lambda e: bool(of_kind(e, "state_lost"))), "state_lost")
    assert lost["fields"]["verdict"] == "lost" and lost["severity"] == 1
    status = rig.cli("tamper", "status", "--config", str(rig.config))
    assert status.returncode == 1 and "SET (tamper:state_lost)" in status.stdout, status.stdout
    assert rig.cli("state", "status", "--config", str(rig.config)).returncode == 1

    wrong = recover(rig, rig.wrong_code(ADMIN))
    assert wrong.returncode != 0 and "invalid operator credentials" in wrong.stderr
    not_admin = rig.cli(
        "state", "recover", "--config", str(rig.config), "--operator", BOB,
        "--code", rig.code(BOB), "--reason", "trying my luck",
    )  # fmt: skip
    assert not_admin.returncode != 0
    refused_at_a_locked_gate(rig, f"{BOB} {next_code(rig, BOB)}\r".encode())

    done = recover(rig, rig.code(ADMIN))
    assert done.returncode == 0, done.stderr
    assert "the shim accepts logins again" in done.stdout
    rig.tech.read_until(b"<totp_code>\r\n> ")  # the running daemon opens the gate
    rig.tech.send(f"{BOB} {used}\r".encode())  # a code from before the recovery
    assert rig.tech.read_until(b"\r\n> ") == FAILURE
    rig.login(BOB, next_code(rig, BOB))
    rig.tech.send(b"after recovery\r")
    rig.dev.read_until(b"after recovery\r")
    events = read_events(rig.siem)
    (recovered,) = [e for e in of_kind(events, "state_recovered") if e["fields"]["granted"]]
    assert recovered["fields"]["authorised_by"] == ADMIN

    restart(rig)  # the recovered state is anchored: a plain restart is sound
    rig.tech.read_until(b"<totp_code>\r\n> ")
    rig.tech.expect_nothing(0.3)  # no lock notice follows the banner
    assert "STATE LOST" not in rig.daemon.log_text()


def test_an_older_copy_of_the_state_never_reads_an_unlatched_shim_or_a_fresh_code(
    make_shim, tmp_path
):
    case = tmp_path / "case"
    case.write_text("0")
    rig = guarded_shim(
        make_shim, tmp_path, tamper={"sensors": [{"type": "file", "path": str(case)}]}
    )
    rig.daemon.signal_and_wait(signal.SIGTERM)
    backup = tmp_path / "state.backup"
    shutil.copytree(rig.storage / "state", backup)  # a copy taken while the shim was clean
    rig.start()
    used = rig.code(BOB)
    rig.login(BOB, used)
    case.write_text("1")
    rig.tech.read_until(b"Locked: tamper:case_opened.")
    rig.daemon.signal_and_wait(signal.SIGTERM)
    case.write_text("0")

    shutil.rmtree(rig.storage / "state")
    shutil.copytree(backup, rig.storage / "state")  # latch clear, bob's code unused there
    rig.start(ready=False)

    rig.tech.read_until(LOCKED)
    refused_at_a_locked_gate(rig, f"{BOB} {used}\r".encode())
    status = rig.cli("tamper", "status", "--config", str(rig.config))
    assert status.returncode == 1 and "clear" not in status.stdout, status.stdout
    lost = of_kind(wait_events(rig.siem, lambda e: bool(of_kind(e, "state_lost"))), "state_lost")
    assert lost[-1]["fields"]["verdict"] == "rolled_back"

    done = recover(rig, rig.code(ADMIN))
    assert done.returncode == 0, done.stderr
    assert "tamper latch (tamper:case_opened) stays set" in done.stdout  # the anchor remembers
    rig.tech.read_until(b"Locked: tamper:case_opened.")
    refused_at_a_locked_gate(rig, f"{BOB} {next_code(rig, BOB)}\r".encode())


def test_a_code_used_just_before_a_kill_9_is_refused_after_the_restart(make_shim, tmp_path):
    rig = guarded_shim(make_shim, tmp_path)
    used = rig.code(BOB)
    rig.login(BOB, used)
    rig.daemon.signal_and_wait(signal.SIGKILL)
    rig.new_technician()
    rig.start()
    rig.tech.send(f"{BOB} {used}\r".encode())
    assert rig.tech.read_until(b"\r\n> ") == FAILURE
    assert "result=REPLAY" in rig.daemon.log_text()


def test_sigterm_during_a_session_ends_it_as_shutdown_in_the_relay_and_the_siem(
    make_shim, tmp_path
):
    rig = guarded_shim(make_shim, tmp_path)
    session_id = rig.login(BOB)
    rig.tech.send(b"working\r")
    rig.dev.read_until(b"working\r")
    code, _ = rig.daemon.signal_and_wait(signal.SIGTERM)
    assert code == 0
    log = rig.daemon.log_text()
    assert f"session closed session={session_id} reason=shutdown" in log  # the relay's own line
    ends = of_kind(read_events(rig.siem), "session_end")
    assert [(e["fields"]["session_id"], e["fields"]["terminal_reason"]) for e in ends] == [
        (session_id, "shutdown")
    ]


def test_input_typed_while_the_daemon_is_down_does_not_log_in(make_shim, tmp_path):
    rig = guarded_shim(make_shim, tmp_path)
    rig.daemon.signal_and_wait(signal.SIGTERM)
    rig.new_technician()
    code = rig.code(BOB)
    rig.tech.send(f"{BOB} {code}\rtyped blind\r".encode())  # nobody has the port open
    rig.start(ready=False)

    rig.tech.read_until(b"<totp_code>\r\n> ")
    rig.tech.expect_nothing(0.5)
    assert rig.dev.received == b""
    assert "session opened" not in rig.daemon.log_text()
    assert "technician port: discarded" in rig.daemon.log_text()
    rig.login(BOB, code)  # typed after the banner, the same (unused) code logs in


def test_a_world_writable_storage_root_is_refused_before_any_port_opens(make_shim, tmp_path):
    rig = make_shim(start=False)
    rig.storage.mkdir()
    rig.storage.chmod(0o777)
    run = subprocess.run(
        [sys.executable, "-m", "shimmfa", "run", "--config", str(rig.config)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == (
        f"shimmfa: storage.root {rig.storage} is writable by group or others (mode 777); "
        f"the shim refuses to start. Fix it with: chmod go-w {rig.storage}"
    )
    rig.tech.expect_nothing(0.2)


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_a_recorder_that_dies_is_replaced_without_a_restart(make_shim, tmp_path):
    rig = guarded_shim(make_shim, tmp_path)
    sessions = rig.storage / "sessions"
    (first,) = children_of(rig.daemon.process.pid)
    sessions.rename(tmp_path / "sessions.aside")
    sessions.write_text("not a directory: a new recorder cannot start")
    os.kill(first, signal.SIGKILL)

    notice = b"Recording unavailable; no new sessions until it is back. Try again shortly."
    rig.tech.read_until(notice)
    assert b"Storage exhausted" not in rig.tech.transcript
    refused_at_a_locked_gate(rig, f"{BOB} {rig.code(BOB)}\r".encode())
    sessions.unlink()
    (tmp_path / "sessions.aside").rename(sessions)

    rig.tech.read_until(b"<totp_code>\r\n> ", timeout=15)  # replaced: the gate opens
    (second,) = children_of(rig.daemon.process.pid)
    assert second != first
    session_id = rig.login(BOB, next_code(rig, BOB))
    rig.tech.send(b"recorded again\r")
    rig.dev.read_until(b"recorded again\r")
    rig.tech.hangup()
    rig.daemon.wait_log(f"session closed session={session_id}")
    (path,) = sessions.glob(f"{session_id}_*.shrec")
    rig.daemon.wait_log(f"recording of {session_id} closed")
    verified = rig.cli("recording", "verify", str(path))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    unavailable = of_kind(read_events(rig.siem), "recording_unavailable")
    assert len(unavailable) == 1


def test_an_id_that_looks_like_a_code_is_redacted_in_the_log_and_the_siem(make_shim, tmp_path):
    rig = guarded_shim(make_shim, tmp_path)
    code = rig.code(BOB)
    rig.tech.send(f"{code} {code}\r".encode())  # the code typed into the ID field
    assert rig.tech.read_until(b"\r\n> ") == FAILURE
    events = wait_events(rig.siem, lambda e: bool(of_kind(e, "auth_failure")))
    (failure,) = of_kind(events, "auth_failure")
    assert failure["fields"]["technician_id"] == "<redacted: 6 digits>"
    rig.daemon.wait_log("auth failure technician='<redacted: 6 digits>'")
    assert code not in rig.daemon.log_text()
    assert code not in rig.siem.read_text()
