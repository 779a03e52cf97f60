"""Operators' MFA chains: after password and first code, the further TOTP
factors their role needs, run by `core.chain.MFAOrchestrator` with its state
in the central database (`chain_store.DbChainStore`).

Rules:
- The policy is the settings': the role's factor IDs (`admin_factors`,
  `operator_factors`), all of them, in `chain_mode` order (fixed, or drawn
  from `secrets.SystemRandom` for every attempt); window `totp_window`;
  `max_failures` failed steps within `lockout_seconds` lock the chain for
  `lockout_seconds`; an attempt lasts `chain_attempt_ttl`.
- `begin` opens an attempt, `LOGIN` (a login whose password and first code
  passed) or `STEP_UP` (an operator already logged in proving the factors
  again), and gives its token (random, stored as SHA-256) and the first
  factor's label. An operator has one attempt at a time: a new one ends the
  others.
- `step` checks one code. A login ends at its first failure with the one
  generic `InvalidCredentials` (the operator starts again from the
  password); only a complete chain logs in. A step-up keeps its token after a
  wrong code and restarts at its first factor (the seed's RESET); a step out
  of order is `ChainBreach` (409), a locked chain `LockedOut` (429).
- Factors not enrolled (confirmed) yet: `MissingEnrollment` (400) naming
  them; at a login, the generic refusal (the audit trail says why).
- Audited: a completed login (`operator_login`), every failed login step
  (`operator_login_failed`), every step-up's end (`step_up`,
  `step_up_failed`), each with the precise reason; never a code.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from sqlalchemy import delete, select

from shimmfa.central.chain_store import ALGORITHM, DIGITS, PERIOD, DbChainStore, subject_of
from shimmfa.central.context import Central
from shimmfa.central.credentials import new_token, token_hash
from shimmfa.central.models import ChainAttempt, Operator, OperatorFactor
from shimmfa.central.problems import (
    ChainBreach,
    InvalidCredentials,
    LockedOut,
    MissingEnrollment,
    NotFound,
)
from shimmfa.central.records import record
from shimmfa.core.chain import FactorDefinition, MFAOrchestrator, Policy, Result
from shimmfa.errors import MFAChainBreached

__all__ = ["LOGIN", "STEP_UP", "Pending", "begin", "orchestrator", "step"]

LOGIN, STEP_UP = "login", "step_up"
ATTEMPT_PREFIX = "smc_"
_RNG = secrets.SystemRandom()


@dataclass(frozen=True, slots=True)
class Pending:
    """An open attempt: the client sends `token` with each further code."""

    token: str = field(repr=False)
    next_factor_label: str
    steps: int
    expires_at: float


def orchestrator(central: Central, operator: Operator) -> MFAOrchestrator | None:
    """The chain `operator`'s role needs; None if it needs no further factor."""
    s = central.settings
    wanted = s.factors_for(operator.role)
    if not wanted:
        return None
    with central.sessions() as session:
        rows = {
            row.factor_id: row
            for row in session.scalars(
                select(OperatorFactor).where(OperatorFactor.operator_id == operator.operator_id)
            )
        }
    missing = [f for f in wanted if f not in rows or rows[f].totp_secret is None]
    if missing:
        raise MissingEnrollment(missing)
    factors = [
        FactorDefinition(f, rows[f].label, algorithm=ALGORITHM, digits=DIGITS, period=PERIOD)
        for f in wanted
    ]
    return MFAOrchestrator(
        Policy(s.chain_mode, len(factors), factors, s.totp_window),
        {f: str(rows[f].totp_secret) for f in wanted},
        clock=central.clock,
        rng=_RNG,
        store=DbChainStore(central),
        subject=subject_of(operator.operator_id),
        max_failures=s.max_failures,
        lockout_seconds=s.lockout_seconds,
        attempt_ttl=s.chain_attempt_ttl,
    )


