"""Who is calling: roles, API tokens and operators' web sessions.

Rules:
- Four roles: `admin`, `clinical_engineering`, `infosec`, `auditor`. What
  each may do is decided in one place, the API's `require` dependency.
- An API token (`smt_...`) is shown once by `token create`, stored as its
  SHA-256, and works until revoked. Revoking is immediate.
- A web session is made by a login (`operators.login`): a random cookie
  token and a CSRF token, both stored hashed; it ends at `session_ttl`
  after the login, after `session_idle` without use, or at logout.
- Lookups never say whether a token existed: unknown, revoked and expired
  are all `Unauthenticated`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from shimmfa.central.context import Central
from shimmfa.central.credentials import (
    API_TOKEN_PREFIX,
    MAX_TOKEN_CHARS,
    SESSION_PREFIX,
    new_token,
    same_hash,
    token_hash,
)
from shimmfa.central.models import ApiToken, Operator, WebSession
from shimmfa.central.problems import Conflict, Invalid, NotFound, Unauthenticated
from shimmfa.central.records import record

__all__ = [
    "ROLES",
    "NewSession",
    "Principal",
    "create_token",
    "end_session",
    "list_tokens",
    "principal_for_session",
    "principal_for_token",
    "revoke_token",
    "start_session",
]

ROLES = ("admin", "clinical_engineering", "infosec", "auditor")


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: an operator (web session) or an API token."""

    kind: str  # "operator" or "token"
    name: str
    role: str
    session_hash: str | None = None
    csrf_hash: str | None = None

    @property
    def actor(self) -> str:
        """How the audit trail names it."""
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True, slots=True)
class NewSession:
    token: str
    csrf_token: str
    expires_at: float


def check_role(role: str) -> str:
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}")
    return role


def create_token(central: Central, name: str, role: str, *, actor: str) -> tuple[ApiToken, str]:
    """The token row and the token itself (shown once)."""
    check_role(role)
    if not name or len(name) > 64 or not name.isprintable():
        raise Invalid("a token name is 1 to 64 printable characters")
    token = new_token(API_TOKEN_PREFIX)
    now = central.clock()
    row = ApiToken(name=name, role=role, token_hash=token_hash(token), created_at=now)
    try:
        with central.sessions.begin() as session:
            session.add(row)
            session.flush()
            record(
                session,
                "token_created",
                now=now,
                fields={"by": actor, "name": name, "role": role},
                forward=central.forward,
            )
    except IntegrityError:
        raise Conflict(f"a token named {name!r} exists already", "exists") from None
    return row, token


def list_tokens(central: Central) -> list[ApiToken]:
    with central.sessions() as session:
        return list(session.scalars(select(ApiToken).order_by(ApiToken.name)))


def revoke_token(central: Central, name: str, *, actor: str) -> None:
    now = central.clock()
    with central.sessions.begin() as session:
        row = session.scalars(select(ApiToken).where(ApiToken.name == name)).first()
        if row is None:
            raise NotFound(f"no token is named {name!r}")
        if row.revoked_at is None:
            row.revoked_at = now
            record(
                session,
                "token_revoked",
                now=now,
                fields={"by": actor, "name": name},
                forward=central.forward,
            )


def principal_for_token(central: Central, token: str) -> Principal:
    if not token.startswith(API_TOKEN_PREFIX) or len(token) > MAX_TOKEN_CHARS:
        raise Unauthenticated("unknown or revoked API token")
    with central.sessions() as session:
        row = session.scalars(
            select(ApiToken).where(ApiToken.token_hash == token_hash(token))
        ).first()
    if row is None or row.revoked_at is not None:
        raise Unauthenticated("unknown or revoked API token")
    return Principal("token", row.name, row.role)


def start_session(central: Central, operator: Operator) -> NewSession:
    now = central.clock()
    token, csrf = new_token(SESSION_PREFIX), secrets.token_urlsafe(32)
    expires = now + central.settings.session_ttl
    with central.sessions.begin() as session:
        session.add(
            WebSession(
                token_hash=token_hash(token),
                operator_id=operator.operator_id,
                csrf_hash=token_hash(csrf),
                created_at=now,
                last_used_at=now,
                expires_at=expires,
            )
        )
        session.execute(delete(WebSession).where(WebSession.expires_at < now))
    return NewSession(token, csrf, expires)


def principal_for_session(central: Central, token: str) -> Principal:
    if not token.startswith(SESSION_PREFIX) or len(token) > MAX_TOKEN_CHARS:
        raise Unauthenticated("no valid session: log in again")
    now = central.clock()
    digest = token_hash(token)
    idle = central.settings.session_idle
    with central.sessions.begin() as session:
        found = session.execute(
            select(WebSession, Operator)
            .join(Operator, Operator.operator_id == WebSession.operator_id)
            .where(WebSession.token_hash == digest)
        ).first()
        if found is None:
            raise Unauthenticated("no valid session: log in again")
        web, operator = found
        if web.expires_at <= now or web.last_used_at + idle <= now or operator.disabled:
            raise Unauthenticated("no valid session: log in again")
        session.execute(
            update(WebSession).where(WebSession.token_hash == digest).values(last_used_at=now)
        )
        return Principal("operator", operator.operator_id, operator.role, digest, web.csrf_hash)


def csrf_matches(principal: Principal, given: str | None) -> bool:
    if principal.csrf_hash is None or not given or len(given) > MAX_TOKEN_CHARS:
        return False
    return same_hash(token_hash(given), principal.csrf_hash)


def end_session(central: Central, principal: Principal) -> None:
    if principal.session_hash is None:
        return
    with central.sessions.begin() as session:
        session.execute(delete(WebSession).where(WebSession.token_hash == principal.session_hash))
