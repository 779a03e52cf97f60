"""Heartbeat ingest: authenticate the shim, verify, move its position.

Rules:
- The shim authenticates with its bearer credential (`sms_...`); its hash
  names the shim. Unknown or removed: `Unauthenticated` (401).
- `core.heartbeat.verify_heartbeat` checks the wire form and the Ed25519
  signature once, with the registered key: malformed -> `Invalid`
  ("malformed", 422); a payload of another shim -> `Forbidden`
  ("wrong_shim"); a bad signature -> `Forbidden` ("bad_signature").
- `move` is the one statement that accepts a heartbeat: a conditional
  UPDATE of the shim's row, `WHERE (boot_count, seq) < new` (and the shim
  is not in `state_reset`), so two concurrent heartbeats of one shim can
  never both move it; on PostgreSQL the history row is inserted in the same
  statement (one round trip). Its SET clauses read the row's old values to
  leave the monitor its work (`check_at` = now when something happened:
  back from `missing`, an unannounced reboot, tamper). `MOVED_BATCH` is
  the same UPDATE (one definition, `_moved`) over many heartbeats of
  distinct shims at once, for the PostgreSQL fast path (`ingest_async`).
- Nothing rejected changes anything, but for one case: a verified heartbeat
  whose boot count is below the last accepted one means the shim's state
  went backwards. The shim enters `state_reset` and one `state_reset` alarm
  is raised (a conditional UPDATE: once, whatever the concurrency); every
  later heartbeat is refused as `state_reset` (409) until an admin accepts.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Double,
    String,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    column,
    false,
    func,
    insert,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSON
from sqlalchemy.orm import Session

from shimmfa.central.context import Central, ShimIdentity
from shimmfa.central.credentials import parse_public_key, token_hash
from shimmfa.central.models import HeartbeatRow, ShimRow
from shimmfa.central.problems import Conflict, Forbidden, Invalid, Unauthenticated
from shimmfa.central.records import record
from shimmfa.central.status import MISSING_PERIODS
from shimmfa.core.heartbeat import Rejection, VerifiedHeartbeat, verify_heartbeat
from shimmfa.errors import HeartbeatError

__all__ = [
    "MOVED_BATCH",
    "authenticate_shim",
    "heartbeat_values",
    "ingest_heartbeat",
    "move",
    "refusal",
    "refuse",
    "verify_for",
]

SHIMS: Table = ShimRow.__table__  # type: ignore[assignment]
HEARTBEATS: Table = HeartbeatRow.__table__  # type: ignore[assignment]


def authenticate_shim(central: Central, credential: str | None) -> ShimIdentity:
    if not credential:
        raise Unauthenticated("a shim credential is required (Authorization: Bearer sms_...)")
    digest = token_hash(credential)
    identity = central.identities.get(digest)
    if identity is not None:
        return identity
    with central.engine.connect() as connection:
        row = connection.execute(
            select(SHIMS.c.pk, SHIMS.c.shim_id, SHIMS.c.public_key).where(
                SHIMS.c.credential_hash == digest
            )
        ).first()
    if row is None:
        raise Unauthenticated("unknown shim credential")
    identity = ShimIdentity(row.pk, row.shim_id, parse_public_key(row.public_key), digest)
    central.identities.put(identity)
    return identity


def verify_for(identity: ShimIdentity, wire: bytes | dict[str, Any]) -> VerifiedHeartbeat:
    """The verified heartbeat, or the Problem to answer."""
    try:
        return verify_heartbeat(wire, {identity.shim_id: identity.raw_key}, {})
    except HeartbeatError as exc:
        if exc.reason == Rejection.UNKNOWN_SHIM:
            raise Forbidden(
                "the heartbeat is for another shim than this credential's", "wrong_shim"
            ) from None
        if exc.reason == Rejection.BAD_SIGNATURE:
            raise Forbidden(
                "bad signature: forged, altered, or not signed with the registered key",
                "bad_signature",
            ) from None
        raise Invalid(str(exc), "malformed") from None


def ingest_heartbeat(central: Central, identity: ShimIdentity, body: bytes) -> VerifiedHeartbeat:
    heartbeat = verify_for(identity, body)
    wire = json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False)
    now = central.clock()
    if central.dialect == "postgresql":  # one statement, atomic alone: one round trip
        with central.autocommit.connect() as connection:
            if move(connection, identity, heartbeat, wire, now, postgres=True):
                return heartbeat
    else:
        with central.engine.begin() as connection:
            if move(connection, identity, heartbeat, wire, now, postgres=False):
                return heartbeat
    raise refuse(central, identity, heartbeat, now)


def refuse(
    central: Central, identity: ShimIdentity, h: VerifiedHeartbeat, now: float
) -> Conflict | Unauthenticated:
    """`refusal` in its own transaction, committed before the caller raises
    it: entering state_reset is kept."""
    with central.sessions.begin() as session:
        return refusal(central, session, identity, h, now)


# A heartbeat's new values, by name (`heartbeat_values`), and their types.
_KINDS: dict[str, Any] = {
    "pk": BigInteger(),
    "b": BigInteger(),
    "s": BigInteger(),
    "now": Double(),
    "sent": Double(),
    "up": Double(),
    "state": String(),
    "sess": String(),
    "wire": Text(),
}


def heartbeat_values(
    identity: ShimIdentity, h: VerifiedHeartbeat, wire: str, now: float
) -> dict[str, Any]:
    """The values that `h` moves its shim to, by `_KINDS`' names."""
    return {
        "pk": identity.pk,
        "b": h.boot_count,
        "s": h.seq,
        "now": now,
        "sent": h.sent_at_epoch,
        "up": float(h.uptime_s),
        "state": h.state,
        "sess": h.open_session,
        "wire": wire,
    }


