"""The reviews of break-glass sessions: the list (open, overdue, closed)
and a review's page with its sign-off form (`central/reviews.py` states
the rules; the same domain function and role check as the API).

A refusal comes back on the review's page, in words, next to the comment
field (status 4xx), nothing changed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from shimmfa.central import reviews
from shimmfa.central.access import Principal
from shimmfa.central.api.deps import Reader, Reviewer
from shimmfa.central.api.errors import status_of
from shimmfa.central.problems import Problem
from shimmfa.central.ui.render import page

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)

ReviewId = Annotated[int, Path(ge=1, le=2**62)]
STATES = ("open", "overdue", "closed")


@router.get("/reviews")
async def reviews_view(request: Request, principal: Reader) -> Response:
    central = request.app.state.central
    state = request.query_params.get("state", "open")
    state = state if state in STATES else ""
    rows = await run_in_threadpool(
        lambda: reviews.list_reviews(central, state=state or None, limit=200)
    )
    views = [reviews.review_json(row, central.clock()) for row in rows]
    return page(request, "reviews.html", principal, nav="reviews", reviews=views, state=state,
                states=STATES)  # fmt: skip


async def _detail(
    request: Request, principal: Principal, review_id: int, status: int = 200, **extra: object
) -> Response:
    central = request.app.state.central
    row = await run_in_threadpool(reviews.get_review, central, review_id)
    review = reviews.review_json(row, central.clock())
    signed = review["signoffs"].get(principal.role) is not None
    context = {"review": review, "errors": {}, "values": {},
               "may_sign": principal.role in reviews.AUDIENCES and not signed
               and review["state"] != "closed"} | extra  # fmt: skip
    return page(request, "review.html", principal, status, nav="reviews", **context)


@router.get("/reviews/{review_id}")
async def review_view(request: Request, principal: Reader, review_id: ReviewId) -> Response:
    return await _detail(request, principal, review_id)


@router.post("/reviews/{review_id}/signoff")
async def sign_off(request: Request, principal: Reviewer, review_id: ReviewId) -> Response:
    form = await request.form()
    comment = str(form.get("comment", ""))[: reviews.MAX_COMMENT + 1]
    central = request.app.state.central
    try:
        await run_in_threadpool(reviews.sign_off, central, principal, review_id, comment)
    except Problem as exc:
        if exc.code == "not_found":
            raise
        errors, values = {"comment": exc.message}, {"comment": comment}
        return await _detail(request, principal, review_id, status_of(exc), errors=errors,
                             values=values)  # fmt: skip
    return RedirectResponse(f"/ui/reviews/{review_id}", status_code=303)
