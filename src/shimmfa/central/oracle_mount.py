"""The quorum oracle inside the central service: farMFA's four endpoints
mounted at `/quorum`, its sessions in the central database, every caller
authenticated as an operator (session cookie + CSRF header) or an API
token, every step audited as a central event.

Rules:
- One `Oracle` per use over central's engine (`oracle_of`): the
  `quorum.store_sql` store (a session's changes serialised by a row lock
  on PostgreSQL, `BEGIN IMMEDIATE` on SQLite: safe across workers and
  hosts), the dealt-group registry that shims' registrations fill
  (`breakglass_deals`), `require_registered`: only groups a shim
  registered open a session; central's clock.
- Who may hold what (`approver_for`): an approver is `Principal.actor`
  (`operator:ann`, `token:soc`) with the groups whose holder is named
  like the principal (`breakglass_holders.holder`) *and* whose role is
  the principal's role. So an infosec operator cannot approve for the
  clinical group even if named there, an admin approves for no group, and
  at release a Toc of another group than its sender's is set aside
  (`quorum.approvers`). Refusals at submission are 403 `not_permitted`
  with the reason in words, before anything is stored.
- The mounted app answers 401 to a request without a valid credential,
  403 `csrf` to a state-changing request with the cookie but without the
  session's `X-CSRF-Token`; bodies are JSON only, so a cross-site form
  cannot post (farMFA's bodies, unchanged).
- Audit (`audit_hook`): the oracle's `session_opened`, `toc_submitted`,
  `toc_refused`, `toc_set_aside` and `code_released` become
  `breakglass_session_opened`, `breakglass_approved`,
  `breakglass_approval_refused`, `breakglass_toc_set_aside` and
  `breakglass_code_released`, naming the shim (by the deal), the request
  (when the session is one), the approver and the group. Each is written in
  its own transaction after the oracle's commit; a failure to write one is
  logged by the oracle (the session's own record keeps the approver).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from sqlalchemy import select
from starlette.exceptions import HTTPException

from shimmfa.central.access import (
    Principal,
    csrf_matches,
    principal_for_session,
    principal_for_token,
)
from shimmfa.central.breakglass_tables import BreakglassDeal, BreakglassHolder, BreakglassRequest
from shimmfa.central.context import Central
from shimmfa.central.problems import Problem
from shimmfa.central.records import record
from shimmfa.core.events import FieldValue
from shimmfa.quorum.api import create_app
from shimmfa.quorum.approvers import Approver
from shimmfa.quorum.oracle import Oracle
from shimmfa.quorum.store_sql import SqlGroupRegistry, SqlSessionStore
from shimmfa.quorum.views import AuditHook, OracleEvent

__all__ = ["MOUNT", "KINDS", "approver_for", "audit_hook", "mount", "oracle_of"]

MOUNT = "/quorum"
KINDS = {
    "session_opened": "breakglass_session_opened",
    "toc_submitted": "breakglass_approved",
    "toc_refused": "breakglass_approval_refused",
    "toc_set_aside": "breakglass_toc_set_aside",
    "code_released": "breakglass_code_released",
}
COOKIE = "shimmfa_session"  # api.deps.COOKIE (the API layer sits above this module)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def oracle_of(central: Central) -> Oracle:
    return Oracle(
        SqlSessionStore(central.engine),
        SqlGroupRegistry(central.engine, central.clock),
        clock=central.clock,
        require_registered=True,
        audit=audit_hook(central),
    )


def approver_for(central: Central, principal: Principal) -> Approver:
    """The principal as the oracle's approver: the groups it holds in its role."""
    with central.sessions() as session:
        groups = session.scalars(
            select(BreakglassHolder.group_id).where(
                BreakglassHolder.holder == principal.name,
                BreakglassHolder.role == principal.role,
            )
        ).all()
    return Approver(principal.actor, frozenset(groups))


def _principal(central: Central, request: Request) -> Principal:
    header = request.headers.get("authorization")
    try:
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise HTTPException(401, "use Authorization: Bearer <token>")
            return principal_for_token(central, token.strip())
        cookie = request.cookies.get(COOKIE)
        if cookie is None:
            raise HTTPException(401, "log in or send an API token (Authorization: Bearer smt_...)")
        principal = principal_for_session(central, cookie)
    except Problem as exc:
        raise HTTPException(401, exc.message, {"WWW-Authenticate": "Bearer"}) from None
    if request.method not in SAFE_METHODS and not csrf_matches(
        principal, request.headers.get("x-csrf-token")
    ):
        raise HTTPException(403, "missing or wrong X-CSRF-Token for this session")
    return principal


def mount(app: FastAPI, central: Central) -> None:
    """farMFA's oracle at `/quorum` (its own OpenAPI at /quorum/docs)."""

    def approver(request: Request) -> Approver:
        principal = _principal(central, request)
        if request.method in SAFE_METHODS:
            return Approver(principal.actor)
        return approver_for(central, principal)

    app.mount(MOUNT, create_app(oracle_of(central), approver=approver))


def _name(approver: str) -> str:
    """`operator:ann` -> `ann` (the holder name a principal stands for)."""
    return approver.partition(":")[2] or approver


def audit_hook(central: Central) -> AuditHook:
    """What the oracle calls with each `OracleEvent` (see the module rules)."""

    def hear(event: OracleEvent) -> None:
        kind = KINDS.get(event.kind)
        if kind is None:
            return
        fields: dict[str, FieldValue] = {"session_id": event.session_id}
        with central.sessions.begin() as session:
            shim_id = None
            request = session.scalars(
                select(BreakglassRequest).where(BreakglassRequest.session_id == event.session_id)
            ).first()
            if request is not None:
                shim_id, fields["request_id"] = request.shim_id, request.id
            holders = session.execute(
                select(BreakglassHolder, BreakglassDeal)
                .join(BreakglassDeal, BreakglassDeal.id == BreakglassHolder.deal_pk)
                .where(BreakglassHolder.group_id.in_(event.group_ids))
            ).all()
            if holders:
                shim_id = shim_id or holders[0][1].shim_id
                fields["deal_id"] = holders[0][1].deal_id
            if event.approver is not None:
                key = "applicant" if event.kind == "session_opened" else "approver"
                fields[key] = event.approver
                mine = [h for h, _ in holders if h.holder == _name(event.approver)]
                if mine and event.kind != "code_released":
                    fields["group"], fields["role"] = mine[0].label, mine[0].role
            if event.detail:
                detail = "approvers" if event.kind == "code_released" else "reason"
                fields[detail] = event.detail
            record(session, kind, now=event.at, shim_id=shim_id, fields=fields,
                   forward=central.forward)  # fmt: skip

    return hear
