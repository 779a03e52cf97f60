"""The event catalogue: every kind the shim and the central service report,
with its syslog severity, whether it is a security event (all but
`heartbeat`: the outbox may drop heartbeats when full, never security
events), its human title and the fields it must carry. Pure data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["CATALOGUE", "EventKind"]

# syslog severities
EMERGENCY, ALERT, CRITICAL, ERROR, WARNING, NOTICE, INFO, DEBUG = range(8)


@dataclass(frozen=True, slots=True)
class EventKind:
    name: str
    title: str
    severity: int
    security: bool
    required: tuple[str, ...] = ()
    summary: tuple[str, ...] = ()  # fields named in the human text


def _kinds(*kinds: EventKind) -> Mapping[str, EventKind]:
    return MappingProxyType({kind.name: kind for kind in kinds})


CATALOGUE: Mapping[str, EventKind] = _kinds(
    EventKind(
        "auth_success",
        "Technician authenticated",
        NOTICE,
        True,
        ("technician_id",),
        ("technician_id", "session_id"),
    ),
    EventKind(
        "auth_failure",
        "Authentication failed",
        WARNING,
        True,
        ("technician_id", "result", "detail"),
        ("technician_id", "result"),
    ),
    EventKind(
        "session_start",
        "Session started",
        NOTICE,
        True,
        ("session_id", "technician_id"),
        ("session_id", "technician_id"),
    ),
    EventKind(
        "session_end",
        "Session ended",
        NOTICE,
        True,
        ("session_id",),
        ("session_id", "terminal_reason"),
    ),
    EventKind("session_meta", "Session note", NOTICE, True, ("session_id",), ("session_id",)),
    EventKind(
        "breakglass_provisioned",
        "Break-glass secret provisioned",
        WARNING,
        True,
        ("authorised_by",),
        ("authorised_by",),
    ),
    EventKind("tamper", "TAMPER DETECTED", ALERT, True, (), ("event", "source")),
    EventKind("sensor_fault", "Tamper sensor fault", CRITICAL, True, (), ("sensor",)),
    EventKind("latch_reset", "Tamper latch reset", WARNING, True, (), ("authorised_by",)),
    EventKind("storage_exhausted", "Storage exhausted", CRITICAL, True, (), ("reason",)),
    EventKind("storage_alert", "Storage alert", WARNING, True, (), ("reason",)),
    EventKind("config_loaded", "Configuration loaded", NOTICE, True, (), ("config_sha256",)),
    EventKind("state_lost", "STATE LOST OR REPLACED", ALERT, True, ("verdict",), ("verdict",)),
    EventKind("state_recovered", "State recovered", WARNING, True, (), ("authorised_by",)),
    EventKind("recording_unavailable", "Recording unavailable", CRITICAL, True, (), ("reason",)),
    EventKind("shim_stopping", "Shim shutting down", NOTICE, True, (), ("reason",)),
    # a break-glass session opened at the shim: sent twice, once per audience
    # (clinical_engineering, infosec), so that each department hears of it
    EventKind(
        "breakglass_session",
        "BREAK-GLASS SESSION (emergency access)",
        ALERT,
        True,
        ("session_id", "audience"),
        ("session_id", "audience"),
    ),
    EventKind("heartbeat", "Heartbeat", INFO, False, (), ("seq", "state")),
    # the shim's sync with central: technician bundles and recording uploads
    EventKind("bundle_applied", "Central's technicians changed", NOTICE, True, ("version",)),
    EventKind("bundle_rejected", "Technician bundle refused", CRITICAL, True, ("reason",)),
    EventKind("bundle_expired", "Technician bundle expired", CRITICAL, True, ("age_s",)),
    EventKind("recording_uploaded", "Recording uploaded", NOTICE, True, ("session_id",)),
    EventKind("recording_upload_refused", "Recording refused by central", ERROR, True),
    # the central service's alarms about shims, and its audit trail
    EventKind("missing", "Shim missing: no heartbeat for three periods", ALERT, True),
    EventKind("recovered", "Shim heard again after an absence", NOTICE, True),
    EventKind("rebooted", "Shim restarted without announcing it", WARNING, True),
    EventKind("state_reset", "Shim state went backwards (boot count)", CRITICAL, True),
    EventKind("tampered", "Shim reports tampering", ALERT, True),
    EventKind("operator_created", "Operator created", NOTICE, True),
    EventKind("operator_login", "Operator logged in", NOTICE, True),
    EventKind("operator_login_failed", "Operator login failed", WARNING, True),
    EventKind("factor_enrolled", "Operator factor enrolled", NOTICE, True),
    EventKind("factor_confirmed", "Operator factor confirmed", NOTICE, True),
    EventKind("step_up", "Operator passed an MFA chain", NOTICE, True),
    EventKind("step_up_failed", "Operator failed an MFA chain step", WARNING, True),
    EventKind("token_created", "API token created", NOTICE, True),
    EventKind("token_revoked", "API token revoked", NOTICE, True),
    EventKind("shim_registered", "Shim registered", NOTICE, True),
    EventKind("shim_removed", "Shim removed", WARNING, True),
    EventKind("maintenance_scheduled", "Maintenance window scheduled", NOTICE, True),
    EventKind("maintenance_cancelled", "Maintenance window cancelled", NOTICE, True),
    EventKind("reset_accepted", "Shim state reset accepted", WARNING, True),
    EventKind("shim_updated", "Shim registration changed", NOTICE, True),
    EventKind("technician_enrolled", "Technician enrolled (pending)", NOTICE, True),
    EventKind("technician_confirmed", "Technician enrolment confirmed", NOTICE, True),
    EventKind("technician_confirm_failed", "Technician confirmation failed", WARNING, True),
    EventKind("technician_revoked", "Technician revoked", WARNING, True),
    EventKind("technician_assigned", "Technician assigned", NOTICE, True),
    EventKind("technician_unassigned", "Technician assignment removed", NOTICE, True),
    EventKind("group_created", "Shim group created", NOTICE, True),
    EventKind("group_removed", "Shim group removed", NOTICE, True),
    EventKind("group_member_added", "Shim added to a group", NOTICE, True),
    EventKind("group_member_removed", "Shim removed from a group", NOTICE, True),
    EventKind("recording_stored", "Recording uploaded and verified", NOTICE, True),
    EventKind("recording_rejected", "Recording upload refused", WARNING, True),
    EventKind("recording_played", "Recording played back", NOTICE, True),
    EventKind("recording_exported", "Recording exported", NOTICE, True),
    # the central service's break-glass workflow (issue 16) and its reviews
    EventKind("breakglass_deal_registered", "Break-glass deal registered", NOTICE, True),
    EventKind(
        "breakglass_deal_replaced", "Break-glass deal replaced by a newer one", WARNING, True
    ),
    EventKind("breakglass_requested", "Break-glass requested", WARNING, True),
    EventKind("breakglass_session_opened", "Break-glass oracle session opened", NOTICE, True),
    EventKind("breakglass_approved", "Break-glass approval (a Toc) received", NOTICE, True),
    EventKind("breakglass_approval_refused", "Break-glass approval refused", WARNING, True),
    EventKind("breakglass_toc_set_aside", "Break-glass Toc set aside", WARNING, True),
    EventKind("breakglass_code_released", "BREAK-GLASS CODE RELEASED", ALERT, True),
    EventKind("breakglass_review_opened", "Break-glass review opened", NOTICE, True),
    EventKind("breakglass_review_signed", "Break-glass review signed off", NOTICE, True),
    EventKind("breakglass_review_closed", "Break-glass review closed", NOTICE, True),
    EventKind(
        "breakglass_review_overdue", "Break-glass review still open after 24 hours", ALERT, True
    ),
    EventKind("outbox_filling", "SIEM outbox filling", WARNING, True, (), ("rows", "max_rows")),
)
