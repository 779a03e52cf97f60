"""Audited operator actions on the shim: `shimmfa tamper reset` clears the
tamper latch, with authority.

Rules: the operator must be an enrolled technician with the `admin` role;
their code is checked by the same TOTP gate and state as a port login (so a
used code is a replay and failures count towards their lockout); every
attempt, granted or refused, is audited and sent to the SIEM; a refusal
says only that the credentials are invalid.
"""

from __future__ import annotations

import time

from shimmfa.errors import TechnicianError
from shimmfa.shim.reporting.alerts import Alerts, AuditedAuthenticator
from shimmfa.shim.reporting.outbox import Outbox
from shimmfa.shim.settings import Settings
from shimmfa.shim.state.store import StateStore
from shimmfa.shim.state.technicians import TechnicianDirectory, build_gate


class ResetRefusedError(TechnicianError):
    """The reset was not authorised."""


def reset(settings: Settings, store: StateStore, operator: str, code: str, reason: str) -> None:
    latched = store.latch()
    if latched is None:
        raise TechnicianError("the tamper latch is not set; nothing to reset")
    outbox = Outbox(settings.storage_root, max_rows=settings.siem.outbox_max)
    try:
        alerts = Alerts(outbox, settings.shim.id)
        record = TechnicianDirectory(settings.technician_records(), store).get(operator)
        outcome = AuditedAuthenticator(build_gate(settings, store), alerts).authenticate(
            operator, code
        )
        now = time.time()
        authorised = outcome.authenticated and record is not None and "admin" in record.roles
        if not authorised:
            why = outcome.detail if not outcome.authenticated else "not an admin"
            store.audit(now, "tamper_reset_refused", operator, {"reason": why})
            alerts.emit("latch_reset", {"authorised_by": operator, "granted": False, "why": why})
            raise ResetRefusedError(
                "tamper reset refused: invalid operator credentials or not an admin"
            )
        store.clear_latch(now, operator, reason)
        alerts.emit(
            "latch_reset",
            {
                "authorised_by": operator,
                "granted": True,
                "reason": reason,
                "latch_reason": latched.reason,
            },
        )
    finally:
        outbox.close()
