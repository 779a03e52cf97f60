"""Every error the API answers is JSON `{"code": ..., "message": ...}`: a
domain `Problem` (mapped to its status here, in one place), a refusal of
the quorum oracle (`QuorumError`, with the oracle's code and status,
`quorum.api.STATUS`), an HTTPException, an unknown route (404), a wrong method (405), a validation
error (422, with a readable message) or anything unexpected (500, logged,
no details out). Never an HTML page, never an opaque 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from shimmfa.central.problems import (
    Conflict,
    Forbidden,
    Invalid,
    InvalidCredentials,
    LockedOut,
    MissingEnrollment,
    NotFound,
    Problem,
    TooLarge,
    Unauthenticated,
    Unavailable,
)
from shimmfa.errors import QuorumError
from shimmfa.quorum.api import STATUS as QUORUM_STATUS

__all__ = ["STATUS", "error_response", "install", "problem_response", "status_of"]

log = logging.getLogger("shimmfa.central.api")

STATUS: dict[type[Problem], int] = {
    InvalidCredentials: 401,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Invalid: 422,
    TooLarge: 413,
    MissingEnrollment: 400,
    LockedOut: 429,
    Unavailable: 503,
}
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


def status_of(problem: Problem) -> int:
    for kind in type(problem).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 400


def problem_response(exc: Problem) -> JSONResponse:
    """The JSON answer to a domain problem, with its status and headers."""
    status = status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, LockedOut):
        headers = {"Retry-After": str(exc.retry_after)}
    return error_response(status, exc.code, exc.message, headers)


async def _problem(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)  # noqa: S101 - registered for Problem only
    return problem_response(exc)


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)  # noqa: S101
    code = HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = "no such resource; the API is under /api/v1 (see /docs)"
    return error_response(exc.status_code, code, message, dict(exc.headers or {}) or None)


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(item) for item in error.get("loc", ()) if item != "body")
        parts.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return error_response(422, "validation_error", "; ".join(parts) or "invalid request")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error; the server log has details")


async def _quorum(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, QuorumError)  # noqa: S101 - registered for QuorumError only
    return error_response(QUORUM_STATUS.get(exc.reason, 400), exc.reason, str(exc))


def install(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _problem)
    app.add_exception_handler(QuorumError, _quorum)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(Exception, _unexpected)
