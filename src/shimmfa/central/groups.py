"""Shim groups (a ward, a device model) and the assignments of technicians
to shims, directly or through a group.

Rules:
- A group name is 1 to 64 printable characters; a shim is in any number of
  groups. Removing a group removes its memberships and assignments.
- A technician is valid at a shim when it is `active` and assigned to the
  shim directly or to one of its groups (`valid_at_shim`, what bundles
  carry). Assigning a pending technician is allowed: it becomes valid when
  confirmed.
- Assigning twice, or removing what is not there, is a 409 / 404; every
  change is audited in its transaction (`records.record`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shimmfa.central.context import Central
from shimmfa.central.models import ShimRow
from shimmfa.central.problems import Conflict, Invalid, NotFound
from shimmfa.central.records import record
from shimmfa.central.tables import (
    GroupMember,
    ShimGroup,
    TechnicianGroup,
    TechnicianRow,
    TechnicianShim,
)

__all__ = [
    "GroupView",
    "add_member",
    "assign",
    "create_group",
    "get_group",
    "list_groups",
    "remove_group",
    "remove_member",
    "shim_groups",
    "unassign",
    "valid_at_shim",
]


@dataclass(frozen=True, slots=True)
class GroupView:
    group: ShimGroup
    members: int
    technicians: int
    shim_ids: tuple[str, ...] = ()
    technician_ids: tuple[str, ...] = ()


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 64 or not name.isprintable():
        raise Invalid("a group name is 1 to 64 printable characters")
    if "/" in name:
        raise Invalid("a group name must not contain '/'")
    return name


def _group(session: Session, name: str) -> ShimGroup:
    group = session.scalars(select(ShimGroup).where(ShimGroup.name == name)).first()
    if group is None:
        raise NotFound(f"no shim group is named {name!r}")
    return group


def _shim(session: Session, shim_id: str) -> ShimRow:
    shim = session.scalars(select(ShimRow).where(ShimRow.shim_id == shim_id)).first()
    if shim is None:
        raise NotFound(f"no shim {shim_id!r} is registered")
    return shim


def _technician(session: Session, technician_id: str) -> TechnicianRow:
    row = session.get(TechnicianRow, technician_id)
    if row is None:
        raise NotFound(f"no technician {technician_id!r} is enrolled")
    if row.state == "revoked":
        raise Conflict(f"technician {technician_id!r} is revoked", "revoked")
    return row


def create_group(central: Central, name: str, *, description: str = "", actor: str) -> ShimGroup:
    _check_name(name)
    if len(description) > 256:
        raise Invalid("description is at most 256 characters")
    now = central.clock()
    group = ShimGroup(name=name, description=description, created_at=now, created_by=actor)
    try:
        with central.sessions.begin() as session:
            session.add(group)
            session.flush()
            record(
                session,
                "group_created",
                now=now,
                fields={"by": actor, "group": name},
                forward=central.forward,
            )
    except IntegrityError:
        raise Conflict(f"a shim group named {name!r} exists already", "exists") from None
    return group


def remove_group(central: Central, name: str, *, actor: str) -> None:
    now = central.clock()
    with central.sessions.begin() as session:
        group = _group(session, name)
        session.execute(delete(GroupMember).where(GroupMember.group_id == group.id))
        session.execute(delete(TechnicianGroup).where(TechnicianGroup.group_id == group.id))
        session.delete(group)
        record(
            session, "group_removed", now=now, fields={"by": actor, "group": name},
            forward=central.forward,
        )  # fmt: skip


def _member_change(central: Central, name: str, shim_id: str, *, add: bool, actor: str) -> None:
    now = central.clock()
    with central.sessions.begin() as session:
        group, shim = _group(session, name), _shim(session, shim_id)
        if add:
            if session.get(GroupMember, (group.id, shim.pk)) is not None:
                raise Conflict(f"{shim_id!r} is in {name!r} already", "exists")
            session.add(GroupMember(group_id=group.id, shim_pk=shim.pk))
        else:
            gone = session.execute(
                delete(GroupMember).where(
                    GroupMember.group_id == group.id, GroupMember.shim_pk == shim.pk
                )
            )
            if getattr(gone, "rowcount", 0) != 1:
                raise NotFound(f"{shim_id!r} is not in {name!r}")
        record(
            session,
            "group_member_added" if add else "group_member_removed",
            now=now,
            shim_id=shim_id,
            fields={"by": actor, "group": name},
            forward=central.forward,
        )


def add_member(central: Central, name: str, shim_id: str, *, actor: str) -> None:
    _member_change(central, name, shim_id, add=True, actor=actor)


def remove_member(central: Central, name: str, shim_id: str, *, actor: str) -> None:
    _member_change(central, name, shim_id, add=False, actor=actor)


def list_groups(central: Central) -> list[GroupView]:
    members = select(func.count()).where(GroupMember.group_id == ShimGroup.id).scalar_subquery()
    assigned = (
        select(func.count()).where(TechnicianGroup.group_id == ShimGroup.id).scalar_subquery()
    )
    with central.sessions() as session:
        rows = session.execute(
            select(ShimGroup, members, assigned).order_by(ShimGroup.name).limit(1000)
        ).all()
    return [GroupView(group, m, t) for group, m, t in rows]


def get_group(central: Central, name: str, *, limit: int = 1000) -> GroupView:
    with central.sessions() as session:
        group = _group(session, name)
        shim_ids = session.scalars(
            select(ShimRow.shim_id)
            .join(GroupMember, GroupMember.shim_pk == ShimRow.pk)
            .where(GroupMember.group_id == group.id)
            .order_by(ShimRow.shim_id)
            .limit(limit)
        ).all()
        technicians = session.scalars(
            select(TechnicianGroup.technician_id)
            .where(TechnicianGroup.group_id == group.id)
            .order_by(TechnicianGroup.technician_id)
        ).all()
        count = session.scalar(
            select(func.count()).select_from(GroupMember).where(GroupMember.group_id == group.id)
        )
    return GroupView(group, int(count or 0), len(technicians), tuple(shim_ids), tuple(technicians))


def shim_groups(central: Central, shim_id: str) -> list[str]:
    with central.sessions() as session:
        return list(
            session.scalars(
                select(ShimGroup.name)
                .join(GroupMember, GroupMember.group_id == ShimGroup.id)
                .join(ShimRow, ShimRow.pk == GroupMember.shim_pk)
                .where(ShimRow.shim_id == shim_id)
                .order_by(ShimGroup.name)
            )
        )


def assign(
    central: Central,
    technician_id: str,
    *,
    shim_id: str | None = None,
    group: str | None = None,
    actor: str,
) -> None:
    """Assign a technician to one shim or to a group of shims."""
    if (shim_id is None) == (group is None):
        raise Invalid("give either shim_id or group")
    now = central.clock()
    try:
        with central.sessions.begin() as session:
            _technician(session, technician_id)
            if shim_id is not None:
                shim = _shim(session, shim_id)
                session.add(
                    TechnicianShim(
                        technician_id=technician_id, shim_pk=shim.pk, created_at=now,
                        created_by=actor,
                    )
                )  # fmt: skip
            else:
                found = _group(session, str(group))
                session.add(
                    TechnicianGroup(
                        technician_id=technician_id, group_id=found.id, created_at=now,
                        created_by=actor,
                    )
                )  # fmt: skip
            session.flush()
            record(
                session,
                "technician_assigned",
                now=now,
                shim_id=shim_id,
                fields={"by": actor, "technician_id": technician_id, "group": group},
                forward=central.forward,
            )
    except IntegrityError:
        where = f"shim {shim_id!r}" if shim_id is not None else f"group {group!r}"
        raise Conflict(f"{technician_id!r} is assigned to {where} already", "exists") from None


def unassign(
    central: Central,
    technician_id: str,
    *,
    shim_id: str | None = None,
    group: str | None = None,
    actor: str,
) -> None:
    if (shim_id is None) == (group is None):
        raise Invalid("give either shim_id or group")
    now = central.clock()
    with central.sessions.begin() as session:
        if shim_id is not None:
            shim = _shim(session, shim_id)
            gone = session.execute(
                delete(TechnicianShim).where(
                    TechnicianShim.technician_id == technician_id,
                    TechnicianShim.shim_pk == shim.pk,
                )
            )
        else:
            found = _group(session, str(group))
            gone = session.execute(
                delete(TechnicianGroup).where(
                    TechnicianGroup.technician_id == technician_id,
                    TechnicianGroup.group_id == found.id,
                )
            )
        if getattr(gone, "rowcount", 0) != 1:
            raise NotFound(f"{technician_id!r} has no such assignment")
        record(
            session,
            "technician_unassigned",
            now=now,
            shim_id=shim_id,
            fields={"by": actor, "technician_id": technician_id, "group": group},
            forward=central.forward,
        )


def valid_at_shim(
    session: Session, shim_pk: int, *, states: Sequence[str] = ("active",)
) -> list[TechnicianRow]:
    """The technicians in `states` assigned to the shim, directly or through
    one of its groups, by ID."""
    direct = select(TechnicianShim.technician_id).where(TechnicianShim.shim_pk == shim_pk)
    grouped = (
        select(TechnicianGroup.technician_id)
        .join(GroupMember, GroupMember.group_id == TechnicianGroup.group_id)
        .where(GroupMember.shim_pk == shim_pk)
    )
    return list(
        session.scalars(
            select(TechnicianRow)
            .where(
                TechnicianRow.state.in_(list(states)),
                or_(
                    TechnicianRow.technician_id.in_(direct),
                    TechnicianRow.technician_id.in_(grouped),
                ),
            )
            .order_by(TechnicianRow.technician_id)
        )
    )
