"""The session recorder (`shimmfa.shim.recorder`): the seed prototype's
behaviours on our API, crash safety, the storage budget and file names.

What a recording holds is always checked by reading the file back (verify,
decrypt with the local recording identity, the seed's jsonl lines), never
through the recorder's own state. Waiting is for a condition with a deadline.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import waiting
from shimmfa.core.recording_reader import Frame, Status, read, verify
from shimmfa.core.session import valid_session_id
from shimmfa.errors import KeyFileError, RecordingError, SessionStateError
from shimmfa.shim.recorder import (
    Direction,
    SessionMeta,
    SessionRecorder,
    StorageExhaustedError,
)
from shimmfa.shim.recorder.files import jsonl_lines, open_recording, unwrap_dek
from waiting import wait_for

SHIM = "shim-empump-001"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "storage"


@pytest.fixture
def make(root: Path) -> Iterator[Callable[..., SessionRecorder]]:
    made: list[SessionRecorder] = []

    def factory(**kwargs: Any) -> SessionRecorder:
        recorder = SessionRecorder(root, SHIM, **kwargs)
        made.append(recorder)
        return recorder

    yield factory
    for recorder in made:
        recorder.close()


@pytest.fixture
def recorder(make: Callable[..., SessionRecorder]) -> SessionRecorder:
    return make()


def identity(root: Path) -> Path:
    return root / "keys" / "recording.agekey"


def dek_of(data: bytes, root: Path) -> bytes:
    return unwrap_dek(verify(data).header, identity(root))


def lines(meta: SessionMeta, root: Path) -> list[dict[str, Any]]:
    assert meta.path is not None
    return [json.loads(line) for line in jsonl_lines(open_recording(meta.path, identity(root)))]


def chunks(frames: list[Frame]) -> list[tuple[str, bytes]]:
    """(direction, bytes), adjacent chunks of one direction joined, so the
    comparison does not depend on how chunks were cut into entries."""
    out: list[tuple[str, bytes]] = []
    for frame in frames:
        if frame.direction != "meta" and out and out[-1][0] == frame.direction.value:
            out[-1] = (out[-1][0], out[-1][1] + frame.payload)
        else:
            out.append((frame.direction.value, frame.payload))
    return out


def joined(entries: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    return chunks([Frame(0, Direction(d), 0.0, 0.0, p) for d, p in entries])


# -- the seed's behaviours -------------------------------------------------------------


def test_start_and_end_a_session(recorder: SessionRecorder) -> None:
    before = time.time()
    session_id = recorder.start_session("alice@example.org")
    assert recorder.has_open_session
    meta = recorder.end_session(session_id, "technician_hangup")
    after = time.time()
    assert not recorder.has_open_session
    assert valid_session_id(session_id)
    started = dt.datetime.fromtimestamp(meta.started_at, dt.UTC)
    assert session_id.startswith(started.strftime("%Y%m%dT%H%M%S."))  # UTC start time
    assert (meta.session_id, meta.technician_id, meta.shim_id) == (
        session_id,
        "alice@example.org",
        SHIM,
    )
    assert meta.ended_at is not None
    assert before <= meta.started_at <= meta.ended_at <= after
    assert meta.terminal_reason == "technician_hangup"
    assert (meta.bytes_inbound, meta.bytes_outbound) == (0, 0)


def test_the_file_has_a_header_and_a_footer(root: Path, recorder: SessionRecorder) -> None:
    session_id = recorder.start_session("alice@example.org")
    meta = recorder.end_session(session_id, "idle_timeout")
    assert meta.path is not None and meta.path.parent == root / "sessions"
    assert meta.path.name == f"{session_id}_alice@example.org.shrec"
    assert stat.S_IMODE(meta.path.stat().st_mode) == 0o600
    assert verify(meta.path.read_bytes()).status is Status.VALID
    got = lines(meta, root)
    assert got[0]["type"] == "session_header"
    assert got[0]["technician_id"] == "alice@example.org"
    assert (got[0]["session_id"], got[0]["shim_id"], got[0]["version"]) == (session_id, SHIM, "1.0")
    assert got[-1]["type"] == "session_footer"
    assert got[-1]["terminal_reason"] == "idle_timeout"
    assert got[-1]["ended_at_epoch"] == pytest.approx(meta.ended_at)


def test_traffic_is_recorded_with_its_direction_and_bytes(
    root: Path, recorder: SessionRecorder
) -> None:
    session_id = recorder.start_session("bob@example.org")
    sent = [
        (Direction.OUT, b"ExampleMed pump v3.2\r\n> "),
        (Direction.IN, b"status\r"),
        (Direction.OUTBOUND, b"rate=5.0 ml/h\r\n"),
        (Direction.INBOUND, b"\x03"),
    ]
    for direction, data in sent:
        recorder.append_traffic(session_id, direction, data)
    meta = recorder.end_session(session_id, "device_hangup")
    traffic = [line for line in lines(meta, root) if line["type"] == "traffic"]
    assert [(t["direction"], bytes.fromhex(t["data_hex"])) for t in traffic] == [
        (d.value, data) for d, data in sent
    ]
    assert all(t["len"] == len(bytes.fromhex(t["data_hex"])) for t in traffic)
    inbound = len(b"status\r") + 1
    outbound = len(sent[0][1]) + len(sent[2][1])
    assert (meta.bytes_inbound, meta.bytes_outbound) == (inbound, outbound)
    footer = lines(meta, root)[-1]
    assert (footer["bytes_inbound"], footer["bytes_outbound"]) == (inbound, outbound)


def test_cannot_open_two_sessions(root: Path, recorder: SessionRecorder) -> None:
    first = recorder.start_session("alice@example.org")
    with pytest.raises(SessionStateError) as caught:
        recorder.start_session("bob@example.org")
    assert isinstance(caught.value, RuntimeError)  # as in the seed
    recorder.append_traffic(first, Direction.OUT, b"still recording")
    meta = recorder.end_session(first, "technician_hangup")
    assert meta.path is not None
    assert list((root / "sessions").iterdir()) == [meta.path]
    assert verify(meta.path.read_bytes()).status is Status.VALID


def test_cannot_use_an_unknown_or_ended_session(recorder: SessionRecorder) -> None:
    for call in (
        lambda: recorder.append_traffic("no-such-session", Direction.IN, b"x"),
        lambda: recorder.append_event("no-such-session", {"event": "x"}),
        lambda: recorder.end_session("no-such-session", "shutdown"),
    ):
        with pytest.raises(SessionStateError):
            call()
    session_id = recorder.start_session("alice@example.org")
    with pytest.raises(SessionStateError):
        recorder.append_traffic("20261123T105459.123Z-000000000000", Direction.IN, b"x")
    recorder.end_session(session_id, "technician_hangup")
    with pytest.raises(SessionStateError):
        recorder.append_traffic(session_id, Direction.IN, b"late")
    with pytest.raises(SessionStateError):
        recorder.end_session(session_id, "technician_hangup")


@pytest.mark.parametrize("direction", [Direction.META, "meta", "sideways", "IN"])
def test_traffic_with_a_wrong_direction_is_refused_and_harms_nothing(
    root: Path, make: Callable[..., SessionRecorder], direction: Any
) -> None:
    problems: list[str] = []
    recorder = make(on_problem=problems.append)
    session_id = recorder.start_session("alice@example.org")
    recorder.append_traffic(session_id, Direction.OUT, b"before")
    with pytest.raises((SessionStateError, ValueError)):
        recorder.append_traffic(session_id, direction, b"not traffic")
    recorder.append_traffic(session_id, Direction.IN, b"after")
    meta = recorder.end_session(session_id, "technician_hangup")
    assert problems == []
    assert meta.path is not None
    recording = open_recording(meta.path, identity(root))
    assert recording.verdict.status is Status.VALID
    assert chunks(recording.frames) == [("out", b"before"), ("in", b"after")]


def test_force_close_on_emergency(root: Path, recorder: SessionRecorder) -> None:
    session_id = recorder.start_session("alice@example.org")
    recorder.append_traffic(session_id, Direction.OUT, b"menu")
    meta = recorder.force_close_on_emergency("tamper:case_opened")
    assert meta is not None
    assert (meta.session_id, meta.terminal_reason) == (session_id, "tamper:case_opened")
    assert not recorder.has_open_session
    assert lines(meta, root)[-1]["terminal_reason"] == "tamper:case_opened"


def test_force_close_without_a_session_returns_none(recorder: SessionRecorder) -> None:
    assert recorder.force_close_on_emergency("tamper:case_opened") is None
    assert not recorder.has_open_session


def test_close_ends_the_open_session_as_shutdown(root: Path) -> None:
    recorder = SessionRecorder(root, SHIM)
    session_id = recorder.start_session("alice@example.org")
    recorder.close()
    assert not recorder.has_open_session
    (path,) = (root / "sessions").iterdir()
    verdict = verify(path.read_bytes())
    assert verdict.status is Status.VALID and verdict.footer is not None
    assert (verdict.header["session_id"], verdict.footer["terminal_reason"]) == (
        session_id,
        "shutdown",
    )


class ListSiem:
    """A SIEM transport that keeps what it is given."""

    def __init__(self, fail: bool = False) -> None:
        self.records: list[dict[str, Any]] = []
        self.fail = fail

    def forward(self, record: dict[str, Any]) -> bool:
        self.records.append(record)
        if self.fail:
            raise ConnectionError("SIEM unreachable")
        return True


def test_the_siem_gets_session_start_events_and_session_end(root: Path) -> None:
    siem = ListSiem()
    recorder = SessionRecorder(root, SHIM, siem)  # the seed's positional form
    try:
        meta, session_id = siem_session(recorder)
    finally:
        recorder.close()
    start, event, end = siem.records
    assert start["event"] == "session_start"
    assert (start["session_id"], start["technician_id"], start["shim_id"]) == (
        session_id,
        "alice@example.org",
        SHIM,
    )
    assert start["started_at_epoch"] == meta.started_at
    assert (event["session_id"], event["event"], event["type"]) == (
        session_id,
        "auth_success",
        "meta",
    )
    assert end["event"] == "session_end"
    assert (end["session_id"], end["technician_id"], end["shim_id"]) == (
        session_id,
        "alice@example.org",
        SHIM,
    )
    assert (end["bytes_inbound"], end["bytes_outbound"], end["terminal_reason"]) == (
        3,
        5,
        "technician_hangup",
    )
    assert end["duration_seconds"] >= 0


def siem_session(recorder: SessionRecorder) -> tuple[SessionMeta, str]:
    session_id = recorder.start_session("alice@example.org")
    recorder.append_event(session_id, {"event": "auth_success", "technician_id": "alice"})
    recorder.append_traffic(session_id, Direction.IN, b"abc")
    recorder.append_traffic(session_id, Direction.OUT, b"hello")
    return recorder.end_session(session_id, "technician_hangup"), session_id


def test_a_failing_siem_never_breaks_recording(
    root: Path, make: Callable[..., SessionRecorder]
) -> None:
    siem = ListSiem(fail=True)
    recorder = make(siem=siem)
    session_id = recorder.start_session("alice@example.org")
    recorder.append_event(session_id, {"event": "auth_success"})
    recorder.append_traffic(session_id, Direction.OUT, b"ok")
    meta = recorder.end_session(session_id, "technician_hangup")
    assert len(siem.records) == 3
    assert [line["type"] for line in lines(meta, root)] == [
        "session_header",
        "meta",
        "traffic",
        "session_footer",
    ]


def test_events_are_recorded_in_order_with_the_traffic(
    root: Path, recorder: SessionRecorder
) -> None:
    session_id = recorder.start_session("alice@example.org")
    recorder.append_event(session_id, {"event": "auth_success", "period": 59843233})
    recorder.append_traffic(session_id, Direction.OUT, b"menu")
    recorder.append_event(session_id, {"event": "note", "text": "µ and ✓"})
    meta = recorder.end_session(session_id, "technician_hangup")
    got = lines(meta, root)[1:-1]
    assert [line["type"] for line in got] == ["meta", "traffic", "meta"]
    assert (got[0]["event"], got[0]["period"]) == ("auth_success", 59843233)
    assert got[2]["text"] == "µ and ✓"
    assert got[0]["epoch"] <= got[1]["epoch"] <= got[2]["epoch"]


# -- session IDs and file names --------------------------------------------------------

NASTY_IDS = [
    "alice@example.org",
    "alice@example.org",  # the same technician twice
    "alice_example.org",
    "../../../etc/passwd",
    "/etc/shadow",
    "a/../../b",
    "..",
    ".",
    "...",
    "",
    "nul\x00byte",
    "\x00",
    "..\x00/..",
    "back\\slash\\..\\x",
    ".hidden",
    "-rf --no-preserve-root",
    "ünïcødé/../ﬁ",
    "x" * 400,
    "new\nline",
]


def test_ids_are_unique_and_names_stay_inside_sessions(
    root: Path, recorder: SessionRecorder
) -> None:
    paths = {}
    for technician in NASTY_IDS:
        session_id = recorder.start_session(technician)
        recorder.append_traffic(session_id, Direction.OUT, technician.encode())
        meta = recorder.end_session(session_id, "technician_hangup")
        assert meta.path is not None
        paths[session_id] = (technician, meta.path)
    sessions = (root / "sessions").resolve()
    assert len(paths) == len(NASTY_IDS)
    assert len({p.name for _, p in paths.values()}) == len(NASTY_IDS)
    for session_id, (technician, path) in paths.items():
        assert valid_session_id(session_id)
        assert path.resolve().parent == sessions
        assert path.name.startswith(session_id + "_") and path.name.endswith(".shrec")
        assert "\x00" not in path.name and "/" not in path.name and "\n" not in path.name
        assert len(path.name.encode()) <= 255
        recording = open_recording(path, identity(root))
        assert recording.verdict.header["technician_id"] == technician
        assert [f.payload for f in recording.frames] == [technician.encode()]
    outside = [
        p
        for p in root.rglob("*")
        if p.is_file() and p.parent not in (root / "keys", root / "sessions")
    ]
    assert outside == []
    assert sorted(p.name for p in (root / "sessions").iterdir()) == sorted(
        p.name for _, p in paths.values()
    )


@pytest.fixture(scope="module")
def shared_recorder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionRecorder]:
    recorder = SessionRecorder(tmp_path_factory.mktemp("names") / "storage", SHIM)
    yield recorder
    recorder.close()


@given(technician=st.text(max_size=80))
@settings(max_examples=60, deadline=None)
def test_any_technician_id_names_a_new_file_inside_sessions(
    shared_recorder: SessionRecorder, technician: str
) -> None:
    before = set(shared_recorder.sessions_dir.iterdir())
    session_id = shared_recorder.start_session(technician)
    meta = shared_recorder.end_session(session_id, "technician_hangup")
    assert meta.path is not None
    assert set(shared_recorder.sessions_dir.iterdir()) == before | {meta.path}
    assert meta.path not in before
    assert meta.path.resolve().parent == shared_recorder.sessions_dir.resolve()
    assert meta.path.name.startswith(session_id + "_") and meta.path.name.isascii()
    assert verify(meta.path.read_bytes()).header["technician_id"] == technician


# -- round trip ------------------------------------------------------------------------


def test_random_traffic_round_trips_in_order_byte_exact(
    root: Path, recorder: SessionRecorder
) -> None:
    rng = random.Random(20261123)
    big = 300 << 10
    session_id = recorder.start_session("alice@example.org")
    sent: list[tuple[str, bytes]] = []
    plan = [bytes(range(256)), b"", b"\x00", rng.randbytes(big), rng.randbytes(big)]
    plan += [rng.randbytes(rng.choice([1, 7, 100, 4096])) for _ in range(200)]
    plan += [rng.randbytes(big), bytes(range(255, -1, -1)), b""]
    for number, data in enumerate(plan):
        direction = rng.choice([Direction.IN, Direction.OUT])
        recorder.append_traffic(session_id, direction, data)
        sent.append((direction.value, data))
        if number % 37 == 0:
            event = {"event": "note", "n": number}
            recorder.append_event(session_id, event)
            sent.append(("meta", json.dumps(event).encode()))
    meta = recorder.end_session(session_id, "technician_hangup")
    assert meta.path is not None
    data = meta.path.read_bytes()
    recording = read(data, dek_of(data, root))
    assert recording.verdict.status is Status.VALID
    assert recording.verdict.frames >= 3  # three 300 KiB chunks cannot share a frame
    got = chunks(recording.frames)
    assert [(d, p) for d, p in got if d != "meta"] == [
        (d, p) for d, p in joined(sent) if d != "meta"
    ]
    assert [json.loads(p)["n"] for d, p in got if d == "meta"] == [
        json.loads(p)["n"] for d, p in sent if d == "meta"
    ]
    assert [d for d, _ in got] == [d for d, _ in joined(sent)]
    assert meta.bytes_inbound == sum(len(p) for d, p in sent if d == "in")
    assert meta.bytes_outbound == sum(len(p) for d, p in sent if d == "out")
    monotonic = [f.monotonic for f in recording.frames]
    assert monotonic == sorted(monotonic)


def test_a_chunk_larger_than_a_record_is_recorded_whole(
    root: Path, make: Callable[..., SessionRecorder]
) -> None:
    problems: list[str] = []
    recorder = make(on_problem=problems.append)
    session_id = recorder.start_session("alice@example.org")
    huge = random.Random(9).randbytes(9 << 20)  # more than one record may hold
    recorder.append_traffic(session_id, Direction.OUT, b"before ")
    recorder.append_traffic(session_id, Direction.OUT, huge)
    recorder.append_traffic(session_id, Direction.IN, b"after")
    meta = recorder.end_session(session_id, "technician_hangup")
    assert problems == []
    assert meta.path is not None
    recording = open_recording(meta.path, identity(root))
    assert recording.verdict.status is Status.VALID
    assert chunks(recording.frames) == [("out", b"before " + huge), ("in", b"after")]
    assert meta.bytes_outbound == len(huge) + 7


def test_no_traffic_or_event_is_in_the_file_in_plaintext(
    root: Path, recorder: SessionRecorder
) -> None:
    markers = {
        "out": b"DEVICE-SECRET-9f8e7d6c5b4a3921",
        "in": b"TECH-TYPED-PASSWORD-0a1b2c3d4e5f",
        "event": "EVENT-DETAIL-77aa88bb99cc00dd",
    }
    session_id = recorder.start_session("alice@example.org")
    recorder.append_traffic(session_id, Direction.OUT, b"x" + markers["out"] + b"y")
    recorder.append_traffic(session_id, Direction.IN, markers["in"])
    recorder.append_event(session_id, {"event": "note", "detail": markers["event"]})
    meta = recorder.end_session(session_id, "technician_hangup")
    assert meta.path is not None
    data = meta.path.read_bytes()
    for marker in (markers["out"], markers["in"], markers["event"].encode()):
        assert marker not in data
        assert marker.hex().encode() not in data
    assert b"".join(bytes.fromhex(x["data_hex"]) for x in lines(meta, root) if "data_hex" in x) == (
        b"x" + markers["out"] + b"y" + markers["in"]
    )


# -- crash safety and fsync ------------------------------------------------------------


def sealed_frames(data: bytes, dek: bytes) -> list[Frame]:
    """The entries covered by the last signed seal of `data`."""
    last = verify(data).last_good_frame
    if last is None:
        return []
    return [f for f in read(data, dek).frames if f.index <= last]


def test_a_copy_taken_while_recording_is_truncated_and_keeps_every_checkpointed_entry(
    root: Path, tmp_path: Path, make: Callable[..., SessionRecorder]
) -> None:
    recorder = make(fsync_interval=0.02)
    session_id = recorder.start_session("alice@example.org")
    path = next((root / "sessions").iterdir())
    dek = dek_of(path.read_bytes(), root)
    first = [(Direction.OUT if n % 2 else Direction.IN, b"A%03d" % n) for n in range(50)]
    for direction, data in first:
        recorder.append_traffic(session_id, direction, data)
    wait_for(
        lambda: len(sealed_frames(path.read_bytes(), dek)) == len(first),
        "a checkpoint covering the first entries",
    )
    later = [(Direction.OUT, b"B%05d" % n) for n in range(2000)]
    for direction, data in later:
        recorder.append_traffic(session_id, direction, data)
    crash = tmp_path / "crash.shrec"
    shutil.copyfile(path, crash)  # the file as kill -9 would leave it
    snapshot = crash.read_bytes()

    expected = [(d.value, data) for d, data in first + later]
    for key in (None, dek):
        verdict = verify(snapshot, dek=key)
        assert verdict.status is Status.TRUNCATED, verdict
        assert verdict.last_good_frame is not None and verdict.last_good_time is not None
    sealed = sealed_frames(snapshot, dek)
    assert [(f.direction.value, f.payload) for f in sealed] == expected[: len(sealed)]
    assert len(sealed) >= len(first)
    everything = read(snapshot, dek).frames
    assert [(f.direction.value, f.payload) for f in everything] == expected[: len(everything)]

    meta = recorder.end_session(session_id, "technician_hangup")
    assert meta.path == path
    recording = read(path.read_bytes(), dek)
    assert recording.verdict.status is Status.VALID
    assert [(f.direction.value, f.payload) for f in recording.frames] == expected


# The scripts below run in a subprocess of their own; they wait with the tests' `wait_for`.
WITH_TEST_HELPERS = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(
        filter(None, [str(Path(waiting.__file__).resolve().parent), os.environ.get("PYTHONPATH")])
    ),
}

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from shimmfa.core.recording_reader import verify
    from shimmfa.shim.recorder import Direction, SessionRecorder
    from waiting import wait_for

    recorder = SessionRecorder(Path(sys.argv[1]), "shim-crash", fsync_interval=0.02)
    sid = recorder.start_session("alice@example.org")
    path = next((Path(sys.argv[1]) / "sessions").iterdir())
    for n in range(20):
        recorder.append_traffic(sid, Direction.OUT, b"A%03d" % n)
    wait_for(lambda: verify(path.read_bytes()).last_good_frame is not None, "a checkpoint")
    for n in range(500):
        recorder.append_traffic(sid, Direction.IN, b"B%03d" % n)
    print("sealed", flush=True)
    sys.stdin.read()
    """
)


