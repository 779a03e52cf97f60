"""Operators' MFA chains (issue 15): their further TOTP factors, each
subject's chain state, and the logins and step-ups waiting for factors.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chain_states",
        sa.Column("subject", sa.String(length=96), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("subject", name=op.f("pk_chain_states")),
    )
    op.create_table(
        "operator_factors",
        sa.Column("operator_id", sa.String(length=64), nullable=False),
        sa.Column("factor_id", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("totp_secret", sa.String(length=128), nullable=True),
        sa.Column("pending_secret", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("confirmed_at", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.operator_id"],
            name=op.f("fk_operator_factors_operator_id_operators"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("operator_id", "factor_id", name=op.f("pk_operator_factors")),
    )
    op.create_table(
        "chain_attempts",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("operator_id", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.operator_id"],
            name=op.f("fk_chain_attempts_operator_id_operators"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_chain_attempts")),
    )
    with op.batch_alter_table("chain_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_chain_attempts_operator_id"), ["operator_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("chain_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_chain_attempts_operator_id"))
    op.drop_table("chain_attempts")
    op.drop_table("operator_factors")
    op.drop_table("chain_states")
