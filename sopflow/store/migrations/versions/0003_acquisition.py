"""Acquisitions, paid orders and cost inputs, for cost per fan, conversion and ROI.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "acquisitions",
        sa.Column("customer_id", sa.String(128), primary_key=True),
        sa.Column("channel_code", sa.String(100), nullable=False),
        sa.Column("added_at", WHEN, nullable=False),
        sa.Column("period", sa.String(7), nullable=False, index=True),
    )
    op.create_table(
        "orders",
        sa.Column("idempotency_key", sa.String(200), primary_key=True),
        sa.Column("customer_id", sa.String(128), nullable=False, index=True),
        sa.Column("amount", sa.Float, nullable=False),
        sa.Column("paid_at", WHEN, nullable=False),
    )
    op.create_table(
        "cost_inputs",
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("channel_code", sa.String(100), primary_key=True),
        sa.Column("fixed_cost", sa.Float, nullable=False),
        sa.Column("traffic_cost", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cost_inputs")
    op.drop_table("orders")
    op.drop_table("acquisitions")
