"""`/api/v1/chain`: the seed 003 demo's routes, for operators' further
factors (`factors`) and step-up attempts (`chains`), without its holes.

- `GET  /chain/users/{user_id}/factors`: the operator's factors (no secret).
- `POST /chain/users/{user_id}/factors/{factor_id}/enroll`: a new secret,
  pending, shown once as an otpauth URI (201). Replacing a confirmed factor
  needs `password` and `code` (re-authentication), else 403.
- `POST /chain/users/{user_id}/factors/{factor_id}/confirm`: one current
  code makes the pending secret the factor's.
- `POST /chain/users/{user_id}/attempt/start`: a step-up attempt of one's
  own chain (201); 400 `missing_enrollment` listing the factors not
  enrolled yet; 429 while locked out.
- `POST /chain/attempt/verify`: one step; 409 `chain_breached` for a
  factor out of order; 429 when locked out; a wrong code answers 200 with
  `next_factor_label` "RESET -> restart with <first label>" (the seed's).

Every route needs an operator's session (or an API token, refused with
403 for what belongs to a person). No route takes a window or a secret from
the client, and none answers a current code.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from shimmfa.central import factors
from shimmfa.central.access import Principal
from shimmfa.central.api.deps import CentralDep, Reader
from shimmfa.central.api.schemas import ErrorBody, iso
from shimmfa.central.chains import STEP_UP, begin, step
from shimmfa.central.context import Central
from shimmfa.central.models import Operator
from shimmfa.central.problems import Forbidden, Invalid, NotFound
from shimmfa.core.chain import RESET_LABEL

__all__ = ["router"]

router = APIRouter(prefix="/chain", tags=["mfa chain"])

ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 422, 429)
}
UserId = Annotated[str, Path(min_length=1, max_length=64)]
FactorId = Annotated[str, Path(min_length=1, max_length=32)]
NO_STORE = {"Cache-Control": "no-store"}


class EnrollIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str | None = Field(default=None, max_length=64)
    password: str | None = Field(default=None, max_length=1024, description="Re-authentication.")
    code: str | None = Field(default=None, max_length=64, description="Re-authentication.")


class EnrollOut(BaseModel):
    factor_id: str
    label: str
    otpauth_uri: str = Field(description="Shown once: add it to the authenticator app.")
    status: str = "pending"
    replaces: bool


class ConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(max_length=64)


class FactorOut(BaseModel):
    factor_id: str
    label: str
    active: bool
    pending: bool
    created_at: str | None
    confirmed_at: str | None


class AttemptOut(BaseModel):
    session_id: str
    next_factor_label: str
    steps: int
    expires_at: str | None


class VerifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session_id: str = Field(max_length=128)
    factor_id: str | None = Field(default=None, max_length=32)
    user_input: str = Field(max_length=64)


class VerifyOut(BaseModel):
    success: bool
    is_complete: bool
    next_factor_label: str


def _view(view: factors.FactorView) -> FactorOut:
    return FactorOut(
        factor_id=view.factor_id,
        label=view.label,
        active=view.active,
        pending=view.pending,
        created_at=iso(view.created_at),
        confirmed_at=iso(view.confirmed_at),
    )


@router.get("/users/{user_id}/factors", responses=ERRORS, summary="An operator's factors")
async def get_factors(user_id: UserId, principal: Reader, central: CentralDep) -> list[FactorOut]:
    found = await run_in_threadpool(factors.list_factors, central, principal, user_id)
    return [_view(view) for view in found]


@router.post(
    "/users/{user_id}/factors/{factor_id}/enroll",
    status_code=201,
    responses=ERRORS,
    summary="Enrol a factor (pending until confirmed)",
)
async def post_enroll(
    user_id: UserId,
    factor_id: FactorId,
    body: EnrollIn,
    request: Request,
    response: Response,
    principal: Reader,
    central: CentralDep,
) -> EnrollOut:
    done = await run_in_threadpool(
        lambda: factors.enrol_factor(
            central,
            request.app.state.login_verifier,
            principal,
            user_id,
            factor_id,
            label=body.label,
            password=body.password,
            code=body.code,
        )
    )
    response.headers.update(NO_STORE)
    return EnrollOut(
        factor_id=done.factor_id, label=done.label, otpauth_uri=done.uri, replaces=done.replaces
    )


@router.post(
    "/users/{user_id}/factors/{factor_id}/confirm",
    responses=ERRORS,
    summary="Confirm a pending factor with one current code",
)
async def post_confirm(
    user_id: UserId, factor_id: FactorId, body: ConfirmIn, principal: Reader, central: CentralDep
) -> FactorOut:
    view = await run_in_threadpool(
        factors.confirm_factor, central, principal, user_id, factor_id, body.code
    )
    return _view(view)


def _own_operator(central: Central, principal: Principal, user_id: str) -> Operator:
    if principal.kind != "operator":
        raise Forbidden("a chain belongs to an operator's login: log in as one", "operators_only")
    if principal.name != user_id:
        raise Forbidden("an operator proves only their own chain", "forbidden")
    with central.sessions() as session:
        operator = session.get(Operator, user_id)
    if operator is None:  # pragma: no cover - the session's operator exists
        raise NotFound(f"no operator {user_id!r}")
    return operator


@router.post(
    "/users/{user_id}/attempt/start",
    status_code=201,
    responses=ERRORS,
    summary="Start a step-up attempt of one's own chain",
)
async def post_start(
    user_id: UserId, response: Response, principal: Reader, central: CentralDep
) -> AttemptOut:
    def start() -> AttemptOut:
        operator = _own_operator(central, principal, user_id)
        pending = begin(central, operator, STEP_UP)
        if pending is None:
            raise Invalid(f"the {operator.role} role's chain has no further factor", "no_chain")
        return AttemptOut(
            session_id=pending.token,
            next_factor_label=pending.next_factor_label,
            steps=pending.steps,
            expires_at=iso(pending.expires_at),
        )

    response.headers.update(NO_STORE)
    return await run_in_threadpool(start)


@router.post("/attempt/verify", responses=ERRORS, summary="Verify one step of an attempt")
async def post_verify(body: VerifyIn, principal: Reader, central: CentralDep) -> VerifyOut:
    if principal.kind != "operator":
        raise Forbidden("a chain belongs to an operator's login: log in as one", "operators_only")
    done = await run_in_threadpool(
        lambda: step(
            central,
            body.session_id,
            STEP_UP,
            body.user_input,
            factor_id=body.factor_id,
            operator_id=principal.name,
        )
    )
    label = done.result.next_factor_label
    if not done.result.success:
        label = f"{RESET_LABEL} -> restart with {done.restart_label}"
    return VerifyOut(
        success=done.result.success, is_complete=done.result.is_complete, next_factor_label=label
    )
