"""Audiences: the deployed segments, and each customer's profile as audiences read it.

Revision ID: 0013
Revises: 0012

`audiences` holds each named segment's CEL expression. `customer_profiles` is projected
from the journey ledger (tags, tier, lifecycle, `set` attributes, the stage of each
active journey) and from accepted events (their attributes), one row per customer, so an
audience is evaluated page by page without asking any customer's workflow. Ledgers
written before this revision are projected by `sopflow audiences reindex`.
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "audiences",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("title", sa.Text),
        sa.Column("expression", sa.Text, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "customer_profiles",
        sa.Column("customer_id", sa.String(128), primary_key=True),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("tier", sa.String(100)),
        sa.Column("lifecycle", sa.String(100)),
        sa.Column("attributes", sa.JSON, nullable=False),
        sa.Column("event_attributes", sa.JSON, nullable=False),
        sa.Column("journeys", sa.JSON, nullable=False),
        sa.Column("updated_seq", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("customer_profiles")
    op.drop_table("audiences")
