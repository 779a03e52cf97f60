"""What the central service itself records: its alarms about shims and the
audit trail of what operators did. Stored in the same `events` table as
what shims send (`source` "central"), shown by `GET /api/v1/events`, and
forwarded to the hospital SIEM.

Rules:
- Alarms: `missing` (three periods without a heartbeat), `recovered` (back,
  with the gap), `rebooted` (its boot count jumped without a `shim_stopping`:
  an unexpected absence), `state_reset` (its boot count went backwards: its
  state DB was replaced), `tampered` (a heartbeat or event reports tamper).
- Audit: every change an operator or token makes, and each login.
- The severities are syslog's (0 emergency ... 7 debug), as in
  `core.events.CATALOGUE`. Forwarding needs the kind in that catalogue too
  (the SIEM renderers take their titles from it); until a kind is there,
  its events stay queued (`siem.py`) and go out once it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["ALARMS", "AUDIT", "CENTRAL_KINDS", "CentralKind"]

ALERT, CRITICAL, WARNING, NOTICE = 1, 2, 4, 5


@dataclass(frozen=True, slots=True)
class CentralKind:
    name: str
    title: str
    severity: int
    alarm: bool


_KINDS = (
    CentralKind("missing", "Shim missing: no heartbeat for three periods", ALERT, True),
    CentralKind("recovered", "Shim heard again after an absence", NOTICE, True),
    CentralKind("rebooted", "Shim restarted without announcing it", WARNING, True),
    CentralKind("state_reset", "Shim state went backwards (boot count)", CRITICAL, True),
    CentralKind("tampered", "Shim reports tampering", ALERT, True),
    CentralKind("operator_created", "Operator created", NOTICE, False),
    CentralKind("operator_login", "Operator logged in", NOTICE, False),
    CentralKind("operator_login_failed", "Operator login failed", WARNING, False),
    CentralKind("token_created", "API token created", NOTICE, False),
    CentralKind("token_revoked", "API token revoked", NOTICE, False),
    CentralKind("shim_registered", "Shim registered", NOTICE, False),
    CentralKind("shim_removed", "Shim removed", WARNING, False),
    CentralKind("maintenance_scheduled", "Maintenance window scheduled", NOTICE, False),
    CentralKind("maintenance_cancelled", "Maintenance window cancelled", NOTICE, False),
    CentralKind("reset_accepted", "Shim state reset accepted", WARNING, False),
)
CENTRAL_KINDS = MappingProxyType({kind.name: kind for kind in _KINDS})
ALARMS = frozenset(kind.name for kind in _KINDS if kind.alarm)
AUDIT = frozenset(kind.name for kind in _KINDS if not kind.alarm)
