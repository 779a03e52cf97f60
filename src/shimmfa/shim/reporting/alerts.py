"""Adapters that turn what the daemon does into outbox events.

Rules: emitting never raises into its caller (a failing outbox is logged
loudly; the relay and the tamper path go on); every authentication attempt
is an event with the precise reason (the technician only ever sees the
generic reply); a failed login's ID that is only digits (a code typed into
the ID field) is redacted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from shimmfa.core.events import shown_id
from shimmfa.core.totp import AuthOutcome, TotpGate
from shimmfa.shim.reporting.outbox import Outbox, new_event
from shimmfa.shim.reporting.records import event_fields

log = logging.getLogger("shimmfa.alerts")


class Emitter(Protocol):
    """What raises events (`Alerts`)."""

    def emit(self, kind: str, fields: dict[str, Any]) -> bool: ...


class Alerts:
    """`emit(kind, fields)` into the outbox, never raising."""

    def __init__(self, outbox: Outbox, shim_id: str) -> None:
        self.outbox = outbox
        self.shim_id = shim_id

    def emit(
        self,
        kind: str,
        fields: Mapping[str, Any],
        *,
        at: float | None = None,
        heartbeat: Mapping[str, Any] | None = None,
    ) -> bool:
        try:
            event = new_event(kind, self.shim_id, event_fields(fields), at=at, heartbeat=heartbeat)
            self.outbox.add(event)
        except Exception as exc:
            log.critical("event %s could not be queued for the SIEM: %s", kind, exc)
            return False
        return True


class Login(Protocol):
    """What decides a login (`state.login.ShimLogin`)."""

    def authenticate(self, technician_id: str, code: str) -> AuthOutcome: ...

    def next_factor(self, technician_id: str) -> str | None: ...

    def verify_factor(self, technician_id: str, code: str) -> AuthOutcome: ...


class AuditedAuthenticator:
    """Logins (the TOTP gate, or a `Login` with an MFA chain), with every
    decision sent to the SIEM: `auth_success` once the login is complete,
    `auth_failure` at any failed step, with the precise reason."""

    def __init__(self, gate: TotpGate | Login, alerts: Alerts) -> None:
        self._gate = gate
        self._alerts = alerts

    def authenticate(self, technician_id: str, code: str) -> AuthOutcome:
        outcome = self._gate.authenticate(technician_id, code)
        self._report(outcome)
        return outcome

    def next_factor(self, technician_id: str) -> str | None:
        if isinstance(self._gate, TotpGate):
            return None
        return self._gate.next_factor(technician_id)

    def verify_factor(self, technician_id: str, code: str) -> AuthOutcome:
        if isinstance(self._gate, TotpGate):
            raise RuntimeError("a further factor without an MFA chain")
        outcome = self._gate.verify_factor(technician_id, code)
        self._report(outcome)
        return outcome

    def _report(self, outcome: AuthOutcome) -> None:
        tid = outcome.technician_id
        if outcome.authenticated and self.next_factor(tid) is not None:
            return  # the chain goes on: success is reported when it completes
        fields = {
            "technician_id": tid if outcome.authenticated else shown_id(tid),
            "result": outcome.result.value,
            "detail": outcome.detail,
            "time_step": outcome.period,
        }
        kind = "auth_success" if outcome.authenticated else "auth_failure"
        self._alerts.emit(kind, fields)
