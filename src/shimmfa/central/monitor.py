"""The fleet monitor: raises `missing`, `recovered`, `rebooted`,
`tampered` and `breakglass_review_overdue` alarms, and prunes old
heartbeats.

Rules:
- Exactly one evaluator at a time across workers and instances: every pass
  is one transaction that starts by taking the `monitor` lease row
  (`UPDATE leases ... WHERE holder = me OR expires_at < now`). On
  PostgreSQL that UPDATE holds the row lock until the pass commits, and a
  competitor's UPDATE, re-checked after it, finds the lease held; SQLite
  runs write transactions one at a time. An alarm and the state change
  that records it commit together, so each is raised once.
- A pass reads only the shims that are due (`check_at <= now`, indexed,
  `FOR UPDATE SKIP LOCKED`), in batches: cheap at 100,000 shims. Ingest
  sets `check_at` to the next deadline (3 periods after the heartbeat) or
  to now when something happened.
- `missing`: no heartbeat for three periods, unless the shim is stopped,
  in state_reset or inside a maintenance window (then it is looked at again
  when the window ends). Raised once per absence; `recovered` (with the gap
  in seconds) when it is heard again. `rebooted`: its boot count went up
  without a `shim_stopping` before.
- `breakglass_review_overdue`: a break-glass review still open 24 hours
  after it opened (`reviews.raise_overdue`, in the same pass and lease:
  raised once).
- Pruning deletes at most `prune_batch` heartbeat rows (and heartbeat
  events) older than the retention per pass, oldest first, by primary key.
- The lease holder also forwards central events to the SIEM (`siem.py`).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from shimmfa.central import reviews
from shimmfa.central.context import Central
from shimmfa.central.models import EventRow, HeartbeatRow, Lease, MaintenanceWindow, ShimRow
from shimmfa.central.records import record
from shimmfa.central.status import MISSING_PERIODS

__all__ = ["LEASE", "Monitor", "MonitorThread", "PassResult"]

log = logging.getLogger("shimmfa.central.monitor")

LEASE = "monitor"
BATCH = 1000


@dataclass(frozen=True, slots=True)
class PassResult:
    held: bool
    evaluated: int = 0
    alarms: int = 0
    pruned: int = 0


class Monitor:
    """One evaluator's passes; `holder` names it in the lease row."""

    def __init__(self, central: Central, holder: str | None = None) -> None:
        self.central = central
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

    def run_once(self) -> PassResult:
        now = self.central.clock()
        evaluated = alarms = 0
        with self.central.sessions.begin() as session:
            if not self._take_lease(session, now):
                return PassResult(False)
            due = session.scalars(
                select(ShimRow)
                .where(ShimRow.check_at <= now)
                .order_by(ShimRow.check_at)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            ).all()
            for shim in due:
                alarms += self._evaluate(session, shim, now)
                evaluated += 1
            alarms += reviews.raise_overdue(session, now, forward=self.central.forward)
        pruned = self._prune(now)
        return PassResult(True, evaluated, alarms, pruned)

    def release(self) -> None:
        with self.central.sessions.begin() as session:
            session.execute(
                update(Lease)
                .where(Lease.name == LEASE, Lease.holder == self.holder)
                .values(expires_at=0.0)
            )

    def _take_lease(self, session: Session, now: float) -> bool:
        taken = session.execute(
            update(Lease)
            .where(Lease.name == LEASE, (Lease.holder == self.holder) | (Lease.expires_at < now))
            .values(holder=self.holder, expires_at=now + self.central.settings.lease_ttl)
        )
        return getattr(taken, "rowcount", 0) == 1

    def _alarm(
        self, session: Session, kind: str, shim: ShimRow, now: float, **fields: object
    ) -> int:
        record(
            session,
            kind,
            now=now,
            shim_id=shim.shim_id,
            fields=fields,  # type: ignore[arg-type]
            forward=self.central.forward,
        )
        return 1

    def _evaluate(self, session: Session, shim: ShimRow, now: float) -> int:
        raised = 0
        if shim.reset_at is not None:
            shim.check_at = None
            return 0
        if shim.back_at is not None:
            if shim.alarm == "missing":
                gap = shim.back_at - (shim.alarm_seen_at or shim.back_at)
                raised += self._alarm(session, "recovered", shim, now, gap_s=round(gap, 3))
            shim.alarm, shim.alarm_seen_at, shim.back_at = "", None, None
        if shim.reboot_from is not None:
            raised += self._alarm(
                session,
                "rebooted",
                shim,
                now,
                previous_boot_count=shim.reboot_from,
                boot_count=shim.boot_count,
                reason="unexpected absence: restarted without announcing shim_stopping",
            )
            shim.reboot_from = None
        if shim.tampered_at is not None and not shim.tamper_alarmed:
            raised += self._alarm(session, "tampered", shim, now, source_event="heartbeat")
            shim.tamper_alarmed = True
        shim.check_at = None
        if shim.last_seen_at is None or shim.alarm or shim.stopped_at is not None:
            return raised
        deadline = shim.last_seen_at + MISSING_PERIODS * shim.heartbeat_period
        if now < deadline:
            shim.check_at = deadline
            return raised
        window_end = session.scalar(
            select(func.max(MaintenanceWindow.ends_at)).where(
                MaintenanceWindow.shim_pk == shim.pk,
                MaintenanceWindow.starts_at <= now,
                MaintenanceWindow.ends_at > now,
            )
        )
        if window_end is not None:
            shim.check_at = window_end
            return raised
        shim.alarm, shim.alarm_seen_at = "missing", shim.last_seen_at
        return raised + self._alarm(
            session,
            "missing",
            shim,
            now,
            silent_s=round(now - shim.last_seen_at, 3),
            period_s=shim.heartbeat_period,
            boot_count=shim.boot_count,
            seq=shim.seq,
        )

    def _prune(self, now: float) -> int:
        """Delete up to `prune_batch` rows older than the retention, oldest
        first; a pass reads one row when there is nothing to prune."""
        cutoff = now - self.central.settings.heartbeat_retention
        batch = self.central.settings.prune_batch
        pruned = 0
        with self.central.sessions.begin() as session:
            for table, kind in ((HeartbeatRow, None), (EventRow, "heartbeat")):
                query = select(table.id, table.received_at).order_by(table.id)
                if kind is not None:
                    query = query.where(EventRow.kind == kind)
                oldest = session.execute(query.limit(1)).first()
                if oldest is None or oldest.received_at >= cutoff:
                    continue
                head = query.limit(batch).subquery()
                last = session.scalar(
                    select(func.max(head.c.id)).where(head.c.received_at < cutoff)
                )
                where = [table.id <= last]
                if kind is not None:
                    where.append(EventRow.kind == kind)
                pruned += getattr(session.execute(delete(table).where(*where)), "rowcount", 0)
        return pruned


