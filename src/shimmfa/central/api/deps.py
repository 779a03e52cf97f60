"""Who is calling, as `Annotated` dependencies.

Rules:
- An operator or machine authenticates with `Authorization: Bearer smt_...`
  (an API token) or the session cookie a login set. A request with the
  cookie that changes anything (not GET, HEAD, OPTIONS) must carry the
  session's CSRF token, as `X-CSRF-Token` or (the web UI's forms) as the
  form field `csrf_token`: 403 "csrf" otherwise.
- `require(*roles)` is the one role check: another role gets 403 before the
  endpoint runs, so nothing changes.
- Shims authenticate on the ingest endpoints only, with their own
  credential (`ingest.authenticate_shim`); an operator's token is not one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from shimmfa.central.access import (
    Principal,
    csrf_matches,
    principal_for_session,
    principal_for_token,
)
from shimmfa.central.context import Central
from shimmfa.central.problems import Forbidden, Unauthenticated

__all__ = [
    "COOKIE",
    "ENROLERS",
    "MAINTAINERS",
    "PLAYERS",
    "READERS",
    "REQUESTERS",
    "REVIEWERS",
    "Admin",
    "CentralDep",
    "Enroler",
    "Maintainer",
    "Player",
    "Reader",
    "Requester",
    "Reviewer",
    "bearer",
    "get_central",
    "get_principal",
    "require",
]

COOKIE = "shimmfa_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
READERS = ("admin", "clinical_engineering", "infosec", "auditor")
MAINTAINERS = ("admin", "clinical_engineering")
ENROLERS = MAINTAINERS  # issue 17: technicians, groups and assignments
PLAYERS = ("auditor", "infosec")  # issue 17: recording playback and export
REQUESTERS = ("admin", "clinical_engineering", "infosec")  # issue 16: break-glass requests
REVIEWERS = ("clinical_engineering", "infosec")  # issue 16: break-glass review sign-offs


def get_central(request: Request) -> Central:
    central: Central = request.app.state.central
    return central


CentralDep = Annotated[Central, Depends(get_central)]


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("use Authorization: Bearer <token>")
    return token.strip()


async def get_principal(request: Request, central: CentralDep) -> Principal:
    token = bearer(request)
    if token is not None:
        return await run_in_threadpool(principal_for_token, central, token)
    cookie = request.cookies.get(COOKIE)
    if cookie is None:
        raise Unauthenticated("log in or send an API token (Authorization: Bearer smt_...)")
    principal = await run_in_threadpool(principal_for_session, central, cookie)
    if request.method not in SAFE_METHODS and not csrf_matches(
        principal, await csrf_given(request)
    ):
        raise Forbidden("missing or wrong X-CSRF-Token for this session", "csrf")
    return principal


async def csrf_given(request: Request) -> str | None:
    """The CSRF token of a request: its `X-CSRF-Token` header, or a web
    form's `csrf_token` field (the UI's forms)."""
    header = request.headers.get("x-csrf-token")
    if header is not None:
        return header
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        value = (await request.form()).get("csrf_token")
        return value if isinstance(value, str) else None
    return None


def require(*roles: str) -> Callable[..., object]:
    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in roles:
            raise Forbidden(f"the {principal.role} role may not do this", "forbidden")
        return principal

    return check


Reader = Annotated[Principal, Depends(require(*READERS))]
Admin = Annotated[Principal, Depends(require("admin"))]
Maintainer = Annotated[Principal, Depends(require(*MAINTAINERS))]
# issue 17: who enrols, assigns and revokes technicians and manages groups
# (as who schedules maintenance), and who plays recordings back
Enroler = Annotated[Principal, Depends(require(*ENROLERS))]
Player = Annotated[Principal, Depends(require(*PLAYERS))]
# issue 16: who asks for a break-glass code, and who signs its reviews off
# (approving is decided per deal: a holder, in their group's role)
Requester = Annotated[Principal, Depends(require(*REQUESTERS))]
Reviewer = Annotated[Principal, Depends(require(*REVIEWERS))]
