"""SIEM delivery from the real daemon (issue 5): what the shim does at its
ports arrives at a real Debian rsyslogd over TLS (tests/e2e/rsyslog_rig.py),
nothing is lost across an outage and a shim restart, a hung receiver does
not slow the relay, and a full disk refuses new sessions without
corrupting anything.

rsyslog is the parser: header fields and structured data are what rsyslog
itself made of each message (mmpstrucdata). Events are counted by event_id.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import rsyslog_rig
import siem_file
from rsyslog_rig import HungReceiver, Rsyslog

from shimmfa.core.events import CATALOGUE
from waiting import wait_for

pytestmark = [pytest.mark.e2e]

SHIM = "e2e-shim"
SD = "shimmfa@32473"
FAILURE = b"\r\nAuth fail: DENIED (invalid credentials)\r\n> "
needs_rsyslog = pytest.mark.skipif(
    rsyslog_rig.unavailable_reason() is not None,
    reason=str(rsyslog_rig.unavailable_reason()),
)


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Callable[..., Rsyslog]]:
    with rsyslog_rig.receivers(tmp_path) as make:
        yield make


def syslog_settings(receiver: Rsyslog, *, mutual: bool = False) -> dict[str, Any]:
    settings = {
        "transport": "syslog",
        "endpoint": receiver.endpoint,
        "ca_file": str(receiver.pki.ca),
    }
    if mutual:
        settings |= {
            "client_cert": str(receiver.pki.client_cert),
            "client_key": str(receiver.pki.client_key),
        }
    return settings


def sd_of(message: dict[str, Any]) -> dict[str, str]:
    return message["sd"].get(SD, {})


def of_kind(messages: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in messages if sd_of(m).get("kind") == kind]


def outbox_ids(rig) -> list[str]:
    """The event IDs waiting in the daemon's outbox, read with sqlite3."""
    db = sqlite3.connect(f"file:{rig.storage / 'state' / 'shim.db'}?mode=ro", uri=True)
    try:
        return [row[0] for row in db.execute("SELECT event_id FROM outbox ORDER BY id")]
    finally:
        db.close()


def outbox_rows(rig) -> int:
    return len(outbox_ids(rig))


def check_rfc5424(message: dict[str, Any]) -> dict[str, str]:
    """A valid RFC 5424 message from this shim as rsyslog parsed it; its
    shimmfa structured data."""
    data = sd_of(message)
    kind = data["kind"]
    facility, severity = divmod(int(message["pri"]), 8)
    assert facility == 13  # log audit
    assert severity == CATALOGUE[kind].severity
    assert message["raw"].startswith(f"<{message['pri']}>1 ")  # VERSION 1
    assert (message["hostname"], message["app"], message["msgid"]) == (SHIM, "shimmfa", kind)
    dt.datetime.fromisoformat(message["timestamp"])
    assert len(data["event_id"]) == 32 and int(data["event_id"], 16) >= 0
    assert data["shim_id"] == SHIM
    return data


# -- what arrives -----------------------------------------------------------------------


@needs_rsyslog
def test_auth_session_and_tamper_events_arrive_as_rfc5424(make_shim, rsyslog, tmp_path):
    receiver = rsyslog(mutual=True)
    case = tmp_path / "case"
    case.write_text("0")
    rig = make_shim(
        gate={"echo": False},
        tamper={"sensors": [{"type": "file", "path": str(case)}]},
        siem=syslog_settings(receiver, mutual=True),
    )
    alice, bob = "alice@example.org", "bob@example.org"
    rig.tech.send(f"{alice} {rig.wrong_code(alice)}\r".encode())
    assert rig.tech.read_until(b"\r\n> ") == FAILURE
    session_id = rig.login(bob)
    rig.exchange(b"to the device\r", b"from the device\r\n")
    case.write_text("1")
    rig.tech.read_until(b"EMERGENCY STOP: tamper:case_opened\r\n")

    wanted = ("auth_failure", "auth_success", "session_start", "session_end", "tamper")
    messages = receiver.wait_received(lambda m: all(of_kind(m, k) for k in wanted))

    for message in messages:
        check_rfc5424(message)
    counts = Counter(sd_of(m)["event_id"] for m in messages)
    assert max(counts.values()) == 1, f"delivered twice: {counts.most_common(3)}"
    (failure,) = (sd_of(m) for m in of_kind(messages, "auth_failure"))
    assert (failure["technician_id"], failure["result"]) == (alice, "BAD_CODE")
    assert failure["detail"]  # the precise reason the technician was not told
    (success,) = (sd_of(m) for m in of_kind(messages, "auth_success"))
    assert success["technician_id"] == bob
    (start,) = (sd_of(m) for m in of_kind(messages, "session_start"))
    assert (start["session_id"], start["technician_id"]) == (session_id, bob)
    (end,) = (sd_of(m) for m in of_kind(messages, "session_end"))
    assert (end["session_id"], end["terminal_reason"]) == (session_id, "tamper:case_opened")
    (tamper,) = (sd_of(m) for m in of_kind(messages, "tamper"))
    assert tamper["event"] == "case_opened"
    assert tamper["source"] == f"file:{case}"


