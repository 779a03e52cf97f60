"""The technicians central assigned to this shim: its last good technician
bundle (`core.bundle`), in the state DB.

Rules:
- `apply()` replaces the whole set in one transaction, with the bundle's
  version and the time it was accepted: a technician absent from a newer
  bundle (revoked, unassigned) is gone when it returns. The version is
  checked again inside the transaction: it only goes up (rollback
  protection), also across restarts.
- Secrets are sealed like the other technicians' (`keys/secrets.key`),
  bound to `synced:<technician ID>`, so a row moved to another table or
  technician does not open.
- `lookup()` answers a technician only while the bundle is younger than
  `max_age` (from its acceptance, on the shim's clock): after that, central's
  technicians are refused until a sync succeeds. Technicians from the config
  file and the state DB's own enrolments are not touched here, and win over
  a synced one with the same ID (`TechnicianDirectory`).
- Sync attempts (`note_attempt`) are kept, so `shimmfa state status` says
  when the shim last reached central and what went wrong.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from shimmfa.core.bundle import BundleRejection, TechnicianBundle
from shimmfa.core.totp import TechnicianRecord
from shimmfa.errors import BundleError
from shimmfa.shim.state.store import StateStore

__all__ = ["Attempt", "BundleChange", "BundleStatus", "SyncedTechnicians", "SyncedView"]

log = logging.getLogger("shimmfa.sync")


@dataclass(frozen=True, slots=True)
class BundleStatus:
    version: int
    issued_at: float
    accepted_at: float
    technicians: int

    def age(self, now: float) -> float:
        return max(0.0, now - self.accepted_at)


@dataclass(frozen=True, slots=True)
class BundleChange:
    """What an applied bundle changed: IDs added, removed, and whose secret
    or TOTP parameters changed."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    count: int

    @property
    def any(self) -> bool:
        return bool(self.added or self.removed or self.changed)


@dataclass(frozen=True, slots=True)
class Attempt:
    at: float
    ok: bool
    detail: str


def _bound(technician_id: str) -> str:
    return f"synced:{technician_id}"


