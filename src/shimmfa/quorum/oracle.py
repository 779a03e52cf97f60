"""The oracle: farMFA's session workflow with its holes closed. No HTTP
here (`api` maps this to farMFA's endpoints); the store, the dealt-group
registry, the clock and the random source are arguments.

Rules of this module:

- `open_session(toc_zero, ttl)`: ttl is an integer 60..86400 (farMFA's
  default 60) and the session expires `ttl` seconds after it opened
  (`expires_at`); every request after that answers EXPIRED (410). The
  threshold is the dealt record's when toc_zero's group is registered
  (`GroupRegistry.deal_of`), and toc_zero must then match its group exactly
  (else WRONG_GROUP): the applicant cannot lower it. With no record, the
  session trusts toc_zero's group (farMFA's behaviour) unless the oracle
  `require_registered` (UNKNOWN_GROUP); a clear Toc (the 1-of-n group of
  an AND deal) is never trusted alone. The session id is 10 random bytes in
  base32; the TEK/KEK pair is `session_keys`'; toc_zero is kept sealed to the
  TEK like every other Toc. `open_for_deal(group_id, ttl)` opens a session
  for a registered deal with no toc_zero at all (the applicant holds no
  Toc, or sends theirs sealed like everyone else): the central service's
  way, so that no Toc in clear ever reaches it.
- AND deals: a session is keyed by the deal of toc_zero's group. Holders of
  every group of that deal send their Tocs to the same session (same TEK);
  the code needs every group's quorum (`core.toc.quorum_reached`) and is
  made from the groups' pieces added together (`core.toc_deal.combine_groups`).
- `submit(session_id, armored, approver)`: the oracle cannot read a Toc
  before the applicant presents the KEK (that is the point of the scheme:
  its store alone opens nothing). So a submission is checked for what can
  be seen: the armor of an age file (MALFORMED), the same ciphertext sent
  twice (DUPLICATE), no more Tocs than the deal has holders (TOO_MANY), an
  open session (EXPIRED, RELEASED). The approver (the authenticated
  operator, when the central service passes one) is recorded with it, and
  what the host says the approver may hold is enforced (`approvers`: a
  Toc of none of their groups is NOT_PERMITTED, 403; a second Toc from one
  name a DUPLICATE; at release a Toc of a group its sender does not hold
  is set aside as WRONG_GROUP; only a named applicant gets the code).
- `release(session_id, kek)`: under the session's lock, the KEK opens the
  identity (BAD_KEK, 400), then every Toc is opened and admitted in
  submission order with `core.toc.check_admissible` against the session's
  groups: one that does not open (UNDECRYPTABLE), is not a Toc, is of
  another group (WRONG_GROUP) or repeats a share's x tag (DUPLICATE: found
  by share, not ciphertext) is set aside for good and counts no more. If
  every group has its quorum, the secret is rebuilt (a MISMATCH if the Tocs
  do not combine, e.g. fewer than the real threshold), the current TOTP
  (SHA1, 6 digits, 30 s) is released, and in the same commit the session
  is closed and forgets its sealed identity and ciphertexts: a second
  request is RELEASED (410). Otherwise the refusal names the first Toc set
  aside (its status), or says what each group still lacks (BELOW_THRESHOLD,
  409), and the session stays open for more Tocs.
- Sessions expired for `retention` seconds are deleted when sessions are
  opened (then 404); until then they answer 410 and hold no secret.
- Errors are `QuorumError`s whose reason is a `Refusal`. No message, repr
  or log line holds a share, the secret, a KEK or an identity; the code
  itself is only in the returned `TotpCode`.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shimmfa.core.toc import (
    Toc,
    TocGroup,
    TocRejection,
    check_admissible,
    parse_toc,
    quorum_reached,
)
from shimmfa.core.toc_deal import combine_groups
from shimmfa.core.totp import decode_secret, totp_code
from shimmfa.errors import QuorumError, TocError
from shimmfa.quorum import age_tocs
from shimmfa.quorum.approvers import (
    Approver,
    approver_of,
    check_release,
    groups_held,
    sent_already,
)
from shimmfa.quorum.records import (
    Change,
    GroupRegistry,
    Refusal,
    SealedToc,
    SessionRecord,
    SessionState,
    SessionStore,
    TocStatus,
)
from shimmfa.quorum.refusals import (
    DEFAULT_TTL,
    MAX_TTL,
    MIN_TTL,
    TOC_REFUSALS,
    below,
    check_sender,
    check_ttl,
    ciphertext_again,
    closed,
    expired,
    full,
    not_found,
    not_own,
    problem,
    unknown_group,
)
from shimmfa.quorum.session_keys import new_session_keys, open_identity
from shimmfa.quorum.views import (
    AuditHook,
    OracleEvent,
    SessionCredentials,
    SessionView,
    TotpCode,
    view_of,
)

__all__ = ["DEFAULT_TTL", "MAX_TTL", "MIN_TTL", "Oracle", "valid_session_id"]

TOTP_PERIOD, TOTP_DIGITS = 30, 6
RETENTION = 7 * 86400.0
_SESSION_ID = re.compile(r"[A-Z2-7]{16}")
log = logging.getLogger("shimmfa.quorum")


def valid_session_id(value: object) -> bool:
    return isinstance(value, str) and _SESSION_ID.fullmatch(value) is not None


class Oracle:
    """farMFA's oracle over a `SessionStore` (see the module rules)."""

    def __init__(
        self,
        store: SessionStore,
        registry: GroupRegistry | None = None,
        *,
        clock: Callable[[], float] = time.time,
        randbytes: Callable[[int], bytes] = os.urandom,
        require_registered: bool = False,
        audit: AuditHook | None = None,
        retention: float = RETENTION,
    ) -> None:
        if require_registered and registry is None:
            raise QuorumError("require_registered needs a registry of dealt groups")
        self._store = store
        self._registry = registry
        self._clock = clock
        self._randbytes = randbytes
        self._require_registered = require_registered
        self._audit = audit
        self._retention = retention

    # -- open --------------------------------------------------------------------------------

    def open_session(
        self,
        toc_zero: Toc | Mapping[str, Any] | str,
        ttl: object = DEFAULT_TTL,
        applicant: str | Approver | None = None,
    ) -> SessionCredentials:
        """A new session for the applicant holding `toc_zero`: the TEK to
        hand the constituents and the KEK (returned only here)."""
        seconds = check_ttl(ttl)
        try:
            toc = toc_zero if isinstance(toc_zero, Toc) else parse_toc(toc_zero)
        except TocError as exc:
            raise QuorumError(f"toc_zero: {exc}", Refusal.MALFORMED) from None
        who = approver_of(applicant)
        groups, registered = self._groups_of(toc)
        return self._open(toc.group_id, groups, registered, seconds, who, toc)

    def open_for_deal(
        self, group_id: str, ttl: object = DEFAULT_TTL, applicant: str | Approver | None = None
    ) -> SessionCredentials:
        """A new session for the registered deal `group_id` belongs to, for an
        applicant who holds no Toc of it (or will send theirs sealed like
        everyone else): no Toc in clear ever reaches the oracle. Not one of
        farMFA's endpoints; the central service's break-glass requests use it."""
        seconds = check_ttl(ttl)
        dealt = self._registry.deal_of(group_id) if self._registry is not None else None
        if dealt is None:
            raise unknown_group(group_id)
        return self._open(group_id, tuple(dealt), True, seconds, approver_of(applicant), None)

    def _open(
        self,
        group_id: str,
        groups: tuple[TocGroup, ...],
        registered: bool,
        ttl: int,
        who: Approver | None,
        toc: Toc | None,
    ) -> SessionCredentials:
        now = self._clock()
        self._store.sweep(now, now - self._retention)
        keys = new_session_keys(self._randbytes)
        session = SessionRecord(
            id=base64.b32encode(self._randbytes(10)).decode("ascii"),
            toc_group_id=group_id,
            groups=groups,
            registered=registered,
            ttl=ttl,
            created_at=now,
            expires_at=now + ttl,
            tek=keys.tek,
            sealed_identity=keys.sealed,
            applicant=who.name if who is not None else None,
        )
        first: tuple[SealedToc, ...] = ()
        if toc is not None:
            holds = groups_held(who, session)
            if holds is not None and toc.group_id not in holds:
                raise not_own(who, toc)
            sealed = age_tocs.seal_toc(toc, keys.tek)
            first = (SealedToc(0, sealed, _digest(sealed), session.applicant, now, holds=holds),)
        state = SessionState(session, first)
        self._store.create(state)
        self._emit("session_opened", session, now, session.applicant)
        return SessionCredentials(view_of(state), keys.tek, keys.kek)

    def _groups_of(self, toc: Toc) -> tuple[tuple[TocGroup, ...], bool]:
        dealt = self._registry.deal_of(toc.group_id) if self._registry is not None else None
        if dealt is not None:
            try:
                check_admissible(toc, [], dealt)
            except TocError:
                raise QuorumError(
                    f"toc_zero does not match group {toc.group_id} as it was dealt "
                    "(its size or threshold differs from the dealt record)",
                    Refusal.WRONG_GROUP,
                ) from None
            return tuple(dealt), True
        if self._require_registered:
            raise unknown_group(toc.group_id)
        if toc.clear:
            raise QuorumError(
                f"toc_zero is a 1-of-n Toc of an AND deal: register the deal (group "
                f"{toc.group_id}) with the oracle first",
                Refusal.UNKNOWN_GROUP,
            )
        return (toc.group,), False

    # -- read ------------------------------------------------------------------------------------

    def session(self, session_id: str) -> SessionView:
        state = self._store.read(session_id) if valid_session_id(session_id) else None
        if state is None:
            raise not_found()
        if self._clock() >= state.session.expires_at:
            raise expired(state.session)
        return view_of(state)

    # -- submit ----------------------------------------------------------------------------------

    def submit(
        self, session_id: str, armored: str, approver: str | Approver | None = None
    ) -> SessionView:
        """Add a constituent's sealed Toc; returns the session as it now is."""
        try:
            if not isinstance(armored, str):
                raise QuorumError(f"a sealed Toc is text, not {type(armored).__name__}")
            payload = age_tocs.armored_payload(armored)
        except QuorumError as exc:
            raise QuorumError(f"encrypted_toc: {exc}", Refusal.MALFORMED) from None
        digest = hashlib.sha256(payload).hexdigest()
        who = approver_of(approver)
        name = who.name if who is not None else None
        now = self._clock()

        def decide(state: SessionState) -> tuple[Change, SessionState | QuorumError]:
            shut = closed(state.session, now)
            if shut is not None:
                return Change(forget=shut.reason == Refusal.EXPIRED), shut
            try:
                holds = groups_held(who, state.session)
            except QuorumError as exc:
                return Change(), exc
            refusal = ciphertext_again(state, digest) or sent_already(who, state) or full(state)
            if refusal is not None:
                return Change(), refusal
            seq = max((toc.seq for toc in state.tocs), default=-1) + 1
            added = SealedToc(seq, armored, digest, name, now, holds=holds)
            return Change(add=added), SessionState(state.session, (*state.tocs, added))

        outcome = self._store.update(session_id, decide) if valid_session_id(session_id) else None
        if outcome is None:
            raise not_found()
        if isinstance(outcome, QuorumError):
            if outcome.reason in (Refusal.NOT_PERMITTED, Refusal.DUPLICATE, Refusal.TOO_MANY):
                self._refused(session_id, now, name, outcome.reason)
            raise outcome
        self._emit("toc_submitted", outcome.session, now, name)
        return view_of(outcome)

    # -- release ---------------------------------------------------------------------------------

    def release(
        self, session_id: str, kek: object, caller: str | Approver | None = None
    ) -> TotpCode:
        """The current code, once, if every group has its quorum."""
        now = self._clock()
        who = approver_of(caller)

        def decide(state: SessionState) -> tuple[Change, _Released]:
            session = state.session
            refusal = closed(session, now) or check_release(who, session)
            if refusal is not None:
                forget = refusal.reason == Refusal.EXPIRED
                return Change(forget=forget), _Released(session, refusal)
            try:
                identity = open_identity(session.sealed_identity or b"", kek, session.tek)
            except QuorumError as exc:
                return Change(), _Released(session, QuorumError(str(exc), Refusal.BAD_KEK))
            admitted: list[Toc] = []
            used: list[SealedToc] = []
            refused: list[tuple[SealedToc, QuorumError]] = []
            for sealed in state.live_tocs():
                try:
                    toc = age_tocs.open_toc(sealed.armored, [identity])
                    check_sender(sealed, toc)
                    check_admissible(toc, admitted, session.groups)
                except (QuorumError, TocError) as exc:
                    refused.append((sealed, problem(sealed, exc)))
                    continue
                admitted.append(toc)
                used.append(sealed)
            marks: tuple[tuple[int, TocStatus, str | None], ...] = tuple(
                (toc.seq, TocStatus.SET_ASIDE, why.reason) for toc, why in refused
            )
            outcome: TotpCode | QuorumError
            if not quorum_reached(admitted, session.groups):
                outcome = refused[0][1] if refused else below(session, admitted)
                return Change(marks=marks), _Released(session, outcome, refused)
            try:
                secret = combine_groups(admitted, session.groups)
            except TocError as exc:
                reason = TOC_REFUSALS[TocRejection(exc.reason)]
                outcome = QuorumError(f"the Tocs do not combine: {exc}", reason)
                return Change(marks=marks), _Released(session, outcome, refused)
            counter = int(now) // TOTP_PERIOD
            outcome = TotpCode(
                totp_code(decode_secret(secret), counter, TOTP_DIGITS, "SHA1"),
                totp_expires_at=(counter + 1) * TOTP_PERIOD,
                session_expires_at=session.expires_at,
                approvers=tuple(toc.approver for toc in used),
            )
            marks += tuple((toc.seq, TocStatus.COUNTED, None) for toc in used)
            change = Change(marks=marks, released_at=now, forget=True)
            return change, _Released(session, outcome, refused)

        done = self._store.update(session_id, decide) if valid_session_id(session_id) else None
        if done is None:
            raise not_found()
        for sealed, why in done.refused:
            self._emit("toc_set_aside", done.session, now, sealed.approver, why.reason)
        if isinstance(done.outcome, QuorumError):
            raise done.outcome
        approvers = ", ".join(approver or "-" for approver in done.outcome.approvers)
        self._emit("code_released", done.session, now, None, approvers)
        return done.outcome

    def _refused(self, session_id: str, at: float, approver: str | None, reason: str) -> None:
        state = self._store.read(session_id)
        if state is not None:
            self._emit("toc_refused", state.session, at, approver, reason)

    def _emit(
        self, kind: str, session: SessionRecord, at: float, approver: str | None, detail: str = ""
    ) -> None:
        if self._audit is None:
            return
        event = OracleEvent(
            kind, session.id, at, tuple(g.group_id for g in session.groups), approver, detail
        )
        try:
            self._audit(event)
        except Exception:  # the store has the record; an audit sink failing is logged
            log.exception("the quorum audit hook failed on a %s event", kind)


# -- helpers -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Released:
    session: SessionRecord
    outcome: TotpCode | QuorumError
    refused: list[tuple[SealedToc, QuorumError]] = field(default_factory=list)


def _digest(armored: str) -> str:
    return hashlib.sha256(age_tocs.armored_payload(armored)).hexdigest()