class _Source:
    """Where a heartbeat's new values come from, by `_KINDS`' names: bound
    parameters (one heartbeat) or the columns of a JSON recordset (a
    batch)."""

    def __init__(self, pick: Any) -> None:
        self.pk, self.b, self.seq = pick("pk"), pick("b"), pick("s")
        self.now, self.sent, self.up = pick("now"), pick("sent"), pick("up")
        self.state, self.sess, self.wire = pick("state"), pick("sess"), pick("wire")


def _moved(v: _Source, *narrowing: Any) -> Any:
    """The conditional UPDATE that accepts what `v` holds: only newer than
    the shim's position, never in state_reset (`narrowing`: more WHERE
    clauses)."""
    s = SHIMS.c
    tampered = v.state == "tampered"
    clearing = and_(v.state == "ok", s.tampered_sent_at.is_not(None), v.sent > s.tampered_sent_at)
    unannounced = and_(s.boot_count.is_not(None), v.b > s.boot_count, s.stopped_at.is_(None))
    values = {
        "boot_count": v.b,
        "seq": v.seq,
        "last_seen_at": v.now,
        "last_sent_at": v.sent,
        "uptime_s": v.up,
        "hb_state": v.state,
        "open_session": v.sess,
        "stopped_at": null(),
        "back_at": case((and_(s.alarm == "missing", s.back_at.is_(None)), v.now), else_=s.back_at),
        "reboot_from": case(
            (unannounced, func.coalesce(s.reboot_from, s.boot_count)), else_=s.reboot_from
        ),
        "tampered_at": case(
            (tampered, func.coalesce(s.tampered_at, v.now)),
            (clearing, null()),
            else_=s.tampered_at,
        ),
        "tampered_sent_at": case((tampered, v.sent), (clearing, null()), else_=s.tampered_sent_at),
        "tamper_alarmed": case((clearing, false()), else_=s.tamper_alarmed),
        "check_at": case(
            (
                or_(
                    s.alarm != "",
                    s.reboot_from.is_not(None),
                    unannounced,
                    and_(tampered, s.tamper_alarmed.is_(False)),
                ),
                v.now,
            ),
            else_=v.now + MISSING_PERIODS * s.heartbeat_period,
        ),
    }
    newer = or_(
        s.boot_count.is_(None), s.boot_count < v.b, and_(s.boot_count == v.b, s.seq < v.seq)
    )
    return update(SHIMS).where(s.pk == v.pk, *narrowing, s.reset_at.is_(None), newer).values(values)


_HISTORY = ("boot_count", "seq", "received_at", "sent_at", "state", "wire")


def _history(v: _Source) -> list[Any]:
    """The history row's values, in `_HISTORY`'s order."""
    return [v.b, v.seq, v.now, v.sent, v.state, v.wire]


def _move_statements() -> tuple[Any, Any, Any]:
    """The accepting statements, built once with bound parameters: (the
    UPDATE, the UPDATE + history INSERT in one statement for PostgreSQL,
    the history INSERT alone for SQLite). Reusing one statement object
    spares SQLAlchemy building it and computing its cache key per call."""
    v = _Source(lambda name: bindparam(f"p_{name}", type_=_KINDS[name]))
    moved = _moved(v)
    cte = moved.returning(SHIMS.c.pk).cte("moved")
    both = (
        insert(HEARTBEATS)
        .from_select(["shim_pk", *_HISTORY], select(cte.c.pk, *_history(v)))
        .returning(HEARTBEATS.c.id)
    )
    alone = insert(HEARTBEATS).values(shim_pk=v.pk, **dict(zip(_HISTORY, _history(v), strict=True)))
    return moved, both, alone


