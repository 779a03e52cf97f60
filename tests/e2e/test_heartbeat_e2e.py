"""Liveness of the real daemon (issue 5): signed heartbeats through the
`file` SIEM transport, and the systemd notify protocol.

Each heartbeat event carries its wire form, `{"payload": ..., "sig": ...}`,
as it stands (the event's `heartbeat` member), checked twice: by `cryptography`
directly (Ed25519 over canonical JSON, against the key `shimmfa keys show`
prints), and by `core.heartbeat.verify_heartbeat` as a receiver would, in
order. Forged, altered and replayed heartbeats must be refused.

systemd is stood in for by a datagram socket the test binds as
NOTIFY_SOCKET, receiving with SO_PASSCRED as systemd does, so each message
comes with the sender's PID.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import select
import signal
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from siem_file import of_kind, read_events, wait_events

from shimmfa.core.heartbeat import HeartbeatVerifier, Rejection, verify_heartbeat
from shimmfa.errors import HeartbeatError

pytestmark = pytest.mark.e2e

PERIOD = 0.2
PAYLOAD_FIELDS = {
    "shim_id", "hardware_id", "seq", "boot_count", "uptime_s", "sent_at", "state",
    "open_session", "config_sha256", "software_sha256",
}  # fmt: skip


def canonical(obj: dict[str, Any]) -> bytes:
    """Canonical JSON as DESIGN.md §7 and core/heartbeat.py's docstring state it."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def wire_of(event: dict[str, Any]) -> bytes:
    """The heartbeat's wire form, as it stands in the event (its `heartbeat`
    member, nothing rebuilt), and checked to be exactly that."""
    wire = event["heartbeat"]
    assert set(wire) == {"payload", "sig"}
    assert set(wire["payload"]) == PAYLOAD_FIELDS
    assert wire["payload"]["shim_id"] == event["shim_id"]
    return json.dumps(wire).encode()


def shim_key(rig) -> bytes:
    """The raw public key `shimmfa keys show` prints."""
    shown = rig.cli("keys", "show", "--config", str(rig.config))
    assert shown.returncode == 0, shown.stderr
    match = re.search(r"signing key \(Ed25519\): ed25519:(\S+)", shown.stdout)
    assert match is not None, shown.stdout
    raw = base64.b64decode(match[1], validate=True)
    assert len(raw) == 32
    return raw


def check_signature(key: bytes, wire: bytes) -> None:
    """Independently of shimmfa: Ed25519 over the canonical payload."""
    document = json.loads(wire)
    message = canonical(document["payload"])
    Ed25519PublicKey.from_public_bytes(key).verify(base64.b64decode(document["sig"]), message)


def heartbeats(path: Path, count: int, **wanted: Any) -> list[dict[str, Any]]:
    """Wait for `count` heartbeat events whose fields have the `wanted` values."""

    def matching(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            e
            for e in of_kind(events, "heartbeat")
            if all(e["heartbeat"]["payload"][k] == v for k, v in wanted.items())
        ]

    events = wait_events(path, lambda e: len(matching(e)) >= count, what=f"heartbeats {wanted}")
    return matching(events)


@pytest.fixture
def heartbeat_shim(make_shim, tmp_path: Path):
    case = tmp_path / "case"
    case.write_text("0")
    siem = tmp_path / "siem.jsonl"
    rig = make_shim(
        gate={"echo": False},
        tamper={"heartbeat_period": PERIOD, "sensors": [{"type": "file", "path": str(case)}]},
        siem={"transport": "file", "path": str(siem)},
    )
    return rig, siem, case


def test_heartbeats_verify_in_order_across_restarts_and_show_sessions_and_tamper(heartbeat_shim):
    rig, siem, case = heartbeat_shim
    key = shim_key(rig)
    verifier = HeartbeatVerifier({"e2e-shim": key})

    first_boot = heartbeats(siem, 3, boot_count=1)
    session_id = rig.login("alice@example.org")
    in_session = heartbeats(siem, 1, open_session=session_id)[0]
    rig.daemon.signal_and_wait(signal.SIGTERM)
    rig.start()
    second_boot = heartbeats(siem, 3, boot_count=2)
    case.write_text("1")
    tampered = heartbeats(siem, 2, boot_count=2, state="tampered")

    events = of_kind(read_events(siem), "heartbeat")
    assert tampered[0] in events and events.index(tampered[0]) > events.index(second_boot[-1])
    assert [e["heartbeat"]["payload"]["boot_count"] for e in events] == sorted(
        e["heartbeat"]["payload"]["boot_count"] for e in events
    )
    for boot in (1, 2):
        seqs = [e["fields"]["seq"] for e in events if e["fields"]["boot_count"] == boot]
        assert seqs == list(range(1, len(seqs) + 1)), f"boot {boot}: seq {seqs}"
    assert in_session in events and first_boot[0] in events and second_boot[0] in events
    accepted = []
    for event in events:
        wire = wire_of(event)
        check_signature(key, wire)
        accepted.append(verifier.verify(wire))
    assert [h.position for h in accepted] == sorted(h.position for h in accepted)
    assert accepted[-1].state == "tampered"
    states = [h.state for h in accepted if h.boot_count == 2]
    assert states == sorted(states, key=("ok", "tampered").index)  # ok until the tamper, then not
    assert {h.shim_id for h in accepted} == {"e2e-shim"}
    assert len({h.hardware_id for h in accepted}) == 1
    assert len({h.software_sha256 for h in accepted}) == 1
    digest = accepted[0].config_sha256
    assert digest == hashlib.sha256(rig.config.read_bytes()).hexdigest()

    # A replay of any accepted heartbeat, the last one included, is refused.
    for event in (events[0], in_session, events[-1]):
        with pytest.raises(HeartbeatError) as refused:
            verifier.verify(wire_of(event))
        assert refused.value.reason is Rejection.NOT_NEWER


