"""The break-glass pages: requests (the list, what awaits the operator's
approval, a new request), a request's page (each group's approvals, the
approval form for its holders, the code form for its requester), the page
that shows the KEK once and the page that shows the code once.

Rules:
- The same domain functions and role checks as the API
  (`central/breakglass.py`): the pages never decide who may do what, they
  only hide what a role cannot use.
- The KEK is on the page that answers the request, once, never stored; the
  code on the page that answers the KEK, once. Both pages are `no-store`.
- A holder pastes their Toc sealed to the request's TEK (made on their own
  machine by `shimmfa quorum seal` or Debian's age, both shown with the
  TEK filled in): no key and no Toc in clear is ever typed into a page.
- A refusal comes back on the same page, in words, next to the field it
  concerns (status 4xx), nothing changed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from shimmfa.central import breakglass, breakglass_deals
from shimmfa.central.access import Principal
from shimmfa.central.api.deps import Reader, Requester
from shimmfa.central.api.errors import status_of
from shimmfa.central.problems import Forbidden, Invalid, Problem
from shimmfa.central.ui.render import page
from shimmfa.errors import QuorumError
from shimmfa.quorum.api import STATUS as QUORUM_STATUS

__all__ = ["TTL_CHOICES", "router"]

router = APIRouter(prefix="/ui", include_in_schema=False)

RequestId = Annotated[int, Path(ge=1, le=2**62)]
TTL_CHOICES = ((15, "15 minutes"), (60, "1 hour"), (240, "4 hours"), (1440, "24 hours"))
FIELD_OF = {"reason": "reason", "ttl": "ttl_minutes"}


def _failure(exc: Problem | QuorumError) -> tuple[int, str]:
    if isinstance(exc, QuorumError):
        return QUORUM_STATUS.get(exc.reason, 400), str(exc)
    return status_of(exc), exc.message


async def _form(request: Request, *names: str, limit: int = 1024) -> dict[str, str]:
    form = await request.form()
    return {name: str(form.get(name, "")).strip()[:limit] for name in names}


async def _list(
    request: Request, principal: Principal, status: int = 200, **extra: object
) -> Response:
    central = request.app.state.central
    views = await run_in_threadpool(lambda: breakglass.list_requests(central, limit=50))
    shim_ids = await run_in_threadpool(breakglass_deals.shims_with_deals, central)
    awaiting = [v for v in views if v.may_approve(principal)]
    context = {"requests": views, "awaiting": awaiting, "shim_ids": shim_ids,
               "ttl_choices": TTL_CHOICES, "errors": {},
               "values": {"ttl_minutes": "60"}} | extra  # fmt: skip
    return page(request, "breakglass.html", principal, status, nav="breakglass", **context)


@router.get("/breakglass")
async def requests_view(request: Request, principal: Reader) -> Response:
    return await _list(request, principal)


@router.post("/breakglass")
async def create(request: Request, principal: Requester) -> Response:
    values = await _form(request, "shim_id", "reason", "ttl_minutes")
    central = request.app.state.central
    try:
        minutes = int(values["ttl_minutes"] or "60")
        if minutes not in {choice for choice, _ in TTL_CHOICES}:
            raise ValueError
    except ValueError:
        words = "Choose how long the request stays open."
        return await _list(request, principal, 422, values=values,
                           errors={"ttl_minutes": words})  # fmt: skip
    try:
        made = await run_in_threadpool(
            breakglass.create_request, central, principal, values["shim_id"], values["reason"],
            minutes * 60,
        )  # fmt: skip
    except (Problem, QuorumError) as exc:
        if isinstance(exc, Forbidden):
            raise
        status, message = _failure(exc)
        field = FIELD_OF.get(getattr(exc, "code", ""), "shim_id")
        return await _list(request, principal, status, values=values, errors={field: message})
    return page(request, "breakglass_opened.html", principal, 201, nav="breakglass",
                view=made.view, kek=made.kek)  # fmt: skip


async def _detail(
    request: Request, principal: Principal, request_id: int, status: int = 200,
    **extra: object,
) -> Response:  # fmt: skip
    central = request.app.state.central
    view = await run_in_threadpool(breakglass.get_request, central, request_id)
    base = str(request.base_url).rstrip("/")
    context = {"view": view, "errors": {}, "values": {}, "oracle_url": f"{base}/quorum",
               "may_approve": view.may_approve(principal),
               "is_requester": principal.actor == view.row.requester} | extra  # fmt: skip
    return page(request, "breakglass_request.html", principal, status, nav="breakglass",
                **context)  # fmt: skip


@router.get("/breakglass/{request_id}")
async def request_view(request: Request, principal: Reader, request_id: RequestId) -> Response:
    return await _detail(request, principal, request_id)


@router.post("/breakglass/{request_id}/approve")
async def approve(request: Request, principal: Reader, request_id: RequestId) -> Response:
    values = await _form(request, "encrypted_toc", limit=16384)
    central = request.app.state.central
    try:
        if not values["encrypted_toc"]:
            raise Invalid("Paste your Toc, sealed to this request's TEK.", "missing")
        await run_in_threadpool(
            breakglass.approve, central, principal, request_id, values["encrypted_toc"] + "\n"
        )
    except (Problem, QuorumError) as exc:
        if isinstance(exc, Problem) and exc.code == "not_found":
            raise
        status, message = _failure(exc)
        return await _detail(request, principal, request_id, status, values=values,
                             errors={"encrypted_toc": message})  # fmt: skip
    return RedirectResponse(f"/ui/breakglass/{request_id}#groups", status_code=303)


@router.post("/breakglass/{request_id}/code")
async def code(request: Request, principal: Requester, request_id: RequestId) -> Response:
    values = await _form(request, "kek")
    central = request.app.state.central
    try:
        if not values["kek"]:
            raise Invalid("Paste the KEK this request's first page showed you.", "missing")
        released = await run_in_threadpool(
            breakglass.release_code, central, principal, request_id, values["kek"]
        )
    except (Problem, QuorumError) as exc:
        if isinstance(exc, Problem) and exc.code == "not_found":
            raise
        status, message = _failure(exc)
        return await _detail(request, principal, request_id, status, errors={"kek": message})
    view = await run_in_threadpool(breakglass.get_request, central, request_id)
    return page(request, "breakglass_code.html", principal, nav="breakglass", view=view,
                code=released)  # fmt: skip
