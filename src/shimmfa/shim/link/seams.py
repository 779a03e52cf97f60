"""What the link needs from the rest of the shim, and nothing more: the
side branches (authentication, recording, reporting) are reached only
through these protocols, so the data path reads without them.
"""

from __future__ import annotations

from typing import Protocol

from shimmfa.core.totp import AuthOutcome

__all__ = ["Authenticator", "Sessions", "Tap"]


class Tap(Protocol):
    """Where the pumps record a session's traffic (see `wire.chunk`)."""

    @property
    def mono0(self) -> float: ...

    @property
    def batch_bytes(self) -> int: ...

    def sink(self) -> bytearray | None: ...

    def recorded(self, count_in: int, count_out: int, last_entry: int) -> None: ...


class Authenticator(Protocol):
    def authenticate(self, technician_id: str, code: str) -> AuthOutcome: ...


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

    def problem(self) -> str | None:
        """Why no new session can be recorded now (storage), or None."""
        ...