def _batch_statement() -> Any:
    """PostgreSQL: many heartbeats (of distinct shims) accepted in one
    statement. They come as one JSON array of objects, one per heartbeat
    with the keys of `heartbeat_values` (`:rows`, read by `json_to_recordset`),
    and their shims' pks as an array (`:pks`):
    the statement's text is one whatever the batch's size, and the client
    serialises the batch in one `json.dumps`. It returns the pk of each
    shim it moved; a shim not returned was refused."""
    table = (
        func.json_to_recordset(cast(bindparam("rows", type_=Text()), JSON))
        .table_valued(*(column(name, kind) for name, kind in _KINDS.items()))
        .render_derived(name="v", with_types=True)
    )
    v = _Source(lambda name: table.c[name])
    # `pk = ANY(:pks)` (the same pks as an array) finds the rows by primary
    # key whatever the planner knows of the table: without it, a join could
    # scan every shim.
    pks = bindparam("pks", type_=ARRAY(BigInteger()))
    cte = _moved(v, SHIMS.c.pk == any_(pks)).returning(SHIMS.c.pk, *_history(v)).cte("moved")
    return (
        insert(HEARTBEATS)
        .from_select(["shim_pk", *_HISTORY], select(*cte.c))
        .returning(HEARTBEATS.c.shim_pk)
    )


MOVED, MOVED_WITH_HISTORY, HISTORY = _move_statements()
MOVED_BATCH = _batch_statement()
_COMPILED: dict[str, tuple[str, Any]] = {}


def _compiled(connection: Connection) -> tuple[str, Any]:
    """The PostgreSQL statement compiled once: executed as its SQL text, so
    no statement building, cache key or compile cache lookup per heartbeat."""
    name = connection.dialect.name
    found = _COMPILED.get(name)
    if found is None:
        compiled = MOVED_WITH_HISTORY.compile(dialect=connection.dialect)
        found = _COMPILED[name] = (str(compiled), compiled)
    return found


def move(
    connection: Connection,
    identity: ShimIdentity,
    h: VerifiedHeartbeat,
    wire: str,
    now: float,
    *,
    postgres: bool,
) -> bool:
    """Accept `h` if it is newer than the shim's position; False if not."""
    values = heartbeat_values(identity, h, wire, now)
    params = {f"p_{name}": value for name, value in values.items()}
    if postgres:
        sql, compiled = _compiled(connection)
        full = compiled.construct_params(params)
        return connection.exec_driver_sql(sql, full).first() is not None
    if getattr(connection.execute(MOVED, params), "rowcount", 0) != 1:
        return False
    connection.execute(HISTORY, params)
    return True


def refusal(
    central: Central,
    session: Session,
    identity: ShimIdentity,
    h: VerifiedHeartbeat,
    now: float,
) -> Conflict | Unauthenticated:
    """Why `h` did not move the shim (called in a transaction, after `move`
    returned False): the shim is gone, in state_reset (entered now, once, if
    `h` went back in boot count), or `h` is simply not newer."""
    row = session.execute(
        select(SHIMS.c.boot_count, SHIMS.c.seq, SHIMS.c.reset_at, SHIMS.c.credential_hash)
        .where(SHIMS.c.pk == identity.pk)
        .with_for_update()
    ).first()
    if row is None or row.credential_hash != identity.credential_hash:
        central.identities.forget(identity.credential_hash)
        return Unauthenticated("unknown shim credential")
    reset = Conflict(
        f"shim {identity.shim_id!r} is in state_reset: its boot count went backwards; an "
        "admin must accept the reset (POST /api/v1/shims/{id}/accept-reset)",
        "state_reset",
    )
    if row.reset_at is not None:
        return reset
    if row.boot_count is not None and h.boot_count < row.boot_count:
        entered = getattr(
            session.execute(
                update(SHIMS)
                .where(SHIMS.c.pk == identity.pk, SHIMS.c.reset_at.is_(None))
                .values(reset_at=now, reset_boot_count=h.boot_count, reset_seq=h.seq, check_at=None)
            ),
            "rowcount",
            0,
        )
        if entered == 1:
            record(
                session,
                "state_reset",
                now=now,
                shim_id=identity.shim_id,
                fields={
                    "boot_count": h.boot_count,
                    "seq": h.seq,
                    "last_boot_count": row.boot_count,
                    "last_seq": row.seq,
                },
                forward=central.forward,
            )
        return reset
    return Conflict(
        f"heartbeat ({h.boot_count}, {h.seq}) of shim {identity.shim_id!r} is not after the "
        f"last accepted ({row.boot_count}, {row.seq})",
        "not_newer",
    )
