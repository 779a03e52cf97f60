"""Reviews of break-glass sessions over the API (`central/reviews.py` states
the rules).

    GET  /breakglass/reviews?state=open|overdue|closed&shim_id=   any role
    GET  /breakglass/reviews/{id}                                 any role
    POST /breakglass/reviews/{id}/signoffs {comment}   clinical engineering, infosec
         201 the review; 403 `same_person`; 409 `already_signed`, `closed`;
         422 a missing comment
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from shimmfa.central import reviews
from shimmfa.central.api.deps import CentralDep, Reader, Reviewer
from shimmfa.central.api.schemas import ErrorBody

__all__ = ["router"]

router = APIRouter(prefix="/breakglass/reviews", tags=["break-glass"])

ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody} for status in (401, 403, 404, 409, 422)
}
ReviewId = Annotated[int, Path(ge=1, le=2**62)]


class SignoffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str = Field(min_length=1, max_length=reviews.MAX_COMMENT)


@router.get("", responses=ERRORS)
async def list_reviews(
    principal: Reader,
    central: CentralDep,
    state: Annotated[str | None, Query(pattern="^(open|overdue|closed)$")] = None,
    shim_id: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> JSONResponse:
    """Reviews, newest first: `open` (overdue ones included), `overdue`, `closed`."""
    rows = await run_in_threadpool(
        lambda: reviews.list_reviews(central, state=state, shim_id=shim_id, limit=limit)
    )
    now = central.clock()
    return JSONResponse({"reviews": [reviews.review_json(row, now) for row in rows]})


@router.get("/{review_id}", responses=ERRORS)
async def get_review(review_id: ReviewId, principal: Reader, central: CentralDep) -> JSONResponse:
    row = await run_in_threadpool(reviews.get_review, central, review_id)
    return JSONResponse(reviews.review_json(row, central.clock()))


@router.post("/{review_id}/signoffs", status_code=201, responses=ERRORS)
async def sign_off(
    review_id: ReviewId, body: SignoffIn, principal: Reviewer, central: CentralDep
) -> JSONResponse:
    """Sign the review off for your role, with your comment."""
    row = await run_in_threadpool(reviews.sign_off, central, principal, review_id, body.comment)
    return JSONResponse(reviews.review_json(row, central.clock()), status_code=201)
