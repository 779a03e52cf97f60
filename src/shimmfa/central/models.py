"""The central database's tables (SQLAlchemy 2, typed). The migrations in
`migrations/versions/` create exactly these; a test runs `alembic check`.

Rules:
- Times are epoch seconds (double precision), read from the server's clock:
  portable between SQLite and PostgreSQL, and the monitor's deadline
  arithmetic stays in plain SQL.
- Secrets are never stored: API tokens, shim credentials and web session
  tokens as SHA-256 (they are 256-bit random), passwords as argon2id. Only
  the operators' TOTP secrets (first and further factors) are kept
  as they are.
- Row identities are never reused (`AUTOINCREMENT` on SQLite, sequences on
  PostgreSQL), so a cached shim identity can never point at another shim.
- `shims` carries the registry and the monitor's state of each shim: the
  last accepted `(boot_count, seq)`, when it was seen, and `check_at`, the
  next moment the monitor must look at it (indexed: the monitor's query
  reads only the shims that are due).
- `events` holds what shims sent and what central raised (`source`), in
  arrival order (`id`: the keyset pagination cursor); `siem_outbox` the
  central events still to forward to the hospital SIEM.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "ApiToken",
    "AuthStateRow",
    "Base",
    "ChainAttempt",
    "ChainStateRow",
    "EventRow",
    "HeartbeatRow",
    "Lease",
    "MaintenanceWindow",
    "Operator",
    "OperatorFactor",
    "ShimRow",
    "SiemOutboxRow",
    "WebSession",
]

# A 64-bit key that is SQLite's rowid there (so it autoincrements).
RowId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Operator(Base):
    """A person who uses the API or (later) the web UI."""

    __tablename__ = "operators"

    operator_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(255))
    totp_secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[float] = mapped_column(Double)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class AuthStateRow(Base):
    """`core.totp.AuthState` of one operator (or of every unknown ID at once)."""

    __tablename__ = "auth_states"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    last_counter: Mapped[int] = mapped_column(BigInteger)
    failures: Mapped[int] = mapped_column(Integer)
    failures_since: Mapped[float] = mapped_column(Double)
    locked_until: Mapped[float] = mapped_column(Double)
    attempts: Mapped[int] = mapped_column(BigInteger)


class OperatorFactor(Base):
    """A further TOTP factor of an operator's MFA chain (`factors`). A new
    secret waits in `pending_secret` until a code confirms it; the confirmed
    one keeps working meanwhile."""

    __tablename__ = "operator_factors"

    operator_id: Mapped[str] = mapped_column(
        ForeignKey("operators.operator_id", ondelete="CASCADE"), primary_key=True
    )
    factor_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    label: Mapped[str] = mapped_column(String(64))
    totp_secret: Mapped[str | None] = mapped_column(String(128))  # the confirmed one
    pending_secret: Mapped[str | None] = mapped_column(String(128))  # enrolled, unconfirmed
    created_at: Mapped[float] = mapped_column(Double)
    confirmed_at: Mapped[float | None] = mapped_column(Double)


class ChainStateRow(Base):
    """`core.chain_state.ChainState` of one subject, as its JSON text."""

    __tablename__ = "chain_states"

    subject: Mapped[str] = mapped_column(String(96), primary_key=True)
    state: Mapped[str] = mapped_column(Text)


class ChainAttempt(Base):
    """A login or step-up waiting for its further factors; the token the
    client holds is stored as its SHA-256."""

    __tablename__ = "chain_attempts"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator_id: Mapped[str] = mapped_column(
        ForeignKey("operators.operator_id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[float] = mapped_column(Double)


class WebSession(Base):
    """An operator's login: the cookie's token and the CSRF token, hashed."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator_id: Mapped[str] = mapped_column(
        ForeignKey("operators.operator_id", ondelete="CASCADE"), index=True
    )
    csrf_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Double)
    last_used_at: Mapped[float] = mapped_column(Double)
    expires_at: Mapped[float] = mapped_column(Double)


class ApiToken(Base):
    """A machine's bearer token, scoped by role."""

    __tablename__ = "api_tokens"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Double)
    revoked_at: Mapped[float | None] = mapped_column(Double)


