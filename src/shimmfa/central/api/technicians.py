"""`/api/v1/technicians` and `/api/v1/groups`: enrolment (the secret shown
once as otpauth URI and QR code), confirmation with one code, revocation,
assignments to shims and groups, and the groups themselves. Admin and
clinical engineering change them; every role reads them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from shimmfa.central import groups, technicians
from shimmfa.central.api.deps import CentralDep, Enroler, Reader
from shimmfa.central.api.schemas import ErrorBody, iso
from shimmfa.central.technicians import TechnicianView

__all__ = ["router"]

router = APIRouter(tags=["technicians"])

ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody} for status in (401, 403, 404, 409, 422, 503)
}
TechnicianId = Annotated[str, Path(min_length=1, max_length=64)]
GroupName = Annotated[str, Path(min_length=1, max_length=64)]


class TechnicianIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    technician_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=128)
    company: str = Field(min_length=1, max_length=128)


class LoginOut(BaseModel):
    shim_id: str
    at: str | None
    session_id: str | None


class TechnicianOut(BaseModel):
    technician_id: str
    name: str
    company: str
    state: str = Field(description="pending, active or revoked")
    created_at: str | None
    created_by: str
    confirmed_at: str | None
    revoked_at: str | None
    shims: list[str] = Field(description="shims it is assigned to directly")
    groups: list[str] = Field(description="groups of shims it is assigned to")
    last_logins: list[LoginOut]

    @classmethod
    def of(cls, view: TechnicianView) -> TechnicianOut:
        row = view.row
        return cls(
            technician_id=row.technician_id,
            name=row.name,
            company=row.company,
            state=row.state,
            created_at=iso(row.created_at),
            created_by=row.created_by,
            confirmed_at=iso(row.confirmed_at),
            revoked_at=iso(row.revoked_at),
            shims=list(view.shims),
            groups=list(view.groups),
            last_logins=[
                LoginOut(shim_id=x.shim_id, at=iso(x.at), session_id=x.session_id)
                for x in view.last_logins
            ],
        )


class Enrolled(TechnicianOut):
    otpauth_uri: str = Field(description="shown once: the authenticator's secret")
    qr_svg: str = Field(description="the same URI as a QR code (SVG), shown once")


class TechnicianList(BaseModel):
    items: list[TechnicianOut]
    next_cursor: str | None


class CodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(max_length=64)


class AssignmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shim_id: str | None = Field(default=None, min_length=1, max_length=128)
    group: str | None = Field(default=None, min_length=1, max_length=64)


class GroupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=256)


class MemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shim_id: str = Field(min_length=1, max_length=128)


class GroupOut(BaseModel):
    name: str
    description: str
    members: int
    technicians: int
    shim_ids: list[str] = []
    technician_ids: list[str] = []

    @classmethod
    def of(cls, view: groups.GroupView) -> GroupOut:
        return cls(
            name=view.group.name,
            description=view.group.description,
            members=view.members,
            technicians=view.technicians,
            shim_ids=list(view.shim_ids),
            technician_ids=list(view.technician_ids),
        )


async def _view(central: CentralDep, technician_id: str) -> TechnicianOut:
    view = await run_in_threadpool(technicians.get_technician, central, technician_id)
    return TechnicianOut.of(view)


@router.post("/technicians", status_code=201, response_model=Enrolled, responses=ERRORS)
async def post_technician(body: TechnicianIn, principal: Enroler, central: CentralDep) -> Enrolled:
    """Enrol a technician (pending until confirmed). The answer holds the
    otpauth URI and QR code: shown once, never again."""
    made = await run_in_threadpool(
        lambda: technicians.enrol(
            central, body.technician_id, name=body.name, company=body.company,
            actor=principal.actor,
        )
    )  # fmt: skip
    out = TechnicianOut.of(TechnicianView(made.row))
    return Enrolled(**out.model_dump(), otpauth_uri=made.uri, qr_svg=made.qr_svg)


@router.get("/technicians", response_model=TechnicianList, responses=ERRORS)
async def get_technicians(
    _: Reader,
    central: CentralDep,
    state: Annotated[str | None, Query(pattern="^(pending|active|revoked)$")] = None,
    search: Annotated[str | None, Query(max_length=128)] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> TechnicianList:
    """Technicians by ID, with where they are assigned and their last logins."""
    views = await run_in_threadpool(
        lambda: technicians.list_technicians(
            central, state=state, search=search, after=cursor, limit=limit
        )
    )
    more = len(views) == limit and views
    return TechnicianList(
        items=[TechnicianOut.of(view) for view in views],
        next_cursor=views[-1].row.technician_id if more else None,
    )


@router.get("/technicians/{technician_id}", response_model=TechnicianOut, responses=ERRORS)
async def get_technician(
    technician_id: TechnicianId, _: Reader, central: CentralDep
) -> TechnicianOut:
    return await _view(central, technician_id)


@router.post("/technicians/{technician_id}/confirm", response_model=TechnicianOut, responses=ERRORS)
async def post_confirm(
    technician_id: TechnicianId, body: CodeIn, principal: Enroler, central: CentralDep
) -> TechnicianOut:
    """Activate a pending enrolment with one code from the technician's
    authenticator (422 `invalid_code` otherwise; each code counts once)."""
    await run_in_threadpool(
        lambda: technicians.confirm(central, technician_id, body.code, actor=principal.actor)
    )
    return await _view(central, technician_id)


@router.post("/technicians/{technician_id}/revoke", response_model=TechnicianOut, responses=ERRORS)
async def post_revoke(
    technician_id: TechnicianId, principal: Enroler, central: CentralDep
) -> TechnicianOut:
    """Revoke (final, audited): the technician leaves every shim's bundle."""
    await run_in_threadpool(
        lambda: technicians.revoke(central, technician_id, actor=principal.actor)
    )
    return await _view(central, technician_id)


