"""The shim's break-glass secret (`breakglass <code>` at the port): made by
`shimmfa breakglass provision`, dealt to the approver groups as Tocs, kept
here sealed so that the gate can check a code a quorum released.

Rules:
- One secret per shim. Provisioning again replaces it (audited): the old
  Tocs then open nothing.
- The secret is sealed with `keys/secrets.key`, bound to the break-glass
  ID; the deal's public record (group IDs, thresholds, holders' names and
  recipients: never a share or the secret) is kept beside it, for `status`
  and for central.
- The gate sees it as the technician `breakglass` (`core.gate.BREAKGLASS_ID`):
  replay floor, lockout and the port's backoff are a login's. No MFA chain
  follows it (the quorum is its second factor), and no technician may have
  that ID.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from shimmfa.core.gate import BREAKGLASS_ID
from shimmfa.core.totp import TechnicianRecord, decode_secret
from shimmfa.errors import StateError
from shimmfa.shim.state.store import StateStore

__all__ = ["Provisioned", "breakglass_record", "provision", "provisioned"]

_BOUND = f"{BREAKGLASS_ID}\0secret"


@dataclass(frozen=True, slots=True)
class Provisioned:
    """What `breakglass status` shows: when, by whom, how it was dealt."""

    created_at: float
    created_by: str
    deal: dict[str, object]


def provision(
    store: StateStore, secret: str, deal: dict[str, object], now: float, operator: str
) -> bool:
    """Keep `secret` (base32) as the break-glass secret, with the public
    record of its deal; True if it replaced another."""
    decode_secret(secret)  # a clear error for a secret that is not base32
    sealed = store.seal(secret, _BOUND)
    record = json.dumps(deal, sort_keys=True)
    with store._transaction() as db:
        replaced = db.execute("SELECT 1 FROM breakglass").fetchone() is not None
        db.execute(
            "INSERT OR REPLACE INTO breakglass VALUES (1, ?, ?, ?, ?)",
            (sealed, record, now, operator),
        )
        groups = deal.get("groups", [])
        store._audit(
            db,
            now,
            "breakglass_provisioned",
            BREAKGLASS_ID,
            {
                "by": operator,
                "replaced": replaced,
                "groups": len(groups) if isinstance(groups, dict | list) else 0,
            },
        )
    return replaced


def provisioned(store: StateStore) -> Provisioned | None:
    with store._lock:
        row = store._db.execute("SELECT deal, created_at, created_by FROM breakglass").fetchone()
    if row is None:
        return None
    try:
        deal = json.loads(row[0])
    except ValueError:
        raise StateError("the break-glass deal record in the state DB is unreadable") from None
    return Provisioned(row[1], row[2], deal if isinstance(deal, dict) else {})


def breakglass_record(store: StateStore) -> TechnicianRecord | None:
    """The break-glass secret as the gate's technician `breakglass`; None
    until provisioned."""
    with store._lock:
        row = store._db.execute("SELECT sealed_secret FROM breakglass").fetchone()
    if row is None:
        return None
    secret = store.unseal(row[0], _BOUND, "the break-glass secret")
    # the oracle releases farMFA's codes: SHA1, 6 digits, 30 s, whatever the gate's policy
    return TechnicianRecord(BREAKGLASS_ID, secret, algorithm="SHA1", digits=6, period=30)
