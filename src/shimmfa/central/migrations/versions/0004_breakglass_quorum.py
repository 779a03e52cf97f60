"""Break-glass (issue 16, items 4 and 6): the quorum oracle's sessions, Tocs
and dealt groups (`quorum.store_sql.metadata`, the oracle mounted at
`/quorum`), the shims' registered deals and their holders, operators'
break-glass requests, and the reviews of break-glass sessions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "breakglass_deals",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("shim_id", sa.String(length=128), nullable=False),
        sa.Column("deal_id", sa.String(length=8), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("note", sa.String(length=256), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("registered_at", sa.Double(), nullable=False),
        sa.Column("replaced_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_breakglass_deals")),
        sa.UniqueConstraint("deal_id", name=op.f("uq_breakglass_deals_deal_id")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("breakglass_deals", schema=None) as batch_op:
        batch_op.create_index("ix_breakglass_deals_shim_id", ["shim_id", "id"], unique=False)

    op.create_table(
        "breakglass_reviews",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("shim_id", sa.String(length=128), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("opened_at", sa.Double(), nullable=False),
        sa.Column("due_at", sa.Double(), nullable=False),
        sa.Column("check_at", sa.Double(), nullable=True),
        sa.Column("overdue_at", sa.Double(), nullable=True),
        sa.Column("closed_at", sa.Double(), nullable=True),
        sa.Column("clinical_notified_at", sa.Double(), nullable=True),
        sa.Column("infosec_notified_at", sa.Double(), nullable=True),
        sa.Column("started_at", sa.Double(), nullable=True),
        sa.Column("clinical_by", sa.String(length=80), nullable=True),
        sa.Column("clinical_at", sa.Double(), nullable=True),
        sa.Column("clinical_comment", sa.String(length=2000), nullable=True),
        sa.Column("infosec_by", sa.String(length=80), nullable=True),
        sa.Column("infosec_at", sa.Double(), nullable=True),
        sa.Column("infosec_comment", sa.String(length=2000), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_breakglass_reviews")),
        sa.UniqueConstraint(
            "shim_id", "session_id", name=op.f("uq_breakglass_reviews_shim_id_session_id")
        ),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("breakglass_reviews", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_breakglass_reviews_check_at"), ["check_at"], unique=False
        )
        batch_op.create_index("ix_breakglass_reviews_opened_at", ["opened_at", "id"], unique=False)

    op.create_table(
        "breakglass_holders",
        sa.Column("deal_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("group_id", sa.String(length=8), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("recipient", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["deal_pk"],
            ["breakglass_deals.id"],
            name=op.f("fk_breakglass_holders_deal_pk_breakglass_deals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("deal_pk", "holder", name=op.f("pk_breakglass_holders")),
    )
    with op.batch_alter_table("breakglass_holders", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_breakglass_holders_group_id"), ["group_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_breakglass_holders_holder"), ["holder"], unique=False)

    op.create_table(
        "breakglass_requests",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("shim_id", sa.String(length=128), nullable=False),
        sa.Column("deal_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("session_id", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=1024), nullable=False),
        sa.Column("requester", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("released_at", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["deal_pk"],
            ["breakglass_deals.id"],
            name=op.f("fk_breakglass_requests_deal_pk_breakglass_deals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_breakglass_requests")),
        sa.UniqueConstraint("session_id", name=op.f("uq_breakglass_requests_session_id")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("breakglass_requests", schema=None) as batch_op:
        batch_op.create_index("ix_breakglass_requests_shim_id", ["shim_id", "id"], unique=False)

    op.create_table(
        "quorum_groups",
        sa.Column("group_id", sa.String(length=8), nullable=False),
        sa.Column("deal_id", sa.String(length=8), nullable=False),
        sa.Column("group_size", sa.Integer(), nullable=False),
        sa.Column("group_threshold", sa.Integer(), nullable=False),
        sa.Column("clear", sa.Boolean(), nullable=False),
        sa.Column("registered_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("group_id", name=op.f("pk_quorum_groups")),
    )
    with op.batch_alter_table("quorum_groups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quorum_groups_deal_id"), ["deal_id"], unique=False)

    op.create_table(
        "quorum_sessions",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("toc_group_id", sa.String(length=8), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("registered", sa.Boolean(), nullable=False),
        sa.Column("ttl", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("tek", sa.String(length=128), nullable=False),
        sa.Column("sealed_identity", sa.LargeBinary(), nullable=True),
        sa.Column("released_at", sa.Double(), nullable=True),
        sa.Column("applicant", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quorum_sessions")),
    )
    with op.batch_alter_table("quorum_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_quorum_sessions_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "quorum_tocs",
        sa.Column("session_id", sa.String(length=16), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("armored", sa.Text(), nullable=True),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("approver", sa.String(length=255), nullable=True),
        sa.Column("submitted_at", sa.Double(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("holds", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["quorum_sessions.id"],
            name=op.f("fk_quorum_tocs_session_id_quorum_sessions"),
        ),
        sa.PrimaryKeyConstraint("session_id", "seq", name=op.f("pk_quorum_tocs")),
        sa.UniqueConstraint("session_id", "digest", name=op.f("uq_quorum_tocs_session_id_digest")),
    )


def downgrade() -> None:
    op.drop_table("quorum_tocs")
    with op.batch_alter_table("quorum_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quorum_sessions_expires_at"))

    op.drop_table("quorum_sessions")
    with op.batch_alter_table("quorum_groups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quorum_groups_deal_id"))

    op.drop_table("quorum_groups")
    with op.batch_alter_table("breakglass_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_breakglass_requests_shim_id")

    op.drop_table("breakglass_requests")
    with op.batch_alter_table("breakglass_holders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_breakglass_holders_holder"))
        batch_op.drop_index(batch_op.f("ix_breakglass_holders_group_id"))

    op.drop_table("breakglass_holders")
    with op.batch_alter_table("breakglass_reviews", schema=None) as batch_op:
        batch_op.drop_index("ix_breakglass_reviews_opened_at")
        batch_op.drop_index(batch_op.f("ix_breakglass_reviews_check_at"))

    op.drop_table("breakglass_reviews")
    with op.batch_alter_table("breakglass_deals", schema=None) as batch_op:
        batch_op.drop_index("ix_breakglass_deals_shim_id")

    op.drop_table("breakglass_deals")
