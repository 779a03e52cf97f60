"""Delivering queued events to one receiver, from a background thread.

Shared by the shim (its outbox to the SIEM and to central) and the central
service (its alarms to the hospital's SIEM): both hand `OutboxSender` a
`DeliveryQueue` and an `EventSink` (`transport.sinks`).

Rules:
- A queued event leaves the queue only through `delivered()`, called after
  the sink reports the receiver took it. Delivery is at least once: after a
  broken connection some events may arrive twice, never zero times.
- The sender delivers in queue order, `batch_size` at a time; after a failure
  it waits `backoff_initial` seconds, doubling up to `backoff_max`, back to
  the start after any progress. Its callers never wait for the network:
  adding to the queue only wakes it (`add_listener`).
- Events older than `core.events.LATE_AFTER` at delivery are marked late.
- Whatever a sink or the queue raises, the thread goes on delivering.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from shimmfa.core.events import Event, marked_late

__all__ = ["DeliveryQueue", "EventSink", "OutboxEntry", "OutboxSender"]

log = logging.getLogger("shimmfa.sender")


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One queued event and the row that holds it."""

    row_id: int
    event: Event


class EventSink(Protocol):
    """Where a sender delivers to (`transport.sinks`)."""

    def deliver(self, events: Sequence[Event]) -> int:
        """Hand over `events` in order; how many of the first ones the
        receiver has taken. Fewer than all is a failure (already logged)."""
        ...

    def abort(self) -> None:
        """From another thread: make a blocked `deliver` return soon."""
        ...

    def close(self) -> None: ...


class DeliveryQueue(Protocol):
    """Durable events waiting for one receiver, oldest first."""

    def oldest(self, n: int) -> list[OutboxEntry]: ...

    def delivered(self, row_ids: Iterable[int]) -> None: ...

    def add_listener(self, callback: Callable[[], None]) -> None: ...

    def remove_listener(self, callback: Callable[[], None]) -> None: ...


class OutboxSender:
    """Delivers a queue to one sink from a background thread."""

    def __init__(
        self,
        outbox: DeliveryQueue,
        sink: EventSink,
        *,
        name: str = "SIEM",
        batch_size: int = 100,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        idle_poll: float = 5.0,
    ) -> None:
        self._outbox = outbox
        self._sink = sink
        self.name = name
        self._batch = batch_size
        self._initial = backoff_initial
        self._max = backoff_max
        self._clock = clock
        self._idle_poll = idle_poll
        self._wake = threading.Event()
        self._progress = threading.Event()  # set after every delivery attempt
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
        self._thread = threading.Thread(
            target=self._run, name=f"sender-{self.name.lower()}", daemon=True
        )
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
            log.warning("%s sender still busy after %.1f s; leaving it to end", self.name, timeout)
            return False
        return True

    def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the queue to be delivered (before
        a stop, best effort); True when nothing is left."""
        deadline = time.monotonic() + timeout
        self.wake()
        while self._outbox.oldest(1):
            left = deadline - time.monotonic()
            if left <= 0 or not self.running or self.failures:
                return False
            self._progress.wait(min(left, 0.05))
            self._progress.clear()
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
                    log.exception("%s sender", self.name)
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
        try:
            self._deliver(entries)
        finally:
            self._progress.set()

    def _deliver(self, entries: list[OutboxEntry]) -> None:
        self.attempts += 1
        try:
            now = time.time()
            events = [marked_late(e.event, now) for e in entries]
            taken = max(0, min(self._sink.deliver(events), len(entries)))
            error = None if taken == len(entries) else "the receiver did not take every event"
        except Exception as exc:  # a sink bug must not end delivery
            log.exception("%s sink failed", self.name)
            taken, error = 0, f"{type(exc).__name__}: {exc}"
        if taken:
            try:
                self._outbox.delivered(e.row_id for e in entries[:taken])
            except Exception as exc:
                log.error("could not mark %d %s events delivered: %s", taken, self.name, exc)
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
        log.warning("%s delivery failed (%s); next try in %.1f s", self.name, error, self.backoff)