def test_kill_9_leaves_a_truncated_recording_with_the_checkpointed_entries(root: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root)],
        env=WITH_TEST_HELPERS,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"sealed\n", child.stderr.read() if child.stderr else ""
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        child.kill()
        child.wait()
        for stream in (child.stdin, child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    (path,) = (root / "sessions").iterdir()
    data = path.read_bytes()
    verdict = verify(data)
    assert verdict.status is Status.TRUNCATED and verdict.last_good_frame is not None
    dek = dek_of(data, root)
    sealed = [f.payload for f in sealed_frames(data, dek)]
    expected = [b"A%03d" % n for n in range(20)] + [b"B%03d" % n for n in range(500)]
    assert len(sealed) >= 1 and sealed == expected[: len(sealed)]
    everything = [f.payload for f in read(data, dek).frames]
    assert everything == expected[: len(everything)]
    assert verify(data, dek=dek).status is Status.TRUNCATED


FULL_DISK_CHILD = textwrap.dedent(
    """
    import json, resource, signal, sys
    from pathlib import Path
    from shimmfa.core.recording_reader import verify
    from shimmfa.shim.recorder import Direction, SessionRecorder
    from waiting import wait_for

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an over-size write fails with EFBIG
    problems = []
    root = Path(sys.argv[1])
    recorder = SessionRecorder(root, "shim-full", fsync_interval=0.02, on_problem=problems.append)
    sid = recorder.start_session("alice@example.org")
    path = next((root / "sessions").iterdir())
    recorder.append_traffic(sid, Direction.OUT, b"checkpointed")
    wait_for(lambda: verify(path.read_bytes()).last_good_frame is not None, "a checkpoint")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 10, hard))  # disk full
    recorder.append_traffic(sid, Direction.OUT, b"does not fit" * 10)
    wait_for(lambda: problems, "the write error to be reported")
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space again
    recorder.append_traffic(sid, Direction.IN, b"after the failure")
    meta = recorder.end_session(sid, "recording_failed")
    print(json.dumps({"problems": problems, "reason": meta.terminal_reason}))
    """
)


def test_a_write_error_leaves_an_honest_truncated_recording(root: Path) -> None:
    """A failed write (here a real EFBIG from RLIMIT_FSIZE, as on a full disk)
    reports recording_failed; the file then verifies as truncated with what
    was checkpointed, never as tampered (a false alarm) nor as valid."""
    result = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CHILD, str(root)],
        env=WITH_TEST_HELPERS,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    report = json.loads(result.stdout)
    assert report == {"problems": ["recording_failed"], "reason": "recording_failed"}
    (path,) = (root / "sessions").iterdir()
    data = path.read_bytes()
    dek = dek_of(data, root)
    for key in (None, dek):
        verdict = verify(data, dek=key)
        assert verdict.status is Status.TRUNCATED, verdict.message
        assert verdict.last_good_frame == 0
    assert [f.payload for f in read(data, dek).frames] == [b"checkpointed"]


