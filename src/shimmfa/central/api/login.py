"""`/api/v1/login`, `/api/v1/logout`, `/api/v1/me`: operators' web sessions.

A login checks password and TOTP code (`operators.login`) and answers one
generic 401 `invalid_credentials` whatever failed. On success it sets the
session cookie (HttpOnly, SameSite=Strict, Secure over TLS) and returns
the CSRF token every later state-changing request must send as
`X-CSRF-Token`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from shimmfa.central.access import Principal, end_session, start_session
from shimmfa.central.api.deps import COOKIE, CentralDep, Reader, get_principal
from shimmfa.central.api.schemas import ErrorBody, LoginIn, LoginOut, iso
from shimmfa.central.operators import login

__all__ = ["router"]

router = APIRouter(tags=["operators"])


@router.post(
    "/login",
    response_model=LoginOut,
    responses={401: {"model": ErrorBody}},
    summary="Log in with password and TOTP code",
)
async def post_login(
    body: LoginIn, request: Request, response: Response, central: CentralDep
) -> LoginOut:
    verifier = request.app.state.login_verifier
    operator = await run_in_threadpool(
        login, central, verifier, body.operator_id, body.password, body.code
    )
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
