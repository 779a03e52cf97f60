"""A shim's break-glass deal, as the shim registers it with central
(`POST /api/v1/shims/{id}/breakglass`, as the shim): the dealer's public
record, checked, stored, and registered with the oracle's dealt-group
registry in the same transaction.

The record (JSON):

    {"note": "ICU pump 7 break-glass",
     "groups": {
       "clinical": {"group_id": "7GCUCI2Y", "threshold": 2, "size": 3,
                    "role": "clinical_engineering",
                    "holders": {"ann": "age1...", "bob": "age1...", "cat": "age1..."}},
       "infosec":  {"group_id": "3OROTSEU", "threshold": 1, "size": 2,
                    "role": "infosec",
                    "holders": {"ivan": "age1...", "ines": "age1..."}}}}

i.e. `shimmfa quorum deal`'s output without its `tocs`, each group with
its `role` and its `holders` (name -> the age recipient its Toc was sealed
to). Rules:
- Nothing secret: no other member is accepted (`tocs`, a `secret`, a Toc,
  an age identity or an armored file anywhere is refused, 422 `malformed`),
  so central never stores a Toc or the secret.
- A group's `role` is `clinical_engineering` or `infosec`; it may be left
  out when the label says it (`clinical`, `clinical_engineering`,
  `infosec`). The deal needs a group of each role (break-glass needs both
  departments) and each group's `size` must be its number of holders,
  `threshold` 1..size (1: every holder of that group holds its piece).
- A holder name is an operator ID (or an API token's name) at central: the
  operator who approves with that holder's Toc, in that group's role. One
  name, one recipient, one group per deal.
- Idempotent: the same record again is 200 and changes nothing. A record
  naming group ids already registered otherwise (another shim, another
  deal, or this record with other holders or roles) is 409 `conflict`; a
  record this shim registered before and replaced since is 409
  `superseded`. A new record replaces the shim's current deal: the old
  one is kept (replaced_at), its groups retired from the oracle's registry
  (no new session opens for them), and both changes are audited.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shimmfa.central.breakglass_tables import BreakglassDeal, BreakglassHolder
from shimmfa.central.context import Central, ShimIdentity
from shimmfa.central.models import ShimRow
from shimmfa.central.problems import Conflict, Forbidden, Invalid, NotFound
from shimmfa.central.records import record
from shimmfa.core.events import iso_time
from shimmfa.core.toc import TocGroup
from shimmfa.errors import QuorumError
from shimmfa.quorum.age_tocs import parse_recipient
from shimmfa.quorum.dealing import dealt_groups
from shimmfa.quorum.store_sql import SqlGroupRegistry

__all__ = [
    "ROLES",
    "DealGroup",
    "DealRecord",
    "DealView",
    "current_deal",
    "deal_json",
    "parse_deal",
    "register_deal",
    "shim_deals",
    "shims_with_deals",
]

ROLES = ("clinical_engineering", "infosec")
ROLE_OF_LABEL = {
    "clinical": "clinical_engineering",
    "clinical_engineering": "clinical_engineering",
    "infosec": "infosec",
}
MAX_GROUPS, MAX_HOLDERS, MAX_NOTE = 8, 255, 256
_LABEL = re.compile(r"[^\s=/:]{1,64}")
_NAME = re.compile(r"[^\s=/:]{1,64}")
_GROUP_ID = re.compile(r"[A-Z2-7]{8}")
_SECRET_TEXT = ("AGE-SECRET-KEY-", "BEGIN AGE ENCRYPTED FILE")


@dataclass(frozen=True, slots=True)
class DealGroup:
    label: str
    group_id: str
    threshold: int
    size: int
    role: str
    holders: tuple[tuple[str, str], ...]  # (name, age recipient)


@dataclass(frozen=True, slots=True)
class DealRecord:
    """A checked public record of a deal."""

    note: str
    groups: tuple[DealGroup, ...]

    def as_json(self) -> dict[str, Any]:
        groups = {
            g.label: {
                "group_id": g.group_id,
                "threshold": g.threshold,
                "size": g.size,
                "role": g.role,
                "holders": dict(g.holders),
            }
            for g in self.groups
        }
        return {"note": self.note, "groups": groups}

    @property
    def fingerprint(self) -> str:
        text = json.dumps(self.as_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def toc_groups(self) -> tuple[TocGroup, ...]:
        """The oracle's dealt record (`quorum.dealing.dealt_groups`)."""
        return dealt_groups(self.as_json())


@dataclass(frozen=True, slots=True)
class DealView:
    deal: BreakglassDeal
    status: int  # 201 registered now, 200 registered before
    replaced: str | None = None  # the deal id it replaced


