"""Who calls the oracle, as its host authenticated them, and what that lets
them do in a session. The standalone oracle knows nobody (farMFA's rule:
whoever holds a Toc may send it, whoever holds the KEK gets the code); a
host that authenticates its callers (the central service) says more.

Rules of this module:

- An `Approver` is a name, recorded with toc_zero and with every Toc (1 to
  255 characters), and, when the host knows it, `groups`: the ids of the
  dealt groups whose Tocs this person holds *in the role they act in*. A
  plain string is an approver whose groups are unknown (None: any group).
- With `groups` given, a session takes a Toc (or toc_zero) from the
  approver only if one of the session's groups is theirs: NOT_PERMITTED
  (403) otherwise, and nothing is stored. The Toc records which of the
  session's groups its sender may hold (`SealedToc.holds`), and at release
  a Toc that opens to any other group is set aside (WRONG_GROUP): a holder
  of one department cannot count for the other, not even with a
  colleague's Toc in hand.
- A named approver counts once per session: a second Toc from the same
  name while the first still counts is a DUPLICATE (409). A Toc set aside
  (e.g. sealed to the wrong TEK) may be sent again.
- When both the session's applicant and the caller asking for the code are
  named, they must be the same (NOT_PERMITTED): the code goes to the one
  who asked for it, who also holds the KEK.
- Messages name the approver and the group ids, never a Toc or a key.
"""

from __future__ import annotations

from dataclasses import dataclass

from shimmfa.errors import QuorumError
from shimmfa.quorum.records import Refusal, SessionRecord, SessionState

__all__ = [
    "MAX_NAME_CHARS",
    "Approver",
    "approver_of",
    "check_release",
    "groups_held",
    "sent_already",
]

MAX_NAME_CHARS = 255


@dataclass(frozen=True, slots=True)
class Approver:
    """An authenticated caller: its name and, when known, the group ids whose
    Tocs it holds (None: unknown, any group)."""

    name: str
    groups: frozenset[str] | None = None


def approver_of(value: str | Approver | None) -> Approver | None:
    """`value` (None, a name, or an `Approver`) checked, as an `Approver`."""
    if value is None:
        return None
    approver = value if isinstance(value, Approver) else Approver(value)
    name: object = approver.name
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS:
        raise QuorumError(f"an approver is 1 to {MAX_NAME_CHARS} characters of text")
    return approver


def groups_held(approver: Approver | None, session: SessionRecord) -> tuple[str, ...] | None:
    """The session's groups `approver` may send a Toc of (None: any);
    NOT_PERMITTED if none of them is theirs."""
    if approver is None or approver.groups is None:
        return None
    held = tuple(g.group_id for g in session.groups if g.group_id in approver.groups)
    if not held:
        groups = ", ".join(g.group_id for g in session.groups)
        raise QuorumError(
            f"{approver.name} holds no Toc of this session's groups ({groups}) in the role "
            "they act in; only a holder of one of those groups may send one",
            Refusal.NOT_PERMITTED,
        )
    return held


def sent_already(approver: Approver | None, state: SessionState) -> QuorumError | None:
    """DUPLICATE if `approver` already sent a Toc that still counts."""
    if approver is None:
        return None
    if any(toc.approver == approver.name for toc in state.live_tocs()):
        return QuorumError(
            f"{approver.name} sent a Toc to this session already; each holder counts once",
            Refusal.DUPLICATE,
        )
    return None


def check_release(caller: Approver | None, session: SessionRecord) -> QuorumError | None:
    """NOT_PERMITTED if a named caller is not the session's named applicant."""
    if caller is None or session.applicant is None or caller.name == session.applicant:
        return None
    return QuorumError(
        f"the code of this session goes to its applicant ({session.applicant}) only",
        Refusal.NOT_PERMITTED,
    )
