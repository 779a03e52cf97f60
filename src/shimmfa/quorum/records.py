"""What an oracle session is made of, and the two seams the oracle stands
on: `SessionStore` (where sessions live) and `GroupRegistry` (the groups
that were dealt, with their real thresholds).

Rules of this module:

- Records are frozen values. A session holds its groups (`TocGroup`s from
  the dealt record, or toc_zero's own when nothing was registered), its TEK,
  the XOR-sealed identity (`session_keys`), and its Tocs in submission order,
  toc_zero first (seq 0), each still sealed to the TEK with the approver who
  sent it.
- A store changes a session only through `update(session_id, decide)`: it
  reads the session under a lock that serialises every change to it (across
  threads, workers and hosts for the SQL store), calls `decide(state)`,
  applies the returned `Change` and commits; `decide` may not do I/O of
  its own. Reads for display (`read`) take no lock.
- Releasing or forgetting a session drops its sealed identity and its
  ciphertexts (`Change.forget`): after the code is out, or the session has
  expired, nothing the oracle keeps can rebuild the secret.
- `GroupRegistry.deal_of(group_id)` answers every group of the deal that
  group belongs to (one for a farMFA deal, several for an AND deal), or None
  if it was never registered. The central service records the groups it
  deals; the standalone oracle registers dealer outputs (`dealing`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol, TypeVar

from shimmfa.core.toc import TocGroup
from shimmfa.errors import QuorumError

__all__ = [
    "Change",
    "GroupRegistry",
    "Refusal",
    "SealedToc",
    "SessionRecord",
    "SessionState",
    "SessionStore",
    "TocStatus",
    "applied",
    "deal_record",
]

T = TypeVar("T")


class Refusal(StrEnum):
    """Why the oracle refused a request (`QuorumError.reason`); `api` maps
    each to one HTTP status."""

    MALFORMED = "malformed"  # 422: the body, toc_zero or the armor is wrong
    WRONG_GROUP = "wrong_group"  # 422: a Toc of another group, size or threshold
    UNKNOWN_GROUP = "unknown_group"  # 422: toc_zero of a group the oracle was not told of
    NOT_FOUND = "not_found"  # 404
    EXPIRED = "expired"  # 410
    RELEASED = "released"  # 410: the code was released, the session is closed
    DUPLICATE = "duplicate"  # 409: a Toc (a share x tag) already given
    BELOW_THRESHOLD = "below_threshold"  # 409: not yet a quorum of every group
    MISMATCH = "mismatch"  # 409: the Tocs do not combine (too few for the real deal)
    TOO_MANY = "too_many"  # 409: more Tocs than the deal has holders
    BAD_KEK = "bad_kek"  # 400
    UNDECRYPTABLE = "undecryptable"  # 400: a Toc does not open with the session's key
    NOT_PERMITTED = "not_permitted"  # 403: this approver may not (`approvers`)


class TocStatus(StrEnum):
    PENDING = "pending"  # sealed; not yet read (the oracle reads at release)
    COUNTED = "counted"  # one of the Tocs the released code was made from
    SET_ASIDE = "set_aside"  # read and refused (`SealedToc.reason`); counts no more


@dataclass(frozen=True, slots=True)
class SealedToc:
    seq: int
    armored: str | None = field(repr=False)  # None once forgotten
    digest: str  # SHA-256 of the age file: the same ciphertext twice is one Toc
    approver: str | None
    submitted_at: float
    status: TocStatus = TocStatus.PENDING
    reason: str | None = None
    holds: tuple[str, ...] | None = None  # the groups its sender may hold (None: any)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: str
    toc_group_id: str
    groups: tuple[TocGroup, ...]
    registered: bool  # groups come from the registry, not from toc_zero
    ttl: int
    created_at: float
    expires_at: float
    tek: str
    sealed_identity: bytes | None = field(repr=False)  # None once forgotten
    released_at: float | None = None
    applicant: str | None = None

    @property
    def quorum(self) -> int:
        """How many Tocs, at least, release the code: every group's quorum."""
        return sum(group.quorum for group in self.groups)

    @property
    def holders(self) -> int:
        """How many Tocs were dealt to the session's groups."""
        return sum(group.group_size for group in self.groups)


@dataclass(frozen=True, slots=True)
class SessionState:
    session: SessionRecord
    tocs: tuple[SealedToc, ...]

    def live_tocs(self) -> tuple[SealedToc, ...]:
        return tuple(toc for toc in self.tocs if toc.status != TocStatus.SET_ASIDE)


@dataclass(frozen=True, slots=True)
class Change:
    """What `decide` asks the store to do, atomically."""

    add: SealedToc | None = None
    marks: tuple[tuple[int, TocStatus, str | None], ...] = ()  # (seq, status, reason)
    released_at: float | None = None
    forget: bool = False  # drop the sealed identity and every ciphertext


class SessionStore(Protocol):
    """Where sessions live (`store_memory`, `store_sql`)."""

    def create(self, state: SessionState) -> None:
        """Store a new session and its first Toc (toc_zero), if any."""

    def read(self, session_id: str) -> SessionState | None:
        """The session as it is (no lock), or None."""

    def update(
        self, session_id: str, decide: Callable[[SessionState], tuple[Change, T]]
    ) -> T | None:
        """Lock the session, `decide`, apply the change, commit; return what
        `decide` returned, or None if there is no such session."""

    def sweep(self, now: float, keep_until: float) -> int:
        """Forget every session expired at `now`; delete those that expired
        before `keep_until`. Returns how many were deleted."""


class GroupRegistry(Protocol):
    """The dealt record: which groups were dealt together, with their real
    size and threshold."""

    def deal_of(self, group_id: str) -> tuple[TocGroup, ...] | None:
        """Every group of the deal `group_id` belongs to, or None."""


def deal_record(groups: Sequence[TocGroup]) -> tuple[TocGroup, ...]:
    """`groups` checked to be one deal: at least one, group_ids distinct."""
    record = tuple(groups)
    if not record or not all(isinstance(group, TocGroup) for group in record):
        raise QuorumError("a deal record is one TocGroup per dealt group")
    if len({group.group_id for group in record}) != len(record):
        raise QuorumError("a deal record names a group twice")
    return record


def applied(state: SessionState, change: Change) -> SessionState:
    """`state` after `change` (what the memory store keeps; the SQL store
    does the same in SQL)."""
    marks = {seq: (status, reason) for seq, status, reason in change.marks}
    tocs = []
    for toc in (*state.tocs, change.add) if change.add is not None else state.tocs:
        if toc.seq in marks:
            status, reason = marks[toc.seq]
            toc = replace(toc, status=status, reason=reason)
        if change.forget:
            toc = replace(toc, armored=None)
        tocs.append(toc)
    session = state.session
    if change.released_at is not None:
        session = replace(session, released_at=change.released_at)
    if change.forget:
        session = replace(session, sealed_identity=None)
    return SessionState(session, tuple(tocs))
