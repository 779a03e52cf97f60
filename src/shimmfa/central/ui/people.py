"""The technicians pages: the list (where each is valid, last logins),
enrolment (the QR code and otpauth URI shown once, on the page that
answers the enrolment, never again), confirmation with one code,
assignment to shims and groups, revocation; and shim groups.

Rules:
- Forms post here and answer with a redirect (303) on success; on a
  refusal the same page comes back with the problem in words next to the
  field it concerns (status 4xx), nothing changed.
- Who may change what is `api.deps.require` (admin and clinical
  engineering); every role reads. The domain functions audit each change.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from shimmfa.central import groups, technicians
from shimmfa.central.access import Principal
from shimmfa.central.api.deps import Enroler, Reader
from shimmfa.central.problems import Problem
from shimmfa.central.ui.render import page

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)

TechnicianId = Annotated[str, Path(max_length=64)]
PAGE = 50
# which form field a refusal is about, by its code
FIELD_OF = {
    "exists": "technician_id",
    "invalid_code": "code",
    "not_pending": "code",
    "revoked": "target",
    "not_found": "target",
}


async def _form(request: Request, *names: str) -> dict[str, str]:
    form = await request.form()
    return {name: str(form.get(name, "")).strip()[:256] for name in names}


async def _list(
    request: Request, principal: Principal, status: int = 200, **extra: object
) -> Response:
    central = request.app.state.central
    state = request.query_params.get("state") or None
    search = (request.query_params.get("q") or "")[:128] or None
    after = (request.query_params.get("cursor") or "")[:64] or None
    views = await run_in_threadpool(
        lambda: technicians.list_technicians(
            central, state=state if state in ("pending", "active", "revoked") else None,
            search=search, after=after, limit=PAGE + 1, shims_each=5,
        )
    )  # fmt: skip
    group_list = await run_in_threadpool(groups.list_groups, central)
    more = len(views) > PAGE
    views = views[:PAGE]
    context = {"technicians": views, "groups": group_list, "state": state or "",
               "search": search or "", "errors": {}, "values": {}, "cursor": after or "",
               "next_cursor": views[-1].row.technician_id if more else ""} | extra  # fmt: skip
    return page(request, "technicians.html", principal, status, nav="technicians", **context)


@router.get("/technicians")
async def technicians_view(request: Request, principal: Reader) -> Response:
    return await _list(request, principal)


@router.post("/technicians")
async def enrol(request: Request, principal: Enroler) -> Response:
    values = await _form(request, "technician_id", "name", "company")
    central = request.app.state.central
    try:
        made = await run_in_threadpool(
            lambda: technicians.enrol(
                central, values["technician_id"], name=values["name"],
                company=values["company"], actor=principal.actor,
            )
        )  # fmt: skip
    except Problem as exc:
        field = FIELD_OF.get(exc.code, _field_named(exc.message, values))
        return await _list(request, principal, _status(exc), errors={field: exc.message},
                           values=values)  # fmt: skip
    return page(request, "enrolled.html", principal, nav="technicians", enrolment=made)


def _field_named(message: str, values: dict[str, str]) -> str:
    for name in values:
        if message.startswith(name):
            return name
    return "technician_id"


def _status(exc: Problem) -> int:
    from shimmfa.central.api.errors import status_of

    return status_of(exc)


async def _detail(
    request: Request, principal: Principal, technician_id: str, status: int = 200,
    **extra: object,
) -> Response:  # fmt: skip
    central = request.app.state.central
    view = await run_in_threadpool(technicians.get_technician, central, technician_id)
    group_list = await run_in_threadpool(groups.list_groups, central)
    context = {"t": view, "groups": group_list, "errors": {}, "values": {}} | extra
    return page(request, "technician.html", principal, status, nav="technicians", **context)


@router.get("/technicians/{technician_id}")
async def technician_view(
    request: Request, principal: Reader, technician_id: TechnicianId
) -> Response:
    return await _detail(request, principal, technician_id)


async def _act(
    request: Request, principal: Principal, technician_id: str, names: tuple[str, ...],
    action: object,
) -> Response:  # fmt: skip
    values = await _form(request, *names)
    try:
        await run_in_threadpool(action, values)  # type: ignore[arg-type]
    except Problem as exc:
        if exc.code == "not_found" and "technician" in exc.message:
            raise
        field = FIELD_OF.get(exc.code, names[0] if names else "target")
        return await _detail(request, principal, technician_id, _status(exc),
                             errors={field: exc.message}, values=values)  # fmt: skip
    return RedirectResponse(f"/ui/technicians/{technician_id}", status_code=303)


@router.post("/technicians/{technician_id}/confirm")
async def confirm(request: Request, principal: Enroler, technician_id: TechnicianId) -> Response:
    central = request.app.state.central
    return await _act(
        request, principal, technician_id, ("code",),
        lambda v: technicians.confirm(central, technician_id, v["code"], actor=principal.actor),
    )  # fmt: skip


@router.post("/technicians/{technician_id}/assign")
async def assign(request: Request, principal: Enroler, technician_id: TechnicianId) -> Response:
    central = request.app.state.central

    def run(values: dict[str, str]) -> None:
        kind, target = values["kind"], values["target"]
        if not target:
            from shimmfa.central.problems import Invalid

            raise Invalid("name the shim ID or pick a group", "missing")
        groups.assign(
            central, technician_id, shim_id=target if kind != "group" else None,
            group=target if kind == "group" else None, actor=principal.actor,
        )  # fmt: skip

    return await _act(request, principal, technician_id, ("target", "kind"), run)


@router.post("/technicians/{technician_id}/unassign")
async def unassign(request: Request, principal: Enroler, technician_id: TechnicianId) -> Response:
    central = request.app.state.central

    def run(values: dict[str, str]) -> None:
        kind, target = values["kind"], values["target"]
        groups.unassign(
            central, technician_id, shim_id=target if kind != "group" else None,
            group=target if kind == "group" else None, actor=principal.actor,
        )  # fmt: skip

    return await _act(request, principal, technician_id, ("target", "kind"), run)


@router.post("/technicians/{technician_id}/revoke")
async def revoke(request: Request, principal: Enroler, technician_id: TechnicianId) -> Response:
    central = request.app.state.central
    return await _act(
        request, principal, technician_id, (),
        lambda v: technicians.revoke(central, technician_id, actor=principal.actor),
    )  # fmt: skip


@router.post("/groups")
async def create_group(request: Request, principal: Enroler) -> Response:
    values = await _form(request, "group_name", "description")
    central = request.app.state.central
    try:
        await run_in_threadpool(
            lambda: groups.create_group(
                central, values["group_name"], description=values["description"],
                actor=principal.actor,
            )
        )  # fmt: skip
    except Problem as exc:
        return await _list(request, principal, _status(exc),
                           errors={"group_name": exc.message}, values=values)  # fmt: skip
    return RedirectResponse("/ui/technicians#groups", status_code=303)


@router.post("/groups/members")
async def add_member(request: Request, principal: Enroler) -> Response:
    values = await _form(request, "group", "member_shim_id")
    central = request.app.state.central
    try:
        await run_in_threadpool(
            lambda: groups.add_member(
                central, values["group"], values["member_shim_id"], actor=principal.actor
            )
        )
    except Problem as exc:
        return await _list(request, principal, _status(exc),
                           errors={"member_shim_id": exc.message}, values=values)  # fmt: skip
    return RedirectResponse("/ui/technicians#groups", status_code=303)


@router.get("/groups/{name}")
async def group_view(
    request: Request, principal: Reader, name: Annotated[str, Path(max_length=64)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> Response:  # fmt: skip
    central = request.app.state.central
    view = await run_in_threadpool(lambda: groups.get_group(central, name, limit=limit))
    return page(request, "group.html", principal, nav="technicians", group=view)
