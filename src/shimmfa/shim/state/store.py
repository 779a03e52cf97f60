"""The shim's durable records, in the state DB (`state.db`).

Rules:
- `update()` is the one read-modify-write path of authentication state, so
  every auth decision is committed before the caller replies.
- Technician secrets in the DB are sealed (ChaCha20-Poly1305, key file
  `<storage.root>/keys/secrets.key`, mode 0600, the technician ID as
  associated data); the DB alone does not reveal them.
- Unlocks, enrolment changes and the tamper latch are written to the
  `audit` table.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from shimmfa.core.totp import AuthState, TechnicianRecord
from shimmfa.errors import StateError, TechnicianError
from shimmfa.shim.state.db import StateDB, private_dir

__all__ = ["BOOT_COUNTER", "AuditEntry", "Latch", "StateStore"]

T = TypeVar("T")
BOOT_COUNTER = "boot_count"  # the durable counter of daemon starts


def _load_or_create_key(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) != 32:
            raise StateError(f"{path} is not a 32-byte key file; restore it from backup") from None
        return key
    key = os.urandom(32)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
        handle.flush()
        os.fsync(handle.fileno())
    return key


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: float
    action: str
    subject: str
    detail: dict[str, object]


@dataclass(frozen=True, slots=True)
class Latch:
    """The tamper latch while it is set: why, when, and what was seen."""

    reason: str
    at: float
    detail: dict[str, Any]


class StateStore(StateDB):
    """The shim's durable state. Thread-safe; one connection per store."""

    def __init__(self, storage_root: Path) -> None:
        super().__init__(storage_root)
        self._sealer: ChaCha20Poly1305 | None = None

    # -- authentication state (core.totp.AuthStateStore) ----------------------

    def get(self, key: str) -> AuthState:
        with self._lock:
            row = self._db.execute(
                "SELECT last_counter, failures, failures_since, locked_until, attempts "
                "FROM auth_state WHERE key = ?",
                (key,),
            ).fetchone()
        return AuthState(*row) if row else AuthState()

    def update(self, key: str, change: Callable[[AuthState], tuple[AuthState, T]]) -> T:
        with self._transaction() as db:
            row = db.execute(
                "SELECT last_counter, failures, failures_since, locked_until, attempts "
                "FROM auth_state WHERE key = ?",
                (key,),
            ).fetchone()
            new, result = change(AuthState(*row) if row else AuthState())
            db.execute(
                "INSERT OR REPLACE INTO auth_state VALUES (?, ?, ?, ?, ?, ?)",
                (
                    key,
                    new.last_counter,
                    new.failures,
                    new.failures_since,
                    new.locked_until,
                    new.attempts,
                ),
            )
        return result

    # -- counters -----------------------------------------------------------

    def counter(self, name: str) -> int:
        """The value of a durable counter (0 if never incremented)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def increment(self, name: str) -> int:
        """Add one to a durable counter and return the new value, committed
        (on disk) before this returns."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO counters (name, value) VALUES (?, 1) "
                "ON CONFLICT(name) DO UPDATE SET value = value + 1",
                (name,),
            )
            row = db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0])

    def raise_counter(self, name: str, value: int) -> None:
        """Set a durable counter to at least `value` (a recovery continues
        the boot count above the anchor's)."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = MAX(value, excluded.value)",
                (name, value),
            )

    # -- the state's identity (state.anchor) ------------------------------------

    def identity(self) -> tuple[str, int] | None:
        """(state ID, generation), or None for a DB without one."""
        with self._lock:
            row = self._db.execute("SELECT state_id, generation FROM state_identity").fetchone()
        return (str(row[0]), int(row[1])) if row else None

    def new_identity(self, now: float) -> tuple[str, int]:
        """Give the DB a new random state ID and the next generation."""
        state_id = os.urandom(16).hex()
        with self._transaction() as db:
            row = db.execute("SELECT generation FROM state_identity").fetchone()
            generation = int(row[0]) + 1 if row else 1
            db.execute(
                "INSERT OR REPLACE INTO state_identity VALUES (1, ?, ?, ?)",
                (state_id, generation, now),
            )
            self._audit(db, now, "state_identity", state_id, {"generation": generation})
        return state_id, generation

    # -- a port's login backoff (shim.port_backoff) ----------------------------

    def port_backoff(self, port: str) -> tuple[int, float]:
        """Consecutive failures at `port` and the wall time its backoff ends."""
        with self._lock:
            row = self._db.execute(
                "SELECT failures, until FROM port_backoff WHERE port = ?", (port,)
            ).fetchone()
        return (int(row[0]), float(row[1])) if row else (0, 0.0)

    def set_port_backoff(self, port: str, failures: int, until: float) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO port_backoff VALUES (?, ?, ?)", (port, failures, until)
            )

    # -- tamper latch (shim.tamper.LatchStore) --------------------------------

    def latch(self) -> Latch | None:
        with self._lock:
            row = self._db.execute("SELECT reason, at, detail FROM tamper_latch").fetchone()
        return Latch(row[0], row[1], json.loads(row[2])) if row else None

    def set_latch(self, reason: str, at: float, detail: dict[str, object]) -> None:
        """Latch (the first reason is kept); audited; on disk when it returns."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO tamper_latch VALUES (1, ?, ?, ?)",
                (reason, at, json.dumps(detail, sort_keys=True, default=str)),
            )
            self._audit(db, at, "tamper_latched", reason, {"detail": detail})

    def clear_latch(self, at: float, operator: str, reason: str) -> None:
        with self._transaction() as db:
            row = db.execute("SELECT reason FROM tamper_latch").fetchone()
            db.execute("DELETE FROM tamper_latch")
            self._audit(
                db,
                at,
                "tamper_latch_reset",
                row[0] if row else "-",
                {"operator": operator, "reason": reason},
            )

    # -- technicians --------------------------------------------------------

    def _seal_key(self) -> ChaCha20Poly1305:
        if self._sealer is None:
            key_path = private_dir(self.root / "keys") / "secrets.key"
            self._sealer = ChaCha20Poly1305(_load_or_create_key(key_path))
        return self._sealer

    def seal(self, secret: str, bound_to: str) -> bytes:
        """`secret` sealed with `keys/secrets.key`, bound to `bound_to`."""
        nonce = os.urandom(12)
        return nonce + self._seal_key().encrypt(nonce, secret.encode(), bound_to.encode())

    def unseal(self, sealed: bytes, bound_to: str, what: str) -> str:
        try:
            return self._seal_key().decrypt(sealed[:12], sealed[12:], bound_to.encode()).decode()
        except InvalidTag:
            raise StateError(
                f"the sealed secret of {what} does not open with "
                f"{self.root / 'keys' / 'secrets.key'}; restore the key file or re-enrol"
            ) from None

    def add_technician(self, record: TechnicianRecord, now: float) -> None:
        sealed = self.seal(record.totp_secret, record.technician_id)
        try:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO technicians VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.technician_id,
                        sealed,
                        record.algorithm,
                        record.digits,
                        record.period,
                        record.enrolment_date,
                        record.notes,
                        json.dumps(list(record.roles)),
                        now,
                    ),
                )
                self._audit(db, now, "technician_added", record.technician_id, {})
        except sqlite3.IntegrityError:
            raise TechnicianError(
                f"technician {record.technician_id!r} is already enrolled"
            ) from None

    def remove_technician(self, technician_id: str, now: float) -> bool:
        with self._transaction() as db:
            gone = db.execute(
                "DELETE FROM technicians WHERE technician_id = ?", (technician_id,)
            ).rowcount
            if gone:
                self._audit(db, now, "technician_removed", technician_id, {})
        return bool(gone)

    def technician(self, technician_id: str) -> TechnicianRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT technician_id, sealed_secret, algorithm, digits, period, "
                "enrolment_date, notes, roles FROM technicians WHERE technician_id = ?",
                (technician_id,),
            ).fetchone()
        return self._record(row) if row else None

    def technician_ids(self) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT technician_id FROM technicians ORDER BY 1").fetchall()
        return [row[0] for row in rows]

    def _record(self, row: tuple[object, ...]) -> TechnicianRecord:
        tid, sealed, algorithm, digits, period, enrolled, notes, roles = row
        if not isinstance(tid, str) or not isinstance(sealed, bytes):
            raise StateError(f"state DB {self.path}: malformed technician row")
        secret = self.unseal(sealed, tid, f"technician {tid!r}")
        return TechnicianRecord(
            tid,
            secret,
            str(enrolled),
            str(notes),
            algorithm if isinstance(algorithm, str) else None,
            digits if isinstance(digits, int) else None,
            period if isinstance(period, int) else None,
            tuple(json.loads(str(roles))),
        )

    # -- audit --------------------------------------------------------------

    def audit(self, now: float, action: str, subject: str, detail: dict[str, object]) -> None:
        with self._transaction() as db:
            self._audit(db, now, action, subject, detail)

    @staticmethod
    def _audit(
        db: sqlite3.Connection, now: float, action: str, subject: str, detail: dict[str, object]
    ) -> None:
        db.execute(
            "INSERT INTO audit (at, action, subject, detail) VALUES (?, ?, ?, ?)",
            (now, action, subject, json.dumps(detail, sort_keys=True)),
        )

    def audit_log(self) -> list[AuditEntry]:
        with self._lock:
            rows = self._db.execute("SELECT at, action, subject, detail FROM audit ORDER BY id")
            return [AuditEntry(r[0], r[1], r[2], json.loads(r[3])) for r in rows.fetchall()]
