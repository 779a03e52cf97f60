"""Sessions and dealt groups in SQLite or PostgreSQL (SQLAlchemy Core), safe
under concurrent requests, several workers and several hosts.

Rules of this module:

- The tables are in this module's own `metadata` (`quorum_sessions`,
  `quorum_tocs`, `quorum_groups`), named with the central service's naming
  convention, so the central service's migrations can create them; the
  standalone oracle creates them itself (`create_tables`, under an advisory
  lock on PostgreSQL so that servers starting together do not race).
- Times are epoch seconds (double precision), as in the central database.
- `update` runs in one transaction that first locks the session: `SELECT
  ... FOR UPDATE` of its row on PostgreSQL; on SQLite the engine must begin
  every transaction `IMMEDIATE`, which takes the database's write lock
  before the first read: `shimmfa.central.db.open_engine` makes such
  engines (the central service's, and the CLI's for the standalone oracle).
  So two submissions of one Toc, or two code requests, run one after the
  other, each seeing what the other committed; a Toc's `(session_id, seq)`
  key and `(session_id, digest)` uniqueness back this up in the schema.
- What the oracle forgets (the sealed identity, the ciphertexts) is set to
  NULL; deleting a session deletes its Tocs first.
- `SqlGroupRegistry.register` and `retire` take the caller's connection
  when given one, so the central service records a shim's deal (and
  retires the one it replaces) in the same transaction as its own rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Double,
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    insert,
    inspect,
    select,
    text,
    update,
)

from shimmfa.core.toc import TocGroup
from shimmfa.errors import QuorumError
from shimmfa.quorum.records import (
    Change,
    SealedToc,
    SessionRecord,
    SessionState,
    TocStatus,
    deal_record,
)

__all__ = [
    "SqlGroupRegistry",
    "SqlSessionStore",
    "create_tables",
    "group_table",
    "metadata",
    "session_table",
    "toc_table",
]

T = TypeVar("T")
_CREATE_LOCK = 0x5155_4F52  # "QUOR": PostgreSQL's advisory lock while creating the tables
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

session_table = Table(
    "quorum_sessions",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("toc_group_id", String(8), nullable=False),
    Column("groups", JSON, nullable=False),  # [[group_id, size, threshold, clear], ...]
    Column("registered", Boolean, nullable=False),
    Column("ttl", Integer, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False, index=True),
    Column("tek", String(128), nullable=False),
    Column("sealed_identity", LargeBinary, nullable=True),
    Column("released_at", Double, nullable=True),
    Column("applicant", String(255), nullable=True),
)
toc_table = Table(
    "quorum_tocs",
    metadata,
    Column("session_id", String(16), ForeignKey("quorum_sessions.id"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("armored", Text, nullable=True),
    Column("digest", String(64), nullable=False),
    Column("approver", String(255), nullable=True),
    Column("submitted_at", Double, nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", String(32), nullable=True),
    Column("holds", JSON, nullable=True),  # [group_id, ...] its sender may hold; NULL: any
    UniqueConstraint("session_id", "digest"),
)
group_table = Table(
    "quorum_groups",
    metadata,
    Column("group_id", String(8), primary_key=True),
    Column("deal_id", String(8), nullable=False, index=True),
    Column("group_size", Integer, nullable=False),
    Column("group_threshold", Integer, nullable=False),
    Column("clear", Boolean, nullable=False),
    Column("registered_at", Double, nullable=False),
)


def create_tables(engine: Engine) -> None:
    """Create the quorum tables that do not exist yet (standalone oracle);
    several processes starting at once on a new database take turns. A
    database made before Tocs recorded what their sender holds gets that
    column (the central service's migrations do the same for its own)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CREATE_LOCK})
        metadata.create_all(conn)
        columns = {column["name"] for column in inspect(conn).get_columns("quorum_tocs")}
        if "holds" not in columns:
            kind = "JSON" if conn.dialect.name == "postgresql" else "TEXT"
            conn.execute(text(f"ALTER TABLE quorum_tocs ADD COLUMN holds {kind}"))


# -- sessions ---------------------------------------------------------------------------------


class SqlSessionStore:
    """A `SessionStore` on an engine (ours, or the central service's)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self, state: SessionState) -> None:
        with self._engine.begin() as conn:
            conn.execute(insert(session_table).values(_session_row(state.session)))
            for toc in state.tocs:
                conn.execute(insert(toc_table).values(_toc_row(state.session.id, toc)))

    def read(self, session_id: str) -> SessionState | None:
        with self._engine.connect() as conn:
            return _load(conn, session_id, lock=False)

    def update(
        self, session_id: str, decide: Callable[[SessionState], tuple[Change, T]]
    ) -> T | None:
        with self._engine.begin() as conn:
            state = _load(conn, session_id, lock=True)
            if state is None:
                return None
            change, result = decide(state)
            _apply(conn, session_id, change)
            return result

    def sweep(self, now: float, keep_until: float) -> int:
        sessions = session_table.c
        with self._engine.begin() as conn:
            expired = select(sessions.id).where(sessions.expires_at <= now)
            conn.execute(
                update(toc_table)
                .where(toc_table.c.session_id.in_(expired), toc_table.c.armored.is_not(None))
                .values(armored=None)
            )
            conn.execute(
                update(session_table)
                .where(sessions.expires_at <= now, sessions.sealed_identity.is_not(None))
                .values(sealed_identity=None)
            )
            old = select(sessions.id).where(sessions.expires_at < keep_until)
            conn.execute(delete(toc_table).where(toc_table.c.session_id.in_(old)))
            return conn.execute(
                delete(session_table).where(sessions.expires_at < keep_until)
            ).rowcount


def _load(conn: Connection, session_id: str, *, lock: bool) -> SessionState | None:
    query = select(session_table).where(session_table.c.id == session_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        return None
    tocs = conn.execute(
        select(toc_table).where(toc_table.c.session_id == session_id).order_by(toc_table.c.seq)
    ).mappings()
    return SessionState(_session(row), tuple(_toc(toc) for toc in tocs))


def _apply(conn: Connection, session_id: str, change: Change) -> None:
    tocs = toc_table.c
    if change.add is not None:
        conn.execute(insert(toc_table).values(_toc_row(session_id, change.add)))
    for seq, status, reason in change.marks:
        conn.execute(
            update(toc_table)
            .where(tocs.session_id == session_id, tocs.seq == seq)
            .values(status=status.value, reason=reason)
        )
    values: dict[str, Any] = {}
    if change.released_at is not None:
        values["released_at"] = change.released_at
    if change.forget:
        values["sealed_identity"] = None
        conn.execute(update(toc_table).where(tocs.session_id == session_id).values(armored=None))
    if values:
        conn.execute(update(session_table).where(session_table.c.id == session_id).values(values))


def _session_row(session: SessionRecord) -> dict[str, Any]:
    return {
        "id": session.id,
        "toc_group_id": session.toc_group_id,
        "groups": [list(_group_values(group)) for group in session.groups],
        "registered": session.registered,
        "ttl": session.ttl,
        "created_at": session.created_at,
        "expires_at": session.expires_at,
        "tek": session.tek,
        "sealed_identity": session.sealed_identity,
        "released_at": session.released_at,
        "applicant": session.applicant,
    }


def _session(row: Any) -> SessionRecord:
    return SessionRecord(
        id=row["id"],
        toc_group_id=row["toc_group_id"],
        groups=tuple(TocGroup(str(g), int(s), int(t), bool(c)) for g, s, t, c in row["groups"]),
        registered=bool(row["registered"]),
        ttl=row["ttl"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        tek=row["tek"],
        sealed_identity=None if row["sealed_identity"] is None else bytes(row["sealed_identity"]),
        released_at=row["released_at"],
        applicant=row["applicant"],
    )


def _toc_row(session_id: str, toc: SealedToc) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "seq": toc.seq,
        "armored": toc.armored,
        "digest": toc.digest,
        "approver": toc.approver,
        "submitted_at": toc.submitted_at,
        "status": toc.status.value,
        "reason": toc.reason,
        "holds": None if toc.holds is None else list(toc.holds),
    }


def _toc(row: Any) -> SealedToc:
    return SealedToc(
        seq=row["seq"],
        armored=row["armored"],
        digest=row["digest"],
        approver=row["approver"],
        submitted_at=row["submitted_at"],
        status=TocStatus(row["status"]),
        reason=row["reason"],
        holds=None if row["holds"] is None else tuple(str(g) for g in row["holds"]),
    )


def _group_values(group: TocGroup) -> tuple[str, int, int, bool]:
    return group.group_id, group.group_size, group.group_threshold, group.clear


# -- dealt groups -----------------------------------------------------------------------------


class SqlGroupRegistry:
    """A `GroupRegistry` in `quorum_groups`; `register` records one deal."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock

    def register(self, groups: Sequence[TocGroup], *, connection: Connection | None = None) -> None:
        """Record one deal; idempotent for the same record. With `connection`,
        inside the caller's transaction (the central service's)."""
        record = deal_record(groups)
        if connection is not None:
            self._register(connection, record)
            return
        with self._engine.begin() as conn:
            self._register(conn, record)

    def retire(self, group_id: str, *, connection: Connection | None = None) -> int:
        """Forget the deal `group_id` belongs to: no session opens for it any
        more (sessions open already keep their groups). Rows deleted."""
        if connection is None:
            with self._engine.begin() as conn:
                return self.retire(group_id, connection=conn)
        groups = group_table.c
        deal = select(groups.deal_id).where(groups.group_id == group_id).scalar_subquery()
        return int(connection.execute(delete(group_table).where(groups.deal_id == deal)).rowcount)

    def _register(self, conn: Connection, record: tuple[TocGroup, ...]) -> None:
        deal_id = record[0].group_id
        for group in record:
            known = self._deal(conn, group.group_id)
            if known is not None and set(known) != set(record):
                raise QuorumError(
                    f"group {group.group_id} is registered already, as part of another deal"
                )
            if known is not None:
                return
        for group in record:
            gid, size, threshold, clear = _group_values(group)
            conn.execute(
                insert(group_table).values(
                    group_id=gid,
                    deal_id=deal_id,
                    group_size=size,
                    group_threshold=threshold,
                    clear=clear,
                    registered_at=self._clock(),
                )
            )

    def deal_of(self, group_id: str) -> tuple[TocGroup, ...] | None:
        with self._engine.connect() as conn:
            return self._deal(conn, group_id)

    @staticmethod
    def _deal(conn: Connection, group_id: str) -> tuple[TocGroup, ...] | None:
        groups = group_table.c
        deal_id = conn.execute(
            select(groups.deal_id).where(groups.group_id == group_id)
        ).scalar_one_or_none()
        if deal_id is None:
            return None
        rows = conn.execute(
            select(group_table).where(groups.deal_id == deal_id).order_by(groups.group_id)
        ).mappings()
        return tuple(
            TocGroup(r["group_id"], r["group_size"], r["group_threshold"], bool(r["clear"]))
            for r in rows
        )