@needs_rsyslog
def test_a_thousand_events_made_during_an_outage_arrive_once_after_a_shim_restart(
    make_shim, rsyslog, request
):
    receiver = rsyslog()
    rig = make_shim(gate={"echo": False}, siem=syslog_settings(receiver))
    receiver.wait_received(lambda m: bool(of_kind(m, "config_loaded")))
    wait_for(lambda: outbox_rows(rig) == 0, "the outbox to empty", timeout=10)

    receiver.stop()
    # 1,000 failed logins pasted at once (short lines, hundreds per read:
    # the relay decides them one after the other without recursing): 1,000
    # auth_failure events, each with its own technician ID to count them by.
    names = [f"u{n}" for n in range(1000)]
    rig.tech.send(b"".join(f"{name} 1\r".encode() for name in names))

    def answered() -> bool:
        rig.tech.pump(0.05)
        return rig.tech.buffer.count(FAILURE) >= len(names)

    wait_for(answered, "1,000 refusals", timeout=60)
    assert outbox_rows(rig) >= len(names)  # held, not delivered
    code, _ = rig.daemon.signal_and_wait(signal.SIGTERM)
    assert code == 0
    held = outbox_ids(rig)  # accepted: committed to the outbox, not delivered
    rig.start()
    receiver.start()

    def all_there(messages: list[dict[str, Any]]) -> bool:
        return {sd_of(m).get("technician_id") for m in of_kind(messages, "auth_failure")} >= set(
            names
        )

    receiver.wait_received(all_there, timeout=60)
    wait_for(lambda: outbox_rows(rig) == 0, "the outbox to empty", timeout=30)
    messages = receiver.received()
    counts = Counter(sd_of(m)["event_id"] for m in messages)
    twice = [event_id for event_id, n in counts.items() if n > 1]
    assert not twice, f"{len(twice)} events delivered more than once"
    failures = Counter(sd_of(m)["technician_id"] for m in of_kind(messages, "auth_failure"))
    request.node.user_properties += [
        ("failed_logins_sent", len(names)),
        ("held_at_restart", len(held)),
        ("messages_received", len(messages)),
        ("distinct_event_ids", len(counts)),
    ]
    assert failures == Counter(names)
    # Everything the outbox held at the restart arrived (once, as checked above).
    assert set(held) <= set(counts), f"{len(set(held) - set(counts))} accepted events lost"
    assert [sd_of(m)["kind"] for m in messages].count("config_loaded") == 2


# -- a receiver that never reads ---------------------------------------------------------


@pytest.fixture
def hung() -> Iterator[HungReceiver]:
    receiver = HungReceiver(rcvbuf=4096)
    yield receiver
    receiver.close()


def test_a_hung_receiver_slows_neither_logins_nor_the_relay(make_shim, hung):
    rig = make_shim(
        gate={"echo": False},
        tamper={"heartbeat_period": 0.02},  # a steady stream of events into the stuck sender
        siem={"transport": "syslog", "endpoint": f"tcp://127.0.0.1:{hung.port}"},
    )
    wait_for(lambda: hung.unread() > 2000, "the sender to be stuck writing", timeout=10)
    stuck_with = hung.unread()

    for technician in ("alice@example.org", "bob@example.org"):
        rig.login(technician)
        # Not starting with LF: after a login line ended by CR, a first LF is
        # taken for the rest of that CRLF and dropped (the gate's rule).
        payload = b"<" + os.urandom((1 << 20) - 1)
        started = time.monotonic()
        at_device, at_technician = rig.exchange(payload, payload[::-1], timeout=10)
        elapsed = time.monotonic() - started
        assert at_device == payload and at_technician == payload[::-1]
        assert elapsed < 5, f"1 MiB each way took {elapsed:.1f} s"
        rig.tech.hangup()
        rig.new_technician()
        rig.tech.read_until(b"<totp_code>\r\n> ")
    assert rig.daemon.alive
    assert hung.unread() >= stuck_with  # it never read; the shim never got through
    assert outbox_rows(rig) > 0