def test_forged_and_altered_heartbeats_are_refused(heartbeat_shim):
    rig, siem, _ = heartbeat_shim
    key = shim_key(rig)
    session_id = rig.login("alice@example.org")
    event = heartbeats(siem, 1, open_session=session_id)[0]
    wire = json.loads(wire_of(event))
    keys = {"e2e-shim": key, "other-shim": key}
    verify_heartbeat(canonical(wire), keys, {})  # the genuine one passes

    # Forged: the same payload signed with another Ed25519 key.
    forger = Ed25519PrivateKey.generate()
    forged_sig = base64.b64encode(forger.sign(canonical(wire["payload"]))).decode()
    forged = {"payload": wire["payload"], "sig": forged_sig}
    with pytest.raises(HeartbeatError) as refused:
        verify_heartbeat(canonical(forged), keys, {})
    assert refused.value.reason is Rejection.BAD_SIGNATURE
    with pytest.raises(InvalidSignature):
        check_signature(key, canonical(forged))

    # Altered: any one field changed to another well-formed value.
    payload = wire["payload"]
    changes = {
        "shim_id": "other-shim",
        "hardware_id": payload["hardware_id"] + "0",
        "seq": payload["seq"] + 1,
        "boot_count": payload["boot_count"] + 1,
        "uptime_s": payload["uptime_s"] + 1.0,
        "sent_at": "2030-01-01T00:00:00.000Z",
        "state": "tampered" if payload["state"] == "ok" else "ok",
        "open_session": None,
        "config_sha256": "0" * 64,
        "software_sha256": "f" * 64,
    }
    assert set(changes) == PAYLOAD_FIELDS
    for name, value in changes.items():
        assert value != payload[name]
        altered = {"payload": {**payload, name: value}, "sig": wire["sig"]}
        with pytest.raises(HeartbeatError) as refused:
            verify_heartbeat(canonical(altered), keys, {})
        assert refused.value.reason is Rejection.BAD_SIGNATURE, name
        with pytest.raises(InvalidSignature):
            check_signature(key, canonical(altered))
    signature = bytearray(base64.b64decode(wire["sig"]))
    signature[0] ^= 1
    bad_sig = {"payload": payload, "sig": base64.b64encode(bytes(signature)).decode()}
    with pytest.raises(HeartbeatError) as refused:
        verify_heartbeat(canonical(bad_sig), keys, {})
    assert refused.value.reason is Rejection.BAD_SIGNATURE


# -- systemd notify ------------------------------------------------------------------------


class NotifyListener:
    """What systemd would get on NOTIFY_SOCKET: (time, sender pid, message)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # as systemd does
        self.received: list[tuple[float, int, str]] = []

    def pump(self, timeout: float) -> None:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if ready:
            data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            pid = next(
                struct.unpack("3i", payload)[0]
                for level, kind, payload in ancillary
                if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS)
            )
            self.received.append((time.monotonic(), pid, data.decode()))

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {what}; got {self.received}"
            self.pump(left)

    def count(self, message: str) -> int:
        return sum(1 for _, _, text in self.received if text == message)

    def times(self, message: str) -> list[float]:
        return [when for when, _, text in self.received if text == message]


def test_systemd_notify_ready_watchdog_and_stopping(make_shim, tmp_path, monkeypatch):
    listener = NotifyListener(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # WatchdogSec=1: a ping at least every 0.5 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    rig = make_shim(start=False, gate={"echo": False})
    rig.dev_link.unlink()  # the device's adapter is not plugged in yet
    rig.start()
    pid = rig.daemon.process.pid

    # READY=1 once the daemon is up, ports or not (packaging/README.md);
    # STATUS says when both ports are open.
    listener.wait(lambda: listener.count("WATCHDOG=1") >= 2, 5, "two watchdog pings")
    messages = [text for _, _, text in listener.received]
    assert messages.index("READY=1") < messages.index("WATCHDOG=1")
    assert messages.count("READY=1") == 1
    ports_open = "STATUS=both ports open; gate ready"
    assert ports_open not in messages
    rig.new_device()
    listener.wait(lambda: listener.count(ports_open) == 1, 5, "the ports-open status")
    rig.tech.read_until(b"<totp_code>\r\n> ")  # the banner again, the gate unlocked

    # Busy relaying: the pings go on, never a watchdog period apart.
    rig.login("alice@example.org")
    # Not starting with LF: after a login line ended by CR, a first LF is
    # taken for the rest of that CRLF and dropped (the gate's rule).
    payload = b"<" + os.urandom((1 << 20) - 1)
    rig.exchange(payload, payload)
    pings = listener.count("WATCHDOG=1")
    listener.wait(lambda: listener.count("WATCHDOG=1") >= pings + 2, 5, "more pings")
    times = listener.times("WATCHDOG=1")
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert max(gaps) < 1.0, f"watchdog pings {max(gaps):.2f} s apart"
    assert min(gaps) > 0.25, f"watchdog pings {min(gaps):.2f} s apart: not half the period"

    code, _ = rig.daemon.signal_and_wait(signal.SIGTERM)
    assert code == 0
    listener.wait(lambda: listener.count("STOPPING=1") == 1, 5, "STOPPING=1")
    assert {sender for _, sender, _ in listener.received} == {pid}
    assert listener.received[-1][2] == "STOPPING=1"
    listener.sock.close()
