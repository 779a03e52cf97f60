"""The durable SIEM outbox and the thread that empties it.

Rules:
- An event is in the outbox once `Outbox.add` returns: the row is committed
  to the state DB (WAL, `synchronous=FULL`) on the outbox's own connection.
  Callers are the loop thread at auth and session boundaries, the tamper
  thread and the heartbeat thread; never the relay's per-byte path (a commit
  is an fsync).
- A row leaves the outbox only through `delivered()`, which a sender calls
  after the receiver has taken the event (see `shim/sinks.py` for what
  "taken" means per transport). Delivery is at least once: after a broken
  connection some events may arrive twice, never zero times.
- The bound (`max_rows`): at 80 % full the outbox logs a warning and queues
  one `outbox_filling` event (again only after it has fallen below 70 %);
  when full it drops the oldest heartbeats to make room, never a security
  event. Security events are kept beyond the bound, with a critical log.
- One `Outbox` per DB file: it keeps the row counts in memory.
- `OutboxSender` delivers in row order, `batch_size` at a time, from its own
  thread; after a failure it waits `backoff_initial` seconds, doubling up to
  `backoff_max`, back to the start after any progress. Its callers never
  wait for the network: `Outbox.add` only sets an event to wake it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shimmfa.core.events import (
    Event,
    FieldValue,
    from_json,
    make_event,
    marked_late,
    new_event_id,
    to_json,
)
from shimmfa.errors import StateError
from shimmfa.shim.state import StateStore

__all__ = [
    "EventSink",
    "Outbox",
    "OutboxEntry",
    "OutboxSender",
    "new_event",
]

log = logging.getLogger("shimmfa.outbox")

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
    )


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    row_id: int
    event: Event


class EventSink(Protocol):
    """Where a sender delivers to (`shim/sinks.py`)."""

    def deliver(self, events: Sequence[Event]) -> int:
        """Hand over `events` in order; how many of the first ones the
        receiver has taken. Fewer than all is a failure (already logged)."""
        ...

    def abort(self) -> None:
        """From another thread: make a blocked `deliver` return soon."""
        ...

    def close(self) -> None: ...


class Outbox:
    """Events waiting for the SIEM, in the state DB. Thread-safe."""

    def __init__(self, storage_root: str | Path, *, max_rows: int = 100_000) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        StateStore(Path(storage_root)).close()  # creates or migrates the schema, or refuses
        self.path = Path(storage_root) / "state" / "shim.db"
        self.max_rows = max_rows
        self.dropped_heartbeats = 0
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=10000")
            rows = self._db.execute("SELECT security, COUNT(*) FROM outbox GROUP BY security")
            counts = dict(rows.fetchall())
        except sqlite3.Error as exc:
            raise StateError(f"the SIEM outbox in {self.path} cannot be opened: {exc}") from None
        self._heartbeats = counts.get(0, 0)
        self._count = self._heartbeats + counts.get(1, 0)
        self._filling_reported = False
        self._over_reported = False

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
            "INSERT OR IGNORE INTO outbox (event_id, kind, security, body) VALUES (?, ?, ?, ?)",
            (event.event_id, event.kind, int(event.security), body),
        ).rowcount
        return count + added, heartbeats + (added if not event.security else 0), dropped

    def delivered(self, row_ids: Iterable[int]) -> None:
        """Forget rows the receiver has taken."""
        ids = list(row_ids)
        if not ids:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                gone = {0: 0, 1: 0}
                for start in range(0, len(ids), _CHUNK):
                    chunk = ids[start : start + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    for security, number in self._db.execute(
                        f"SELECT security, COUNT(*) FROM outbox WHERE id IN ({marks}) "  # noqa: S608
                        "GROUP BY security",
                        chunk,
                    ).fetchall():
                        gone[security] += number
                    self._db.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk)  # noqa: S608
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

    def pending(self) -> int:
        """How many events wait for delivery."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def oldest(self, n: int) -> list[OutboxEntry]:
        """The `n` oldest waiting events, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, body FROM outbox ORDER BY id LIMIT ?", (max(n, 0),)
            ).fetchall()
        entries, bad = [], []
        for row_id, body in rows:
            try:
                entries.append(OutboxEntry(row_id, from_json(json.loads(body))))
            except ValueError as exc:
                log.error("SIEM outbox row %d is unreadable (%s); removing it", row_id, exc)
                bad.append(row_id)
        if bad:
            self.delivered(bad)
        return entries


class OutboxSender:
    """Delivers the outbox to one sink from a background thread."""

    def __init__(
        self,
        outbox: Outbox,
        sink: EventSink,
        *,
        batch_size: int = 100,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        idle_poll: float = 5.0,
    ) -> None:
        self._outbox = outbox
        self._sink = sink
        self._batch = batch_size
        self._initial = backoff_initial
        self._max = backoff_max
        self._clock = clock
        self._idle_poll = idle_poll
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_attempt = -math.inf
        self.backoff = 0.0  # the wait after the last failure; 0 after a success
        self.failures = 0  # consecutive failed attempts
        self.attempts = 0
        self.delivered_total = 0
        self.last_error: str | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the sender was started already")
        self._outbox.add_listener(self.wake)
        self._thread = threading.Thread(target=self._run, name="siem-sender", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 1.0) -> bool:
        """Stop the thread; False if it did not end within `timeout`."""
        self._stopping.set()
        self._wake.set()
        self._outbox.remove_listener(self.wake)
        if self._thread is None:
            self._sink.abort()
            return True
        deadline = time.monotonic() + timeout
        self._thread.join(timeout / 4)  # an idle sender ends by itself, closing politely
        if self._thread.is_alive():
            self._sink.abort()  # a busy one is cut off
            self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.warning("SIEM sender still busy after %.1f s; leaving it to end", timeout)
            return False
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    self._step()
                except Exception as exc:  # whatever it was, keep delivering
                    log.exception("SIEM sender")
                    self._failed(0, f"{type(exc).__name__}: {exc}")
        finally:
            self._sink.close()

    def _step(self) -> None:
        delay = self._next_attempt - self._clock()
        if delay > 0:
            self._wake.wait(min(delay, self._idle_poll))
            self._wake.clear()
            return
        self._wake.clear()
        entries = self._outbox.oldest(self._batch)
        if not entries:
            self._wake.wait(self._idle_poll)
            return
        self._attempt(entries)

    def _attempt(self, entries: list[OutboxEntry]) -> None:
        self.attempts += 1
        try:
            now = time.time()
            events = [marked_late(e.event, now) for e in entries]
            taken = max(0, min(self._sink.deliver(events), len(entries)))
            error = None if taken == len(entries) else "the receiver did not take every event"
        except Exception as exc:  # a sink bug must not end delivery
            log.exception("SIEM sink failed")
            taken, error = 0, f"{type(exc).__name__}: {exc}"
        if taken:
            try:
                self._outbox.delivered(e.row_id for e in entries[:taken])
            except Exception as exc:
                log.error("could not mark %d SIEM events delivered: %s", taken, exc)
                self._failed(0, f"outbox not writable: {exc}")
                return
            self.delivered_total += taken
        if error is None:
            self.backoff = 0.0
            self.failures = 0
            self.last_error = None
            self._next_attempt = -math.inf
        else:
            self._failed(taken, error)

    def _failed(self, progress: int, error: str) -> None:
        if progress:
            self.backoff = 0.0
        self.backoff = self._initial if self.backoff == 0 else min(self.backoff * 2, self._max)
        self.failures += 1
        self.last_error = error
        self._next_attempt = self._clock() + self.backoff
        log.warning("SIEM delivery failed (%s); next try in %.1f s", error, self.backoff)
