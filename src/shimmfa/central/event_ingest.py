"""Event ingest: the batches the shim's `https` sender posts,
`{"events": [core.events.to_json(e), ...]}`.

Rules:
- All or nothing: every event must parse with `core.events.from_json`
  (`Invalid`, 422, otherwise), be of the credential's shim (`Forbidden`
  "wrong_shim") and, for a heartbeat event, carry a heartbeat that verifies
  with the shim's key (`Forbidden` "bad_signature"). Nothing is stored
  unless the whole batch passes.
- Idempotent by `event_id` (unique): an event seen before is skipped, so a
  batch sent twice is stored once. The reply counts `accepted` (the batch),
  `new` (stored now) and `stale` (new heartbeat events that did not move
  the shim's position: stored, never refused, so a sender never gets stuck).
- New events act on the shim in batch order: a heartbeat moves its
  position (`ingest.move`; one whose boot count went backwards enters
  `state_reset`); `shim_stopping` marks it stopped (unless a later
  heartbeat was already accepted); `tamper` and `sensor_fault` mark it
  tampered (one `tampered` alarm); `latch_reset` clears that.
- `session_start`, `session_end` and `auth_success` events also go into
  the session index and technicians' last logins (`sessions.note_event`),
  in the same transaction; a `breakglass_session` event, or a
  `session_start` with `break_glass: true`, opens the session's review
  once (`reviews.note_event`), in the same transaction too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from shimmfa.central import reviews
from shimmfa.central.context import Central, ShimIdentity
from shimmfa.central.ingest import move, refusal, verify_for
from shimmfa.central.models import EventRow, ShimRow
from shimmfa.central.problems import Conflict, Forbidden, Invalid, Unauthenticated
from shimmfa.central.records import record
from shimmfa.central.sessions import INDEXED_KINDS, note_event
from shimmfa.core.events import Event, from_json
from shimmfa.core.heartbeat import VerifiedHeartbeat

__all__ = ["MAX_EVENTS", "BatchResult", "ingest_events", "parse_batch"]

MAX_EVENTS = 1000
TAMPER_KINDS = frozenset({"tamper", "sensor_fault"})


@dataclass(frozen=True, slots=True)
class BatchResult:
    accepted: int
    new: int
    stale: int


def parse_batch(
    identity: ShimIdentity, document: object
) -> list[tuple[Event, VerifiedHeartbeat | None]]:
    """Every event of the batch, checked; the Problem to answer otherwise."""
    if not isinstance(document, dict) or set(document) != {"events"}:
        raise Invalid('the body must be {"events": [...]}', "malformed")
    items = document["events"]
    if not isinstance(items, list) or len(items) > MAX_EVENTS:
        raise Invalid(f'"events" must be a list of at most {MAX_EVENTS} events', "malformed")
    parsed: list[tuple[Event, VerifiedHeartbeat | None]] = []
    for index, item in enumerate(items):
        try:
            event = from_json(item)
        except (ValueError, TypeError) as exc:
            raise Invalid(f"event {index}: {exc}", "malformed") from None
        if event.shim_id != identity.shim_id:
            raise Forbidden(
                f"event {index} is of another shim than this credential's", "wrong_shim"
            )
        heartbeat = None
        if event.heartbeat is not None:
            heartbeat = verify_for(identity, _plain(event.heartbeat))
        parsed.append((event, heartbeat))
    return parsed


def _plain(value: Any) -> Any:
    """A mapping proxy tree as plain dicts (JSON-able)."""
    if hasattr(value, "items"):
        return {key: _plain(item) for key, item in value.items()}
    return value


def ingest_events(central: Central, identity: ShimIdentity, document: object) -> BatchResult:
    parsed = parse_batch(identity, document)
    unique: dict[str, tuple[Event, VerifiedHeartbeat | None]] = {}
    for event, heartbeat in parsed:
        unique.setdefault(event.event_id, (event, heartbeat))
    now = central.clock()
    stale = 0
    with central.sessions.begin() as session:
        shim = session.scalars(
            select(ShimRow).where(ShimRow.pk == identity.pk).with_for_update()
        ).first()
        if shim is None:
            central.identities.forget(identity.credential_hash)
            raise Unauthenticated("unknown shim credential")
        fresh = _store(central, session, list(unique.values()), now)
        for event, heartbeat in unique.values():
            if event.event_id not in fresh:
                continue
            if heartbeat is not None:
                stale += not _heartbeat(central, session, identity, event, heartbeat, now)
            else:
                _act(central, session, shim, event, now)
                if event.kind in INDEXED_KINDS:
                    note_event(session, shim.shim_id, event.kind, event.at, event.fields)
                if event.kind in reviews.REVIEW_KINDS:
                    reviews.note_event(session, shim.shim_id, event.kind, event.at, event.fields,
                                       now=now, forward=central.forward)  # fmt: skip
    return BatchResult(len(parsed), len(fresh), stale)


def _store(
    central: Central,
    session: Session,
    events: Sequence[tuple[Event, VerifiedHeartbeat | None]],
    now: float,
) -> set[str]:
    if not events:
        return set()
    insert = pg_insert if central.dialect == "postgresql" else sqlite_insert
    rows = [
        {
            "event_id": event.event_id,
            "source": "shim",
            "shim_id": event.shim_id,
            "kind": event.kind,
            "severity": event.severity,
            "security": event.security,
            "at": event.at,
            "received_at": now,
            "fields": dict(event.fields),
            "heartbeat": _plain(event.heartbeat) if event.heartbeat is not None else None,
        }
        for event, _ in events
    ]
    statement = (
        insert(EventRow)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(EventRow.event_id)
    )
    fresh: set[str] = set()
    for row in rows:  # one by one: RETURNING with many rows is not portable with ON CONFLICT
        fresh.update(session.scalars(statement, row))
    return fresh


def _heartbeat(
    central: Central,
    session: Session,
    identity: ShimIdentity,
    event: Event,
    heartbeat: VerifiedHeartbeat,
    now: float,
) -> bool:
    """Move the shim with a heartbeat event's heartbeat; False if stale."""
    wire = json.dumps(_plain(event.heartbeat), separators=(",", ":"), ensure_ascii=False)
    postgres = central.dialect == "postgresql"
    if move(session.connection(), identity, heartbeat, wire, now, postgres=postgres):
        return True
    problem = refusal(central, session, identity, heartbeat, now)
    if isinstance(problem, Conflict):
        return False
    raise problem


def _act(central: Central, session: Session, shim: ShimRow, event: Event, now: float) -> None:
    session.refresh(shim)  # a heartbeat of this batch may have moved it
    if event.kind == "shim_stopping":
        if shim.last_sent_at is None or event.at >= shim.last_sent_at:
            shim.stopped_at = now
    elif event.kind in TAMPER_KINDS:
        shim.tampered_at = shim.tampered_at if shim.tampered_at is not None else now
        shim.tampered_sent_at = max(shim.tampered_sent_at or event.at, event.at)
        if not shim.tamper_alarmed:
            shim.tamper_alarmed = True
            record(
                session,
                "tampered",
                now=now,
                shim_id=shim.shim_id,
                fields={"source_event": event.event_id, "event_kind": event.kind},
                forward=central.forward,
            )
    elif event.kind == "latch_reset":
        shim.tampered_at = shim.tampered_sent_at = None
        shim.tamper_alarmed = False
    session.flush()
