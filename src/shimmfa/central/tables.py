"""The tables issue 17 added to the central database (SQLAlchemy 2, on the
same `Base` as `models.py`; migration 0002 creates them): technicians and
their assignments, shim groups, uploaded recordings and uploads under way,
the session index and technicians' last logins.

Rules:
- A technician's TOTP secret is stored sealed (`keys.CentralKeys.seal`,
  the technician ID as associated data), never in clear.
- A technician is `pending` until one code is confirmed, then `active`;
  `revoked` is final. Only active technicians go into bundles.
- Recordings keep the shim's ID as text and lose only the link to its row
  when a shim is removed: evidence outlives the registry entry.
- `sessions` and `technician_logins` are indexes of what shims reported
  (`session_start`, `session_end`, `auth_success` events) and of uploaded
  recordings, kept up to date in the transaction that stores them
  (`sessions.py`), so that filters are indexed queries.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Double,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from shimmfa.central.models import Base, RowId

__all__ = [
    "GroupMember",
    "RecordingRow",
    "RecordingUpload",
    "SessionRow",
    "ShimGroup",
    "TechnicianGroup",
    "TechnicianLogin",
    "TechnicianRow",
    "TechnicianShim",
]

TECHNICIAN_STATES = ("pending", "active", "revoked")


class TechnicianRow(Base):
    """A vendor's field technician enrolled by central."""

    __tablename__ = "technicians"

    technician_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    company: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))
    sealed_secret: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[float] = mapped_column(Double)
    created_by: Mapped[str] = mapped_column(String(80))
    confirmed_at: Mapped[float | None] = mapped_column(Double)
    revoked_at: Mapped[float | None] = mapped_column(Double)
    revoked_by: Mapped[str | None] = mapped_column(String(80))


class ShimGroup(Base):
    """A set of shims (a ward, a device model) technicians are assigned to."""

    __tablename__ = "shim_groups"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[float] = mapped_column(Double)
    created_by: Mapped[str] = mapped_column(String(80))


class GroupMember(Base):
    __tablename__ = "shim_group_members"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("shim_groups.id", ondelete="CASCADE"), primary_key=True
    )
    shim_pk: Mapped[int] = mapped_column(
        ForeignKey("shims.pk", ondelete="CASCADE"), primary_key=True, index=True
    )


class TechnicianShim(Base):
    """A technician assigned to one shim directly."""

    __tablename__ = "technician_shims"

    technician_id: Mapped[str] = mapped_column(
        ForeignKey("technicians.technician_id", ondelete="CASCADE"), primary_key=True
    )
    shim_pk: Mapped[int] = mapped_column(
        ForeignKey("shims.pk", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[float] = mapped_column(Double)
    created_by: Mapped[str] = mapped_column(String(80))


class TechnicianGroup(Base):
    """A technician assigned to every shim of a group."""

    __tablename__ = "technician_groups"

    technician_id: Mapped[str] = mapped_column(
        ForeignKey("technicians.technician_id", ondelete="CASCADE"), primary_key=True
    )
    group_id: Mapped[int] = mapped_column(
        ForeignKey("shim_groups.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[float] = mapped_column(Double)
    created_by: Mapped[str] = mapped_column(String(80))


class RecordingRow(Base):
    """A recording a shim uploaded, verified on arrival."""

    __tablename__ = "recordings"
    __table_args__ = (
        UniqueConstraint("shim_id", "session_id"),
        Index("ix_recordings_started_at", "started_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    shim_id: Mapped[str] = mapped_column(String(128))
    shim_pk: Mapped[int | None] = mapped_column(ForeignKey("shims.pk", ondelete="SET NULL"))
    session_id: Mapped[str] = mapped_column(String(64))
    technician_id: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[float] = mapped_column(Double)
    ended_at: Mapped[float | None] = mapped_column(Double)
    bytes: Mapped[int] = mapped_column(BigInteger)
    terminal_reason: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(String(256))
    sha256: Mapped[str] = mapped_column(String(64))
    break_glass: Mapped[bool] = mapped_column(Boolean)
    received_at: Mapped[float] = mapped_column(Double)
    file_name: Mapped[str] = mapped_column(String(200))


class RecordingUpload(Base):
    """An upload under way: how many bytes of the file are stored."""

    __tablename__ = "recording_uploads"
    __table_args__ = (UniqueConstraint("shim_pk", "session_id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    shim_pk: Mapped[int] = mapped_column(ForeignKey("shims.pk", ondelete="CASCADE"))
    session_id: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    received: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[float] = mapped_column(Double)


class SessionRow(Base):
    """A technician's session at a shim, from its events and its recording."""

    __tablename__ = "sessions"
    __table_args__ = (
        UniqueConstraint("shim_id", "session_id"),
        Index("ix_sessions_at", "at", "id"),
        Index("ix_sessions_shim_at", "shim_id", "at"),
        Index("ix_sessions_technician_at", "technician_id", "at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    shim_id: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[float] = mapped_column(Double)  # its start, or the earliest time known
    technician_id: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[float | None] = mapped_column(Double)
    ended_at: Mapped[float | None] = mapped_column(Double)
    terminal_reason: Mapped[str | None] = mapped_column(String(64))
    break_glass: Mapped[bool] = mapped_column(Boolean, default=False)
    recording_id: Mapped[int | None] = mapped_column(
        ForeignKey("recordings.id", ondelete="SET NULL")
    )


class TechnicianLogin(Base):
    """A technician's last successful login at one shim."""

    __tablename__ = "technician_logins"

    technician_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    shim_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    at: Mapped[float] = mapped_column(Double)
    session_id: Mapped[str | None] = mapped_column(String(64))
