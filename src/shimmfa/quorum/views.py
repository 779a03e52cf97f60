"""What the oracle answers, as values: farMFA's `Session`,
`SessionCredentials` and `TOTPCode` (`as_dict` gives their JSON fields),
and the events it reports to an audit hook.

Rules: times are epoch seconds inside, RFC 3339 UTC in JSON. A
`SessionCredentials` holds the KEK and a `TotpCode` the code: neither
shows in a repr, and no event ever carries either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shimmfa.core.events import iso_time
from shimmfa.quorum.records import SessionState

__all__ = [
    "AuditHook",
    "OracleEvent",
    "SessionCredentials",
    "SessionView",
    "TotpCode",
    "view_of",
]


@dataclass(frozen=True, slots=True)
class SessionView:
    """A session as farMFA's `Session` shows it (`as_dict`)."""

    id: str
    toc_group_id: str
    created_at: float
    expires_at: float
    ttl: int
    complete: bool
    tocs_in_group: int
    tocs_threshold: int
    tocs_provided: int
    released: bool
    groups: tuple[tuple[str, int, int], ...]  # (group_id, Tocs dealt, quorum) per group

    def as_dict(self) -> dict[str, Any]:
        """farMFA's Session fields; an AND session adds `groups`."""
        body: dict[str, Any] = {
            "id": self.id,
            "toc_group_id": self.toc_group_id,
            "expires_at": iso_time(self.expires_at),
            "created_at": iso_time(self.created_at),
            "ttl": self.ttl,
            "complete": self.complete,
            "tocs_in_group": self.tocs_in_group,
            "tocs_threshold": self.tocs_threshold,
            "tocs_provided": self.tocs_provided,
        }
        if len(self.groups) > 1:
            body["groups"] = [
                {"group_id": gid, "tocs_in_group": size, "tocs_threshold": quorum}
                for gid, size, quorum in self.groups
            ]
        return body


@dataclass(frozen=True, slots=True)
class SessionCredentials:
    """What POST /sessions answers: the session, the TEK and (once) the KEK."""

    session: SessionView
    tek: str
    kek: str = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {**self.session.as_dict(), "tek": self.tek, "kek": self.kek}


@dataclass(frozen=True, slots=True)
class TotpCode:
    """The released code; `approvers`: who sent the Tocs it was made from."""

    totp: str = field(repr=False)
    totp_expires_at: float
    session_expires_at: float
    approvers: tuple[str | None, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "totp": self.totp,
            "totp_expires_at": iso_time(self.totp_expires_at),
            "session_expires_at": iso_time(self.session_expires_at),
        }


@dataclass(frozen=True, slots=True)
class OracleEvent:
    """What happened, for the caller's audit trail (never a secret)."""

    kind: str  # session_opened, toc_submitted, toc_refused, toc_set_aside, code_released
    session_id: str
    at: float
    group_ids: tuple[str, ...]
    approver: str | None = None
    detail: str = ""


AuditHook = Callable[[OracleEvent], None]


def view_of(state: SessionState) -> SessionView:
    session = state.session
    groups = session.groups
    provided = len(state.live_tocs())
    return SessionView(
        id=session.id,
        toc_group_id=session.toc_group_id,
        created_at=session.created_at,
        expires_at=session.expires_at,
        ttl=session.ttl,
        complete=session.released_at is not None or provided >= session.quorum,
        tocs_in_group=groups[0].group_size if len(groups) == 1 else session.holders,
        tocs_threshold=session.quorum,
        tocs_provided=provided,
        released=session.released_at is not None,
        groups=tuple((g.group_id, g.group_size, g.quorum) for g in groups),
    )
