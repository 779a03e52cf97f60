"""The durable outbox and its sender (`shimmfa.shim.outbox`), the file and
noop sinks, and the recorder adapter. The network sinks are tested against
real receivers in tests/e2e (test_rsyslog.py, test_siem_https.py).

Fake sinks here only stand in for the receiver; what reached the outbox is
always read back from the DB by a fresh `Outbox` or plain sqlite3. Waiting is
for a condition with a deadline; a fake clock drives the backoff.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from shimmfa.core.events import Event, from_json
from shimmfa.shim.outbox import Outbox, OutboxSender, new_event
from shimmfa.shim.recorder import SessionRecorder
from shimmfa.shim.recorder_events import OutboxSiem
from shimmfa.shim.sinks import FileSink, NoopSink
from shimmfa.shim.state import _SCHEMA, StateStore
from waiting import wait_for

SHIM = "shim-test"


def heartbeat(seq: int = 0) -> Event:
    return new_event("heartbeat", SHIM, {"seq": seq})


def tamper(n: int = 0) -> Event:
    return new_event("tamper", SHIM, {"event": "case_opened", "n": n})


def kinds(outbox: Outbox) -> list[str]:
    return [entry.event.kind for entry in outbox.oldest(10**6)]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "storage"


@pytest.fixture
def opened(root: Path) -> Iterator[Callable[..., Outbox]]:
    made: list[Outbox] = []

    def make(**kwargs: Any) -> Outbox:
        outbox = Outbox(root, **kwargs)
        made.append(outbox)
        return outbox

    yield make
    for outbox in made:
        outbox.close()


class FakeSink:
    """Stands in for a receiver: keeps what it took; can fail or hang."""

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []
        self.take: int | None = None  # how many of a batch to take (None: all)
        self.error: Exception | None = None
        self.hang = False
        self.called = threading.Event()
        self._released = threading.Event()
        self.closed = False

    def deliver(self, events: Sequence[Event]) -> int:
        self.batches.append(list(events))
        self.called.set()
        if self.hang:
            self._released.wait(30)
            return 0
        if self.error is not None:
            raise self.error
        return len(events) if self.take is None else self.take

    def abort(self) -> None:
        self._released.set()

    def close(self) -> None:
        self.closed = True

    @property
    def taken(self) -> list[str]:
        return [e.event_id for batch in self.batches for e in batch]


@pytest.fixture
def senders() -> Iterator[list[OutboxSender]]:
    made: list[OutboxSender] = []
    yield made
    for sender in made:
        sender.stop()


# -- durability -----------------------------------------------------------------------------


def test_added_events_are_in_a_new_outbox_on_the_same_db_in_order(
    opened: Callable[..., Outbox],
) -> None:
    first = opened()
    events = [tamper(i) if i % 3 else heartbeat(i) for i in range(20)]
    for event in events:
        first.add(event)
    again = opened()
    assert again.pending() == 20
    assert [entry.event for entry in again.oldest(100)] == events
    assert [entry.event for entry in again.oldest(5)] == events[:5]


def test_an_event_is_committed_when_add_returns_even_if_the_process_dies(root: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, sys
        from shimmfa.shim.outbox import Outbox, new_event
        outbox = Outbox({str(root)!r})
        for n in range(25):
            outbox.add(new_event("tamper", "shim-test", {{"n": n}}))
        sys.stdout.write("added\\n"); sys.stdout.flush()
        os._exit(0)  # no close, no cleanup
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout == "added\n", done.stderr
    with sqlite3.connect(root / "state" / "shim.db") as db:
        bodies = [json.loads(b) for (b,) in db.execute("SELECT body FROM outbox ORDER BY id")]
    assert [body["fields"]["n"] for body in bodies] == list(range(25))


def test_delivered_rows_are_gone_for_good(opened: Callable[..., Outbox]) -> None:
    outbox = opened()
    for n in range(6):
        outbox.add(tamper(n))
    entries = outbox.oldest(10)
    outbox.delivered([entries[0].row_id, entries[2].row_id])
    left = [e.event.fields["n"] for e in opened().oldest(10)]
    assert left == [1, 3, 4, 5]


def test_the_same_event_added_twice_is_one_row(opened: Callable[..., Outbox]) -> None:
    outbox = opened()
    event = tamper()
    outbox.add(event)
    outbox.add(event)
    assert outbox.pending() == 1


@pytest.mark.parametrize("first", ["state", "outbox"])
def test_the_outbox_table_exists_whichever_opens_the_db_first(root: Path, first: str) -> None:
    if first == "state":
        StateStore(root).close()
    outbox = Outbox(root)
    store = StateStore(root)
    outbox.add(tamper())
    store.audit(1.0, "x", "y", {})
    with sqlite3.connect(root / "state" / "shim.db") as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {"outbox", "audit", "technicians"} <= tables
    store.close()
    outbox.close()


def test_a_db_of_schema_2_gets_the_outbox_table_and_keeps_its_rows(root: Path) -> None:
    path = root / "state" / "shim.db"
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as db:  # as a shimmfa of schema 2 left it
        db.executescript("".join(_SCHEMA[:2]))
        db.execute("INSERT INTO audit (at, action, subject, detail) VALUES (1, 'kept', 's', '{}')")
        db.execute("PRAGMA user_version = 2")
    outbox = Outbox(root)
    outbox.add(tamper())
    assert outbox.pending() == 1
    outbox.close()
    store = StateStore(root)
    assert [entry.action for entry in store.audit_log()] == ["kept"]
    store.close()


# -- the bound --------------------------------------------------------------------------------


def test_at_80_percent_it_warns_once_and_queues_an_outbox_filling_event(
    opened: Callable[..., Outbox], caplog: pytest.LogCaptureFixture
) -> None:
    outbox = opened(max_rows=10)
    with caplog.at_level(logging.WARNING, "shimmfa.outbox"):
        for n in range(7):
            outbox.add(tamper(n))
        assert "outbox_filling" not in kinds(outbox)
        assert not caplog.records
        outbox.add(tamper(7))  # the 8th of 10
        outbox.add(tamper(8))
    assert kinds(outbox).count("outbox_filling") == 1
    filling = [e.event for e in outbox.oldest(20) if e.event.kind == "outbox_filling"][0]
    assert filling.security and filling.fields["max_rows"] == 10
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "FILLING" in caplog.records[0].getMessage()


def test_the_filling_warning_comes_again_only_after_the_outbox_drained(
    opened: Callable[..., Outbox],
) -> None:
    outbox = opened(max_rows=10)
    for n in range(8):
        outbox.add(tamper(n))
    assert kinds(outbox).count("outbox_filling") == 1
    entries = outbox.oldest(20)
    outbox.delivered([e.row_id for e in entries[:2]])  # 7 left: 70 %, still armed off
    outbox.add(tamper(100))
    assert kinds(outbox).count("outbox_filling") == 1
    outbox.delivered([e.row_id for e in outbox.oldest(20)[:3]])  # 5 left: below 70 %
    for n in range(3):
        outbox.add(tamper(200 + n))
    assert kinds(outbox).count("outbox_filling") == 1 + 1


def test_when_full_the_oldest_heartbeats_go_and_no_security_event_is_lost(
    opened: Callable[..., Outbox], caplog: pytest.LogCaptureFixture
) -> None:
    outbox = opened(max_rows=10)
    added = [heartbeat(0), heartbeat(1), tamper(0), heartbeat(2), tamper(1), heartbeat(3)]
    added += [tamper(2), heartbeat(4)]  # 8 rows: the filling event makes 9
    for event in added:
        outbox.add(event)
    assert outbox.pending() == 9
    outbox.add(heartbeat(5))  # 10: full
    outbox.add(heartbeat(6))  # drops heartbeat 0
    outbox.add(tamper(3))  # drops heartbeat 1
    held = [e.event for e in outbox.oldest(100)]
    assert len(held) == 10
    beats = [e.fields["seq"] for e in held if e.kind == "heartbeat"]
    assert beats == [2, 3, 4, 5, 6]
    security = [e.fields["n"] for e in held if e.kind == "tamper"]
    assert security == [0, 1, 2, 3]
    assert outbox.dropped_heartbeats == 2
    with caplog.at_level(logging.WARNING, "shimmfa.outbox"):
        for n in range(4, 12):  # more security events than there are heartbeats
            outbox.add(tamper(n))
        outbox.add(heartbeat(7))  # nothing older to drop: not kept
    held = [e.event for e in opened(max_rows=10).oldest(100)]
    assert [e.fields["n"] for e in held if e.kind == "tamper"] == list(range(12))
    assert [e for e in held if e.kind == "heartbeat"] == []
    assert len(held) == 13  # beyond the bound: 12 tamper events and the filling event
    criticals = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(criticals) == 1  # once per crossing, not once per event


def test_a_new_outbox_knows_how_full_the_db_is(opened: Callable[..., Outbox]) -> None:
    outbox = opened(max_rows=4)
    for n in range(3):
        outbox.add(heartbeat(n))
    outbox.close()
    again = opened(max_rows=4)
    again.add(tamper())  # 4 of 4 with the filling event it queues: over the bound
    again.add(tamper(1))  # must drop heartbeats 0 and 1, learned from the DB
    assert [e.event.fields.get("seq") for e in again.oldest(10) if e.event.kind == "heartbeat"] == [
        2
    ]


# -- the sender -------------------------------------------------------------------------------


def test_the_sender_delivers_everything_in_order_in_batches(
    opened: Callable[..., Outbox], senders: list[OutboxSender]
) -> None:
    outbox = opened()
    events = [tamper(n) for n in range(250)]
    for event in events[:50]:
        outbox.add(event)
    sink = FakeSink()
    sender = OutboxSender(outbox, sink, batch_size=40)
    senders.append(sender)
    sender.start()
    for event in events[50:]:
        outbox.add(event)
    wait_for(lambda: outbox.pending() == 0, "the outbox to empty")
    assert sink.taken == [e.event_id for e in events]
    assert max(len(batch) for batch in sink.batches) <= 40
    assert sender.delivered_total == 250


def test_the_noop_sink_marks_everything_delivered(
    opened: Callable[..., Outbox], senders: list[OutboxSender]
) -> None:
    outbox = opened()
    for n in range(10):
        outbox.add(tamper(n))
    sender = OutboxSender(outbox, NoopSink())
    senders.append(sender)
    sender.start()
    wait_for(lambda: outbox.pending() == 0, "noop delivery")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_back_off_1_2_4_to_60_seconds_and_success_resets(
    opened: Callable[..., Outbox], senders: list[OutboxSender]
) -> None:
    outbox = opened()
    outbox.add(tamper())
    sink = FakeSink()
    sink.error = ConnectionRefusedError("receiver down")
    clock = FakeClock()
    sender = OutboxSender(outbox, sink, clock=clock)
    senders.append(sender)
    sender.start()
    waits = []
    for attempt in range(1, 10):
        wait_for(lambda a=attempt: sender.failures == a, f"failure {attempt}")  # type: ignore[misc]
        waits.append(sender.backoff)
        # Not before its time: a wake-up (new events) does not hurry it.
        clock.now += sender.backoff - 0.5
        sink.called.clear()
        outbox.add(heartbeat(attempt))
        assert not sink.called.wait(0.05), "retried before the backoff ran out"
        if attempt == 9:
            sink.error = None  # the receiver is back before the 10th try
        clock.now += 0.5
        sender.wake()
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    wait_for(lambda: outbox.pending() == 0, "delivery after the receiver came back")
    assert (sender.failures, sender.backoff) == (0, 0)
    sink.error = OSError("down again")
    outbox.add(tamper(1))
    wait_for(lambda: sender.failures == 1, "the next failure")
    assert sender.backoff == 1


def test_partial_delivery_forgets_only_what_was_taken(
    opened: Callable[..., Outbox], senders: list[OutboxSender]
) -> None:
    outbox = opened()
    events = [tamper(n) for n in range(10)]
    for event in events:
        outbox.add(event)
    sink = FakeSink()
    sink.take = 4
    clock = FakeClock()
    sender = OutboxSender(outbox, sink, clock=clock)
    senders.append(sender)
    sender.start()
    wait_for(lambda: sender.failures == 1, "the partial delivery")
    assert sender.last_error is not None
    assert [e.event for e in outbox.oldest(100)] == events[4:]
    assert sender.backoff == 1
    sink.take = None
    clock.now += 1
    sender.wake()
    wait_for(lambda: outbox.pending() == 0, "the rest")
    assert sink.taken == [e.event_id for e in events] + [e.event_id for e in events[4:]]


def test_stop_returns_within_a_second_when_idle_and_when_the_sink_hangs(
    opened: Callable[..., Outbox],
) -> None:
    outbox = opened()
    idle_sink = FakeSink()
    sender = OutboxSender(outbox, idle_sink)
    sender.start()
    started = time.monotonic()
    assert sender.stop()
    assert time.monotonic() - started < 1.0
    assert idle_sink.closed

    hung = FakeSink()
    hung.hang = True
    sender = OutboxSender(outbox, hung)
    sender.start()
    outbox.add(tamper())
    assert hung.called.wait(5)
    latencies = []
    for n in range(20):  # the sink is stuck: adding stays quick
        before = time.perf_counter()
        outbox.add(tamper(n + 1))
        latencies.append(time.perf_counter() - before)
    assert max(latencies) < 0.5
    started = time.monotonic()
    assert sender.stop()
    assert time.monotonic() - started < 1.0
    assert outbox.pending() == 21  # nothing marked delivered


# -- the file sink ----------------------------------------------------------------------------


def test_the_file_sink_writes_json_lines_that_read_back_as_the_events(
    opened: Callable[..., Outbox], senders: list[OutboxSender], tmp_path: Path
) -> None:
    target = tmp_path / "siem.jsonl"
    target.write_bytes(b'{"torn": tr')  # a line cut by a crash
    outbox = opened()
    events = [
        tamper(1),
        heartbeat(2),
        new_event(
            "auth_failure",
            SHIM,
            {"technician_id": "eve\n]", "result": "BAD_CODE", "detail": "wrong code"},
        ),
    ]
    for event in events:
        outbox.add(event)
    sender = OutboxSender(outbox, FileSink(target))
    senders.append(sender)
    sender.start()
    wait_for(lambda: outbox.pending() == 0, "the file sink")
    lines = target.read_bytes().split(b"\n")
    assert lines[0] == b'{"torn": tr' and lines[-1] == b""
    assert [from_json(json.loads(line)) for line in lines[1:-1]] == events


def test_the_file_sink_keeps_events_when_it_cannot_write(
    opened: Callable[..., Outbox], senders: list[OutboxSender], tmp_path: Path
) -> None:
    outbox = opened()
    outbox.add(tamper())
    sender = OutboxSender(outbox, FileSink(tmp_path / "missing-dir" / "siem.jsonl"))
    senders.append(sender)
    sender.start()
    wait_for(lambda: sender.failures >= 1, "the failed write")
    assert outbox.pending() == 1


# -- the recorder's SIEM transport ------------------------------------------------------------


def test_the_recorders_records_become_session_events_in_the_outbox(
    root: Path, opened: Callable[..., Outbox]
) -> None:
    outbox = opened()
    recorder = SessionRecorder(root, SHIM, siem=OutboxSiem(outbox, SHIM))
    try:
        session = recorder.start_session("alice@example.org")
        recorder.append_event(session, {"event": "break_glass", "approved_by": ["a", "b"]})
        recorder.end_session(session, "technician_hangup")
    finally:
        recorder.close()
    start, meta, end = (entry.event for entry in opened().oldest(10))
    assert (start.kind, meta.kind, end.kind) == ("session_start", "session_meta", "session_end")
    assert start.fields["session_id"] == meta.fields["session_id"] == session
    assert end.fields["session_id"] == session
    assert start.fields["technician_id"] == "alice@example.org"
    assert meta.fields["event"] == "break_glass"
    assert json.loads(str(meta.fields["approved_by"])) == ["a", "b"]
    assert end.fields["terminal_reason"] == "technician_hangup"
    assert isinstance(end.fields["bytes_inbound"], int)
    assert start.at <= end.at
    assert {start.shim_id, meta.shim_id, end.shim_id} == {SHIM}


def test_the_adapter_refuses_what_is_not_a_recorder_record(
    opened: Callable[..., Outbox],
) -> None:
    siem = OutboxSiem(opened(), SHIM)
    assert siem.forward({"something": "else"}) is False
    assert siem.forward({"type": "meta", "epoch": 1.0}) is False  # no session_id
    assert siem.forward({"type": "meta", "session_id": "s", "epoch": 1.0, "Odd Key!": 1})
    (entry,) = opened().oldest(10)
    assert entry.event.fields == {"session_id": "s", "odd_key_": 1}
    assert entry.event.at == 1.0
