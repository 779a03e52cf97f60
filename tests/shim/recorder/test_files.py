"""Tools over recording files (`shimmfa.shim.recorder.files`): unwrap the data
key with an age identity, export the seed's jsonl, asciicast v2 and raw
bytes, play, list. Tampered files are never exported; truncated ones are,
up to the last good frame."""

from __future__ import annotations

import base64
import io
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyrage
import pytest
from pyrage import x25519

from shimmfa.core.recording_reader import Status, verify
from shimmfa.errors import RecordingError
from shimmfa.shim.recorder import Direction, SessionMeta, SessionRecorder
from shimmfa.shim.recorder.files import (
    asciicast_lines,
    jsonl_lines,
    listing,
    open_recording,
    play,
    raw_bytes,
    unwrap_dek,
    verify_file,
)

SHIM = "shim-empump-001"
# (direction, bytes) as the relay would see them; "µ" is split over two chunks.
TRAFFIC = [
    (Direction.OUT, b"\x1b[1mExampleMed pump v3.2\x1b[0m\r\n> "),
    (Direction.IN, b"rate\r"),
    (Direction.OUT, b"rate=5.0 ml/h \xc2"),
    (Direction.OUT, b"\xb5 ok\r\n> "),
    (Direction.IN, bytes(range(256))),
    (Direction.OUT, b"bye\r\n"),
]
DEVICE_OUTPUT = b"".join(data for d, data in TRAFFIC if d is Direction.OUT)
TECHNICIAN_INPUT = b"".join(data for d, data in TRAFFIC if d is Direction.IN)


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[SessionRecorder]:
    recorder = SessionRecorder(tmp_path / "storage", SHIM)
    yield recorder
    recorder.close()


@pytest.fixture
def identity(tmp_path: Path, recorder: SessionRecorder) -> Path:
    return tmp_path / "storage" / "keys" / "recording.agekey"


def record(recorder: SessionRecorder, technician: str = "alice@example.org") -> SessionMeta:
    session_id = recorder.start_session(technician)
    recorder.append_event(session_id, {"event": "auth_success", "technician_id": technician})
    for direction, data in TRAFFIC:
        recorder.append_traffic(session_id, direction, data)
    return recorder.end_session(session_id, "technician_hangup")


def path_of(meta: SessionMeta) -> Path:
    assert meta.path is not None
    return meta.path


def records(data: bytes) -> list[tuple[bytes, int, int]]:
    """(type, start, end) of each record, per docs/recording-format.md."""
    out, offset = [], 8
    while offset < len(data):
        end = offset + 5 + struct.unpack_from(">I", data, offset + 1)[0]
        out.append((data[offset : offset + 1], offset, end))
        offset = end
    return out


def test_jsonl_has_the_seed_line_layout(recorder: SessionRecorder, identity: Path) -> None:
    meta = record(recorder)
    got = [json.loads(line) for line in jsonl_lines(open_recording(path_of(meta), identity))]
    header, event, *traffic, footer = got
    assert set(header) == {
        "type",
        "session_id",
        "technician_id",
        "shim_id",
        "started_at_epoch",
        "started_at_iso",
        "version",
    }
    assert (header["type"], header["session_id"], header["shim_id"]) == (
        "session_header",
        meta.session_id,
        SHIM,
    )
    assert header["started_at_epoch"] == meta.started_at and header["version"] == "1.0"
    assert header["started_at_iso"].endswith("+00:00")
    assert (event["type"], event["event"]) == ("meta", "auth_success")
    assert isinstance(event["epoch"], float)
    for line, (direction, data) in zip(traffic, TRAFFIC, strict=True):
        assert set(line) == {"type", "direction", "len", "monotonic", "epoch", "data_hex"}
        assert (line["type"], line["direction"], line["len"]) == ("traffic", direction, len(data))
        assert bytes.fromhex(line["data_hex"]) == data
    assert set(footer) == {
        "type",
        "ended_at_epoch",
        "ended_at_iso",
        "duration_seconds",
        "bytes_inbound",
        "bytes_outbound",
        "terminal_reason",
    }
    assert (footer["bytes_inbound"], footer["bytes_outbound"]) == (
        len(TECHNICIAN_INPUT),
        len(DEVICE_OUTPUT),
    )
    assert footer["ended_at_epoch"] == meta.ended_at
    assert footer["duration_seconds"] == pytest.approx(meta.ended_at - meta.started_at)


def test_asciicast_is_v2_with_output_and_input_events(
    recorder: SessionRecorder, identity: Path
) -> None:
    meta = record(recorder)
    first, *events = [
        json.loads(line) for line in asciicast_lines(open_recording(path_of(meta), identity))
    ]
    assert first["version"] == 2 and first["width"] > 0 and first["height"] > 0
    assert first["timestamp"] == int(meta.started_at)
    times = [event[0] for event in events]
    assert times == sorted(times) and all(t >= 0 for t in times)
    assert all(len(event) == 3 and event[1] in ("o", "i") for event in events)
    out = "".join(text for _, kind, text in events if kind == "o")
    assert out == DEVICE_OUTPUT.decode()  # "µ" joined across its two chunks
    typed = "".join(text for _, kind, text in events if kind == "i")
    assert typed == TECHNICIAN_INPUT.decode("utf-8", "replace")


