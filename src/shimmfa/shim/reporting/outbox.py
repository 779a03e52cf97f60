"""The durable outbox: events wait in the state DB until delivered.

Rules:
- An event is in the outbox once `Outbox.add` returns: the row is committed
  to the state DB (WAL, `synchronous=FULL`) on the outbox's own connection.
  Callers are the loop thread at auth and session boundaries, the tamper
  thread and the heartbeat thread; never the relay's per-byte path (a commit
  is an fsync).
- One outbox, several destinations (`DESTINATIONS`: the SIEM, central):
  each row remembers which of the outbox's destinations still wait for it,
  and each destination has its own queue (`queue(name)`) and sender, so an
  outage of one holds up neither the other nor the port. A row leaves the
  outbox when the last of them has it: `delivered()`, which a sender
  (`transport.sender.OutboxSender`) calls after the receiver has taken the
  event (see `transport/sinks.py` for what "taken" means per transport).
  A destination added later gets the events made from then on; one no
  longer configured is forgotten at the next start.
- The bound (`max_rows`): at 80 % full the outbox logs a warning and queues
  one `outbox_filling` event (again only after it has fallen below 70 %);
  when full it drops the oldest heartbeats to make room, never a security
  event. Security events are kept beyond the bound, with a critical log.
- One `Outbox` per DB file: it keeps the row counts in memory.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from shimmfa.core.events import (
    Event,
    FieldValue,
    from_json,
    make_event,
    new_event_id,
    to_json,
)
from shimmfa.errors import StateError
from shimmfa.shim.state.db import StateDB, connect, db_path
from shimmfa.transport.sender import OutboxEntry

__all__ = ["DESTINATIONS", "Outbox", "OutboxQueue", "new_event"]

log = logging.getLogger("shimmfa.outbox")

DESTINATIONS = {"siem": 1, "central": 2}  # the bit of each in a row's `pending`
FILLING = 0.8
REARM = 0.7
_CHUNK = 500  # row IDs per DELETE statement


def new_event(
    kind: str,
    shim_id: str,
    fields: Mapping[str, FieldValue] | None = None,
    *,
    at: float | None = None,
    severity: int | None = None,
    heartbeat: Mapping[str, Any] | None = None,
) -> Event:
    """An event of `kind` happening now (or `at`), with a fresh random ID."""
    when = time.time() if at is None else at
    return make_event(
        kind,
        event_id=new_event_id(when, os.urandom(10)),
        at=when,
        shim_id=shim_id,
        fields=fields,
        severity=severity,
        heartbeat=heartbeat,
    )


class Outbox:
    """Events waiting for their destinations, in the state DB. Thread-safe.
    As a `DeliveryQueue` it is the first destination's queue."""

    def __init__(
        self,
        storage_root: str | Path,
        *,
        max_rows: int = 100_000,
        destinations: tuple[str, ...] = ("siem",),
    ) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        unknown = set(destinations) - set(DESTINATIONS)
        if unknown or not destinations:
            raise ValueError(f"destinations must be some of {sorted(DESTINATIONS)}")
        StateDB(Path(storage_root)).close()  # creates or migrates the schema, or refuses
        self.path = db_path(Path(storage_root))
        self.max_rows = max_rows
        self.destinations = destinations
        self._all = sum(DESTINATIONS[name] for name in destinations)
        self.dropped_heartbeats = 0
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        try:
            self._db = connect(self.path)
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("UPDATE outbox SET pending = pending & ?", (self._all,))
            self._db.execute("DELETE FROM outbox WHERE pending = 0")
            self._db.execute("COMMIT")
            rows = self._db.execute("SELECT security, COUNT(*) FROM outbox GROUP BY security")
            counts = dict(rows.fetchall())
        except sqlite3.Error as exc:
            if hasattr(self, "_db"):
                self._rollback()
            raise StateError(f"the outbox in {self.path} cannot be opened: {exc}") from None
        self._heartbeats = counts.get(0, 0)
        self._count = self._heartbeats + counts.get(1, 0)
        self._filling_reported = False
        self._over_reported = False
        self._queues = {name: OutboxQueue(self, name) for name in destinations}

    def queue(self, destination: str) -> OutboxQueue:
        """The `DeliveryQueue` of one of the outbox's destinations."""
        return self._queues[destination]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call `callback` (quick, non-blocking) after each add."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    # -- writing ------------------------------------------------------------------------

    def add(self, event: Event) -> None:
        """Store `event` durably (committed before this returns)."""
        with self._lock:
            count, heartbeats, dropped = self._count, self._heartbeats, 0
            self._db.execute("BEGIN IMMEDIATE")
            try:
                count, heartbeats, dropped = self._insert(event, count, heartbeats)
                if count >= FILLING * self.max_rows and not self._filling_reported:
                    filling = new_event(
                        "outbox_filling",
                        event.shim_id,
                        {"rows": count, "max_rows": self.max_rows},
                    )
                    count, heartbeats, more = self._insert(filling, count, heartbeats)
                    dropped += more
                    log.warning(
                        "SIEM OUTBOX FILLING: %d of %d events wait for delivery; check the "
                        "SIEM connection. When full, heartbeats are dropped (never security "
                        "events).",
                        count,
                        self.max_rows,
                    )
                    self._filling_reported = True
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            self._count, self._heartbeats = count, heartbeats
            self.dropped_heartbeats += dropped
        for callback in list(self._listeners):
            callback()

    def _rollback(self) -> None:
        # A failed COMMIT (SQLITE_FULL on a full disk, SQLITE_IOERR) may have
        # rolled the transaction back already; a ROLLBACK then raises "no
        # transaction is active" and hides the real error from the log.
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _insert(self, event: Event, count: int, heartbeats: int) -> tuple[int, int, int]:
        """Insert one row within the open transaction; the new (count,
        heartbeats, dropped) after making room."""
        dropped = 0
        if count >= self.max_rows and heartbeats:
            excess = min(count - self.max_rows + 1, heartbeats)
            self._db.execute(
                "DELETE FROM outbox WHERE id IN "
                "(SELECT id FROM outbox WHERE security = 0 ORDER BY id LIMIT ?)",
                (excess,),
            )
            count, heartbeats, dropped = count - excess, heartbeats - excess, excess
            log.warning("SIEM outbox full: dropped the %d oldest heartbeat(s)", excess)
        if count >= self.max_rows:
            if not event.security:
                log.warning("SIEM outbox full of security events: heartbeat not kept")
                return count, heartbeats, dropped + 1
            if not self._over_reported:
                self._over_reported = True
                log.critical(
                    "SIEM OUTBOX OVER ITS BOUND (%d events): keeping every security event; "
                    "the SIEM has not taken events for a long time",
                    count + 1,
                )
        body = json.dumps(to_json(event), allow_nan=False, separators=(",", ":"))
        added = self._db.execute(
            "INSERT OR IGNORE INTO outbox (event_id, kind, security, body, pending) "
            "VALUES (?, ?, ?, ?, ?)",
            (event.event_id, event.kind, int(event.security), body, self._all),
        ).rowcount
        return count + added, heartbeats + (added if not event.security else 0), dropped

    def delivered(self, row_ids: Iterable[int], destination: str | None = None) -> None:
        """`destination` (default: the first) has taken these rows; a row no
        destination waits for any more is gone for good."""
        ids = list(row_ids)
        bit = DESTINATIONS[destination or self.destinations[0]]
        if not ids:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                gone = {0: 0, 1: 0}
                for start in range(0, len(ids), _CHUNK):
                    chunk = ids[start : start + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    self._db.execute(
                        f"UPDATE outbox SET pending = pending & ~? WHERE id IN ({marks})",  # noqa: S608
                        (bit, *chunk),
                    )
                    for security, number in self._db.execute(
                        f"SELECT security, COUNT(*) FROM outbox WHERE pending = 0 AND id IN ({marks}) "  # noqa: S608, E501
                        "GROUP BY security",
                        chunk,
                    ).fetchall():
                        gone[security] += number
                    self._db.execute(
                        f"DELETE FROM outbox WHERE pending = 0 AND id IN ({marks})",  # noqa: S608
                        chunk,
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            self._heartbeats -= gone[0]
            self._count -= gone[0] + gone[1]
            if self._count < REARM * self.max_rows:
                self._filling_reported = False
            if self._count < self.max_rows:
                self._over_reported = False

    # -- reading ------------------------------------------------------------------------

    def pending(self, destination: str | None = None) -> int:
        """How many events wait for `destination` (default: the first)."""
        bit = DESTINATIONS[destination or self.destinations[0]]
        with self._lock:
            row = self._db.execute(
                f"SELECT COUNT(*) FROM outbox WHERE pending & {bit}"  # noqa: S608 - a constant
            ).fetchone()
        return int(row[0])

    def oldest(self, n: int, destination: str | None = None) -> list[OutboxEntry]:
        """The `n` oldest events waiting for `destination`, oldest first."""
        name = destination or self.destinations[0]
        bit = DESTINATIONS[name]
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, body FROM outbox WHERE pending & {bit} ORDER BY id LIMIT ?",  # noqa: S608
                (max(n, 0),),
            ).fetchall()
        entries, bad = [], []
        for row_id, body in rows:
            try:
                entries.append(OutboxEntry(row_id, from_json(json.loads(body))))
            except ValueError as exc:
                log.error("outbox row %d is unreadable (%s); removing it", row_id, exc)
                bad.append(row_id)
        if bad:
            for other in self.destinations:
                self.delivered(bad, other)
        return entries


class OutboxQueue:
    """One destination's view of the outbox (`transport.sender.DeliveryQueue`)."""

    def __init__(self, outbox: Outbox, destination: str) -> None:
        self.outbox = outbox
        self.destination = destination

    def oldest(self, n: int) -> list[OutboxEntry]:
        return self.outbox.oldest(n, self.destination)

    def delivered(self, row_ids: Iterable[int]) -> None:
        self.outbox.delivered(row_ids, self.destination)

    def pending(self) -> int:
        return self.outbox.pending(self.destination)

    def add_listener(self, callback: Callable[[], None]) -> None:
        self.outbox.add_listener(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        self.outbox.remove_listener(callback)
