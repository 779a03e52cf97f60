"""The oracle over HTTP: farMFA's four endpoints (OpenAPI 0.2.0), same
paths, bodies and field names, as a FastAPI app over an `Oracle`.

    POST /sessions            {toc_zero, ttl}  -> SessionCredentials (200)
    GET  /sessions/{id}                        -> Session
    POST /sessions/{id}/tocs  {encrypted_toc}  -> 200, empty body (as farMFA)
    POST /sessions/{id}/totp  {kek}            -> {totp, totp_expires_at,
                                                   session_expires_at}

Rules of this module:

- `create_app(oracle, approver=...)` builds the app; nothing at import
  time. The central service mounts it (e.g. at `/quorum`) and passes
  `approver`, a callable that authenticates the request (every request,
  reads too) and returns the operator's name or an `approvers.Approver`
  (or raises an HTTPException, e.g. 401, or a `QuorumError`); it is
  recorded with toc_zero (the applicant) and with each Toc (the approver),
  and a named caller asking for the code must be the applicant (403
  `not_permitted`, as a Toc from someone who holds none of the session's
  groups).
- Every error is JSON `{code, message}`: a `QuorumError` maps through
  `STATUS` (400 bad KEK or undecryptable, 403 not permitted, 404, 409
  duplicate, below the threshold, not combining, too many, 410 expired or
  released, 422 malformed, another group, an unknown group); a body that does not
  validate is 422 `malformed`; an unknown path 404, a wrong method 405, a
  body over `max_body_bytes` 413. A last-resort handler answers anything
  else as 500 `internal_error` in JSON and logs it, but no input should
  reach it: the tests send arbitrary bodies and assert no 5xx.
- Unknown body fields are ignored, as farMFA's Go server does; types are
  strict (a ttl of "60" or 60.0 is refused). Bodies are JSON sent as
  `application/json` (as farMFA's clients do; a form or text/plain body is
  422, which also keeps cross-site forms out once the app sits behind
  central's cookie login). A session id that is not 16 base32 characters is
  simply not found.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.exceptions import HTTPException

from shimmfa import __version__
from shimmfa.errors import QuorumError
from shimmfa.quorum.age_tocs import MAX_SEALED_CHARS
from shimmfa.quorum.approvers import Approver
from shimmfa.quorum.oracle import DEFAULT_TTL, MAX_TTL, MIN_TTL, Oracle
from shimmfa.quorum.records import Refusal

__all__ = [
    "STATUS",
    "AddToc",
    "ApproverHook",
    "Error",
    "NewSession",
    "Session",
    "SessionCredentials",
    "SessionKeyEncryptionKey",
    "TOTPCode",
    "create_app",
]

ApproverHook = Callable[[Request], "str | Approver | None"]
MAX_BODY_BYTES = 64 * 1024
STATUS: dict[str, int] = {
    Refusal.BAD_KEK: 400,
    Refusal.UNDECRYPTABLE: 400,
    Refusal.NOT_PERMITTED: 403,
    Refusal.NOT_FOUND: 404,
    Refusal.DUPLICATE: 409,
    Refusal.BELOW_THRESHOLD: 409,
    Refusal.MISMATCH: 409,
    Refusal.TOO_MANY: 409,
    Refusal.EXPIRED: 410,
    Refusal.RELEASED: 410,
    Refusal.MALFORMED: 422,
    Refusal.WRONG_GROUP: 422,
    Refusal.UNKNOWN_GROUP: 422,
}
_HTTP_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}
log = logging.getLogger("shimmfa.quorum.api")


# -- bodies (farMFA's schemas, by farMFA's names) ----------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class NewSession(_Body):
    toc_zero: dict[str, Any] = Field(description="The applicant's own Toc, in clear.")
    ttl: StrictInt = Field(DEFAULT_TTL, ge=MIN_TTL, le=MAX_TTL, description="Seconds to expiry.")


class AddToc(_Body):
    encrypted_toc: StrictStr = Field(
        max_length=MAX_SEALED_CHARS, description="A Toc sealed to the session's TEK, armored."
    )


class SessionKeyEncryptionKey(_Body):
    kek: StrictStr = Field(max_length=1024, description="The KEK POST /sessions returned.")


class Session(BaseModel):
    id: str
    toc_group_id: str
    expires_at: str
    created_at: str
    ttl: int
    complete: bool
    tocs_in_group: int
    tocs_threshold: int
    tocs_provided: int


class SessionCredentials(Session):
    tek: str
    kek: str


class TOTPCode(BaseModel):
    totp: str
    totp_expires_at: str
    session_expires_at: str


class Error(BaseModel):
    code: str
    message: str


# -- the app ------------------------------------------------------------------------------------


def create_app(
    oracle: Oracle,
    *,
    approver: ApproverHook | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """farMFA's oracle API over `oracle`; `approver` names who calls."""

    def who(request: Request) -> str | Approver | None:
        return approver(request) if approver is not None else None

    app = FastAPI(
        title="shimmfa quorum oracle",
        version=__version__,
        description="farMFA-compatible oracle: releases a TOTP code once a quorum of "
        "Toc holders has approved (OpenAPI 0.2.0 paths and bodies).",
        responses={"default": {"model": Error, "description": "{code, message}"}},
    )

    @app.post("/sessions", response_model=SessionCredentials)
    def create_session(body: NewSession, request: Request) -> JSONResponse:
        """Start a session with the applicant's Toc (toc_zero)."""
        credentials = oracle.open_session(body.toc_zero, body.ttl, who(request))
        return JSONResponse(credentials.as_dict())

    @app.get("/sessions/{session_id}", response_model=Session)
    def get_session(session_id: str, request: Request) -> JSONResponse:
        """The session's state: how many Tocs it has and needs."""
        who(request)  # authenticates, where the host authenticates callers
        return JSONResponse(oracle.session(session_id).as_dict())

    @app.post("/sessions/{session_id}/tocs")
    def post_toc(session_id: str, body: AddToc, request: Request) -> Response:
        """Join a constituent's Toc, sealed to the session's TEK."""
        oracle.submit(session_id, body.encrypted_toc, who(request))
        return Response(status_code=200)

    @app.post("/sessions/{session_id}/totp", response_model=TOTPCode)
    def generate_totp(
        session_id: str, body: SessionKeyEncryptionKey, request: Request
    ) -> JSONResponse:
        """Release the current TOTP code, once, when the quorum is reached."""
        return JSONResponse(oracle.release(session_id, body.kek, who(request)).as_dict())

    app.add_exception_handler(QuorumError, _quorum_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(_BodyLimit, limit=max_body_bytes)
    return app


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


async def _quorum_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, QuorumError)  # noqa: S101 - registered for QuorumError only
    return _error(STATUS.get(exc.reason, 400), exc.reason, str(exc))


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(item) for item in error.get("loc", ()) if item != "body")
        parts.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return _error(422, Refusal.MALFORMED, "; ".join(parts) or "the body is not valid")


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)  # noqa: S101
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    response = _error(exc.status_code, code, message)
    response.headers.update(exc.headers or {})
    return response


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(500, "internal_error", "internal error; the oracle's log has details")


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _BodyLimit:
    """413 for a body over `limit` bytes, declared or streamed."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _send_too_large(send, self.limit)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, f"the body is over {self.limit} bytes")
            return message

        await self.app(scope, limited, send)


async def _send_too_large(send: Send, limit: int) -> None:
    body = json.dumps({"code": "too_large", "message": f"the body is over {limit} bytes"})
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})
