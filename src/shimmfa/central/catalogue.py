"""What the central service itself records: its alarms about shims and the
audit trail of what operators did. Stored in the same `events` table as
what shims send (`source` "central"), shown by `GET /api/v1/events`, and
forwarded to the hospital SIEM. Their titles and severities are in the one
event catalogue, `core.events.CATALOGUE`, beside the shim's.

Rules:
- Alarms: `missing` (three periods without a heartbeat), `recovered` (back,
  with the gap), `rebooted` (its boot count jumped without a `shim_stopping`:
  an unexpected absence), `state_reset` (its boot count went backwards: its
  state DB was replaced), `tampered` (a heartbeat or event reports tamper).
- Audit: every change an operator or token makes, and each login; the
  technicians' enrolment, assignments and revocation; each recording
  stored or refused, and each playback and export; break-glass: each deal
  a shim registers (and the one it replaces), each request, each Toc sent
  or refused or set aside (with the authenticated approver), each code
  released, each review opened, signed and closed.
- `breakglass_review_overdue` (an alarm, ALERT): a review still open 24
  hours after the shim's break-glass session was first reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from shimmfa.core.events import CATALOGUE, EventKind

__all__ = ["ALARMS", "AUDIT", "CENTRAL_KINDS"]

ALARMS = frozenset(
    {
        "missing",
        "recovered",
        "rebooted",
        "state_reset",
        "tampered",
        # issue 16: a break-glass review nobody closed within 24 hours
        "breakglass_review_overdue",
    }
)
AUDIT = frozenset(
    {
        "operator_created",
        "operator_login",
        "operator_login_failed",
        "factor_enrolled",
        "factor_confirmed",
        "step_up",
        "step_up_failed",
        "token_created",
        "token_revoked",
        "shim_registered",
        "shim_removed",
        "maintenance_scheduled",
        "maintenance_cancelled",
        "reset_accepted",
        # issue 17: technicians, groups, recordings
        "shim_updated",
        "technician_enrolled",
        "technician_confirmed",
        "technician_confirm_failed",
        "technician_revoked",
        "technician_assigned",
        "technician_unassigned",
        "group_created",
        "group_removed",
        "group_member_added",
        "group_member_removed",
        "recording_stored",
        "recording_rejected",
        "recording_played",
        "recording_exported",
        # issue 16: break-glass deals, requests, approvals, codes and reviews
        "breakglass_deal_registered",
        "breakglass_deal_replaced",
        "breakglass_requested",
        "breakglass_session_opened",
        "breakglass_approved",
        "breakglass_approval_refused",
        "breakglass_toc_set_aside",
        "breakglass_code_released",
        "breakglass_review_opened",
        "breakglass_review_signed",
        "breakglass_review_closed",
    }
)
CENTRAL_KINDS: Mapping[str, EventKind] = MappingProxyType(
    {name: CATALOGUE[name] for name in sorted(ALARMS | AUDIT)}
)
