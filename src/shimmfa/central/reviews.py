"""Reviews of break-glass sessions: every break-glass session at a shim is
reviewed by both departments within 24 hours.

Rules:
- A review is opened by what the shim reports (`note_event`, from the
  event ingest, in the transaction that stores the event): a
  `breakglass_session` event (the shim sends two per session, `audience`
  `clinical_engineering` and `infosec`) or a `session_start` with
  `break_glass: true`. One review per (shim, session), whichever arrives
  first and however often (idempotent: `INSERT ... ON CONFLICT DO
  NOTHING` on the unique pair); `breakglass_review_opened` is audited
  once. Which audiences' events arrived is kept (both should).
- It needs one sign-off per role, `clinical_engineering` and `infosec`,
  each with a comment (1 to 2000 characters), by an operator (or token)
  of that role; the role signed for is the signer's own. Each role signs
  once (409 `already_signed`); the same person cannot sign for both roles,
  even if their role changed in between (403 `same_person`); a closed
  review takes no more (409 `closed`). The second sign-off closes it and
  `breakglass_review_closed` is audited (with `was_overdue`).
- Overdue: a review still open `REVIEW_WINDOW` (24 h) after it was opened
  raises `breakglass_review_overdue` (ALERT, forwarded to the SIEM like the
  other alarms) once: the fleet monitor's pass (`raise_overdue`, under its
  lease) reads the reviews whose `check_at` has come (indexed, `FOR UPDATE
  SKIP LOCKED`), and clears `check_at` in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from shimmfa.central.access import Principal
from shimmfa.central.breakglass_tables import BreakglassReview
from shimmfa.central.context import Central
from shimmfa.central.problems import Conflict, Forbidden, Invalid, NotFound
from shimmfa.central.records import record
from shimmfa.core.events import iso_time

__all__ = [
    "AUDIENCES",
    "MAX_COMMENT",
    "REVIEW_KINDS",
    "REVIEW_WINDOW",
    "get_review",
    "list_reviews",
    "note_event",
    "raise_overdue",
    "review_json",
    "review_state",
    "sign_off",
]

AUDIENCES = ("clinical_engineering", "infosec")
REVIEW_KINDS = frozenset({"breakglass_session", "session_start"})
REVIEW_WINDOW = 24 * 3600.0
MAX_COMMENT = 2000
BATCH = 1000
_PREFIX = {"clinical_engineering": "clinical", "infosec": "infosec"}


def _text(value: object, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def note_event(
    session: Session,
    shim_id: str,
    kind: str,
    at: float,
    fields: Mapping[str, Any],
    *,
    now: float,
    forward: bool,
) -> None:
    """Open (once) the review of the break-glass session this event (of the
    shim's clock `at`, received `now`) reports."""
    if kind == "session_start" and fields.get("break_glass") is not True:
        return
    session_id = _text(fields.get("session_id"), 64)
    if session_id is None:
        return
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    opened = session.scalars(
        insert(BreakglassReview)
        .values(
            shim_id=shim_id,
            session_id=session_id,
            opened_at=now,
            due_at=now + REVIEW_WINDOW,
            check_at=now + REVIEW_WINDOW,
        )  # fmt: skip
        .on_conflict_do_nothing(index_elements=["shim_id", "session_id"])
        .returning(BreakglassReview.id)
    ).first()
    review = session.scalars(
        select(BreakglassReview)
        .where(BreakglassReview.shim_id == shim_id, BreakglassReview.session_id == session_id)
        .with_for_update()
    ).one()
    audience = fields.get("audience")
    if kind == "session_start":
        review.started_at = review.started_at or at
    elif audience == "clinical_engineering":
        review.clinical_notified_at = review.clinical_notified_at or now
    elif audience == "infosec":
        review.infosec_notified_at = review.infosec_notified_at or now
    if opened is not None:
        record(session, "breakglass_review_opened", now=now, shim_id=shim_id, fields={
            "review_id": review.id, "session_id": session_id, "opened_by": kind,
            "due_at": iso_time(review.due_at),
        }, forward=forward)  # fmt: skip
    session.flush()


def review_state(review: BreakglassReview, now: float) -> str:
    if review.closed_at is not None:
        return "closed"
    return "overdue" if now >= review.due_at else "open"


def review_json(review: BreakglassReview, now: float) -> dict[str, Any]:
    def when(at: float | None) -> str | None:
        return iso_time(at) if at is not None else None

    return {
        "id": review.id,
        "shim_id": review.shim_id,
        "session_id": review.session_id,
        "state": review_state(review, now),
        "opened_at": when(review.opened_at),
        "due_at": when(review.due_at),
        "overdue_alarm_at": when(review.overdue_at),
        "closed_at": when(review.closed_at),
        "notified": {
            "clinical_engineering": when(review.clinical_notified_at),
            "infosec": when(review.infosec_notified_at),
        },
        "signoffs": {
            role: {
                "by": getattr(review, f"{_PREFIX[role]}_by"),
                "at": when(getattr(review, f"{_PREFIX[role]}_at")),
                "comment": getattr(review, f"{_PREFIX[role]}_comment"),
            }
            if getattr(review, f"{_PREFIX[role]}_by") is not None
            else None
            for role in AUDIENCES
        },
    }


def list_reviews(
    central: Central, *, state: str | None = None, shim_id: str | None = None, limit: int = 100
) -> list[BreakglassReview]:
    """Newest first; `state` open (overdue included), overdue or closed."""
    now = central.clock()
    r = BreakglassReview
    query = select(r).order_by(r.opened_at.desc(), r.id.desc()).limit(limit)
    if shim_id:
        query = query.where(r.shim_id == shim_id)
    if state == "open":
        query = query.where(r.closed_at.is_(None))
    elif state == "overdue":
        query = query.where(r.closed_at.is_(None), r.due_at <= now)
    elif state == "closed":
        query = query.where(r.closed_at.is_not(None))
    with central.sessions() as session:
        return list(session.scalars(query))


def get_review(central: Central, review_id: int) -> BreakglassReview:
    with central.sessions() as session:
        review = session.get(BreakglassReview, review_id)
    if review is None:
        raise NotFound(f"no break-glass review {review_id}")
    return review


def sign_off(
    central: Central, principal: Principal, review_id: int, comment: str
) -> BreakglassReview:
    """The principal signs the review for its own role (see the rules)."""
    role = principal.role
    if role not in AUDIENCES:
        raise Forbidden(
            "only clinical engineering and infosec sign break-glass reviews off", "forbidden"
        )
    comment = comment.strip()
    if not 1 <= len(comment) <= MAX_COMMENT:
        raise Invalid(f"comment: write your review, 1 to {MAX_COMMENT} characters", "comment")
    prefix, other = _PREFIX[role], _PREFIX[AUDIENCES[1 - AUDIENCES.index(role)]]
    now = central.clock()
    with central.sessions.begin() as session:
        review = session.scalars(
            select(BreakglassReview).where(BreakglassReview.id == review_id).with_for_update()
        ).first()
        if review is None:
            raise NotFound(f"no break-glass review {review_id}")
        if review.closed_at is not None:
            raise Conflict("this review is closed: both departments signed it off", "closed")
        if getattr(review, f"{prefix}_by") is not None:
            raise Conflict(
                f"{role.replace('_', ' ')} signed this review off already "
                f"({getattr(review, f'{prefix}_by')})",
                "already_signed",
            )
        if _same(getattr(review, f"{other}_by"), principal.actor):
            raise Forbidden(
                f"{principal.name} signed this review off for the other department already; "
                "the same person cannot sign for both",
                "same_person",
            )
        setattr(review, f"{prefix}_by", principal.actor)
        setattr(review, f"{prefix}_at", now)
        setattr(review, f"{prefix}_comment", comment)
        fields: dict[str, Any] = {"review_id": review.id, "session_id": review.session_id}
        record(session, "breakglass_review_signed", now=now, shim_id=review.shim_id,
               fields={**fields, "by": principal.actor, "role": role, "comment": comment},
               forward=central.forward)  # fmt: skip
        if getattr(review, f"{other}_by") is not None:
            review.closed_at, review.check_at = now, None
            record(session, "breakglass_review_closed", now=now, shim_id=review.shim_id,
                   fields={**fields, "clinical_engineering": review.clinical_by,
                           "infosec": review.infosec_by,
                           "was_overdue": review.overdue_at is not None,
                           "open_s": round(now - review.opened_at, 3)},
                   forward=central.forward)  # fmt: skip
        session.flush()
        return review


def _same(signed_by: str | None, actor: str) -> bool:
    """The same person: the same name, as operator or token alike."""
    if signed_by is None:
        return False
    return signed_by.partition(":")[2].casefold() == actor.partition(":")[2].casefold()


def raise_overdue(session: Session, now: float, *, forward: bool) -> int:
    """Raise `breakglass_review_overdue` for each review whose time came
    (inside the monitor's pass; see the rules). Returns how many."""
    due = session.scalars(
        select(BreakglassReview)
        .where(BreakglassReview.check_at <= now)
        .order_by(BreakglassReview.check_at)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    ).all()
    raised = 0
    for review in due:
        review.check_at = None
        if review.closed_at is not None:
            continue
        raised += 1
        review.overdue_at = now
        record(session, "breakglass_review_overdue", now=now, shim_id=review.shim_id, fields={
            "review_id": review.id, "session_id": review.session_id,
            "opened_at": iso_time(review.opened_at), "hours_open": round(
                (now - review.opened_at) / 3600, 2),
            "clinical_engineering": review.clinical_by or "", "infosec": review.infosec_by or "",
        }, forward=forward)  # fmt: skip
    return raised
