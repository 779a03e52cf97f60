"""What the gate asks of the relay: its actions, frozen values the relay
executes in order (h11's events are to its connection what these are to
`core.gate.GateMachine`). All of them are importable from `core.gate` too.
"""

from __future__ import annotations

from dataclasses import dataclass

from shimmfa.core.totp import AuthResult

__all__ = [
    "Action",
    "AuthFailed",
    "Authenticate",
    "Discarded",
    "ForwardToDevice",
    "FormatRejected",
    "SendToTechnician",
    "SessionClosed",
    "SessionOpened",
]


@dataclass(frozen=True, slots=True)
class SendToTechnician:
    data: bytes


@dataclass(frozen=True, slots=True)
class ForwardToDevice:
    data: bytes


@dataclass(frozen=True, slots=True)
class Authenticate:
    """Check these credentials and call `auth_done` with the outcome. `step`
    0 is the login line's code; 1, 2, ... a further factor's code (the line
    as typed, for the technician's MFA chain)."""

    technician_id: str
    code: str
    step: int = 0


@dataclass(frozen=True, slots=True)
class SessionOpened:
    technician_id: str
    session_id: str


@dataclass(frozen=True, slots=True)
class SessionClosed:
    session_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class AuthFailed:
    technician_id: str
    result: AuthResult
    detail: str
    backoff_seconds: float


@dataclass(frozen=True, slots=True)
class FormatRejected:
    reason: str


@dataclass(frozen=True, slots=True)
class Discarded:
    """Technician input dropped (backoff or locked gate)."""

    nbytes: int
    reason: str


Action = (
    SendToTechnician
    | ForwardToDevice
    | Authenticate
    | SessionOpened
    | SessionClosed
    | AuthFailed
    | FormatRejected
    | Discarded
)
