"""Operators' further TOTP factors: enrolment, confirmation, listing.

Rules:
- A factor is named by its ID (`settings.FACTOR_ID`, e.g. `second`); the
  settings say which IDs each role's login needs (`admin_factors`,
  `operator_factors`). Its secret is made here (`os.urandom`) and shown once,
  as an otpauth URI, to whoever enrolled it.
- An operator enrols their own factors; an admin may enrol anyone's. API
  tokens enrol nothing (a factor belongs to a person's login).
- A new secret waits, pending, until one current code confirms it; then it
  replaces the confirmed one, which worked until then (a botched
  re-enrolment never locks anyone out). Confirming raises the factor's replay
  floor to the confirming code's step: that code never logs in.
- Replacing a confirmed factor needs re-authentication: the caller's
  password and a current code of their first factor, checked like a login
  (replay floor, lockout). Without them: 403 `reauthentication_required`.
- Every enrolment and confirmation is audited; no secret or code is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from shimmfa.central.access import Principal
from shimmfa.central.chain_store import ALGORITHM, DIGITS, PERIOD, DbChainStore, subject_of
from shimmfa.central.context import Central
from shimmfa.central.models import Operator, OperatorFactor
from shimmfa.central.operators import LoginVerifier
from shimmfa.central.problems import Forbidden, Invalid, NotFound
from shimmfa.central.records import record
from shimmfa.central.settings import FACTOR_ID
from shimmfa.core.chain_state import ChainState
from shimmfa.core.totp import (
    decode_secret,
    generate_totp_secret,
    matching_counter,
    provisioning_uri,
    wellformed_code,
)

__all__ = ["Enrolment", "FactorView", "confirm_factor", "enrol_factor", "list_factors"]

ISSUER = "ShimMFA central"


@dataclass(frozen=True, slots=True)
class FactorView:
    factor_id: str
    label: str
    active: bool
    pending: bool
    created_at: float
    confirmed_at: float | None


@dataclass(frozen=True, slots=True)
class Enrolment:
    factor_id: str
    label: str
    secret: str = field(repr=False)
    uri: str = field(repr=False)
    replaces: bool  # a confirmed factor keeps working until this is confirmed


def _check_allowed(caller: Principal, operator_id: str) -> None:
    if caller.kind != "operator":
        raise Forbidden("factors belong to operators' logins: log in as one", "operators_only")
    if caller.name != operator_id and caller.role != "admin":
        raise Forbidden("only the operator themselves or an admin may do this", "forbidden")


def _operator(session: Session, operator_id: str) -> Operator:
    operator = session.get(Operator, operator_id)
    if operator is None:
        raise NotFound(f"no operator {operator_id!r}")
    return operator


def list_factors(central: Central, caller: Principal, operator_id: str) -> list[FactorView]:
    _check_allowed(caller, operator_id)
    with central.sessions() as session:
        _operator(session, operator_id)
        rows = session.scalars(
            select(OperatorFactor)
            .where(OperatorFactor.operator_id == operator_id)
            .order_by(OperatorFactor.factor_id)
        )
        return [
            FactorView(
                row.factor_id,
                row.label,
                row.totp_secret is not None,
                row.pending_secret is not None,
                row.created_at,
                row.confirmed_at,
            )
            for row in rows
        ]


def enrol_factor(
    central: Central,
    verifier: LoginVerifier,
    caller: Principal,
    operator_id: str,
    factor_id: str,
    *,
    label: str | None = None,
    password: str | None = None,
    code: str | None = None,
    secret: str | None = None,
    trusted: bool = False,
) -> Enrolment:
    """A new pending secret for `factor_id` of `operator_id`. The CLI, run
    on the central server itself, passes `trusted` (no re-authentication)
    and may pass `secret` (for scripts)."""
    _check_allowed(caller, operator_id)
    if not isinstance(factor_id, str) or not FACTOR_ID.fullmatch(factor_id):
        raise Invalid("a factor ID is 1-32 of a-z, 0-9, '-' and '_'", "bad_factor_id")
    label = factor_id if label is None else label.strip()
    if not label or len(label) > 64 or not label.isprintable():
        raise Invalid("a factor label is 1 to 64 printable characters", "bad_label")
    with central.sessions() as session:
        target = _operator(session, operator_id)
        existing = session.get(OperatorFactor, (operator_id, factor_id))
        replaces = existing is not None and existing.totp_secret is not None
        me = session.get(Operator, caller.name)
    if replaces and not trusted:
        _reauthenticate(central, verifier, caller, me, password, code)
    secret = secret or generate_totp_secret()
    try:
        decode_secret(secret)
    except ValueError:
        raise Invalid("the TOTP secret is not base32 text", "bad_secret") from None
    now = central.clock()
    with central.sessions.begin() as session:
        row = session.get(OperatorFactor, (operator_id, factor_id), with_for_update=True)
        if row is None:
            row = OperatorFactor(operator_id=operator_id, factor_id=factor_id, totp_secret=None)
            session.add(row)
        row.label = label
        row.pending_secret = secret
        row.created_at = now
        record(
            session,
            "factor_enrolled",
            now=now,
            fields={
                "by": caller.name,
                "operator_id": operator_id,
                "factor_id": factor_id,
                "replaces": replaces,
            },
            forward=central.forward,
        )
    uri = provisioning_uri(f"{target.operator_id} ({label})", secret, issuer=ISSUER)
    return Enrolment(factor_id, label, secret, uri, replaces)


def _reauthenticate(
    central: Central,
    verifier: LoginVerifier,
    caller: Principal,
    me: Operator | None,
    password: str | None,
    code: str | None,
) -> None:
    if password is None or code is None:
        raise Forbidden(
            "this factor is enrolled and confirmed: replacing it needs your password and "
            "a current code (re-authentication)",
            "reauthentication_required",
        )
    outcome = verifier.verify(me, caller.name, password, code)
    if not outcome.ok:
        with central.sessions.begin() as session:
            record(
                session,
                "operator_login_failed",
                now=central.clock(),
                fields={
                    "operator_id": caller.name,
                    "detail": f"re-authentication: {outcome.detail}"[:256],
                },
                forward=central.forward,
            )
        raise Forbidden("re-authentication failed", "reauthentication_failed")


def confirm_factor(
    central: Central, caller: Principal, operator_id: str, factor_id: str, code: str
) -> FactorView:
    """Make the pending secret of `factor_id` the confirmed one, given one
    of its current codes."""
    _check_allowed(caller, operator_id)
    with central.sessions() as session:
        row = session.get(OperatorFactor, (operator_id, str(factor_id)[:32]))
        pending = row.pending_secret if row is not None else None
    if pending is None:
        raise NotFound(f"no pending enrolment of factor {factor_id!r} for {operator_id!r}")
    now = central.clock()
    window = central.settings.totp_window
    given = wellformed_code(code, DIGITS)
    counter = None
    if given is not None:
        key = decode_secret(pending)
        counter = matching_counter(key, given, int(now // PERIOD), window, DIGITS, ALGORITHM)
    store = DbChainStore(central)
    subject = subject_of(operator_id)
    if counter is None or counter <= store.get(subject).floor(factor_id):
        raise Invalid("that code does not match the new factor; check the app's clock", "bad_code")
    step = counter

    def raise_floor(state: ChainState) -> tuple[ChainState, None]:
        return state.with_floor(factor_id, max(state.floor(factor_id), step)), None

    store.update(subject, raise_floor)
    with central.sessions.begin() as session:
        row = session.get(OperatorFactor, (operator_id, factor_id), with_for_update=True)
        if row is None or row.pending_secret != pending:
            raise NotFound(f"the enrolment of {factor_id!r} changed meanwhile: enrol again")
        row.totp_secret, row.pending_secret, row.confirmed_at = pending, None, now
        record(
            session,
            "factor_confirmed",
            now=now,
            fields={"by": caller.name, "operator_id": operator_id, "factor_id": factor_id},
            forward=central.forward,
        )
        view = FactorView(factor_id, row.label, True, False, row.created_at, now)
    return view
