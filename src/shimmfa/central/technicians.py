"""Technicians: enrolment with a secret made here, confirmation with one
code, revocation, and what the operators read about them.

Rules:
- `enrol` makes a 160-bit secret (`core.totp.generate_totp_secret`), stores
  it sealed (`keys.CentralKeys.seal`) and returns it once, as the otpauth
  URI and its QR code (segno, SVG). It is never shown again: a lost phone
  is a new enrolment under a new ID, or revoke-and-enrol.
- A technician is `pending` until `confirm` accepts one code with the
  core's rules (`core.totp.TotpGate` over `operators.DbAuthStateStore`:
  server-fixed window, monotonic replay, lockout), then `active`. A wrong
  code is audited (`technician_confirm_failed`) and answered 422
  `invalid_code`; it changes nothing else.
- `revoke` is final and takes the technician out of every bundle at once
  (`bundles.py` reads only active technicians).
- Every change is audited in its transaction (`records.record`).
- A technician ID is what the technician types at the port before the
  code: 1 to 64 printable characters without spaces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import segno
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from shimmfa.central.context import Central
from shimmfa.central.models import ShimRow
from shimmfa.central.operators import DbAuthStateStore
from shimmfa.central.problems import Conflict, Invalid, NotFound, Unavailable
from shimmfa.central.records import record
from shimmfa.central.tables import (
    ShimGroup,
    TechnicianGroup,
    TechnicianLogin,
    TechnicianRow,
    TechnicianShim,
)
from shimmfa.core.events import FieldValue
from shimmfa.core.totp import TechnicianRecord, TotpGate, generate_totp_secret, provisioning_uri
from shimmfa.errors import KeyFileError

__all__ = [
    "ISSUER",
    "Enrolment",
    "TechnicianView",
    "check_technician_id",
    "confirm",
    "enrol",
    "get_technician",
    "list_technicians",
    "open_secret",
    "qr_svg",
    "revoke",
]

ISSUER = "ShimMFA"
STATE_KEY = " technician "  # auth state rows: operator IDs have no spaces, so no clash


@dataclass(frozen=True, slots=True)
class Enrolment:
    """A new technician and what is shown once."""

    row: TechnicianRow
    secret: str = field(repr=False)
    uri: str = field(repr=False)
    qr_svg: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class TechnicianView:
    """A technician with where it is assigned and its last logins."""

    row: TechnicianRow
    shims: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    last_logins: tuple[TechnicianLogin, ...] = ()
    shim_count: int = 0  # direct assignments, all of them (`shims` may be cut)


def check_technician_id(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 64:
        raise Invalid("technician_id must be 1 to 64 characters")
    if not value.isprintable() or any(ch.isspace() for ch in value):
        raise Invalid("technician_id must not contain spaces or control characters")
    return value


def _check_text(value: object, name: str, limit: int = 128) -> str:
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= limit:
        raise Invalid(f"{name} must be 1 to {limit} characters")
    if not value.isprintable():
        raise Invalid(f"{name} must not contain control characters")
    return value.strip()


def qr_svg(uri: str, label: str) -> str:
    """The QR code of `uri` as inline SVG, labelled for screen readers."""
    svg: str = segno.make(uri, error="m").svg_inline(scale=4, svgclass="qr")
    return svg.replace("<svg ", f'<svg role="img" aria-label="{_attr(label)}" ', 1)


def _attr(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def enrol(
    central: Central, technician_id: str, *, name: str, company: str, actor: str
) -> Enrolment:
    check_technician_id(technician_id)
    name = _check_text(name, "name")
    company = _check_text(company, "company")
    keys = central.keys
    secret = generate_totp_secret()
    now = central.clock()
    row = TechnicianRow(
        technician_id=technician_id,
        name=name,
        company=company,
        state="pending",
        sealed_secret=keys.seal(technician_id, secret),
        created_at=now,
        created_by=actor,
    )
    try:
        with central.sessions.begin() as session:
            session.add(row)
            session.flush()
            record(
                session,
                "technician_enrolled",
                now=now,
                fields={
                    "by": actor,
                    "technician_id": technician_id,
                    "name": name,
                    "company": company,
                },
                forward=central.forward,
            )
    except IntegrityError:
        raise Conflict(f"technician {technician_id!r} exists already", "exists") from None
    uri = provisioning_uri(technician_id, secret, issuer=ISSUER)
    return Enrolment(row, secret, uri, qr_svg(uri, f"QR code enrolling {technician_id}"))


def _row(central: Central, technician_id: str) -> TechnicianRow:
    with central.sessions() as session:
        row = session.get(TechnicianRow, technician_id)
    if row is None:
        raise NotFound(f"no technician {technician_id!r} is enrolled")
    return row


def confirm(central: Central, technician_id: str, code: str, *, actor: str) -> TechnicianRow:
    """Activate a pending technician with one valid code."""
    row = _row(central, technician_id)
    if row.state != "pending":
        raise Conflict(f"technician {technician_id!r} is {row.state}, not pending", "not_pending")
    key = STATE_KEY + technician_id
    secret = open_secret(central, row)
    s = central.settings
    gate = TotpGate(
        {key: TechnicianRecord(key, secret)},
        time_source=central.clock,
        window=s.totp_window,
        max_failures=s.max_failures,
        lockout_seconds=s.lockout_seconds,
        store=DbAuthStateStore(central),
    )
    outcome = gate.authenticate(key, code)
    now = central.clock()
    with central.sessions.begin() as session:
        fresh = session.get(TechnicianRow, technician_id, with_for_update=True)
        if fresh is None:
            raise NotFound(f"no technician {technician_id!r} is enrolled")
        fields: dict[str, FieldValue] = {"by": actor, "technician_id": technician_id}
        if not outcome.authenticated:
            record(
                session,
                "technician_confirm_failed",
                now=now,
                fields={**fields, "result": str(outcome.result), "detail": outcome.detail[:200]},
                forward=central.forward,
            )
        elif fresh.state == "pending":
            fresh.state = "active"
            fresh.confirmed_at = now
            record(session, "technician_confirmed", now=now, fields=fields, forward=central.forward)
    if not outcome.authenticated:
        raise Invalid(
            "that code was not accepted: check the authenticator's clock and type the "
            "current code (each code is accepted once)",
            "invalid_code",
        )
    return fresh


def open_secret(central: Central, row: TechnicianRow) -> str:
    """The technician's TOTP secret, unsealed; 503 if central's key does not
    open it (a replaced secrets.key, an altered row)."""
    try:
        return central.keys.unseal(row.technician_id, row.sealed_secret)
    except KeyFileError as exc:
        raise Unavailable(str(exc), "keys_unavailable") from None


def revoke(central: Central, technician_id: str, *, actor: str) -> TechnicianRow:
    """Revoke (final): the technician leaves every bundle."""
    now = central.clock()
    with central.sessions.begin() as session:
        row = session.get(TechnicianRow, technician_id, with_for_update=True)
        if row is None:
            raise NotFound(f"no technician {technician_id!r} is enrolled")
        if row.state != "revoked":
            previous = row.state
            row.state, row.revoked_at, row.revoked_by = "revoked", now, actor
            record(
                session,
                "technician_revoked",
                now=now,
                fields={"by": actor, "technician_id": technician_id, "was": previous},
                forward=central.forward,
            )
    return row


def _views(
    central: Central, rows: Sequence[TechnicianRow], *, shims_each: int | None = None
) -> list[TechnicianView]:
    """Views of `rows`; with `shims_each`, at most that many shim IDs and the
    last login only per technician (the list page: bounded work)."""
    ids = [row.technician_id for row in rows]
    if not ids:
        return []
    shims: dict[str, list[str]] = {}
    groups: dict[str, list[str]] = {}
    logins: dict[str, list[TechnicianLogin]] = {}
    counts: dict[str, int] = {}
    with central.sessions() as session:
        assigned = (
            select(
                TechnicianShim.technician_id,
                ShimRow.shim_id,
                func.row_number()
                .over(partition_by=TechnicianShim.technician_id, order_by=ShimRow.shim_id)
                .label("n"),
                func.count().over(partition_by=TechnicianShim.technician_id).label("total"),
            )
            .join(ShimRow, ShimRow.pk == TechnicianShim.shim_pk)
            .where(TechnicianShim.technician_id.in_(ids))
            .subquery()
        )
        query = select(assigned.c.technician_id, assigned.c.shim_id, assigned.c.total)
        if shims_each is not None:
            query = query.where(assigned.c.n <= shims_each)
        for tid, shim_id, total in session.execute(query.order_by(assigned.c.n)):
            shims.setdefault(tid, []).append(shim_id)
            counts[tid] = int(total)
        for tid, group in session.execute(
            select(TechnicianGroup.technician_id, ShimGroup.name)
            .join(ShimGroup, ShimGroup.id == TechnicianGroup.group_id)
            .where(TechnicianGroup.technician_id.in_(ids))
            .order_by(ShimGroup.name)
        ):
            groups.setdefault(tid, []).append(group)
        latest = (
            select(
                TechnicianLogin,
                func.row_number()
                .over(
                    partition_by=TechnicianLogin.technician_id, order_by=TechnicianLogin.at.desc()
                )
                .label("n"),
            )
            .where(TechnicianLogin.technician_id.in_(ids))
            .subquery()
        )
        recent = aliased(TechnicianLogin, latest)
        keep = 1 if shims_each is not None else 10
        for login in session.scalars(
            select(recent).where(latest.c.n <= keep).order_by(latest.c.at.desc())
        ):
            logins.setdefault(login.technician_id, []).append(login)
    return [
        TechnicianView(
            row,
            tuple(shims.get(row.technician_id, ())),
            tuple(groups.get(row.technician_id, ())),
            tuple(logins.get(row.technician_id, ())),
            counts.get(row.technician_id, 0),
        )
        for row in rows
    ]


def get_technician(central: Central, technician_id: str) -> TechnicianView:
    return _views(central, [_row(central, technician_id)])[0]


def list_technicians(
    central: Central,
    *,
    state: str | None = None,
    search: str | None = None,
    after: str | None = None,
    limit: int = 100,
    shims_each: int | None = None,
) -> list[TechnicianView]:
    """Technicians by ID, keyset-paginated; `search` matches ID, name or company."""
    query = select(TechnicianRow).order_by(TechnicianRow.technician_id).limit(limit)
    if state:
        query = query.where(TechnicianRow.state == state)
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            TechnicianRow.technician_id.like(pattern, escape="\\")
            | TechnicianRow.name.like(pattern, escape="\\")
            | TechnicianRow.company.like(pattern, escape="\\")
        )
    if after is not None:
        query = query.where(TechnicianRow.technician_id > after)
    with central.sessions() as session:
        rows = session.scalars(query).all()
    return _views(central, rows, shims_each=shims_each)
