"""The recorder's SIEM transport (`shimmfa.shim.reporting.records`): the
seed's session records become outbox events."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from outboxes import SHIM
from shimmfa.shim.recorder import SessionRecorder
from shimmfa.shim.reporting.outbox import Outbox
from shimmfa.shim.reporting.records import OutboxSiem

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