# -- a full disk --------------------------------------------------------------------------

STORAGE_NOTICE = b"\r\nStorage exhausted; no new sessions can be recorded.\r\n"
MIB = 1 << 20


def tmpfs_unavailable(where: Path) -> str | None:
    if os.geteuid() != 0:
        return "mounting a small tmpfs needs root"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if done.returncode == 0 else f"mount -t tmpfs failed: {done.stderr.strip()}"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs of its own, unmounted at the end."""
    where = tmp_path / "disk"
    where.mkdir()
    reason = tmpfs_unavailable(where)
    if reason:
        pytest.skip(reason)
    try:
        yield where
    finally:
        subprocess.run(["umount", "--lazy", str(where)], check=False)


def fill(path: Path, leave: int = 0) -> None:
    """Write `path` until the disk is full, or has only `leave` bytes free."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    block = b"\0" * 4096
    try:
        while os.statvfs(path).f_bavail * os.statvfs(path).f_frsize > leave + len(block):
            os.write(fd, block)
        if not leave:
            while True:
                os.write(fd, block)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)


def free_bytes(path: Path) -> int:
    status = os.statvfs(path)
    return status.f_bavail * status.f_frsize


def test_a_full_disk_refuses_new_sessions_alerts_and_corrupts_nothing(
    make_shim, small_disk, tmp_path
):
    siem = tmp_path / "siem.jsonl"  # on another disk: what the SIEM got
    rig = make_shim(
        gate={"echo": False},
        storage={"root": str(small_disk / "storage"), "min_free_bytes": 2 * MIB},
        siem={"transport": "file", "path": str(siem)},
    )
    alice, bob = "alice@example.org", "bob@example.org"
    session_id = rig.login(alice)
    rig.exchange(b"a" * 1000, b"b" * 1000)

    # The disk fills up under the open session: it ends, the gate locks.
    fill(small_disk / "filler")
    rig.tech.send(b"more" * 20_000)
    rig.dev.send(b"more" * 20_000)
    closed = rig.tech.read_until(STORAGE_NOTICE)
    assert b"\r\nSession closed (recording_failed).\r\n" in closed
    rig.dev.pump(0.3)  # what the session relayed before it ended, read here now
    device_had = len(rig.dev.transcript)
    rig.tech.send(f"{bob} {rig.code(bob)}\r".encode())
    rig.tech.expect_nothing(0.3)  # the locked gate takes no login
    assert len(rig.dev.transcript) == device_had

    # Some room again, still below min_free_bytes: the alert gets queued then.
    os.truncate(small_disk / "filler", os.path.getsize(small_disk / "filler") - MIB)
    assert free_bytes(small_disk) < 2 * MIB
    events = siem_file.wait_events(
        siem, lambda e: bool(siem_file.of_kind(e, "storage_exhausted")), timeout=15
    )
    (alert,) = siem_file.of_kind(events, "storage_exhausted")
    assert "full" in alert["fields"]["reason"] or "free" in alert["fields"]["reason"]
    code, _ = rig.daemon.signal_and_wait(signal.SIGTERM)
    assert code == 0

    # Nothing corrupted: the state DB checks out, recordings are valid or
    # truncated (never "tampered"), and with space back the shim works.
    storage = small_disk / "storage"
    db = sqlite3.connect(storage / "state" / "shim.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        db.close()
    recordings = sorted((storage / "sessions").glob("*.shrec"))
    assert recordings and session_id in recordings[0].name
    for recording in recordings:
        verified = rig.cli("recording", "verify", str(recording))
        assert verified.returncode in (0, 3), verified.stdout + verified.stderr
    (small_disk / "filler").unlink()
    rig.start()
    rig.login(bob)
    rig.tech.send(b"space again\r")
    rig.dev.read_until(b"space again\r")
    assert rig.dev.transcript[device_had:] == b"space again\r"