class SyncedTechnicians:
    """Central's technicians on the state DB `store` (thread-safe)."""

    def __init__(self, store: StateStore) -> None:
        self._store = store

    # -- reading -----------------------------------------------------------------

    def status(self) -> BundleStatus | None:
        with self._store._lock:
            row = self._store._db.execute(
                "SELECT version, issued_at, accepted_at, technicians FROM bundle_state"
            ).fetchone()
        return BundleStatus(int(row[0]), float(row[1]), float(row[2]), int(row[3])) if row else None

    def version(self) -> int:
        status = self.status()
        return status.version if status is not None else 0

    def expired(self, now: float, max_age: float) -> bool:
        """True when a bundle is held and older than `max_age`."""
        status = self.status()
        return status is not None and status.age(now) > max_age

    def lookup(self, technician_id: str, now: float, max_age: float) -> TechnicianRecord | None:
        """The synced technician, while the bundle is valid; else None."""
        status = self.status()
        if status is None or status.age(now) > max_age:
            return None
        return self.record(technician_id)

    def record(self, technician_id: str) -> TechnicianRecord | None:
        with self._store._lock:
            row = self._store._db.execute(
                "SELECT sealed_secret, algorithm, digits, period, roles, name, company "
                "FROM synced_technicians WHERE technician_id = ?",
                (technician_id,),
            ).fetchone()
        if row is None:
            return None
        sealed, algorithm, digits, period, roles, name, company = row
        secret = self._store.unseal(
            sealed, _bound(technician_id), f"synced technician {technician_id!r}"
        )
        return TechnicianRecord(
            technician_id=technician_id,
            totp_secret=secret,
            notes=f"from central: {name} ({company})",
            algorithm=str(algorithm),
            digits=int(digits),
            period=int(period),
            roles=tuple(json.loads(roles)),
        )

    def ids(self) -> list[str]:
        with self._store._lock:
            rows = self._store._db.execute(
                "SELECT technician_id FROM synced_technicians ORDER BY 1"
            ).fetchall()
        return [str(row[0]) for row in rows]

    # -- writing -----------------------------------------------------------------

    def apply(self, bundle: TechnicianBundle, now: float) -> BundleChange:
        """Make `bundle` the synced set (one transaction); what changed.
        BundleError (not_newer) if a bundle of this version or later is held."""
        before = {tid: self.record(tid) for tid in self.ids()}
        rows = [
            (
                t.technician_id,
                self._store.seal(t.totp_secret, _bound(t.technician_id)),
                t.algorithm,
                t.digits,
                t.period,
                json.dumps(list(t.roles)),
                t.name,
                t.company,
            )
            for t in bundle.technicians
        ]
        with self._store._transaction() as db:
            held = db.execute("SELECT version FROM bundle_state").fetchone()
            if held is not None and int(held[0]) >= bundle.version:
                raise BundleError(
                    f"technician bundle refused (not_newer): version {bundle.version} is not "
                    f"above {held[0]}, the one held",
                    BundleRejection.NOT_NEWER.value,
                )
            db.execute("DELETE FROM synced_technicians")
            db.executemany("INSERT INTO synced_technicians VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            db.execute(
                "INSERT OR REPLACE INTO bundle_state VALUES (1, ?, ?, ?, ?)",
                (bundle.version, bundle.issued_at, now, len(rows)),
            )
            change = _change(before, bundle)
            if change.any:
                self._store._audit(
                    db,
                    now,
                    "bundle_applied",
                    str(bundle.version),
                    {
                        "added": list(change.added),
                        "removed": list(change.removed),
                        "changed": list(change.changed),
                    },
                )
        return change

    def note_attempt(self, name: str, now: float, ok: bool, detail: str) -> None:
        with self._store._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO sync_attempts VALUES (?, ?, ?, ?)",
                (name, now, int(ok), detail[:500]),
            )

    def last_attempt(self, name: str) -> Attempt | None:
        with self._store._lock:
            row = self._store._db.execute(
                "SELECT at, ok, detail FROM sync_attempts WHERE name = ?", (name,)
            ).fetchone()
        return Attempt(float(row[0]), bool(row[1]), str(row[2])) if row else None


def _change(before: dict[str, TechnicianRecord | None], bundle: TechnicianBundle) -> BundleChange:
    after = {t.technician_id: t.record() for t in bundle.technicians}
    changed = tuple(
        sorted(
            tid for tid, record in after.items() if tid in before and not _same(before[tid], record)
        )
    )
    return BundleChange(
        added=tuple(sorted(set(after) - set(before))),
        removed=tuple(sorted(set(before) - set(after))),
        changed=changed,
        count=len(after),
    )


def _same(old: TechnicianRecord | None, new: TechnicianRecord) -> bool:
    return old is not None and (
        old.totp_secret,
        old.algorithm,
        old.digits,
        old.period,
        old.roles,
        old.notes,
    ) == (new.totp_secret, new.algorithm, new.digits, new.period, new.roles, new.notes)


class SyncedView:
    """What the gate's directory sees of the synced technicians: none once
    the bundle is older than `max_age` (a refused login then says why in the
    log)."""

    def __init__(
        self,
        synced: SyncedTechnicians,
        max_age: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._synced = synced
        self._max_age = max_age
        self._clock = clock

    def get(self, technician_id: str) -> TechnicianRecord | None:
        now = self._clock()
        record = self._synced.lookup(technician_id, now, self._max_age)
        if record is None and self._synced.expired(now, self._max_age):
            if self._synced.record(technician_id) is not None:
                status = self._synced.status()
                age = status.age(now) if status is not None else 0.0
                log.warning(
                    "technician %s is in central's bundle, which expired (last sync %.0f s "
                    "ago, central.bundle_max_age %.0f s): refused until the shim reaches central",
                    technician_id,
                    age,
                    self._max_age,
                )
        return record

    def ids(self) -> list[str]:
        if self._synced.expired(self._clock(), self._max_age):
            return []
        return self._synced.ids()
