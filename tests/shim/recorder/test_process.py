"""The daemon's recorder process: what the relay hands it becomes a valid
recording; a killed daemon's session is closed as `daemon_lost`; a dead
recorder is noticed and replaced."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shimmfa.core.recording import ENTRY
from shimmfa.core.recording_reader import Recording, Status
from shimmfa.errors import RecordingError, SessionStateError
from shimmfa.shim.recorder import SessionMeta, StorageExhaustedError
from shimmfa.shim.recorder.files import open_recording, raw_bytes, verify_file
from shimmfa.shim.recorder.process import RecorderProcess
from waiting import wait_for

OPTIONS = {"recipients": [], "fsync_interval": 0.05, "budget_bytes": 1 << 30, "min_free_bytes": 0}


class Problems(list[str]):
    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def __call__(self, reason: str) -> None:
        with self.lock:
            self.append(reason)


@pytest.fixture
def problems() -> Problems:
    return Problems()


@pytest.fixture
def make(tmp_path: Path, problems: Problems) -> Iterator[Callable[..., RecorderProcess]]:
    made: list[RecorderProcess] = []

    def factory(**options: object) -> RecorderProcess:
        max_bytes = int(options.pop("max_bytes", 1 << 40))  # type: ignore[call-overload]
        process = RecorderProcess(
            tmp_path,
            "shim-proc",
            options={**OPTIONS, **options},
            max_bytes=max_bytes,
            on_problem=problems,
        )
        made.append(process)
        return process

    yield factory
    for process in made:
        process.close()


def identity(root: Path) -> Path:
    return root / "keys" / "recording.agekey"


def assert_recorded(meta: SessionMeta, sent: dict[str, bytes], root: Path) -> Recording:
    """The closed recording is valid, counts what was sent and holds it,
    byte-exact and in order, per direction."""
    assert (meta.bytes_inbound, meta.bytes_outbound) == (len(sent["in"]), len(sent["out"]))
    assert meta.path is not None
    recording = open_recording(meta.path, identity(root))
    assert recording.verdict.status is Status.VALID
    for direction in ("in", "out"):
        assert b"".join(raw_bytes(recording, direction)) == sent[direction]
    return recording


def test_chunks_from_the_relay_come_back_in_order_and_byte_exact(
    make: Callable[..., RecorderProcess], tmp_path: Path
) -> None:
    recorder = make()
    session = recorder.start_session("alice@example.org")
    sent = {"in": b"", "out": b""}
    for index in range(2000):
        direction = "in" if index % 3 else "out"
        chunk = os.urandom(1 + index % 700)
        recorder.record(direction, chunk)
        sent[direction] += chunk
    big = os.urandom(600 << 10)  # larger than a frame: cut into entries
    recorder.record("out", big)
    sent["out"] += big
    meta = recorder.end_session(session, "technician_hangup")
    assert meta.terminal_reason == "technician_hangup"
    recording = assert_recorded(meta, sent, tmp_path)
    events = [f.payload for f in recording.frames if f.direction == "meta"]
    assert events == []


def test_batched_chunks_keep_their_order_counts_and_bytes(
    tmp_path: Path, problems: Problems
) -> None:
    """As in the daemon: chunks wait in a batch until FLUSH_BYTES or the
    flush timer; a chunk bigger than a frame lands in the middle of one."""
    timers: list[Callable[[], None]] = []
    recorder = RecorderProcess(
        tmp_path,
        "shim-proc",
        options=OPTIONS,
        max_bytes=1 << 40,
        on_problem=problems,
        call_later=lambda delay, callback: timers.append(callback),
    )
    try:
        session = recorder.start_session("alice@example.org")
        sent = {"in": b"", "out": b""}
        for index in range(3000):
            direction = "in" if index % 5 == 0 else "out"
            chunk = os.urandom(1 + (index * 37) % 4096)
            if index == 1500:
                chunk = os.urandom(700 << 10)
            recorder.record(direction, chunk)
            sent[direction] += chunk
            if index % 400 == 0:
                while timers:
                    timers.pop()()
        meta = recorder.end_session(session, "technician_hangup")
    finally:
        recorder.close()
    assert_recorded(meta, sent, tmp_path)
    assert problems == []


def test_meta_events_are_recorded_in_their_place(
    make: Callable[..., RecorderProcess], tmp_path: Path
) -> None:
    recorder = make()
    session = recorder.start_session("bob@example.org")
    recorder.record("in", b"before")
    recorder.append_event(session, {"event": "auth_success", "factor": "totp"})
    recorder.record("out", b"after")
    meta = recorder.end_session(session, "idle_timeout")
    assert meta.path is not None
    frames = open_recording(meta.path, identity(tmp_path)).frames
    order = [(f.direction.value, f.payload) for f in frames]
    assert order[0] == ("in", b"before")
    assert order[1][0] == "meta" and b'"auth_success"' in order[1][1]
    assert order[2] == ("out", b"after")


def test_a_killed_daemon_leaves_a_recording_closed_as_daemon_lost(
    make: Callable[..., RecorderProcess], tmp_path: Path
) -> None:
    """What the daemon handed over before it died is recorded, and the file
    says how the session ended instead of claiming an ordinary end."""
    recorder = make()
    session = recorder.start_session("carol@example.org")
    recorder.record("out", b"the last words of the device")
    recorder._flush()  # what a dying daemon had already written to the pipe
    child = recorder._child
    assert child is not None and child.stdin is not None
    child.stdin.close()  # the daemon's end of the pipe closes when it dies
    child.wait(timeout=10)
    recorder._child = None  # nothing left to close
    recording = valid_recording_ended(tmp_path, session, "daemon_lost")
    assert b"".join(raw_bytes(recording, "out")) == b"the last words of the device"


def valid_recording_ended(tmp_path: Path, session: str, reason: str) -> Recording:
    """The session's file, decrypted: it verifies, and its footer gives `reason`."""
    path = next((tmp_path / "sessions").glob(f"{session}*.shrec"))
    recording = open_recording(path, identity(tmp_path))
    assert recording.verdict.status is Status.VALID
    assert recording.verdict.footer is not None
    assert recording.verdict.footer["terminal_reason"] == reason
    return recording