class ShimRow(Base):
    """A registered shim and what the monitor knows of it."""

    __tablename__ = "shims"
    __table_args__ = {"sqlite_autoincrement": True}

    pk: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    shim_id: Mapped[str] = mapped_column(String(128), unique=True)
    hardware_id: Mapped[str] = mapped_column(String(128))
    public_key: Mapped[str] = mapped_column(String(128))
    location: Mapped[str] = mapped_column(String(256))
    heartbeat_period: Mapped[float] = mapped_column(Double)
    credential_hash: Mapped[str] = mapped_column(String(64), unique=True)
    registered_at: Mapped[float] = mapped_column(Double)
    # the last accepted heartbeat
    boot_count: Mapped[int | None] = mapped_column(BigInteger)
    seq: Mapped[int | None] = mapped_column(BigInteger)
    last_seen_at: Mapped[float | None] = mapped_column(Double)  # received, server clock
    last_sent_at: Mapped[float | None] = mapped_column(Double)  # its sent_at, shim clock
    uptime_s: Mapped[float | None] = mapped_column(Double)
    hb_state: Mapped[str | None] = mapped_column(String(16))
    open_session: Mapped[str | None] = mapped_column(String(64))
    # the monitor's bookkeeping
    check_at: Mapped[float | None] = mapped_column(Double, index=True)
    alarm: Mapped[str] = mapped_column(String(16), default="")
    alarm_seen_at: Mapped[float | None] = mapped_column(Double)
    back_at: Mapped[float | None] = mapped_column(Double)
    reboot_from: Mapped[int | None] = mapped_column(BigInteger)
    stopped_at: Mapped[float | None] = mapped_column(Double)
    tampered_at: Mapped[float | None] = mapped_column(Double)
    tampered_sent_at: Mapped[float | None] = mapped_column(Double)
    tamper_alarmed: Mapped[bool] = mapped_column(Boolean, default=False)
    reset_at: Mapped[float | None] = mapped_column(Double)
    reset_boot_count: Mapped[int | None] = mapped_column(BigInteger)
    reset_seq: Mapped[int | None] = mapped_column(BigInteger)
    # technician bundles (issue 17): the shim's age recipient, and the
    # version of the last bundle issued to it (`bundles.py`)
    age_recipient: Mapped[str | None] = mapped_column(String(128))
    bundle_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class MaintenanceWindow(Base):
    """An expected absence: no alarm while it lasts."""

    __tablename__ = "maintenance_windows"
    __table_args__ = (
        Index("ix_maintenance_windows_shim_end", "shim_pk", "ends_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    shim_pk: Mapped[int] = mapped_column(ForeignKey("shims.pk", ondelete="CASCADE"))
    starts_at: Mapped[float] = mapped_column(Double)
    ends_at: Mapped[float] = mapped_column(Double)
    reason: Mapped[str] = mapped_column(String(512))
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[float] = mapped_column(Double)


class HeartbeatRow(Base):
    """An accepted heartbeat, in its wire form; pruned after the retention."""

    __tablename__ = "heartbeats"
    __table_args__ = (
        Index("ix_heartbeats_shim_id", "shim_pk", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    shim_pk: Mapped[int] = mapped_column(ForeignKey("shims.pk", ondelete="CASCADE"))
    boot_count: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[float] = mapped_column(Double)
    sent_at: Mapped[float] = mapped_column(Double)
    state: Mapped[str] = mapped_column(String(16))
    wire: Mapped[str] = mapped_column(Text)


class EventRow(Base):
    """An event a shim sent (`source` "shim") or central raised ("central")."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_shim_id", "shim_id", "id"),
        Index("ix_events_kind", "kind", "id"),
        Index("ix_events_at", "at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(128), unique=True)
    source: Mapped[str] = mapped_column(String(8))
    shim_id: Mapped[str | None] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    severity: Mapped[int] = mapped_column(Integer)
    security: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[float] = mapped_column(Double)
    received_at: Mapped[float] = mapped_column(Double)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)
    heartbeat: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class SiemOutboxRow(Base):
    """A central event not yet taken by the hospital SIEM."""

    __tablename__ = "siem_outbox"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    event_pk: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), unique=True)


class Lease(Base):
    """Who runs the monitor (and forwards alarms) until `expires_at`."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[float] = mapped_column(Double)
