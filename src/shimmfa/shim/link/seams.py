"""What the link needs from the rest of the shim, and nothing more: the
side branches (authentication, recording, reporting) are reached only
through these protocols, so the data path reads without them.
"""

from __future__ import annotations

from typing import Protocol

from shimmfa.core.totp import AuthOutcome

__all__ = ["Authenticator", "NoRecording", "Sessions", "Tap"]


class NoRecording(Protocol):
    """Why no new session can be recorded now: the recorder itself is down
    (`recorder`), or its disk has no room."""

    @property
    def reason(self) -> str: ...

    @property
    def recorder(self) -> bool: ...


class Tap(Protocol):
    """Where the pumps record a session's traffic (see `wire.chunk`)."""

    @property
    def mono0(self) -> float: ...

    @property
    def batch_bytes(self) -> int: ...

    def sink(self) -> bytearray | None: ...

    def recorded(self, count_in: int, count_out: int, last_entry: int) -> None: ...


class Authenticator(Protocol):
    """Decides logins: the login line's code, then any further factor the
    technician's MFA chain asks for (`next_factor`, `verify_factor`)."""

    def authenticate(self, technician_id: str, code: str) -> AuthOutcome: ...

    def next_factor(self, technician_id: str) -> str | None:
        """After an OK outcome: the label of the factor to ask for next;
        None when the login is complete."""
        ...

    def verify_factor(self, technician_id: str, code: str) -> AuthOutcome: ...


class Sessions(Protocol):
    """Where sessions are opened, recorded and closed (the recorder)."""

    @property
    def tap(self) -> Tap: ...

    def start(self, technician_id: str) -> str:
        """A new session's ID; raises ShimMfaError when it cannot be recorded."""
        ...

    def record(self, direction: str, data: bytes) -> None:
        """Bytes relayed outside the pumps (typed ahead of the login)."""
        ...

    def end(self, session_id: str, reason: str) -> None: ...

    def problem(self) -> NoRecording | None:
        """Why no new session can be recorded now, or None. May replace a
        recorder that died."""
        ...
