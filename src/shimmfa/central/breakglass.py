"""Break-glass requests: an operator asks for a shim's break-glass code with
a reason; holders of both departments approve with their Tocs; the code is
shown once, to the requester.

Rules:
- A request names a shim with a registered deal (`breakglass_deals`; 409
  `no_deal` otherwise) and a reason (1 to 1000 characters). It opens an
  oracle session for that deal with no Toc in clear
  (`Oracle.open_for_deal`): the requester need not hold a Toc, and central
  never sees one. The answer carries the session's KEK, once: central keeps
  only the XOR-sealed session key (farMFA's scheme), so neither its
  database nor its backups open a Toc; the requester presents the KEK to
  get the code. Requesters: admin, clinical engineering, infosec.
- Approving: a holder sends their own Toc sealed to the session's TEK
  (sealed on their machine: `shimmfa quorum seal`, or Debian's `age -d ...
  | age -r TEK -a`); central stores the ciphertext and cannot open it.
  The approver is the authenticated principal: its name must be a holder
  of the deal and its role the role of that holder's group (403
  `not_a_holder`, `wrong_role`, audited, nothing stored); each holder
  counts once; at release a Toc of another group than its sender's counts
  for nothing (`quorum.approvers`).
- The code: only the requester (403 `not_requester`), with the KEK; the
  oracle's refusals keep their farMFA statuses (400 `bad_kek`, 409
  `below_threshold` naming what each group lacks, 410 `released` the
  second time, 410 `expired`). One group alone never has a quorum: every
  deal has a group of each role.
- A request is `open` until its code is released (`released`) or its
  session expires (`expired`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from shimmfa.central.access import Principal
from shimmfa.central.breakglass_deals import current_deal
from shimmfa.central.breakglass_tables import BreakglassDeal, BreakglassHolder, BreakglassRequest
from shimmfa.central.context import Central
from shimmfa.central.models import ShimRow
from shimmfa.central.oracle_mount import approver_for, oracle_of
from shimmfa.central.problems import Conflict, Forbidden, Invalid, NotFound
from shimmfa.central.records import record
from shimmfa.central.registry import check_id
from shimmfa.core.events import iso_time
from shimmfa.quorum.records import SessionState, TocStatus
from shimmfa.quorum.store_sql import SqlSessionStore
from shimmfa.quorum.views import TotpCode

__all__ = [
    "DEFAULT_TTL",
    "MAX_TTL",
    "MIN_TTL",
    "REQUESTERS",
    "GroupStatus",
    "NewRequest",
    "RequestView",
    "approve",
    "create_request",
    "get_request",
    "list_requests",
    "release_code",
]

REQUESTERS = ("admin", "clinical_engineering", "infosec")  # as api.deps.REQUESTERS
MIN_TTL, MAX_TTL, DEFAULT_TTL = 300, 86400, 3600
MAX_REASON = 1000
STATES = ("open", "released", "expired")


@dataclass(frozen=True, slots=True)
class GroupStatus:
    """One dealt group of a request: what it needs and who approved."""

    label: str
    role: str
    group_id: str
    quorum: int
    size: int
    approvers: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return len(self.approvers) >= self.quorum


@dataclass(frozen=True, slots=True)
class RequestView:
    row: BreakglassRequest
    deal_id: str
    tek: str
    state: str
    groups: tuple[GroupStatus, ...]
    set_aside: tuple[tuple[str, str], ...] = ()  # (approver, why)
    holders: tuple[tuple[str, str], ...] = ()  # (holder name, role) of the deal

    def may_approve(self, principal: Principal) -> bool:
        """Whether `principal` holds a Toc of this deal in its role and has
        not approved yet (the server checks again)."""
        if self.state != "open" or (principal.name, principal.role) not in self.holders:
            return False
        return all(principal.actor not in group.approvers for group in self.groups)

    def as_json(self) -> dict[str, Any]:
        row = self.row
        return {
            "id": row.id,
            "shim_id": row.shim_id,
            "reason": row.reason,
            "requester": row.requester,
            "state": self.state,
            "created_at": iso_time(row.created_at),
            "expires_at": iso_time(row.expires_at),
            "released_at": iso_time(row.released_at) if row.released_at is not None else None,
            "session_id": row.session_id,
            "tek": self.tek,
            "deal_id": self.deal_id,
            "groups": [
                {
                    "label": g.label,
                    "role": g.role,
                    "group_id": g.group_id,
                    "quorum": g.quorum,
                    "size": g.size,
                    "approvals": len(g.approvers),
                    "approvers": list(g.approvers),
                    "complete": g.complete,
                }
                for g in self.groups
            ],  # fmt: skip
            "set_aside": [{"approver": who, "reason": why} for who, why in self.set_aside],
        }


@dataclass(frozen=True, slots=True)
class NewRequest:
    view: RequestView
    kek: str = field(repr=False)


def _view(
    row: BreakglassRequest, deal: BreakglassDeal, state: SessionState | None, now: float
) -> RequestView:
    tocs = state.live_tocs() if state is not None else ()
    groups = []
    for label, spec in deal.record["groups"].items():
        gid = spec["group_id"]
        approvers = tuple(t.approver or "-" for t in tocs if t.holds and gid in t.holds)
        quorum = spec["threshold"]  # a threshold of 1: any one holder of the group
        groups.append(GroupStatus(label, spec["role"], gid, quorum, spec["size"], approvers))
    aside: tuple[tuple[str, str], ...] = ()
    if state is not None:
        aside = tuple(
            (t.approver or "-", t.reason or "")
            for t in state.tocs
            if t.status == TocStatus.SET_ASIDE
        )
    holders = tuple(
        (name, spec["role"]) for spec in deal.record["groups"].values() for name in spec["holders"]
    )
    if row.released_at is not None:
        status = "released"
    else:
        status = "expired" if now >= row.expires_at else "open"
    tek = state.session.tek if state is not None else ""
    return RequestView(row, deal.deal_id, tek, status, tuple(groups), aside, holders)


def create_request(
    central: Central, principal: Principal, shim_id: str, reason: str, ttl: int = DEFAULT_TTL
) -> NewRequest:
    if principal.role not in REQUESTERS:
        raise Forbidden(f"the {principal.role} role may not request break-glass", "forbidden")
    reason = reason.replace("\r\n", "\n").replace("\r", "\n").strip()  # a form's lines
    if not 1 <= len(reason) <= MAX_REASON or not reason.replace("\n", " ").isprintable():
        raise Invalid(f"reason: say why, in 1 to {MAX_REASON} printable characters", "reason")
    if not isinstance(ttl, int) or not MIN_TTL <= ttl <= MAX_TTL:
        raise Invalid(f"ttl: from {MIN_TTL} to {MAX_TTL} seconds", "ttl")
    check_id(shim_id, "shim_id")
    with central.sessions() as session:
        if session.scalars(select(ShimRow.pk).where(ShimRow.shim_id == shim_id)).first() is None:
            raise NotFound(f"shim_id: no shim is registered as {shim_id!r}", "not_found")
    deal = current_deal(central, shim_id)
    if deal is None:
        raise Conflict(
            f"shim_id: {shim_id} has no break-glass deal registered (`shimmfa breakglass "
            "provision` at the shim registers one)",
            "no_deal",
        )
    opened = oracle_of(central).open_for_deal(deal.deal_id, ttl, principal.actor)
    now = central.clock()
    with central.sessions.begin() as session:
        row = BreakglassRequest(
            shim_id=shim_id, deal_pk=deal.id, session_id=opened.session.id, reason=reason,
            requester=principal.actor, created_at=now, expires_at=opened.session.expires_at,
        )  # fmt: skip
        session.add(row)
        session.flush()
        record(session, "breakglass_requested", now=now, shim_id=shim_id, fields={
            "request_id": row.id, "session_id": row.session_id, "by": principal.actor,
            "reason": reason, "deal_id": deal.deal_id, "expires_at": iso_time(row.expires_at),
        }, forward=central.forward)  # fmt: skip
    state = SqlSessionStore(central.engine).read(opened.session.id)
    return NewRequest(_view(row, deal, state, now), opened.kek)


def _load(central: Central, request_id: int) -> tuple[BreakglassRequest, BreakglassDeal]:
    with central.sessions() as session:
        found = session.execute(
            select(BreakglassRequest, BreakglassDeal)
            .join(BreakglassDeal, BreakglassDeal.id == BreakglassRequest.deal_pk)
            .where(BreakglassRequest.id == request_id)
        ).first()
    if found is None:
        raise NotFound(f"no break-glass request {request_id}")
    return found[0], found[1]


def get_request(central: Central, request_id: int) -> RequestView:
    row, deal = _load(central, request_id)
    state = SqlSessionStore(central.engine).read(row.session_id)
    return _view(row, deal, state, central.clock())


def list_requests(
    central: Central, *, state: str | None = None, shim_id: str | None = None, limit: int = 50
) -> list[RequestView]:
    now = central.clock()
    r = BreakglassRequest
    query = (
        select(r, BreakglassDeal)
        .join(BreakglassDeal, BreakglassDeal.id == r.deal_pk)
        .order_by(r.id.desc())
        .limit(limit)
    )
    if shim_id:
        query = query.where(r.shim_id == shim_id)
    if state == "released":
        query = query.where(r.released_at.is_not(None))
    elif state == "open":
        query = query.where(r.released_at.is_(None), r.expires_at > now)
    elif state == "expired":
        query = query.where(r.released_at.is_(None), r.expires_at <= now)
    with central.sessions() as session:
        rows = session.execute(query).all()
    store = SqlSessionStore(central.engine)
    return [_view(row, deal, store.read(row.session_id), now) for row, deal in rows]


def approve(
    central: Central, principal: Principal, request_id: int, encrypted_toc: str
) -> RequestView:
    """Add the principal's sealed Toc to the request's session."""
    row, deal = _load(central, request_id)
    approver = approver_for(central, principal)
    group_ids = {spec["group_id"] for spec in deal.record["groups"].values()}
    if approver.groups is None or not approver.groups & group_ids:
        _refuse(central, principal, row, deal)
    oracle_of(central).submit(row.session_id, encrypted_toc, approver)
    return get_request(central, request_id)


def _refuse(
    central: Central, principal: Principal, row: BreakglassRequest, deal: BreakglassDeal
) -> None:
    with central.sessions() as session:
        held = session.scalars(
            select(BreakglassHolder).where(
                BreakglassHolder.deal_pk == deal.id, BreakglassHolder.holder == principal.name
            )
        ).first()
    if held is None:
        problem = Forbidden(
            f"{principal.name} holds no Toc of {row.shim_id}'s break-glass deal; only its "
            "holders approve",
            "not_a_holder",
        )
    else:
        problem = Forbidden(
            f"{principal.name}'s Toc is of the {held.label} group, which only "
            f"{held.role.replace('_', ' ')} may approve for; you act as "
            f"{principal.role.replace('_', ' ')}",
            "wrong_role",
        )
    now = central.clock()
    with central.sessions.begin() as session:
        record(session, "breakglass_approval_refused", now=now, shim_id=row.shim_id, fields={
            "request_id": row.id, "session_id": row.session_id, "approver": principal.actor,
            "role": principal.role, "reason": problem.code,
        }, forward=central.forward)  # fmt: skip
    raise problem


def release_code(central: Central, principal: Principal, request_id: int, kek: str) -> TotpCode:
    """The code, once, to the requester who holds the KEK."""
    row, _ = _load(central, request_id)
    if principal.actor != row.requester:
        raise Forbidden(
            f"only the requester ({row.requester}) gets this request's code", "not_requester"
        )
    code = oracle_of(central).release(row.session_id, kek, principal.actor)
    with central.sessions.begin() as session:
        session.execute(
            update(BreakglassRequest)
            .where(BreakglassRequest.id == row.id, BreakglassRequest.released_at.is_(None))
            .values(released_at=central.clock())
        )
    return code
