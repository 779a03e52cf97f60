"""`/api/v1/login`, `/api/v1/login/factor`, `/api/v1/logout`, `/api/v1/me`:
operators' web sessions.

A login checks password and TOTP code (`operators.login`) and, when the
operator's role needs further factors (an admin's `second`, by default),
answers 202 with the first one's label and a login token; each code then
goes to `/login/factor` (`chains.step`). Any failure, at any step, answers
the one generic 401 `invalid_credentials`. On success it sets the
session cookie (HttpOnly, SameSite=Strict, Secure over TLS) and returns
the CSRF token every later state-changing request must send as
`X-CSRF-Token`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from shimmfa.central.access import Principal, end_session, start_session
from shimmfa.central.api.deps import COOKIE, CentralDep, Reader, get_principal
from shimmfa.central.api.schemas import (
    ErrorBody,
    LoginFactorIn,
    LoginIn,
    LoginNext,
    LoginOut,
    iso,
)
from shimmfa.central.chains import LOGIN, step
from shimmfa.central.context import Central
from shimmfa.central.models import Operator
from shimmfa.central.operators import login

__all__ = ["router"]

router = APIRouter(tags=["operators"])


LOGIN_ERRORS: dict[int | str, dict[str, object]] = {401: {"model": ErrorBody}}


@router.post(
    "/login",
    response_model=LoginOut,
    responses={202: {"model": LoginNext}, **LOGIN_ERRORS},
    summary="Log in with password and TOTP code",
)
async def post_login(
    body: LoginIn, request: Request, response: Response, central: CentralDep
) -> LoginOut | JSONResponse:
    """200 and the session when that is all the operator's role needs; 202
    with the next factor's label and a login token when it needs more (send
    each code to `/login/factor`)."""
    verifier = request.app.state.login_verifier
    operator, pending = await run_in_threadpool(
        login, central, verifier, body.operator_id, body.password, body.code
    )
    if pending is not None:
        return _next(pending.token, pending.next_factor_label, pending.steps, pending.expires_at)
    return await _session(central, operator, response)


@router.post(
    "/login/factor",
    response_model=LoginOut,
    responses={202: {"model": LoginNext}, **LOGIN_ERRORS},
    summary="Give the next factor's code of a login",
)
async def post_login_factor(
    body: LoginFactorIn, response: Response, central: CentralDep
) -> LoginOut | JSONResponse:
    """200 and the session once every factor passed; 202 with the next
    factor's label; the one generic 401 on any failure (start again from
    `/login`)."""
    done = await run_in_threadpool(step, central, body.login_token, LOGIN, body.code)
    if not done.result.is_complete:
        label = done.result.next_factor_label
        return _next(body.login_token, label, None, None)
    return await _session(central, done.operator, response)


def _next(token: str, label: str, steps: int | None, expires_at: float | None) -> JSONResponse:
    body = LoginNext(
        next_factor_label=label, login_token=token, steps=steps, expires_at=iso(expires_at)
    )
    return JSONResponse(body.model_dump(), status_code=202, headers={"Cache-Control": "no-store"})


async def _session(central: Central, operator: Operator, response: Response) -> LoginOut:
    session = await run_in_threadpool(start_session, central, operator)
    response.set_cookie(
        COOKIE,
        session.token,
        max_age=int(central.settings.session_ttl),
        httponly=True,
        samesite="strict",
        secure=central.settings.tls,
        path="/",
    )
    return LoginOut(
        operator_id=operator.operator_id,
        role=operator.role,
        csrf_token=session.csrf_token,
        expires_at=iso(session.expires_at),
    )


@router.post(
    "/logout",
    status_code=204,
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}},
    summary="End the operator's session",
)
async def post_logout(
    principal: Annotated[Principal, Depends(get_principal)], central: CentralDep
) -> Response:
    await run_in_threadpool(end_session, central, principal)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/me", summary="Who the credential belongs to", responses={401: {"model": ErrorBody}})
async def get_me(principal: Reader) -> dict[str, str]:
    return {"kind": principal.kind, "name": principal.name, "role": principal.role}
