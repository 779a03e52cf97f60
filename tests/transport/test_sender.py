"""The sender thread (`shimmfa.transport.sender`) emptying a real outbox into
sinks: order and batches, backoff on failure (a fake clock drives it),
partial delivery, prompt stop; and the file and noop sinks
(`shimmfa.transport.sinks`). The network sinks are tested against real
receivers in tests/e2e (test_rsyslog.py, test_siem_https.py). Fake sinks
only stand in for the receiver.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from outboxes import SHIM, FakeClock, FakeSink, heartbeat, tamper
from shimmfa.core.events import from_json
from shimmfa.shim.reporting.outbox import Outbox, new_event
from shimmfa.transport.sender import OutboxSender
from shimmfa.transport.sinks import FileSink, NoopSink
from waiting import wait_for

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


def test_an_outage_of_one_destination_holds_up_neither_the_other_nor_its_own_events(
    opened: Callable[..., Outbox], senders: list[OutboxSender]
) -> None:
    outbox = opened(destinations=("siem", "central"))
    down = FakeSink()
    down.error = ConnectionRefusedError("central down")
    up = FakeSink()
    for name, sink in (("siem", up), ("central", down)):
        sender = OutboxSender(outbox.queue(name), sink, name=name, backoff_initial=0.05)
        senders.append(sender)
        sender.start()
    events = [tamper(n) for n in range(30)]
    for event in events:
        outbox.add(event)
    wait_for(lambda: outbox.pending("siem") == 0, "the SIEM's delivery")
    assert up.taken == [e.event_id for e in events]
    assert outbox.pending("central") == 30  # kept for central, not lost
    down.error = None
    wait_for(lambda: outbox.pending("central") == 0, "central's delivery once it is back")
    assert set(down.taken) == {e.event_id for e in events}  # every one, once it was up
