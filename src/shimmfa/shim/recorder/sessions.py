"""The link's `Sessions`: every session recorded by the recorder process,
and its start and end reported (the seed's `session_start`/`session_end`
records through the recorder's SIEM transport, alerts through `Emitter`).

Rules: a break-glass session (`breakglass <code>`) is marked in its
recording's header and its `session_start` (`break_glass: true`), and
raises two `breakglass_session` events at once, one addressed to clinical
engineering and one to information security (the outbox delivers each to
every destination). A session whose recording cannot be closed is still
over (the end is reported with the failure); `on_ended` hears of every
recording finished (the uploader looks at it at once); storage exhaustion
is reported when it starts,
or, when the full disk keeps even the alert out of the outbox, at the first
later check that can queue it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from shimmfa.core.gate import BREAKGLASS_ID
from shimmfa.core.recording import iso_utc
from shimmfa.errors import RecordingError
from shimmfa.shim.recorder.process import RecorderProcess
from shimmfa.shim.recorder.session_recorder import SiemTransport

__all__ = ["Emitter", "RecordedSessions", "Unrecordable"]

log = logging.getLogger("shimmfa.recorder")
# who is alerted, at once, when a break-glass session opens (one event each)
BREAKGLASS_AUDIENCES = ("clinical_engineering", "infosec")


@dataclass(frozen=True, slots=True)
class Unrecordable:
    """Why no session can be recorded now (the link's `NoRecording`)."""

    reason: str
    recorder: bool = False


class Emitter(Protocol):
    """Sends one event of `kind` (`reporting.alerts.Alerts`); False if it
    could not be queued. Never raises."""

    shim_id: str

    def emit(self, kind: str, fields: Mapping[str, Any], *, at: float | None = None) -> bool: ...


class RecordedSessions:
    """The relay's `Sessions`: every session recorded by the recorder
    process, and its start and end sent to the SIEM (the seed's records)."""

    def __init__(
        self,
        recorder: RecorderProcess,
        alerts: Emitter,
        siem: SiemTransport,
        on_ended: Callable[[], None] | None = None,
    ) -> None:
        self._recorder = recorder
        self._on_ended = on_ended or (lambda: None)
        self._alerts = alerts
        self._siem = siem
        self.record = recorder.record
        self.tap = recorder
        self._reported: bool | None = None  # the kind reported: recorder down or disk
        self._technicians: dict[str, str] = {}

    def start(self, technician_id: str) -> str:
        break_glass = technician_id == BREAKGLASS_ID
        session_id = self._recorder.start_session(technician_id, break_glass=break_glass)
        now = time.time()
        self._technicians[session_id] = technician_id
        header: dict[str, Any] = {
            "event": "session_start",
            "type": "session_header",
            "session_id": session_id,
            "technician_id": technician_id,
            "shim_id": self._alerts.shim_id,
            "started_at_epoch": now,
            "started_at_iso": iso_utc(now),
            "version": "1.0",
        }
        if break_glass:
            header["break_glass"] = True
        self._siem.forward(header)
        factor = "breakglass" if break_glass else "totp"
        event = {"event": "auth_success", "technician_id": technician_id, "factor": factor}
        self._recorder.append_event(session_id, event)
        if break_glass:
            for audience in BREAKGLASS_AUDIENCES:
                fields = {"session_id": session_id, "audience": audience, "started_at": now}
                if not self._alerts.emit("breakglass_session", fields, at=now):
                    log.critical(
                        "break-glass session %s: the %s alert was not queued", session_id, audience
                    )
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
        self._on_ended()  # the recording is finished (its footer written)

    def problem(self) -> Unrecordable | None:
        """Why no new session can be recorded now, or None. A recorder that
        died is replaced here (`RecorderProcess.revive`); while it cannot
        be, that is the reason. Each kind of problem is reported once, when
        it starts."""
        down = self._recorder.revive()
        found: Unrecordable | None
        if down is not None:
            found = Unrecordable(down, recorder=True)
        else:
            try:
                storage = self._recorder.storage_problem()
            except RecordingError as exc:  # it died since `revive` looked: down, not full
                found = Unrecordable(str(exc), recorder=True)
            else:
                found = Unrecordable(storage) if storage else None
        if found is not None and found.recorder != self._reported:
            kind = "recording_unavailable" if found.recorder else "storage_exhausted"
            if not self._alerts.emit(kind, {"reason": found.reason}):
                return found  # not queued (the disk is full): again at the next check
        self._reported = found.recorder if found is not None else None
        return found