def test_every_fsync_of_a_recording_ends_at_a_seal(
    root: Path, make: Callable[..., SessionRecorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What is durable after a crash always ends with the header or a signed
    seal: frames are written before their checkpoint and the checkpoint is
    fsynced."""
    synced: list[tuple[int, int]] = []  # (inode, size) at each fsync
    real_fsync = os.fsync
    lock = threading.Lock()

    def spy(fd: int) -> None:
        real_fsync(fd)
        status = os.fstat(fd)
        with lock:
            synced.append((status.st_ino, status.st_size))

    monkeypatch.setattr(os, "fsync", spy)
    recorder = make(fsync_interval=0.02)
    session_id = recorder.start_session("alice@example.org")
    path = next((root / "sessions").iterdir())
    for n in range(30):
        recorder.append_traffic(session_id, Direction.OUT, b"chunk %d " % n)
    wait_for(lambda: verify(path.read_bytes()).last_good_frame is not None, "a checkpoint")
    for n in range(30):
        recorder.append_traffic(session_id, Direction.IN, b"more %d " % n)
    recorder.end_session(session_id, "technician_hangup")
    monkeypatch.undo()
    data = path.read_bytes()
    ends = seal_ends(data)
    sizes = [size for inode, size in synced if inode == path.stat().st_ino]
    assert len(sizes) >= 3  # header, at least one checkpoint, the footer
    assert set(sizes) <= ends, (sorted(set(sizes) - ends), sorted(ends))
    assert sizes[-1] == len(data)


def seal_ends(data: bytes) -> set[int]:
    """Offsets just after the header and after each seal record."""
    ends, offset = set(), 8
    while offset < len(data):
        kind = data[offset : offset + 1]
        offset += 5 + int.from_bytes(data[offset + 1 : offset + 5], "big")
        if kind in (b"H", b"S"):
            ends.add(offset)
    return ends


def test_no_checkpoint_before_the_fsync_interval(
    root: Path, make: Callable[..., SessionRecorder]
) -> None:
    recorder = make(fsync_interval=60.0)
    session_id = recorder.start_session("alice@example.org")
    path = next((root / "sessions").iterdir())
    header_size = path.stat().st_size
    recorder.append_traffic(session_id, Direction.OUT, b"written by the writer thread")
    wait_for(lambda: path.stat().st_size > header_size, "the frame to be written")
    data = path.read_bytes()
    assert seal_ends(data) == {header_size}  # a frame, but no checkpoint yet
    verdict = verify(data)
    assert (verdict.status, verdict.last_good_frame) == (Status.TRUNCATED, None)
    recorder.end_session(session_id, "technician_hangup")
    assert verify(path.read_bytes()).status is Status.VALID


# -- limits ----------------------------------------------------------------------------


def test_storage_budget_refuses_new_sessions_and_keeps_the_old_ones(
    root: Path, make: Callable[..., SessionRecorder]
) -> None:
    recorder = make(budget_bytes=6000)
    for _ in range(20):
        try:
            session_id = recorder.start_session("alice@example.org")
        except StorageExhaustedError as exc:
            refusal = exc
            break
        recorder.append_traffic(session_id, Direction.OUT, bytes(200))
        recorder.end_session(session_id, "technician_hangup")
    else:
        pytest.fail("the budget never filled")
    assert str(refusal).startswith("Storage exhausted")
    assert isinstance(refusal, RecordingError)
    files = sorted((root / "sessions").iterdir())
    assert 2 <= len(files) < 20
    before = {p: p.read_bytes() for p in files}
    assert sum(len(b) for b in before.values()) >= 6000
    assert not recorder.has_open_session
    with pytest.raises(StorageExhaustedError, match="^Storage exhausted"):
        recorder.start_session("bob@example.org")
    # A restarted shim counts what is on disk.
    restarted = make(budget_bytes=6000)
    with pytest.raises(StorageExhaustedError, match="^Storage exhausted"):
        restarted.start_session("bob@example.org")
    assert {p: p.read_bytes() for p in sorted((root / "sessions").iterdir())} == before
    for data in before.values():
        assert verify(data).status is Status.VALID


def test_recordings_moved_off_the_shim_free_the_budget_without_a_restart(
    root: Path, make: Callable[..., SessionRecorder]
) -> None:
    """What `recording.delete_after_upload` (or an operator moving files
    off) relies on: the budget counts the files again once it is reached."""
    recorder = make(budget_bytes=6000)
    for _ in range(20):
        try:
            session_id = recorder.start_session("alice@example.org")
        except StorageExhaustedError:
            break
        recorder.append_traffic(session_id, Direction.OUT, bytes(200))
        recorder.end_session(session_id, "technician_hangup")
    else:
        pytest.fail("the budget never filled")
    for path in sorted((root / "sessions").iterdir())[:-1]:
        path.unlink()  # uploaded and confirmed by central, say
    session_id = recorder.start_session("bob@example.org")
    recorder.end_session(session_id, "technician_hangup")


def test_too_little_free_disk_refuses_new_sessions(
    root: Path, make: Callable[..., SessionRecorder]
) -> None:
    recorder = make(min_free_bytes=1 << 62)
    with pytest.raises(StorageExhaustedError, match="^Storage exhausted.*free"):
        recorder.start_session("alice@example.org")
    assert list((root / "sessions").iterdir()) == []


def test_max_bytes_reports_size_limit_exactly_once_per_session(
    root: Path, make: Callable[..., SessionRecorder]
) -> None:
    problems: list[str] = []
    recorder = make(max_bytes=1000, on_problem=problems.append)
    session_id = recorder.start_session("alice@example.org")
    recorder.record("out", bytes(600))
    recorder.record("in", bytes(400))
    assert problems == []  # exactly at the limit
    recorder.record("out", b"!")
    assert problems == ["size_limit"]
    for _ in range(10):
        recorder.record("out", bytes(500))
    assert problems == ["size_limit"]
    meta = recorder.end_session(session_id, "size_limit")
    assert meta.path is not None and verify(meta.path.read_bytes()).status is Status.VALID
    second = recorder.start_session("bob@example.org")
    recorder.record("in", bytes(1001))
    recorder.record("in", bytes(1001))
    recorder.end_session(second, "size_limit")
    assert problems == ["size_limit", "size_limit"]


def test_record_without_a_session_is_ignored(root: Path, recorder: SessionRecorder) -> None:
    recorder.record("out", b"line noise before login")
    assert list((root / "sessions").iterdir()) == []


# -- keys and recipients ---------------------------------------------------------------


def test_warns_while_the_local_recording_identity_is_on_the_shim(
    root: Path, make: Callable[..., SessionRecorder]
) -> None:
    recorder = make()
    assert len(recorder.warnings) == 1 and "recording.agekey" in recorder.warnings[0]
    moved = identity(root).read_bytes()
    identity(root).unlink()  # moved to the auditors
    again = make()
    assert again.warnings == []
    assert not identity(root).exists()  # not silently recreated
    recipient = (root / "keys" / "recording.recipient").read_text().strip()
    assert recipient in moved.decode()
    session_id = again.start_session("alice@example.org")
    meta = again.end_session(session_id, "technician_hangup")
    assert meta.path is not None
    assert verify(meta.path.read_bytes()).header["recipients"] == [recipient]


def test_a_key_file_readable_by_others_stops_the_recorder(root: Path) -> None:
    SessionRecorder(root, SHIM).close()
    (root / "keys" / "signing.pem").chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        SessionRecorder(root, SHIM)