class Forwarding(Protocol):
    """What `MonitorThread` needs of the SIEM forwarder (`siem.Forwarder`)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def wake(self) -> None: ...


class MonitorThread:
    """Runs `Monitor.run_once` every `monitor_interval` seconds in a daemon
    thread; starts the SIEM forwarder while it holds the lease."""

    def __init__(self, central: Central, forwarder: Forwarding | None = None) -> None:
        self.monitor = Monitor(central)
        self._interval = central.settings.monitor_interval
        self._forwarder = forwarder
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="central-monitor", daemon=True)
        self.held = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self._forwarder is not None:
            self._forwarder.stop()
        try:
            self.monitor.release()
        except Exception:  # the database may be gone at shutdown
            log.warning("could not release the monitor lease; it expires by itself")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                result = self.monitor.run_once()
                self._holding(result.held)
                if result.alarms and self._forwarder is not None:
                    self._forwarder.wake()
            except Exception:  # the database may be briefly away: try again
                log.exception("monitor pass failed")
                self._holding(False)
            self._stop.wait(self._interval)

    def _holding(self, held: bool) -> None:
        if held != self.held:
            log.info("monitor lease %s by %s", "taken" if held else "lost", self.monitor.holder)
        self.held = held
        if self._forwarder is not None:
            if held:
                self._forwarder.start()
            else:
                self._forwarder.stop()
