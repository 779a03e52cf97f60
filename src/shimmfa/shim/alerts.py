"""Adapters that turn what the daemon does into outbox events.

Rules: emitting never raises into its caller (a failing outbox is logged
loudly; the relay and the tamper path go on); every authentication attempt
is an event with the precise reason (the technician only ever sees the
generic reply); storage exhaustion is reported when it starts, or, when the
full disk keeps even the alert out of the outbox, at the first later check
that can queue it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from shimmfa.core.recording import iso_utc
from shimmfa.core.totp import AuthOutcome, TotpGate
from shimmfa.errors import RecordingError
from shimmfa.shim.outbox import Outbox, new_event
from shimmfa.shim.recorder_events import OutboxSiem, event_fields
from shimmfa.shim.recorder_process import RecorderProcess

log = logging.getLogger("shimmfa.alerts")


class Alerts:
    """`emit(kind, fields)` into the outbox, never raising."""

    def __init__(self, outbox: Outbox, shim_id: str) -> None:
        self.outbox = outbox
        self.shim_id = shim_id

    def emit(self, kind: str, fields: Mapping[str, Any], *, at: float | None = None) -> bool:
        try:
            self.outbox.add(new_event(kind, self.shim_id, event_fields(fields), at=at))
        except Exception as exc:
            log.critical("event %s could not be queued for the SIEM: %s", kind, exc)
            return False
        return True


class AuditedAuthenticator:
    """The TOTP gate, with every decision sent to the SIEM."""

    def __init__(self, gate: TotpGate, alerts: Alerts) -> None:
        self._gate = gate
        self._alerts = alerts

    def authenticate(self, technician_id: str, code: str) -> AuthOutcome:
        outcome = self._gate.authenticate(technician_id, code)
        fields = {
            "technician_id": outcome.technician_id,
            "result": outcome.result.value,
            "detail": outcome.detail,
            "time_step": outcome.period,
        }
        kind = "auth_success" if outcome.authenticated else "auth_failure"
        self._alerts.emit(kind, fields)
        return outcome


class RecordedSessions:
    """The relay's `Sessions`: every session recorded by the recorder
    process, and its start and end sent to the SIEM (the seed's records)."""

    def __init__(self, recorder: RecorderProcess, alerts: Alerts, siem: OutboxSiem) -> None:
        self._recorder = recorder
        self._alerts = alerts
        self._siem = siem
        self.record = recorder.record
        self.tap = recorder
        self._reported: str | None = None
        self._technicians: dict[str, str] = {}

    def start(self, technician_id: str) -> str:
        session_id = self._recorder.start_session(technician_id)
        now = time.time()
        self._technicians[session_id] = technician_id
        self._siem.forward(
            {
                "event": "session_start",
                "type": "session_header",
                "session_id": session_id,
                "technician_id": technician_id,
                "shim_id": self._alerts.shim_id,
                "started_at_epoch": now,
                "started_at_iso": iso_utc(now),
                "version": "1.0",
            }
        )
        event = {"event": "auth_success", "technician_id": technician_id, "factor": "totp"}
        self._recorder.append_event(session_id, event)
        return session_id

    def end(self, session_id: str, reason: str) -> None:
        technician_id = self._technicians.pop(session_id, "")
        try:
            meta = self._recorder.end_session(session_id, reason)
        except RecordingError as exc:  # the session is over either way
            log.critical("the recording of %s could not be closed: %s", session_id, exc)
            self._alerts.emit(
                "session_end",
                {
                    "session_id": session_id,
                    "technician_id": technician_id,
                    "terminal_reason": reason,
                    "recording": f"failed: {exc}",
                },
            )
            return
        self._siem.forward(
            {
                "event": "session_end",
                "session_id": session_id,
                "technician_id": meta.technician_id,
                "shim_id": meta.shim_id,
                "duration_seconds": (meta.ended_at or meta.started_at) - meta.started_at,
                "bytes_inbound": meta.bytes_inbound,
                "bytes_outbound": meta.bytes_outbound,
                "terminal_reason": reason,
            }
        )

    def problem(self) -> str | None:
        problem = self._recorder.storage_problem()
        if problem and self._reported is None:
            if not self._alerts.emit("storage_exhausted", {"reason": problem}):
                return problem  # not queued (the disk is full): again at the next check
        self._reported = problem
        return problem
