"""Forwarding central's events (alarms, audit) to the hospital SIEM with
the shim's own senders: `transport.build.build_sink` from the `siem_*`
settings and `transport.sender.OutboxSender` over `DbDeliveryQueue`.

Rules:
- The queue is the `siem_outbox` table: rows are added with the event in
  the same transaction (`records.record`), read oldest first, and deleted
  only when the sink reports the SIEM took them (at least once).
- Only the monitor's lease holder forwards (`MonitorThread` starts and
  stops the `Forwarder`), so one process sends each event.
- An event is sent as a `core.events.Event`; the SIEM renderers take titles
  from `core.events.CATALOGUE`, so a kind that is not there yet is held in
  the queue (logged once) and goes out once the catalogue knows it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from sqlalchemy import delete, select

from shimmfa.central.catalogue import CENTRAL_KINDS
from shimmfa.central.context import Central
from shimmfa.central.models import EventRow, SiemOutboxRow
from shimmfa.core.events import Event, make_event
from shimmfa.transport.build import build_sink
from shimmfa.transport.sender import OutboxEntry, OutboxSender

__all__ = ["DbDeliveryQueue", "Forwarder", "as_event", "forwardable_kinds"]

log = logging.getLogger("shimmfa.central.siem")


def forwardable_kinds() -> frozenset[str]:
    """Central's own kinds: what it forwards to the SIEM."""
    return frozenset(CENTRAL_KINDS)


def as_event(row: EventRow) -> Event:
    return make_event(
        row.kind,
        event_id=row.event_id,
        at=row.at,
        shim_id=row.shim_id or "central",
        fields=row.fields,
        severity=row.severity,
    )


class DbDeliveryQueue:
    """`transport.sender.DeliveryQueue` on the `siem_outbox` table."""

    def __init__(self, central: Central) -> None:
        self._central = central
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._kinds = forwardable_kinds()

    def oldest(self, n: int) -> list[OutboxEntry]:
        with self._central.sessions() as session:
            rows = session.execute(
                select(SiemOutboxRow.id, EventRow)
                .join(EventRow, EventRow.id == SiemOutboxRow.event_pk)
                .where(EventRow.kind.in_(self._kinds))
                .order_by(SiemOutboxRow.id)
                .limit(n)
            ).all()
        return [OutboxEntry(row_id, as_event(event)) for row_id, event in rows]

    def delivered(self, row_ids: Iterable[int]) -> None:
        ids = list(row_ids)
        with self._central.sessions.begin() as session:
            session.execute(delete(SiemOutboxRow).where(SiemOutboxRow.id.in_(ids)))

    def add_listener(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for callback in listeners:
            callback()


class Forwarder:
    """Starts and stops an `OutboxSender` to the configured SIEM."""

    def __init__(self, central: Central, *, idle_poll: float = 1.0) -> None:
        self._central = central
        self._idle_poll = idle_poll
        self.queue = DbDeliveryQueue(central)
        self._sender: OutboxSender | None = None

    @property
    def running(self) -> bool:
        return self._sender is not None

    def start(self) -> None:
        if self._sender is not None or not self._central.forward:
            return
        sink = build_sink(self._central.settings.sink_settings(), section="siem")
        self._sender = OutboxSender(self.queue, sink, name="SIEM", idle_poll=self._idle_poll)
        self._sender.start()

    def stop(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.stop(timeout=2.0)

    def wake(self) -> None:
        self.queue.notify()
