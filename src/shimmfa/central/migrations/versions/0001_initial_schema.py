"""The initial schema of the central database (issue 14): operators and
their TOTP state, web sessions, API tokens, the shim registry with the
monitor's state, maintenance windows, heartbeat history, events, the SIEM
outbox and the monitor's lease (its one row is made here).

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("name", name=op.f("uq_api_tokens_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "auth_states",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("last_counter", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("failures_since", sa.Double(), nullable=False),
        sa.Column("locked_until", sa.Double(), nullable=False),
        sa.Column("attempts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_auth_states")),
    )
    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("shim_id", sa.String(length=128), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("security", sa.Boolean(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("received_at", sa.Double(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("heartbeat", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_events_event_id")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_at", ["at"], unique=False)
        batch_op.create_index("ix_events_kind", ["kind", "id"], unique=False)
        batch_op.create_index("ix_events_shim_id", ["shim_id", "id"], unique=False)

    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.execute("INSERT INTO leases (name, holder, expires_at) VALUES ('monitor', '', 0)")
    op.create_table(
        "operators",
        sa.Column("operator_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("totp_secret", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("operator_id", name=op.f("pk_operators")),
    )
    op.create_table(
        "shims",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("shim_id", sa.String(length=128), nullable=False),
        sa.Column("hardware_id", sa.String(length=128), nullable=False),
        sa.Column("public_key", sa.String(length=128), nullable=False),
        sa.Column("location", sa.String(length=256), nullable=False),
        sa.Column("heartbeat_period", sa.Double(), nullable=False),
        sa.Column("credential_hash", sa.String(length=64), nullable=False),
        sa.Column("registered_at", sa.Double(), nullable=False),
        sa.Column("boot_count", sa.BigInteger(), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("last_seen_at", sa.Double(), nullable=True),
        sa.Column("last_sent_at", sa.Double(), nullable=True),
        sa.Column("uptime_s", sa.Double(), nullable=True),
        sa.Column("hb_state", sa.String(length=16), nullable=True),
        sa.Column("open_session", sa.String(length=64), nullable=True),
        sa.Column("check_at", sa.Double(), nullable=True),
        sa.Column("alarm", sa.String(length=16), nullable=False),
        sa.Column("alarm_seen_at", sa.Double(), nullable=True),
        sa.Column("back_at", sa.Double(), nullable=True),
        sa.Column("reboot_from", sa.BigInteger(), nullable=True),
        sa.Column("stopped_at", sa.Double(), nullable=True),
        sa.Column("tampered_at", sa.Double(), nullable=True),
        sa.Column("tampered_sent_at", sa.Double(), nullable=True),
        sa.Column("tamper_alarmed", sa.Boolean(), nullable=False),
        sa.Column("reset_at", sa.Double(), nullable=True),
        sa.Column("reset_boot_count", sa.BigInteger(), nullable=True),
        sa.Column("reset_seq", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_shims")),
        sa.UniqueConstraint("credential_hash", name=op.f("uq_shims_credential_hash")),
        sa.UniqueConstraint("shim_id", name=op.f("uq_shims_shim_id")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("shims", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_shims_check_at"), ["check_at"], unique=False)

    op.create_table(
        "heartbeats",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("shim_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("boot_count", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.Double(), nullable=False),
        sa.Column("sent_at", sa.Double(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("wire", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["shim_pk"], ["shims.pk"], name=op.f("fk_heartbeats_shim_pk_shims"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_heartbeats")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("heartbeats", schema=None) as batch_op:
        batch_op.create_index("ix_heartbeats_shim_id", ["shim_pk", "id"], unique=False)

    op.create_table(
        "maintenance_windows",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("shim_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("starts_at", sa.Double(), nullable=False),
        sa.Column("ends_at", sa.Double(), nullable=False),
        sa.Column("reason", sa.String(length=512), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["shim_pk"],
            ["shims.pk"],
            name=op.f("fk_maintenance_windows_shim_pk_shims"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintenance_windows")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("maintenance_windows", schema=None) as batch_op:
        batch_op.create_index(
            "ix_maintenance_windows_shim_end", ["shim_pk", "ends_at"], unique=False
        )

    op.create_table(
        "siem_outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_pk"],
            ["events.id"],
            name=op.f("fk_siem_outbox_event_pk_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_siem_outbox")),
        sa.UniqueConstraint("event_pk", name=op.f("uq_siem_outbox_event_pk")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "web_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("operator_id", sa.String(length=64), nullable=False),
        sa.Column("csrf_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("last_used_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.operator_id"],
            name=op.f("fk_web_sessions_operator_id_operators"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_web_sessions")),
    )
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_web_sessions_operator_id"), ["operator_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_sessions_operator_id"))

    op.drop_table("web_sessions")
    op.drop_table("siem_outbox")
    with op.batch_alter_table("maintenance_windows", schema=None) as batch_op:
        batch_op.drop_index("ix_maintenance_windows_shim_end")

    op.drop_table("maintenance_windows")
    with op.batch_alter_table("heartbeats", schema=None) as batch_op:
        batch_op.drop_index("ix_heartbeats_shim_id")

    op.drop_table("heartbeats")
    with op.batch_alter_table("shims", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shims_check_at"))

    op.drop_table("shims")
    op.drop_table("operators")
    op.drop_table("leases")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_shim_id")
        batch_op.drop_index("ix_events_kind")
        batch_op.drop_index("ix_events_at")

    op.drop_table("events")
    op.drop_table("auth_states")
    op.drop_table("api_tokens")