@router.post(
    "/technicians/{technician_id}/assignments",
    status_code=201,
    response_model=TechnicianOut,
    responses=ERRORS,
)
async def post_assignment(
    technician_id: TechnicianId, body: AssignmentIn, principal: Enroler, central: CentralDep
) -> TechnicianOut:
    """Assign to one shim (`shim_id`) or to a group of shims (`group`)."""
    await run_in_threadpool(
        lambda: groups.assign(
            central, technician_id, shim_id=body.shim_id, group=body.group, actor=principal.actor
        )
    )
    return await _view(central, technician_id)


@router.delete(
    "/technicians/{technician_id}/assignments/{kind}/{target}", status_code=204, responses=ERRORS
)
async def delete_assignment(
    technician_id: TechnicianId,
    kind: Annotated[str, Path(pattern="^(shim|group)$")],
    target: Annotated[str, Path(min_length=1, max_length=128)],
    principal: Enroler,
    central: CentralDep,
) -> Response:
    """Remove an assignment: `.../assignments/shim/{shim_id}` or `.../group/{name}`."""
    shim_id, group = (target, None) if kind == "shim" else (None, target)
    await run_in_threadpool(
        lambda: groups.unassign(
            central, technician_id, shim_id=shim_id, group=group, actor=principal.actor
        )
    )
    return Response(status_code=204)


@router.post("/groups", status_code=201, response_model=GroupOut, responses=ERRORS)
async def post_group(body: GroupIn, principal: Enroler, central: CentralDep) -> GroupOut:
    """A group of shims (a ward, a device model) to assign technicians to."""
    await run_in_threadpool(
        lambda: groups.create_group(
            central, body.name, description=body.description, actor=principal.actor
        )
    )
    return GroupOut.of(await run_in_threadpool(groups.get_group, central, body.name))


@router.get("/groups", response_model=list[GroupOut], responses=ERRORS)
async def get_groups(_: Reader, central: CentralDep) -> list[GroupOut]:
    return [GroupOut.of(view) for view in await run_in_threadpool(groups.list_groups, central)]


@router.get("/groups/{name}", response_model=GroupOut, responses=ERRORS)
async def get_group(name: GroupName, _: Reader, central: CentralDep) -> GroupOut:
    return GroupOut.of(await run_in_threadpool(groups.get_group, central, name))


@router.delete("/groups/{name}", status_code=204, responses=ERRORS)
async def delete_group(name: GroupName, principal: Enroler, central: CentralDep) -> Response:
    await run_in_threadpool(lambda: groups.remove_group(central, name, actor=principal.actor))
    return Response(status_code=204)


@router.post("/groups/{name}/members", status_code=201, response_model=GroupOut, responses=ERRORS)
async def post_member(
    name: GroupName, body: MemberIn, principal: Enroler, central: CentralDep
) -> GroupOut:
    await run_in_threadpool(
        lambda: groups.add_member(central, name, body.shim_id, actor=principal.actor)
    )
    return GroupOut.of(await run_in_threadpool(groups.get_group, central, name))


@router.delete("/groups/{name}/members/{shim_id}", status_code=204, responses=ERRORS)
async def delete_member(
    name: GroupName,
    shim_id: Annotated[str, Path(min_length=1, max_length=128)],
    principal: Enroler,
    central: CentralDep,
) -> Response:
    await run_in_threadpool(
        lambda: groups.remove_member(central, name, shim_id, actor=principal.actor)
    )
    return Response(status_code=204)
