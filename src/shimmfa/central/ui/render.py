"""Rendering the UI's pages: the Jinja2 environment over `central/templates`
(autoescaped), the context every page gets (who is logged in, what their
role may do, the session's CSRF token), and the few filters the templates
use for times.

Rules:
- Every page is rendered with `page(...)`, which adds `Cache-Control:
  no-store` (pages show enrolment secrets and audit data) and a Content
  Security Policy: scripts only from this origin (asciinema-player's
  terminal is WebAssembly: `wasm-unsafe-eval`), nothing from elsewhere.
- The CSRF token comes from the `shimmfa_csrf` cookie the UI's login set
  (HttpOnly, SameSite=Strict); it goes into every form as `csrf_token` and
  into htmx's requests as `X-CSRF-Token`. The server checks it against the
  session's stored hash (`api.deps.get_principal`), never the cookie alone.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from shimmfa.central.access import Principal
from shimmfa.central.api.deps import ENROLERS, MAINTAINERS, PLAYERS, REQUESTERS, REVIEWERS

__all__ = ["CSP", "CSRF_COOKIE", "TEMPLATES", "can", "page", "templates"]

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
CSRF_COOKIE = "shimmfa_csrf"
CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'; object-src 'none'"
)


def _when(at: float | None) -> str:
    if at is None:
        return "-"
    moment = dt.datetime.fromtimestamp(at, dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _ago(at: float | None, now: float) -> str:
    if at is None:
        return "never"
    seconds = max(0.0, now - at)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def templates() -> Jinja2Templates:
    made = Jinja2Templates(directory=str(TEMPLATES))
    made.env.filters["when"] = _when
    made.env.globals["ago"] = _ago
    made.env.trim_blocks = True
    made.env.lstrip_blocks = True
    return made


def can(principal: Principal | None) -> dict[str, bool]:
    """What the templates show to this role (the server checks again)."""
    role = principal.role if principal is not None else ""
    return {
        "enrol": role in ENROLERS,
        "maintain": role in MAINTAINERS,
        "play": role in PLAYERS,
        "admin": role == "admin",
        "request": role in REQUESTERS,
        "review": role in REVIEWERS,
    }


def page(
    request: Request,
    name: str,
    principal: Principal | None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    central = request.app.state.central
    rendered: Response = request.app.state.ui_templates.TemplateResponse(
        request,
        name,
        {
            "principal": principal,
            "can": can(principal),
            "csrf": request.cookies.get(CSRF_COOKIE, ""),
            "now": central.clock(),
            **context,
        },
        status_code=status_code,
    )
    rendered.headers["Cache-Control"] = "no-store"
    rendered.headers["Content-Security-Policy"] = CSP
    rendered.headers["X-Content-Type-Options"] = "nosniff"
    rendered.headers["Referrer-Policy"] = "same-origin"
    return rendered