def _bad(message: str) -> Invalid:
    return Invalid(message, "malformed")


def _int(where: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _bad(f"{where} must be an integer from {low} to {high}")
    return value


def _no_secrets(value: object, where: str) -> None:
    if isinstance(value, str) and any(mark in value for mark in _SECRET_TEXT):
        raise _bad(f"{where} holds an age identity or an age file: never send Tocs or keys")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _no_secrets(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _no_secrets(item, f"{where}[{index}]")


def _only(where: str, document: Mapping[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(document) - allowed)
    if extra:
        raise _bad(
            f"{where}: {extra[0]!r} is not part of the public record (allowed: "
            f"{', '.join(sorted(allowed))}); never send the Tocs or the secret"
        )


def _group(label: object, spec: object) -> DealGroup:
    if not isinstance(label, str) or not _LABEL.fullmatch(label):
        raise _bad("a group label is 1 to 64 characters without spaces, '=', '/' or ':'")
    where = f"group {label}"
    if not isinstance(spec, Mapping):
        raise _bad(f"{where}: an object {{group_id, threshold, size, role, holders}}")
    _only(where, spec, {"group_id", "threshold", "size", "role", "holders"})
    group_id = spec.get("group_id")
    if not isinstance(group_id, str) or not _GROUP_ID.fullmatch(group_id):
        raise _bad(f"{where}: group_id must be 8 base32 characters (A-Z, 2-7)")
    size = _int(f"{where}: size", spec.get("size"), 1, MAX_HOLDERS)
    threshold = _int(f"{where}: threshold", spec.get("threshold"), 1, size)
    role = spec.get("role", ROLE_OF_LABEL.get(label))
    if role not in ROLES:
        raise _bad(f"{where}: role must be one of {', '.join(ROLES)}")
    holders = spec.get("holders")
    if not isinstance(holders, Mapping) or not holders:
        raise _bad(f"{where}: holders must map each holder's name to their age1... recipient")
    named = []
    for name, recipient in holders.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise _bad(f"{where}: a holder name is an operator ID, 1 to 64 characters")
        try:
            parsed = str(parse_recipient(recipient))
        except QuorumError as exc:
            raise _bad(f"{where}: holder {name}: {exc}") from None
        named.append((name, parsed))
    if len(named) != size:
        raise _bad(f"{where}: size is {size} but {len(named)} holders are named")
    if size < 2 and threshold > 1:
        raise _bad(f"{where}: a threshold above 1 needs at least 2 holders")
    return DealGroup(label, group_id, threshold, size, str(role), tuple(named))


def parse_deal(document: object) -> DealRecord:
    """The checked record of a registration body; `Invalid` (422) otherwise."""
    if not isinstance(document, Mapping):
        raise _bad('the body must be {"note": "...", "groups": {LABEL: {...}, ...}}')
    _no_secrets(document, "body")
    _only("body", document, {"note", "groups"})
    note = document.get("note", "")
    if not isinstance(note, str) or len(note) > MAX_NOTE or not note.isprintable():
        raise _bad(f"note must be at most {MAX_NOTE} printable characters")
    specs = document.get("groups")
    if not isinstance(specs, Mapping) or not 2 <= len(specs) <= MAX_GROUPS:
        raise _bad(f"groups must map 2 to {MAX_GROUPS} group labels to their records")
    groups = tuple(_group(label, spec) for label, spec in specs.items())
    missing = [role for role in ROLES if all(g.role != role for g in groups)]
    if missing:
        raise _bad(f"break-glass needs both departments: no group has the role {missing[0]}")
    for what, values in (
        ("group_id", [g.group_id for g in groups]),
        ("holder", [name for g in groups for name, _ in g.holders]),
        ("recipient", [key for g in groups for _, key in g.holders]),
    ):
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise _bad(f"{what} {twice[0]} appears twice: one holder, one Toc, one group")
    return DealRecord(note, groups)


# -- storing ---------------------------------------------------------------------------------


def register_deal(
    central: Central, identity: ShimIdentity, shim_id: str, document: object
) -> DealView:
    """Store and register the shim's deal (see the module rules)."""
    if shim_id != identity.shim_id:
        raise Forbidden("this credential is of another shim", "wrong_shim")
    deal = parse_deal(document)
    dealt = deal.toc_groups
    ids = [g.group_id for g in deal.groups]
    now = central.clock()
    registry = SqlGroupRegistry(central.engine, central.clock)
    with central.sessions.begin() as session:
        shim = session.scalars(
            select(ShimRow).where(ShimRow.pk == identity.pk).with_for_update()
        ).first()
        if shim is None:
            raise NotFound(f"no shim is registered as {shim_id}")
        known = _deals_naming(session, ids)
        if known:
            return _known(known, deal, shim_id)
        current = _current(session, shim_id)
        row = BreakglassDeal(
            shim_id=shim_id,
            deal_id=dealt[0].group_id,
            fingerprint=deal.fingerprint,
            note=deal.note,
            record=deal.as_json(),
            registered_at=now,
        )
        session.add(row)
        session.flush()
        for group in deal.groups:
            for name, recipient in group.holders:
                session.add(
                    BreakglassHolder(
                        deal_pk=row.id, holder=name, group_id=group.group_id,
                        label=group.label, role=group.role, recipient=recipient,
                    )
                )  # fmt: skip
        try:
            registry.register(dealt, connection=session.connection())
        except QuorumError as exc:
            raise Conflict(str(exc), "conflict") from None
        fields: dict[str, Any] = {"deal_id": row.deal_id, "groups": _summary(deal)}
        record(session, "breakglass_deal_registered", now=now, shim_id=shim_id, fields=fields,
               forward=central.forward)  # fmt: skip
        replaced = None
        if current is not None:
            current.replaced_at = now
            registry.retire(current.deal_id, connection=session.connection())
            replaced = current.deal_id
            record(session, "breakglass_deal_replaced", now=now, shim_id=shim_id,
                   fields={"deal_id": replaced, "replaced_by": row.deal_id},
                   forward=central.forward)  # fmt: skip
        return DealView(row, 201, replaced)


def _summary(deal: DealRecord) -> str:
    return ", ".join(
        f"{g.label} ({g.role}) {g.threshold} of {g.size}: {g.group_id}" for g in deal.groups
    )


def _deals_naming(session: Session, group_ids: list[str]) -> list[BreakglassDeal]:
    holding = select(BreakglassHolder.deal_pk).where(BreakglassHolder.group_id.in_(group_ids))
    query = select(BreakglassDeal).where(BreakglassDeal.id.in_(holding)).order_by(BreakglassDeal.id)
    return list(session.scalars(query))


def _known(known: list[BreakglassDeal], deal: DealRecord, shim_id: str) -> DealView:
    row = known[0]
    if len(known) == 1 and row.shim_id == shim_id and row.fingerprint == deal.fingerprint:
        if row.replaced_at is None:
            return DealView(row, 200)
        raise Conflict(
            f"this deal ({row.deal_id}) was replaced by a newer one; provision again rather "
            "than sending an old record",
            "superseded",
        )
    raise Conflict(
        f"group {row.deal_id if len(known) > 1 else _shared(row, deal)} is registered already "
        "as part of another deal (or with other holders or roles)",
        "conflict",
    )


def _shared(row: BreakglassDeal, deal: DealRecord) -> str:
    mine = {g.group_id for g in deal.groups}
    theirs = {spec["group_id"] for spec in row.record.get("groups", {}).values()}
    return sorted(mine & theirs)[0] if mine & theirs else row.deal_id


def _current(session: Session, shim_id: str) -> BreakglassDeal | None:
    return session.scalars(
        select(BreakglassDeal).where(
            BreakglassDeal.shim_id == shim_id, BreakglassDeal.replaced_at.is_(None)
        )
    ).first()


def deal_json(row: BreakglassDeal) -> dict[str, Any]:
    """A stored deal as the API shows it (its public record, as registered)."""
    return {
        "deal_id": row.deal_id,
        "shim_id": row.shim_id,
        "note": row.note,
        "registered_at": iso_time(row.registered_at),
        "replaced_at": iso_time(row.replaced_at) if row.replaced_at is not None else None,
        "groups": row.record["groups"],
    }


def current_deal(central: Central, shim_id: str) -> BreakglassDeal | None:
    with central.sessions() as session:
        return _current(session, shim_id)


def shims_with_deals(central: Central, limit: int = 1000) -> list[str]:
    """The shims that have a current deal (whose code can be requested)."""
    with central.sessions() as session:
        return list(
            session.scalars(
                select(BreakglassDeal.shim_id)
                .where(BreakglassDeal.replaced_at.is_(None))
                .order_by(BreakglassDeal.shim_id)
                .limit(limit)
            )
        )


def shim_deals(central: Central, shim_id: str) -> list[BreakglassDeal]:
    """The shim's deals, newest first (404 for an unknown shim)."""
    with central.sessions() as session:
        if session.scalars(select(ShimRow.pk).where(ShimRow.shim_id == shim_id)).first() is None:
            raise NotFound(f"no shim is registered as {shim_id}")
        return list(
            session.scalars(
                select(BreakglassDeal)
                .where(BreakglassDeal.shim_id == shim_id)
                .order_by(BreakglassDeal.id.desc())
            )
        )
