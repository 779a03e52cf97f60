"""Break-glass over the API: a shim registers its deal (as the shim), and
operators request, approve and get the code (`central/breakglass.py` states
the rules; the reviews are `api/reviews.py`).

    POST /shims/{id}/breakglass             the shim    201 new, 200 the same again
    GET  /shims/{id}/breakglass             any role    the current deal and the older ones
    POST /breakglass/requests               admin, clinical engineering, infosec  201 + KEK once
    GET  /breakglass/requests[/{id}]        any role
    POST /breakglass/requests/{id}/approvals  a holder, in their group's role   201
    POST /breakglass/requests/{id}/code     the requester, with the KEK  200 once, then 410

The oracle's refusals keep its codes and statuses (`quorum.api.STATUS`:
400 `bad_kek`, 403 `not_permitted`, 409 `below_threshold`, `duplicate`,
410 `released`, `expired`, 422 `malformed`, `wrong_group`)."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from shimmfa.central import breakglass, breakglass_deals
from shimmfa.central.api.deps import CentralDep, Reader, Requester, bearer, get_central
from shimmfa.central.api.schemas import ErrorBody
from shimmfa.central.ingest import authenticate_shim
from shimmfa.central.problems import Invalid, TooLarge
from shimmfa.quorum.age_tocs import MAX_SEALED_CHARS

__all__ = ["DEAL_SCHEMA", "router"]

router = APIRouter(tags=["break-glass"])

MAX_DEAL_BYTES = 64 * 1024
ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 410, 413, 422)
}
ShimId = Annotated[str, Path(min_length=1, max_length=128)]
RequestId = Annotated[int, Path(ge=1, le=2**62)]
_RECIPIENT = {"type": "string", "pattern": "^age1[02-9ac-hj-np-z]{58}$"}
DEAL_SCHEMA: dict[str, object] = {
    "type": "object",
    "required": ["groups"],
    "additionalProperties": False,
    "properties": {
        "note": {"type": "string", "maxLength": 256},
        "groups": {
            "type": "object",
            "minProperties": 2,
            "maxProperties": 8,
            "description": "group label -> its public record; a group of each role",
            "additionalProperties": {
                "type": "object",
                "required": ["group_id", "threshold", "size", "holders"],
                "additionalProperties": False,
                "properties": {
                    "group_id": {"type": "string", "pattern": "^[A-Z2-7]{8}$"},
                    "threshold": {"type": "integer", "minimum": 1, "maximum": 255},
                    "size": {"type": "integer", "minimum": 1, "maximum": 255},
                    "role": {
                        "type": "string",
                        "enum": list(breakglass_deals.ROLES),
                        "description": "default from the label: clinical, infosec",
                    },
                    "holders": {
                        "type": "object",
                        "description": "holder name (an operator ID) -> age recipient",
                        "additionalProperties": _RECIPIENT,
                    },
                },
            },
        },
    },
}


class RequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shim_id: str = Field(min_length=1, max_length=128)
    reason: str = Field(min_length=1, max_length=breakglass.MAX_REASON)
    ttl: int = Field(breakglass.DEFAULT_TTL, ge=breakglass.MIN_TTL, le=breakglass.MAX_TTL)


class ApprovalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    encrypted_toc: str = Field(
        min_length=1,
        max_length=MAX_SEALED_CHARS,
        description="your Toc sealed to the request's TEK (age, ASCII armor)",
    )


class CodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kek: str = Field(min_length=1, max_length=1024)


async def _body(request: Request, limit: int) -> object:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the body is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, RecursionError):
        raise Invalid("the body is not JSON", "malformed") from None


@router.post(
    "/shims/{shim_id}/breakglass",
    responses={**ERRORS, 201: {"description": "registered"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": DEAL_SCHEMA}},
        }
    },
)
async def register_deal(shim_id: ShimId, request: Request) -> JSONResponse:
    """The shim's break-glass deal, as the shim (its `sms_` credential): the
    dealer's public record with each group's role and holders (never the
    Tocs or the secret). 201 registered (replacing the shim's older deal),
    200 the same record again; 403 `wrong_shim`; 409 `conflict`,
    `superseded`; 422 `malformed`."""
    central = get_central(request)
    identity = await run_in_threadpool(authenticate_shim, central, bearer(request))
    document = await _body(request, MAX_DEAL_BYTES)
    view = await run_in_threadpool(
        breakglass_deals.register_deal, central, identity, shim_id, document
    )
    answer = {**breakglass_deals.deal_json(view.deal), "replaced": view.replaced}
    return JSONResponse(answer, status_code=view.status)


@router.get("/shims/{shim_id}/breakglass", responses=ERRORS)
async def get_deals(shim_id: ShimId, principal: Reader, central: CentralDep) -> JSONResponse:
    """The shim's current break-glass deal (groups, roles, thresholds,
    holders and their recipients) and the deals it replaced."""
    rows = await run_in_threadpool(breakglass_deals.shim_deals, central, shim_id)
    current = [row for row in rows if row.replaced_at is None]
    return JSONResponse(
        {
            "shim_id": shim_id,
            "current": breakglass_deals.deal_json(current[0]) if current else None,
            "previous": [breakglass_deals.deal_json(r) for r in rows if r.replaced_at],
        }
    )


@router.post("/breakglass/requests", status_code=201, responses=ERRORS)
async def create_request(
    body: RequestIn, principal: Requester, central: CentralDep
) -> JSONResponse:
    """Ask for a shim's break-glass code. The answer holds the request (its
    `tek` for the holders) and the `kek`, shown once: keep it, it is what
    gets the code."""
    made = await run_in_threadpool(
        breakglass.create_request, central, principal, body.shim_id, body.reason, body.ttl
    )
    return JSONResponse({"request": made.view.as_json(), "kek": made.kek}, status_code=201)


@router.get("/breakglass/requests", responses=ERRORS)
async def list_requests(
    principal: Reader,
    central: CentralDep,
    state: Annotated[str | None, Query(pattern="^(open|released|expired)$")] = None,
    shim_id: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JSONResponse:
    """Requests, newest first, with each group's approvals."""
    views = await run_in_threadpool(
        lambda: breakglass.list_requests(central, state=state, shim_id=shim_id, limit=limit)
    )
    return JSONResponse({"requests": [view.as_json() for view in views]})