def test_raw_gives_each_direction_byte_exact(recorder: SessionRecorder, identity: Path) -> None:
    recording = open_recording(path_of(record(recorder)), identity)
    assert b"".join(raw_bytes(recording, "out")) == DEVICE_OUTPUT
    assert b"".join(raw_bytes(recording, "in")) == TECHNICIAN_INPUT
    assert b"".join(raw_bytes(recording, "both")) == b"".join(data for _, data in TRAFFIC)


def test_play_writes_the_device_output_with_bounded_pauses(
    recorder: SessionRecorder, identity: Path
) -> None:
    recording = open_recording(path_of(record(recorder)), identity)
    out, pauses = io.BytesIO(), []
    play(recording, out, 4.0, 0.5, pauses.append)
    assert out.getvalue() == DEVICE_OUTPUT
    assert all(0 < pause <= 0.5 / 4.0 for pause in pauses)


def test_a_tampered_recording_is_not_exported(recorder: SessionRecorder, identity: Path) -> None:
    path = path_of(record(recorder))
    data = bytearray(path.read_bytes())
    kind, start, end = next(r for r in records(bytes(data)) if r[0] == b"F")
    data[end - 1] ^= 0x40  # the last byte of the first frame
    path.write_bytes(bytes(data))
    with pytest.raises(RecordingError, match="refusing to export"):
        open_recording(path, identity)
    assert verify_file(path).status is Status.TAMPERED
    assert verify_file(path, identity=identity).bad_frame == 0


def test_a_truncated_recording_is_exported_up_to_its_last_good_frame(
    recorder: SessionRecorder, identity: Path
) -> None:
    path = path_of(record(recorder))
    data = path.read_bytes()
    path.write_bytes(data[: records(data)[-1][1]])  # without the footer
    recording = open_recording(path, identity)
    assert recording.verdict.status is Status.TRUNCATED
    assert b"".join(raw_bytes(recording, "out")) == DEVICE_OUTPUT
    lines = [json.loads(line) for line in jsonl_lines(recording)]
    assert lines[0]["type"] == "session_header" and lines[-1]["type"] == "traffic"


def test_another_identity_cannot_open_the_data_key(
    tmp_path: Path, recorder: SessionRecorder
) -> None:
    path = path_of(record(recorder))
    stranger = tmp_path / "stranger.agekey"
    stranger.write_text(f"{x25519.Identity.generate()}\n")
    header = verify(path.read_bytes()).header
    with pytest.raises(RecordingError, match="cannot open this recording's data key") as caught:
        unwrap_dek(header, stranger)
    assert header["recipients"][0] in str(caught.value)
    with pytest.raises(RecordingError):
        open_recording(path, stranger)


def test_a_header_re_encrypted_to_another_recipient_is_refused(
    tmp_path: Path, recorder: SessionRecorder, identity: Path
) -> None:
    """An attacker wraps a DEK of their own to their own key and keeps the old
    signature: the header no longer verifies, so nothing is trusted or read."""
    path = path_of(record(recorder))
    data = path.read_bytes()
    _, start, end = records(data)[0]
    text, signature = data[start + 5 : end - 64], data[end - 64 : end]
    fields: dict[str, Any] = json.loads(text)
    attacker = x25519.Identity.generate()
    fields["dek_age"] = base64.b64encode(pyrage.encrypt(bytes(32), [attacker.to_public()])).decode()
    fields["recipients"] = [str(attacker.to_public())]
    body = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode() + signature
    path.write_bytes(data[:start] + b"H" + struct.pack(">I", len(body)) + body + data[end:])
    with pytest.raises(RecordingError, match="header cannot be trusted"):
        verify_file(path)
    with pytest.raises(RecordingError, match="header cannot be trusted"):
        open_recording(path, identity)
    assert listing(path, None).status.startswith("unreadable")


def test_listing_shows_technician_reason_and_status(
    tmp_path: Path, recorder: SessionRecorder
) -> None:
    complete = path_of(record(recorder, "alice@example.org"))
    cut = path_of(record(recorder, "bob@example.org"))
    data = cut.read_bytes()
    cut.write_bytes(data[: records(data)[-1][1]])
    garbage = complete.with_name("garbage.shrec")
    garbage.write_bytes(b"not a recording")
    key = verify(complete.read_bytes()).header["signing_key"]
    raw_key = base64.b64decode(key.partition(":")[2])
    row = listing(complete, raw_key)
    assert (row.technician_id, row.reason, row.status) == (
        "alice@example.org",
        "technician_hangup",
        "valid",
    )
    assert (row.bytes_in, row.bytes_out) == (len(TECHNICIAN_INPUT), len(DEVICE_OUTPUT))
    row = listing(cut, raw_key)
    assert (row.technician_id, row.reason, row.status) == ("bob@example.org", "-", "truncated")
    assert listing(garbage, raw_key).status.startswith("unreadable")
    assert listing(complete, bytes(32)).status.startswith("unreadable")  # another shim's key