def begin(central: Central, operator: Operator, purpose: str) -> Pending | None:
    """Open an attempt of `operator`'s chain; None if their role needs none."""
    chain = orchestrator(central, operator)
    if chain is None:
        return None
    if chain.is_locked_out:
        raise LockedOut(chain.locked_until - central.clock())
    order = chain.initialize_attempt()
    token, now = new_token(ATTEMPT_PREFIX), central.clock()
    expires = now + central.settings.chain_attempt_ttl
    with central.sessions.begin() as session:
        session.execute(
            delete(ChainAttempt).where(
                (ChainAttempt.operator_id == operator.operator_id) | (ChainAttempt.expires_at < now)
            )
        )
        session.add(
            ChainAttempt(
                token_hash=token_hash(token),
                operator_id=operator.operator_id,
                purpose=purpose,
                expires_at=expires,
            )
        )
    return Pending(token, order[0].label, len(order), expires)


@dataclass(frozen=True, slots=True)
class Stepped:
    """One step's outcome: the operator, the orchestrator's `Result`, and
    for a RESET the first factor's label of the restarted attempt."""

    operator: Operator
    result: Result
    restart_label: str = ""


def step(
    central: Central,
    token: str,
    purpose: str,
    code: str,
    *,
    factor_id: str | None = None,
    operator_id: str | None = None,
) -> Stepped:
    """Check `code` for the attempt `token` (of `operator_id`, for a step-up)."""
    login = purpose == LOGIN
    operator = _attempt_operator(central, token, purpose, operator_id)
    if operator is None:
        if login:
            _audit_login(central, "-", False, "chain: no such login attempt (expired?)")
            raise InvalidCredentials()
        raise NotFound("no such attempt: it ended or expired; start another")
    who = operator.operator_id
    try:
        chain = None if operator.disabled else orchestrator(central, operator)
    except MissingEnrollment as exc:
        _end(central, token)
        if login:
            _audit_login(central, who, False, f"chain: {exc}")
            raise InvalidCredentials() from None
        raise
    if chain is None:
        _end(central, token)
        _audit_login(central, who, False, "chain: no chain for this operator now")
        raise InvalidCredentials()
    if chain.is_locked_out:
        _fail(central, token, who, login, "chain locked out")
        raise InvalidCredentials() if login else LockedOut(chain.locked_until - central.clock())
    try:
        result = chain.verify_step(code, factor_id)
    except MFAChainBreached as exc:
        if login:
            _fail(central, token, who, login, f"chain: {exc}")
            raise InvalidCredentials() from None
        raise ChainBreach(str(exc)) from None
    if result.is_complete:
        _end(central, token)
        if login:
            _audit_login(central, who, True, "password, code and every further factor")
        else:
            _audit(central, "step_up", who, "every factor of the chain")
        return Stepped(operator, result)
    if result.success:
        return Stepped(operator, result)
    _fail(central, token, who, login, result.detail)
    if login:
        raise InvalidCredentials()
    if chain.is_locked_out:
        raise LockedOut(chain.locked_until - central.clock())
    first = chain.current_factor
    return Stepped(operator, result, first.label if first is not None else "")


def _attempt_operator(
    central: Central, token: str, purpose: str, operator_id: str | None
) -> Operator | None:
    if not isinstance(token, str) or not token.startswith(ATTEMPT_PREFIX) or len(token) > 128:
        return None
    with central.sessions() as session:
        attempt = session.get(ChainAttempt, token_hash(token))
        if (
            attempt is None
            or attempt.purpose != purpose
            or attempt.expires_at <= central.clock()
            or (operator_id is not None and attempt.operator_id != operator_id)
        ):
            return None
        return session.get(Operator, attempt.operator_id)


def _end(central: Central, token: str) -> None:
    with central.sessions.begin() as session:
        session.execute(delete(ChainAttempt).where(ChainAttempt.token_hash == token_hash(token)))


def _fail(central: Central, token: str, who: str, login: bool, detail: str) -> None:
    if login:
        _end(central, token)
        _audit_login(central, who, False, f"chain: {detail}")
    else:
        _audit(central, "step_up_failed", who, detail)


def _audit_login(central: Central, who: str, ok: bool, detail: str) -> None:
    _audit(central, "operator_login" if ok else "operator_login_failed", who, detail)


def _audit(central: Central, kind: str, who: str, detail: str) -> None:
    with central.sessions.begin() as session:
        record(
            session,
            kind,
            now=central.clock(),
            fields={"operator_id": who[:128], "detail": detail[:256]},
            forward=central.forward,
        )
