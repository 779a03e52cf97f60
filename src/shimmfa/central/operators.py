"""Operators: creation, and login with password and TOTP.

Rules:
- Passwords are argon2id; the TOTP code is checked by `core.totp.TotpGate`
  over `DbAuthStateStore`, so replay (monotonic counter), lockout and the
  server-fixed window are the shim gate's rules exactly, and durable.
- A login answers one thing on any failure (`InvalidCredentials`): unknown
  operator, wrong password, wrong, replayed or malformed code, lockout. It
  costs the same: an unknown operator's password is checked against a dummy
  hash, and the gate is asked in every case. A wrong password is a failed
  attempt for the lockout (the code is not tried: a stolen code must not
  reset the count). The precise reason goes to the audit trail only.
- `LoginVerifier` decides password and first code; a role that needs
  further factors then gets an MFA chain attempt (`chains.begin`): the
  login completes, and is audited as one, only when the chain does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from shimmfa.central.access import check_role
from shimmfa.central.chains import LOGIN, Pending, begin
from shimmfa.central.context import Central
from shimmfa.central.credentials import check_dummy, check_password, hash_password
from shimmfa.central.models import AuthStateRow, Operator
from shimmfa.central.problems import (
    Conflict,
    Invalid,
    InvalidCredentials,
    LockedOut,
    MissingEnrollment,
)
from shimmfa.central.records import record
from shimmfa.core.totp import (
    AuthState,
    TechnicianRecord,
    TotpGate,
    decode_secret,
    generate_totp_secret,
)

__all__ = [
    "DbAuthStateStore",
    "LoginOutcome",
    "LoginVerifier",
    "TotpLogin",
    "create_operator",
    "login",
]

T = TypeVar("T")


class DbAuthStateStore:
    """`core.totp.AuthStateStore` on the central database: each update is one
    transaction holding the state's row lock."""

    def __init__(self, central: Central) -> None:
        self._central = central

    def update(self, key: str, change: Callable[[AuthState], tuple[AuthState, T]]) -> T:
        insert = pg_insert if self._central.dialect == "postgresql" else sqlite_insert
        with self._central.sessions.begin() as session:
            session.execute(
                insert(AuthStateRow)
                .values(_row_values(key, AuthState()))
                .on_conflict_do_nothing(index_elements=["key"])
            )
            row = session.get(AuthStateRow, key, with_for_update=True)
            if row is None:  # pragma: no cover - inserted just above
                raise RuntimeError("auth state row vanished")
            state = AuthState(
                row.last_counter, row.failures, row.failures_since, row.locked_until, row.attempts
            )
            new, result = change(state)
            for name, value in _row_values(key, new).items():
                setattr(row, name, value)
        return result

    def get(self, key: str) -> AuthState:
        with self._central.sessions() as session:
            row = session.get(AuthStateRow, key)
            if row is None:
                return AuthState()
            return AuthState(
                row.last_counter, row.failures, row.failures_since, row.locked_until, row.attempts
            )


def _row_values(key: str, state: AuthState) -> dict[str, object]:
    return {
        "key": key,
        "last_counter": state.last_counter,
        "failures": state.failures,
        "failures_since": state.failures_since,
        "locked_until": state.locked_until,
        "attempts": state.attempts,
    }


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    ok: bool
    detail: str  # the precise reason: audit trail only


class LoginVerifier(Protocol):
    """Decides a login; `operator` is None for an unknown ID."""

    def verify(
        self, operator: Operator | None, operator_id: str, password: str, code: str
    ) -> LoginOutcome: ...


class TotpLogin:
    """Password (argon2id) then one TOTP code through `TotpGate`."""

    def __init__(self, central: Central) -> None:
        self._central = central
        self._store = DbAuthStateStore(central)

    def verify(
        self, operator: Operator | None, operator_id: str, password: str, code: str
    ) -> LoginOutcome:
        s = self._central.settings
        users = {}
        if operator is not None and not operator.disabled:
            users[operator_id] = TechnicianRecord(operator_id, operator.totp_secret)
            password_ok = check_password(operator.password_hash, password)
        else:
            check_dummy(password)
            password_ok = False
        gate = TotpGate(
            users,
            time_source=self._central.clock,
            window=s.totp_window,
            max_failures=s.max_failures,
            lockout_seconds=s.lockout_seconds,
            store=self._store,
        )
        outcome = gate.authenticate(operator_id, code if password_ok else "")
        if password_ok:
            return LoginOutcome(outcome.authenticated, f"{outcome.result}: {outcome.detail}")
        if not users:
            return LoginOutcome(False, "unknown or disabled operator")
        return LoginOutcome(False, f"wrong password ({outcome.result}: {outcome.detail})")


def login(
    central: Central, verifier: LoginVerifier, operator_id: str, password: str, code: str
) -> tuple[Operator, Pending | None]:
    """The operator, and the chain attempt still to pass if their role needs
    further factors (`chains`); or InvalidCredentials. Audited either way."""
    valid_id = isinstance(operator_id, str) and 0 < len(operator_id) <= 64
    with central.sessions() as session:
        operator = session.get(Operator, operator_id) if valid_id else None
    outcome = verifier.verify(operator, operator_id if valid_id else "-", password, code)
    pending = None
    if outcome.ok and operator is not None:
        try:
            pending = begin(central, operator, LOGIN)
        except (MissingEnrollment, LockedOut) as exc:
            outcome = LoginOutcome(False, f"chain: {exc}")
    if pending is None:
        now = central.clock()
        with central.sessions.begin() as session:
            record(
                session,
                "operator_login" if outcome.ok else "operator_login_failed",
                now=now,
                fields={"operator_id": str(operator_id)[:128], "detail": outcome.detail[:256]},
                forward=central.forward,
            )
    if not outcome.ok or operator is None:
        raise InvalidCredentials()
    return operator, pending


def create_operator(
    central: Central,
    operator_id: str,
    *,
    role: str,
    password: str,
    totp_secret: str | None = None,
    actor: str,
) -> tuple[Operator, str]:
    """The new operator and its TOTP secret (base32), shown once."""
    check_role(role)
    if not operator_id or len(operator_id) > 64 or not operator_id.isprintable():
        raise Invalid("an operator ID is 1 to 64 printable characters")
    if any(ch.isspace() for ch in operator_id):
        raise Invalid("an operator ID has no spaces")
    try:
        hashed = hash_password(password)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    secret = totp_secret or generate_totp_secret()
    try:
        decode_secret(secret)
    except ValueError:
        raise Invalid("the TOTP secret is not base32 text") from None
    now = central.clock()
    operator = Operator(
        operator_id=operator_id,
        role=role,
        password_hash=hashed,
        totp_secret=secret,
        created_at=now,
        disabled=False,
    )
    try:
        with central.sessions.begin() as session:
            session.add(operator)
            session.flush()
            record(
                session,
                "operator_created",
                now=now,
                fields={"by": actor, "operator_id": operator_id, "role": role},
                forward=central.forward,
            )
    except IntegrityError:
        raise Conflict(f"operator {operator_id!r} exists already", "exists") from None
    return operator, secret
