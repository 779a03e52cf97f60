"""The break-glass tables of the central database (SQLAlchemy 2, on the same
`Base` as `models.py`; migration 0004 creates them together with the quorum
oracle's own tables, `quorum.store_sql.metadata`).

Rules:
- `breakglass_deals` keeps each shim's registered deal as the shim sent its
  public record (groups, thresholds, sizes, roles, holder names and their
  age recipients): never a secret, never a Toc. One deal per shim is
  current (`replaced_at` NULL); a newer one replaces it, and the old one is
  kept, so the same record sent again later is recognised and refused.
- `breakglass_holders` is that record flattened, one row per holder: which
  dealt group (and so which role) a holder name stands for. The oracle's
  approver check reads it by holder name.
- `breakglass_requests` links an operator's request (shim, reason) to its
  oracle session (`quorum_sessions.id`); the KEK is never stored, and the
  Tocs live sealed in `quorum_tocs` until the code is released.
- `breakglass_reviews`: one per break-glass session at a shim (`shim_id`,
  `session_id` unique), opened by the shim's events; `check_at` is when
  the monitor must raise the overdue alarm (indexed, NULL once raised or
  closed).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Double, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shimmfa.central.models import Base, RowId

__all__ = ["BreakglassDeal", "BreakglassHolder", "BreakglassRequest", "BreakglassReview"]


class BreakglassDeal(Base):
    """A shim's break-glass deal: the dealer's public record."""

    __tablename__ = "breakglass_deals"
    __table_args__ = (
        Index("ix_breakglass_deals_shim_id", "shim_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    shim_id: Mapped[str] = mapped_column(String(128))
    deal_id: Mapped[str] = mapped_column(String(8), unique=True)  # the registry's deal id
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of the canonical record
    note: Mapped[str] = mapped_column(String(256))
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    registered_at: Mapped[float] = mapped_column(Double)
    replaced_at: Mapped[float | None] = mapped_column(Double)


class BreakglassHolder(Base):
    """One holder of a deal: their group and the role it stands for."""

    __tablename__ = "breakglass_holders"

    deal_pk: Mapped[int] = mapped_column(
        ForeignKey("breakglass_deals.id", ondelete="CASCADE"), primary_key=True
    )
    holder: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    group_id: Mapped[str] = mapped_column(String(8), index=True)
    label: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(128))


class BreakglassRequest(Base):
    """An operator's break-glass request and its oracle session."""

    __tablename__ = "breakglass_requests"
    __table_args__ = (
        Index("ix_breakglass_requests_shim_id", "shim_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    shim_id: Mapped[str] = mapped_column(String(128))
    deal_pk: Mapped[int] = mapped_column(ForeignKey("breakglass_deals.id"))
    session_id: Mapped[str] = mapped_column(String(16), unique=True)
    reason: Mapped[str] = mapped_column(String(1024))
    requester: Mapped[str] = mapped_column(String(80))  # Principal.actor
    created_at: Mapped[float] = mapped_column(Double)
    expires_at: Mapped[float] = mapped_column(Double)
    released_at: Mapped[float | None] = mapped_column(Double)


class BreakglassReview(Base):
    """The review of one break-glass session at a shim."""

    __tablename__ = "breakglass_reviews"
    __table_args__ = (
        UniqueConstraint("shim_id", "session_id"),
        Index("ix_breakglass_reviews_opened_at", "opened_at", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    shim_id: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str] = mapped_column(String(64))
    opened_at: Mapped[float] = mapped_column(Double)  # central's clock, first event received
    due_at: Mapped[float] = mapped_column(Double)
    check_at: Mapped[float | None] = mapped_column(Double, index=True)
    overdue_at: Mapped[float | None] = mapped_column(Double)
    closed_at: Mapped[float | None] = mapped_column(Double)
    # which of the shim's two notifications (or its session_start) arrived
    clinical_notified_at: Mapped[float | None] = mapped_column(Double)
    infosec_notified_at: Mapped[float | None] = mapped_column(Double)
    started_at: Mapped[float | None] = mapped_column(Double)  # the shim's session_start
    clinical_by: Mapped[str | None] = mapped_column(String(80))
    clinical_at: Mapped[float | None] = mapped_column(Double)
    clinical_comment: Mapped[str | None] = mapped_column(String(2000))
    infosec_by: Mapped[str | None] = mapped_column(String(80))
    infosec_at: Mapped[float | None] = mapped_column(Double)
    infosec_comment: Mapped[str | None] = mapped_column(String(2000))