@pytest.mark.parametrize(
    "message",
    [
        ENTRY.pack(b"T", 0.0, 0.0, 3) + b"abc",  # shorter than its byte counts
        ENTRY.pack(b"T", 0.0, 0.0, (4 << 20) + 1),  # longer than any message can be
    ],
    ids=["truncated-batch", "oversized-message"],
)
def test_a_garbled_message_closes_the_recording_as_failed(
    make: Callable[..., RecorderProcess], problems: Problems, tmp_path: Path, message: bytes
) -> None:
    """A bug in what the relay sends is not recorded as traffic: what came
    before it is kept, the file says the recording failed, the relay hears so."""
    recorder = make()
    session = recorder.start_session("dave@example.org")
    recorder.record("in", b"status\r")
    recorder._flush()
    recorder._send([message])
    wait_for(lambda: "recording_failed" in problems, "the relay to hear of the failure")
    recording = valid_recording_ended(tmp_path, session, "recording_failed")
    assert b"".join(raw_bytes(recording, "in")) == b"status\r"


def test_a_dead_recorder_is_reported_and_replaced_for_the_next_session(
    make: Callable[..., RecorderProcess], problems: Problems, tmp_path: Path
) -> None:
    recorder = make()
    session = recorder.start_session("dave@example.org")
    recorder.record("in", b"x")
    child = recorder._child
    assert child is not None
    os.kill(child.pid, signal.SIGKILL)
    wait_for(lambda: "recording_failed" in problems)
    with pytest.raises(RecordingError):
        recorder.end_session(session, "technician_hangup")
    second = recorder.start_session("dave@example.org")
    recorder.record("out", b"recorded again")
    meta = recorder.end_session(second, "technician_hangup")
    assert meta.path is not None
    assert verify_file(meta.path).status is Status.VALID


def test_the_size_limit_is_reported_once(
    make: Callable[..., RecorderProcess], problems: Problems
) -> None:
    recorder = make(max_bytes=1000)
    session = recorder.start_session("erin@example.org")
    for _ in range(10):
        recorder.record("in", b"x" * 300)
    assert problems.count("size_limit") == 1
    recorder.end_session(session, "size_limit")


def test_storage_exhaustion_refuses_a_session_with_the_message(
    make: Callable[..., RecorderProcess],
) -> None:
    recorder = make(budget_bytes=1 << 20)
    session = recorder.start_session("frank@example.org")
    recorder.record("out", os.urandom(1 << 20))
    recorder.end_session(session, "technician_hangup")
    assert recorder.storage_problem() is not None
    with pytest.raises(StorageExhaustedError, match="^Storage exhausted"):
        recorder.start_session("frank@example.org")


def test_calls_out_of_order_are_refused(make: Callable[..., RecorderProcess]) -> None:
    recorder = make()
    session = recorder.start_session("gina@example.org")
    with pytest.raises(SessionStateError):
        recorder.end_session("not-this-one", "x")
    with pytest.raises(SessionStateError):
        recorder.start_session("gina@example.org")
    recorder.end_session(session, "technician_hangup")
    recorder.record("in", b"after the end")  # dropped, not an error
    assert recorder.open_session_id is None
