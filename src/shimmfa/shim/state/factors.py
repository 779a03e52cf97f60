"""MFA chains' durable parts, in the state DB: a technician's further
factors, and every chain's state (`core.chain_state`).

Rules:
- A factor is known by its label, unique per technician (its replay floor
  is kept under it: reordering factors never moves a floor to another
  secret). Secrets are sealed like the first factor's, bound to the
  technician ID and the label together.
- Factors come from the config file (`technicians[].factors`) or the state
  DB (`shimmfa technician add --factor LABEL`), never both for one
  technician (the config file's technician has the config's factors).
- `ChainStore` is `core.chain_state.ChainStateStore` on the state DB: each
  update is one committed transaction, so a restart neither resets a
  chain's lockout nor allows a replay.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from shimmfa.core.chain_policy import FactorDefinition
from shimmfa.core.chain_state import ChainState
from shimmfa.errors import StateError, TechnicianError
from shimmfa.shim.settings import Settings
from shimmfa.shim.state.store import StateStore

__all__ = ["ChainStore", "Factor", "add_factor", "factors_of"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Factor:
    definition: FactorDefinition
    secret: str = field(repr=False)


def _bound(technician_id: str, label: str) -> str:
    return f"{technician_id}\0factor\0{label}"


def add_factor(
    store: StateStore,
    technician_id: str,
    label: str,
    secret: str,
    now: float,
    *,
    algorithm: str | None = None,
    digits: int | None = None,
    period: int | None = None,
) -> None:
    """Enrol a further factor of a technician of the state DB."""
    FactorDefinition(label, label)  # the label's rules, with a clear error
    if store.technician(technician_id) is None:
        raise TechnicianError(f"no technician {technician_id!r} in the state DB to add it to")
    sealed = store.seal(secret, _bound(technician_id, label))
    try:
        with store._transaction() as db:
            db.execute(
                "INSERT INTO technician_factors VALUES (?, ?, ?, ?, ?, ?, ?)",
                (technician_id, label, sealed, algorithm, digits, period, now),
            )
            store._audit(db, now, "factor_added", technician_id, {"label": label})
    except sqlite3.IntegrityError:
        raise TechnicianError(f"{technician_id!r} already has a factor {label!r}") from None


def factors_of(settings: Settings, store: StateStore, technician_id: str) -> list[Factor]:
    """A technician's further factors, in their enrolment order."""
    totp = settings.totp
    for entry in settings.technicians:
        if entry.technician_id == technician_id:
            return [
                Factor(
                    FactorDefinition(
                        f.label,
                        f.label,
                        algorithm=f.algorithm or entry.algorithm or totp.algorithm,
                        digits=f.digits or entry.digits or totp.digits,
                        period=f.period or entry.period or totp.period,
                    ),
                    f.totp_secret,
                )
                for f in entry.factors
            ]
    with store._lock:
        rows = store._db.execute(
            "SELECT label, sealed_secret, algorithm, digits, period FROM technician_factors "
            "WHERE technician_id = ? ORDER BY created_at, label",
            (technician_id,),
        ).fetchall()
    record = store.technician(technician_id) if rows else None
    found = []
    for label, sealed, algorithm, digits, period in rows:
        secret = store.unseal(
            sealed, _bound(technician_id, label), f"factor {label!r} of {technician_id!r}"
        )
        found.append(
            Factor(
                FactorDefinition(
                    label,
                    label,
                    algorithm=algorithm or (record and record.algorithm) or totp.algorithm,
                    digits=digits or (record and record.digits) or totp.digits,
                    period=period or (record and record.period) or totp.period,
                ),
                secret,
            )
        )
    return found


class ChainStore:
    """`core.chain_state.ChainStateStore` on the state DB."""

    def __init__(self, store: StateStore) -> None:
        self._store = store

    def _load(self, db: sqlite3.Connection, key: str) -> ChainState:
        row = db.execute("SELECT state FROM chain_state WHERE subject = ?", (key,)).fetchone()
        if row is None:
            return ChainState()
        try:
            return ChainState.from_dict(json.loads(row[0]))
        except ValueError as exc:
            raise StateError(f"the chain state of {key!r} is unreadable ({exc})") from None

    def get(self, key: str) -> ChainState:
        with self._store._lock:
            return self._load(self._store._db, key)

    def update(self, key: str, change: Callable[[ChainState], tuple[ChainState, T]]) -> T:
        with self._store._transaction() as db:
            new, result = change(self._load(db, key))
            db.execute(
                "INSERT OR REPLACE INTO chain_state VALUES (?, ?)",
                (key, json.dumps(new.to_dict(), sort_keys=True)),
            )
        return result