@router.get("/breakglass/requests/{request_id}", responses=ERRORS)
async def get_request(
    request_id: RequestId, principal: Reader, central: CentralDep
) -> JSONResponse:
    view = await run_in_threadpool(breakglass.get_request, central, request_id)
    return JSONResponse(view.as_json())


@router.post("/breakglass/requests/{request_id}/approvals", status_code=201, responses=ERRORS)
async def approve(
    request_id: RequestId, body: ApprovalIn, principal: Reader, central: CentralDep
) -> JSONResponse:
    """A holder's approval: their own Toc, sealed to the request's TEK on
    their machine. 403 `not_a_holder`, `wrong_role`; 409 `duplicate`."""
    view = await run_in_threadpool(
        breakglass.approve, central, principal, request_id, body.encrypted_toc
    )
    return JSONResponse(view.as_json(), status_code=201)


@router.post("/breakglass/requests/{request_id}/code", responses=ERRORS)
async def get_code(
    request_id: RequestId, body: CodeIn, principal: Requester, central: CentralDep
) -> JSONResponse:
    """The break-glass code, once, to the requester with the KEK: `{totp,
    totp_expires_at, session_expires_at}`. 403 `not_requester`; 400
    `bad_kek`; 409 `below_threshold`; 410 `released`, `expired`."""
    code = await run_in_threadpool(
        breakglass.release_code, central, principal, request_id, body.kek
    )
    return JSONResponse(code.as_dict())
