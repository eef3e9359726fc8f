"""live scheduler: pending workloads, their request, placement and explanation

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 09:08:20.871406
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workloads", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("chip_models", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
        batch_op.add_column(
            sa.Column("chip_stacks", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
        batch_op.add_column(sa.Column("min_memory_gb", sa.Float(), nullable=True))
        batch_op.add_column(
            sa.Column("gang", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.add_column(
            sa.Column("topology", sa.String(length=16), nullable=False, server_default="node")
        )
        batch_op.add_column(
            sa.Column("priority", sa.String(length=8), nullable=False, server_default="high")
        )
        batch_op.add_column(sa.Column("model_id", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column("precision", sa.String(length=16), nullable=False, server_default="bf16")
        )
        batch_op.add_column(sa.Column("placement", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("explanation", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.alter_column("node_id", existing_type=sa.Integer(), nullable=True)
        batch_op.alter_column("data_center_id", existing_type=sa.Integer(), nullable=True)
        batch_op.alter_column("chip", existing_type=sa.String(length=80), nullable=True)
        batch_op.alter_column("started_at", existing_type=sa.DateTime(timezone=True), nullable=True)
    # work placed before the scheduler was submitted when it started
    op.execute("UPDATE workloads SET submitted_at = started_at")
    with op.batch_alter_table("workloads", schema=None) as batch_op:
        batch_op.alter_column(
            "submitted_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )


def downgrade() -> None:
    # work never placed cannot exist in the old schema
    op.execute("DELETE FROM workloads WHERE node_id IS NULL OR started_at IS NULL")
    with op.batch_alter_table("workloads", schema=None) as batch_op:
        batch_op.alter_column(
            "started_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )
        batch_op.alter_column("chip", existing_type=sa.String(length=80), nullable=False)
        batch_op.alter_column("data_center_id", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("node_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("submitted_at")
        batch_op.drop_column("explanation")
        batch_op.drop_column("placement")
        batch_op.drop_column("precision")
        batch_op.drop_column("model_id")
        batch_op.drop_column("priority")
        batch_op.drop_column("topology")
        batch_op.drop_column("gang")
        batch_op.drop_column("min_memory_gb")
        batch_op.drop_column("chip_stacks")
        batch_op.drop_column("chip_models")
