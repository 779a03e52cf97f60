"""The UI's login and logout, and how a request's problems become pages.

Rules:
- The login form posts to `/ui/login`; the service's one login
  (`operators.login`, the verifier the app was made with) decides, so the
  UI and `POST /api/v1/login` follow the same rules and audit trail. Any
  failure - unknown operator, wrong password or code, replay, lockout -
  shows the same words; the precise reason is only in the audit trail.
- The form is a list of steps (`LoginStep`): each step is the fields it
  asks for. The first is operator ID, password and code; an operator whose
  role needs further factors (`chains`) then gets one screen per factor,
  `Next factor: <label>`, carrying the chain's `attempt` token in a hidden
  field. Any failure at any step goes back to the first screen.
- A successful login sets the session cookie (as the API's login) and the
  `shimmfa_csrf` cookie, both HttpOnly and SameSite=Strict, Secure over
  TLS; `next` may only name a page under `/ui/`.
- Logout is a POST with the CSRF token.
- Under `/ui`, a request without a valid session goes to the login page
  (htmx polls get `HX-Redirect`); other problems are an error page with
  the status and the message in words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from shimmfa.central.access import Principal, end_session, start_session
from shimmfa.central.api.deps import COOKIE, get_principal
from shimmfa.central.api.errors import problem_response, status_of
from shimmfa.central.chains import LOGIN, step
from shimmfa.central.operators import login
from shimmfa.central.problems import InvalidCredentials, Problem, Unauthenticated
from shimmfa.central.ui.render import CSRF_COOKIE, page

__all__ = [
    "FIRST_STEP",
    "LoginField",
    "LoginStep",
    "factor_step",
    "install_errors",
    "router",
]

router = APIRouter(prefix="/ui")


@dataclass(frozen=True, slots=True)
class LoginField:
    name: str
    label: str
    kind: str = "text"
    autocomplete: str = "off"
    numeric: bool = False


@dataclass(frozen=True, slots=True)
class LoginStep:
    """One screen of the login: the fields it asks for."""

    name: str
    fields: tuple[LoginField, ...]
    attempt: str = ""  # a chain's attempt token, carried between steps


FIRST_STEP = LoginStep(
    "password_and_code",
    (
        LoginField("operator_id", "Operator ID", "text", "username"),
        LoginField("password", "Password", "password", "current-password"),
        LoginField("code", "Authenticator code (6 digits)", "text", "one-time-code", True),
    ),
)
GENERIC_FAILURE = (
    "Invalid credentials, or this account is locked for a while after too many "
    "failures. Check the operator ID, the password and the current code, then try again."
)


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/ui/") and "//" not in target and "\\" not in target:
        return target
    return "/ui/fleet"


@router.get("/login", include_in_schema=False)
async def get_login(request: Request, next: str | None = None) -> Response:  # noqa: A002
    return page(request, "login.html", None, step=FIRST_STEP, next=_safe_next(next), error=None)


def factor_step(label: str, attempt: str) -> LoginStep:
    """The screen asking for a chain's next factor."""
    field = LoginField("code", f"Next factor: {label} (6 digits)", "text", "one-time-code", True)
    return LoginStep("factor", (field,), attempt)


@router.post("/login", include_in_schema=False)
async def post_login(request: Request) -> Response:
    central = request.app.state.central
    form = await request.form()
    values = {
        name: str(form.get(name, ""))[:1024]
        for name in ("operator_id", "password", "code", "attempt")
    }
    target = _safe_next(str(form.get("next", "")) or None)
    try:
        if values["attempt"]:
            done = await run_in_threadpool(step, central, values["attempt"], LOGIN, values["code"])
            if not done.result.is_complete:
                return page(
                    request, "login.html", None, step=factor_step(
                        done.result.next_factor_label, values["attempt"]
                    ), next=target, error=None,
                )  # fmt: skip
            operator = done.operator
        else:
            operator, pending = await run_in_threadpool(
                login, central, request.app.state.login_verifier, values["operator_id"],
                values["password"], values["code"],
            )  # fmt: skip
            if pending is not None:
                return page(
                    request, "login.html", None,
                    step=factor_step(pending.next_factor_label, pending.token),
                    next=target, error=None,
                )  # fmt: skip
    except InvalidCredentials:
        return page(
            request, "login.html", None, status_code=401, step=FIRST_STEP, next=target,
            error=GENERIC_FAILURE, operator_id=values["operator_id"][:64],
        )  # fmt: skip
    session = await run_in_threadpool(start_session, central, operator)
    answer = RedirectResponse(target, status_code=303)
    secure = central.settings.tls
    for name, value in ((COOKIE, session.token), (CSRF_COOKIE, session.csrf_token)):
        answer.set_cookie(
            name, value, max_age=int(central.settings.session_ttl), httponly=True,
            samesite="strict", secure=secure, path="/",
        )  # fmt: skip
    return answer


@router.post("/logout", include_in_schema=False)
async def post_logout(
    request: Request, principal: Annotated[Principal, Depends(get_principal)]
) -> Response:
    await run_in_threadpool(end_session, request.app.state.central, principal)
    answer = RedirectResponse("/ui/login", status_code=303)
    answer.delete_cookie(COOKIE, path="/")
    answer.delete_cookie(CSRF_COOKIE, path="/")
    return answer


def install_errors(app: FastAPI) -> None:
    """Problems under `/ui` become pages; the API keeps its JSON answers."""

    async def problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)  # noqa: S101 - registered for Problem only
        if not request.url.path.startswith("/ui"):
            return problem_response(exc)
        status = status_of(exc)
        if isinstance(exc, Unauthenticated):
            target = "/ui/login?next=" + quote(request.url.path, safe="/")
            if request.headers.get("hx-request"):
                return Response(status_code=204, headers={"HX-Redirect": target})
            return RedirectResponse(target, status_code=303)
        return page(
            request, "error.html", None, status_code=status, code=exc.code, message=exc.message
        )

    app.add_exception_handler(Problem, problem)
