"""The durable outbox (`shimmfa.shim.reporting.outbox`) on a real state DB:
what `add` returned is committed, delivered rows are gone, the bound drops
heartbeats and never a security event.

What reached the outbox is always read back from the DB by a fresh `Outbox`
or plain sqlite3. Waiting is for a condition with a deadline.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from outboxes import heartbeat, kinds, tamper
from shimmfa.shim.reporting.outbox import Outbox
from shimmfa.shim.state.db import _SCHEMA
from shimmfa.shim.state.store import StateStore

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
        from shimmfa.shim.reporting.outbox import Outbox, new_event
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


# -- one outbox, two destinations ------------------------------------------------------------


def test_each_destination_takes_every_event_and_a_row_goes_when_both_have_it(
    opened: Callable[..., Outbox],
) -> None:
    outbox = opened(destinations=("siem", "central"))
    events = [tamper(n) for n in range(5)]
    for event in events:
        outbox.add(event)
    siem, central = outbox.queue("siem"), outbox.queue("central")
    siem.delivered(e.row_id for e in siem.oldest(3))
    assert [e.event for e in siem.oldest(10)] == events[3:]
    assert [e.event for e in central.oldest(10)] == events  # central still waits for all
    central.delivered(e.row_id for e in central.oldest(4))
    again = opened(destinations=("siem", "central"))
    assert again.pending("siem") == 2 and again.pending("central") == 1
    with sqlite3.connect(again.path) as db:
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 2


def test_a_destination_no_longer_configured_holds_nothing_back(
    opened: Callable[..., Outbox],
) -> None:
    outbox = opened(destinations=("siem", "central"))
    for n in range(3):
        outbox.add(tamper(n))
    outbox.queue("siem").delivered(e.row_id for e in outbox.queue("siem").oldest(10))
    assert opened(destinations=("siem", "central")).pending("central") == 3
    alone = opened(destinations=("siem",))  # central taken out of the config
    assert alone.pending() == 0
    with sqlite3.connect(alone.path) as db:
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
