"""The oracle's refusals, in words: what `oracle` raises when a session is
closed, a Toc is refused or the quorum is not reached. Each is a
`QuorumError` whose reason is a `Refusal` (`api` maps it to one HTTP
status); no message holds a share, the secret, a KEK or an identity.
"""

from __future__ import annotations

from shimmfa.core.events import iso_time
from shimmfa.core.toc import Toc, TocRejection
from shimmfa.errors import QuorumError, TocError
from shimmfa.quorum.approvers import Approver
from shimmfa.quorum.records import Refusal, SealedToc, SessionRecord, SessionState

__all__ = [
    "DEFAULT_TTL",
    "MAX_TTL",
    "MIN_TTL",
    "TOC_REFUSALS",
    "below",
    "check_sender",
    "check_ttl",
    "ciphertext_again",
    "closed",
    "expired",
    "full",
    "not_found",
    "not_own",
    "problem",
    "unknown_group",
]

MIN_TTL, MAX_TTL, DEFAULT_TTL = 60, 86400, 60
TOC_REFUSALS = {
    TocRejection.MALFORMED: Refusal.MALFORMED,
    TocRejection.WRONG_GROUP: Refusal.WRONG_GROUP,
    TocRejection.DUPLICATE: Refusal.DUPLICATE,
    TocRejection.TOO_FEW: Refusal.BELOW_THRESHOLD,
    TocRejection.MISMATCH: Refusal.MISMATCH,
}


def closed(session: SessionRecord, now: float) -> QuorumError | None:
    if session.released_at is not None:
        return QuorumError(
            "this session's code was released already; the session is closed",
            Refusal.RELEASED,
        )
    if now >= session.expires_at:
        return expired(session)
    return None


def expired(session: SessionRecord) -> QuorumError:
    return QuorumError(
        f"this session expired at {iso_time(session.expires_at)}; open a new one",
        Refusal.EXPIRED,
    )


def not_found() -> QuorumError:
    return QuorumError("no such session", Refusal.NOT_FOUND)


def check_ttl(ttl: object) -> int:
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not MIN_TTL <= ttl <= MAX_TTL:
        raise QuorumError(
            f"ttl must be an integer from {MIN_TTL} to {MAX_TTL} seconds", Refusal.MALFORMED
        )
    return ttl


def ciphertext_again(state: SessionState, digest: str) -> QuorumError | None:
    if any(toc.digest == digest for toc in state.tocs):
        return QuorumError("this sealed Toc was sent to the session already", Refusal.DUPLICATE)
    return None


def full(state: SessionState) -> QuorumError | None:
    holders = state.session.holders
    if len(state.live_tocs()) < holders:
        return None
    return QuorumError(
        f"the session holds {holders} Tocs already, as many as were dealt: open a new session",
        Refusal.TOO_MANY,
    )


def unknown_group(group_id: object) -> QuorumError:
    return QuorumError(
        f"group {str(group_id)[:16]} was not dealt through this oracle's registry",
        Refusal.UNKNOWN_GROUP,
    )


def not_own(approver: Approver | None, toc: Toc) -> QuorumError:
    name = approver.name if approver is not None else "the applicant"
    return QuorumError(
        f"{name} does not hold a Toc of group {toc.group_id} in the role they act in; "
        "toc_zero must be the applicant's own",
        Refusal.NOT_PERMITTED,
    )


def check_sender(sealed: SealedToc, toc: Toc) -> None:
    """WRONG_GROUP if the Toc is of a group its sender does not hold."""
    if sealed.holds is not None and toc.group_id not in sealed.holds:
        raise QuorumError(
            f"it is a Toc of group {toc.group_id}, which its sender does not hold "
            f"(they hold {', '.join(sealed.holds)})",
            Refusal.WRONG_GROUP,
        )


def problem(sealed: SealedToc, exc: QuorumError | TocError) -> QuorumError:
    which = f"Toc {sealed.seq}" + (f" (from {sealed.approver})" if sealed.approver else "")
    if isinstance(exc, TocError):
        return QuorumError(f"{which}: {exc}", TOC_REFUSALS[TocRejection(exc.reason)])
    if exc.reason == Refusal.WRONG_GROUP:
        return QuorumError(f"{which}: {exc}", Refusal.WRONG_GROUP)
    return QuorumError(
        f"{which} does not open with this session's key: was it sealed to this session's TEK?",
        Refusal.UNDECRYPTABLE,
    )


def below(session: SessionRecord, admitted: list[Toc]) -> QuorumError:
    lacking = []
    for group in session.groups:
        have = sum(toc.group == group for toc in admitted)
        if have < group.quorum:
            lacking.append(f"group {group.group_id} has {have} of the {group.quorum} it needs")
    return QuorumError(
        f"not yet a quorum: {'; '.join(lacking)}; more holders must send their Tocs",
        Refusal.BELOW_THRESHOLD,
    )
