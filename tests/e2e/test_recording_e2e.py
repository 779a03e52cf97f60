"""Session recordings an auditor can trust, through the real daemon on PTYs:
what the technician and the device really exchanged is in the recording,
byte for byte and in order, whatever ends the session; nothing of it is in
plaintext anywhere; Debian's `age` opens the data key; only the configured
recipients can; `recording list` shows the sessions; the SIEM hears of them.

"Really exchanged" is what the test's device and technician read from their
PTY masters (`PtySide.transcript`), not what the test meant to send."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from recording_tools import (
    ALICE,
    BOB,
    Session,
    decrypt_entries,
    dek_age,
    export,
    footer,
    header,
    identity,
    jsonl,
    shimmfa,
    siem_events,
    traffic,
    verify,
)

pytestmark = pytest.mark.e2e

BANNER = b"Shim MFA gate. Authenticate as: <technician_id> <totp_code>\r\n> "
FSYNC = {"fsync_interval": 0.2}


def assert_recorded(session: Session, reason: str) -> list[dict]:
    """The recording verifies valid with `reason`, and its raw and jsonl
    exports hold exactly what was exchanged; the jsonl lines."""
    path = session.wait_closed()
    key = identity(session.rig)
    code, statuses = verify(path, identity=key)
    assert (code, statuses[path]) == (0, "valid")
    assert footer(path.read_bytes())["terminal_reason"] == reason
    at_device, at_technician = session.at_device(), session.at_technician()
    assert export(path, key, "raw", "in") == at_device
    assert export(path, key, "raw", "out") == at_technician
    lines = jsonl(path, key)
    by_direction = {"in": b"", "out": b""}
    for line in lines:
        if line["type"] == "traffic":
            assert len(bytes.fromhex(line["data_hex"])) == line["len"]
            by_direction[line["direction"]] += bytes.fromhex(line["data_hex"])
    assert by_direction == {"in": at_device, "out": at_technician}
    assert lines[0]["type"] == "session_header"
    assert lines[0]["session_id"] == session.id
    assert lines[-1]["type"] == "session_footer"
    assert lines[-1]["terminal_reason"] == reason
    assert (lines[-1]["bytes_inbound"], lines[-1]["bytes_outbound"]) == (
        len(at_device),
        len(at_technician),
    )
    return lines


@pytest.mark.parametrize("step", ["built", "python"])
def test_both_directions_are_recorded_byte_exact_and_in_order(make_shim, monkeypatch, step):
    """With the relay step the install built (C) and with its Python twin."""
    if step == "python":
        monkeypatch.setenv("SHIMMFA_PURE_PYTHON", "1")
    else:
        monkeypatch.delenv("SHIMMFA_PURE_PYTHON", raising=False)
    rig = make_shim(gate={"echo": False}, recording=FSYNC)
    rig.daemon.wait_log("relay step in Python" if step == "python" else "relay step in C")
    typed_ahead = b"typed ahead of the reply\x00\x7f\xff\r"
    session = Session(rig, ALICE, typed_ahead)
    assert rig.dev.read_exactly(len(typed_ahead)) == typed_ahead
    dialogue = [(b"cmd %d\r" % n, b"reply %d\r\n> " % n) for n in range(3)]
    for command, reply in dialogue:  # each side answers what it has seen
        rig.tech.send(command)
        assert rig.dev.read_exactly(len(command)) == command
        rig.dev.send(reply)
        assert rig.tech.read_exactly(len(reply)) == reply
    every_byte = bytes(range(256))
    assert rig.exchange(every_byte * 4, every_byte[::-1] * 4) == (
        every_byte * 4,
        every_byte[::-1] * 4,
    )
    rng = random.Random(4)
    upstream, downstream = rng.randbytes(300 << 10), rng.randbytes(400 << 10)
    assert rig.exchange(upstream, downstream, timeout=60) == (upstream, downstream)
    rig.tech.hangup()

    lines = assert_recorded(session, "technician_hangup")

    assert (
        session.at_device()
        == typed_ahead + b"".join(c for c, _ in dialogue) + every_byte * 4 + upstream
    )
    assert (
        session.at_technician()
        == b"".join(r for _, r in dialogue) + every_byte[::-1] * 4 + downstream
    )
    assert lines[0]["technician_id"] == ALICE
    metas = [n for n, line in enumerate(lines) if line["type"] == "meta"]
    first_traffic = next(n for n, line in enumerate(lines) if line["type"] == "traffic")
    assert lines[metas[0]]["event"] == "auth_success"
    assert lines[metas[0]]["technician_id"] == ALICE
    assert metas[0] < first_traffic
    # Causal order across the directions: each reply was recorded after the
    # command the device had answered, and before the next command.
    traffic_lines = [line for line in lines if line["type"] == "traffic"]
    order = [(line["direction"], bytes.fromhex(line["data_hex"])) for line in traffic_lines]
    positions = []
    for command, reply in dialogue:
        positions.append(
            next(n for n, (d, data) in enumerate(order) if d == "in" and command in data)
        )
        positions.append(
            next(n for n, (d, data) in enumerate(order) if d == "out" and reply in data)
        )
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    times = [line["monotonic"] for line in traffic_lines]
    assert times == sorted(times)


def _stream_until_closed(rig, reason: str) -> bytes:
    """The device streams random bytes until the technician is told the
    session closed for `reason`; what the device wrote."""
    marker = f"Session closed ({reason})".encode()
    rng = random.Random(5)
    sent = bytearray()
    chunk = b""
    deadline = time.monotonic() + 20
    while marker not in rig.tech.buffer:
        assert time.monotonic() < deadline, f"no {marker!r} after {len(sent)} bytes"
        readable, writable, _ = select.select([rig.tech.fd], [rig.dev.fd], [], 1.0)
        if readable:
            rig.tech._read_once(0)
        if writable:
            chunk = chunk or rng.randbytes(4096)
            written = os.write(rig.dev.fd, chunk)
            sent += chunk[:written]
            chunk = chunk[written:]
    return bytes(sent)


ENDINGS = {
    "technician_hangup": {},
    "device_hangup": {},
    "shutdown": {},
    "idle_timeout": {"session": {"idle_timeout": 0.5}},
    "max_duration": {"session": {"max_duration": 1}},
    "size_limit": {"recording": FSYNC | {"max_bytes": 1 << 16}},
}


@pytest.mark.parametrize("reason", list(ENDINGS))
def test_every_way_a_session_ends_leaves_a_valid_recording_with_its_reason(make_shim, reason):
    rig = make_shim(**({"gate": {"echo": False}, "recording": FSYNC} | ENDINGS[reason]))
    session = Session(rig)
    assert rig.exchange(b"status\r", b"pump ok\r\n> ") == (b"status\r", b"pump ok\r\n> ")

    if reason == "technician_hangup":
        rig.tech.hangup()
    elif reason == "device_hangup":
        rig.dev.hangup()
        rig.tech.read_until(b"Device not connected; try again later.\r\n")
    elif reason == "shutdown":
        assert rig.daemon.signal_and_wait(signal.SIGTERM)[0] == 0
    elif reason in ("idle_timeout", "max_duration"):
        rig.tech.read_until(f"Session closed ({reason}).\r\n".encode(), timeout=5)
    else:
        streamed = _stream_until_closed(rig, reason)
        rig.tech.read_until(BANNER)

    assert_recorded(session, reason)
    if reason == "size_limit":  # the limit really ended the session
        recorded = session.at_technician()
        assert len(recorded) + len(session.at_device()) > 1 << 16
        assert streamed.startswith(recorded[len(b"pump ok\r\n> ") :])
        assert session.path.stat().st_size < (1 << 16) + (512 << 10)
        rig.tech.send(b"after the limit\r")
        rig.tech.read_until(b"\r\n> ")
        rig.dev.expect_nothing(0.3)
        assert session.at_device() == b"status\r"


MARKERS = (b"TECH-MARKER-5f0c1e", b"DEVICE-MARKER-a7d93b", b"AHEAD-MARKER-c2e84f")


def test_no_byte_of_the_traffic_is_in_plaintext_anywhere(make_shim, tmp_path):
    siem = tmp_path / "siem.jsonl"
    rig = make_shim(
        gate={"echo": False}, recording=FSYNC, siem={"transport": "file", "path": str(siem)}
    )
    to_device, from_device, ahead = MARKERS
    session = Session(rig, ALICE, ahead + b"\r")
    rig.dev.read_exactly(len(ahead) + 1)
    for n in range(50):  # many small chunks, over several frames
        sent = (to_device + b" %d\r" % n, from_device + b" %d\r\n" % n)
        assert rig.exchange(*sent) == sent
    rig.tech.hangup()
    path = session.wait_closed()
    rig.daemon.signal_and_wait(signal.SIGTERM)  # everything flushed: DB, WAL, log

    decrypted = export(path, identity(rig), "raw", "both")  # the markers did pass
    assert all(decrypted.count(marker) >= 1 for marker in MARKERS)
    files = [p for p in rig.storage.rglob("*") if p.is_file()] + [rig.daemon.log, siem]
    assert path in files and rig.storage / "state" / "shim.db" in files
    for file in files:
        content = file.read_bytes()
        for marker in MARKERS:
            for form in (marker, marker.hex().encode(), marker.hex().upper().encode()):
                assert form not in content, f"{form!r} in plaintext in {file}"


def _age(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["age", *args], input=stdin, capture_output=True, timeout=30, check=False)


def _age_keygen(path: Path) -> str:
    subprocess.run(["age-keygen", "-o", str(path)], capture_output=True, check=True, timeout=30)
    done = subprocess.run(
        ["age-keygen", "-y", str(path)], capture_output=True, check=True, timeout=30, text=True
    )
    return done.stdout.strip()


def _one_session(rig) -> tuple[Path, bytes, bytes]:
    """A short session ended by the technician: (file, at device, at technician)."""
    session = Session(rig)
    sent = (b"history\r", b"12:00 rate=5ml/h\r\n")
    assert rig.exchange(*sent) == sent
    rig.tech.hangup()
    return session.wait_closed(), session.at_device(), session.at_technician()


def test_debian_age_opens_the_data_key_of_a_daemon_recording(make_shim, tmp_path):
    rig = make_shim(gate={"echo": False}, recording=FSYNC)
    path, at_device, at_technician = _one_session(rig)

    opened = _age("-d", "-i", str(identity(rig)), stdin=dek_age(path))

    assert opened.returncode == 0, opened.stderr
    dek = opened.stdout
    assert len(dek) == 32
    entries = decrypt_entries(path.read_bytes(), dek)  # not the shim's reader
    assert traffic(entries, "in") == at_device == b"history\r"
    assert traffic(entries, "out") == at_technician == b"12:00 rate=5ml/h\r\n"
    assert [e.direction for e in entries][0] == "meta"


def test_with_recipients_configured_only_their_identity_opens_the_recording(make_shim, tmp_path):
    auditor, stranger = tmp_path / "auditor.key", tmp_path / "stranger.key"
    recipient = _age_keygen(auditor)
    _age_keygen(stranger)
    rig = make_shim(gate={"echo": False}, recording=FSYNC | {"recipients": [recipient]})
    path, at_device, at_technician = _one_session(rig)

    assert header(path.read_bytes())["recipients"] == [recipient]
    keys = rig.storage / "keys"
    assert not (keys / "recording.agekey").exists()
    assert not (keys / "recording.recipient").exists()
    assert "local identity" not in rig.daemon.log_text()
    opened = _age("-d", "-i", str(auditor), stdin=dek_age(path))
    assert opened.returncode == 0, opened.stderr
    entries = decrypt_entries(path.read_bytes(), opened.stdout)
    assert (traffic(entries, "in"), traffic(entries, "out")) == (at_device, at_technician)
    for other in (stranger, keys / "shim.agekey"):
        assert _age("-d", "-i", str(other), stdin=dek_age(path)).returncode != 0
        refused = shimmfa("recording", "export", str(path), "--identity", str(other))
        assert refused.returncode == 5, refused.stderr
        assert refused.stdout == b""
    assert export(path, auditor, "raw", "in") == at_device


def test_recording_list_shows_the_sessions_and_the_siem_hears_of_them(make_shim, tmp_path):
    siem = tmp_path / "siem.jsonl"
    rig = make_shim(
        gate={"echo": False}, recording=FSYNC, siem={"transport": "file", "path": str(siem)}
    )
    first = Session(rig, ALICE)
    rig.tech.hangup()
    first.wait_closed()
    rig.new_technician().read_until(BANNER)
    second = Session(rig, BOB)
    rig.dev.hangup()
    second.wait_closed()

    env = os.environ | {"COLUMNS": "250"}  # one table row per line
    listed = subprocess.run(
        [sys.executable, "-m", "shimmfa", "recording", "list", "--config", str(rig.config)],
        capture_output=True, text=True, timeout=30, check=False, env=env,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    rows = {
        s.id: next(line for line in listed.stdout.splitlines() if s.id in line)
        for s in (first, second)
    }
    for session, who, reason in (
        (first, ALICE, "technician_hangup"),
        (second, BOB, "device_hangup"),
    ):
        cells = [cell.strip() for cell in rows[session.id].split("│")]
        assert who in cells and reason in cells and cells[-2] == "valid", rows[session.id]
    assert "2 recording(s)" in listed.stdout

    def kinds(session: Session) -> list[str]:
        return [e["kind"] for e in siem_events(siem) if e["fields"].get("session_id") == session.id]

    for session in (first, second):
        wait_for_events = time.monotonic() + 10
        while "session_end" not in kinds(session):
            assert time.monotonic() < wait_for_events, kinds(session)
            select.select([], [], [], 0.05)  # poll interval
        assert kinds(session)[0] == "session_start"
    ends = {
        e["fields"]["session_id"]: e["fields"]
        for e in siem_events(siem)
        if e["kind"] == "session_end"
    }
    assert ends[first.id]["terminal_reason"] == "technician_hangup"
    assert ends[second.id]["terminal_reason"] == "device_hangup"
    assert ends[second.id]["technician_id"] == BOB
    successes = [
        e["fields"]["technician_id"] for e in siem_events(siem) if e["kind"] == "auth_success"
    ]
    assert successes == [ALICE, BOB]
