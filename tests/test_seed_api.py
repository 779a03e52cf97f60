"""The seed prototype's Python API, used as a new user of the seed would use
it: every name imported from the path the seed's modules map to
(`totp_gate` -> `shimmfa.core.totp`, `session_recorder` ->
`shimmfa.shim.recorder`, `tamper_detector` -> `shimmfa.shim.tamper`), called
the seed's way, with nothing of ours but the required clock."""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from typing import Any

import pyotp

from shimmfa.core.totp import (
    AuthOutcome,
    AuthResult,
    TechnicianRecord,
    TotpGate,
    generate_totp_secret,
    provisioning_uri,
)
from shimmfa.shim.recorder import Direction, SessionMeta, SessionRecorder
from shimmfa.shim.tamper import HeartbeatRecord, TamperDetector, TamperEvent, TamperSensor
from waiting import wait_for

T0 = 1_795_431_299.0


def test_generate_totp_secret_needs_no_argument() -> None:
    first, second = generate_totp_secret(), generate_totp_secret()
    assert len(first) == 32 and first != second
    assert len(base64.b32decode(first)) == 20  # 160 bits, base32


def test_a_seed_enrolment_logs_in_once() -> None:
    secret = generate_totp_secret()
    uri = provisioning_uri("alice@example.org", secret, issuer="ShimMFA")
    assert uri.startswith("otpauth://totp/ShimMFA:alice%40example.org?secret=" + secret)
    users = {"alice@example.org": TechnicianRecord("alice@example.org", secret)}
    gate = TotpGate(users, period=30, digits=6, window=1, time_source=lambda: T0)
    code = pyotp.TOTP(secret).at(T0)
    outcome = gate.authenticate("alice@example.org", code)
    assert isinstance(outcome, AuthOutcome) and outcome.authenticated
    assert gate.authenticate("alice@example.org", code).result is AuthResult.REPLAY
    assert gate.authenticate("bob@example.org", code).result is AuthResult.BAD_USER


class SeedSensor:
    """A sensor written to the seed's protocol: `poll()` and nothing else."""

    def __init__(self) -> None:
        self.event: TamperEvent | None = None
        self.polled = threading.Event()

    def poll(self) -> TamperEvent | None:
        self.polled.set()
        return self.event


def test_a_seed_protocol_sensor_works_and_is_named_after_its_class() -> None:
    sensor = SeedSensor()
    typed: TamperSensor = sensor  # the seed's protocol, as a type
    stops: list[str] = []
    tampers: list[tuple[TamperEvent, dict[str, Any]]] = []
    beats: list[HeartbeatRecord] = []
    detector = TamperDetector(
        "shim-empump-001",
        sensors=[typed],
        heartbeat_emit=beats.append,
        tamper_emit=lambda event, detail: tampers.append((event, detail)),
        emergency_stop=stops.append,
        heartbeat_period=60.0,
        sensor_poll_period=0.01,
    )
    detector.start()
    try:
        wait_for(sensor.polled.is_set, "the first poll")
        wait_for(lambda: bool(beats), "the first heartbeat")
        assert detector.state == "ok" and stops == [] and tampers == []
        sensor.event = TamperEvent.CASE_OPENED
        wait_for(lambda: bool(tampers), "the tamper report")
    finally:
        detector.stop()
    assert stops == ["tamper:case_opened"]
    assert tampers[0][0] is TamperEvent.CASE_OPENED
    assert tampers[0][1]["source"] == "SeedSensor"
    assert detector.state == "tampered"
    detector.admin_reset(authorised_by="admin@example.org", reason="inspected")
    assert detector.state == "ok"


class SeedSiem:
    """The seed's SIEM transport: `forward(record) -> bool`."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def forward(self, record: dict[str, Any]) -> bool:
        self.records.append(record)
        return True


def test_a_seed_session_is_recorded_and_forwarded(tmp_path: Path) -> None:
    siem = SeedSiem()
    recorder = SessionRecorder(tmp_path / "storage", "shim-empump-001", siem)
    try:
        session_id = recorder.start_session("alice@example.org")
        assert recorder.has_open_session
        recorder.append_traffic(session_id, Direction.IN, b"status\r")
        recorder.append_traffic(session_id, Direction.OUT, b"OK\r\n")
        recorder.append_event(session_id, {"event": "note", "text": "seed"})
        meta = recorder.end_session(session_id, "technician_hangup")
    finally:
        recorder.close()
    assert isinstance(meta, SessionMeta)
    assert (meta.bytes_inbound, meta.bytes_outbound) == (7, 4)
    assert meta.terminal_reason == "technician_hangup"
    assert not recorder.has_open_session
    start, note, end = siem.records
    assert start["event"] == "session_start" and start["session_id"] == session_id
    assert note["type"] == "meta" and note["text"] == "seed"
    assert end["event"] == "session_end" and end["bytes_inbound"] == 7


def test_force_close_on_emergency_ends_the_open_session(tmp_path: Path) -> None:
    recorder = SessionRecorder(tmp_path / "storage", "shim-empump-001")
    try:
        assert recorder.force_close_on_emergency("tamper:case_opened") is None
        recorder.start_session("alice@example.org")
        meta = recorder.force_close_on_emergency("tamper:case_opened")
    finally:
        recorder.close()
    assert meta is not None and meta.terminal_reason == "tamper:case_opened"
