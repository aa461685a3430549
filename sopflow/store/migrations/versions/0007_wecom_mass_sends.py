"""WeCom mass sends: one row per batch (its task), one per customer in it; delivery states.

Revision ID: 0007
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0003"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "wecom_mass_sends",
        sa.Column("batch_id", sa.String(200), primary_key=True),
        sa.Column("sender", sa.String(100), nullable=False, index=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("msgid", sa.String(100)),
        sa.Column("started_at", WHEN, nullable=False),
        sa.Column("created_at", WHEN),
    )
    op.create_table(
        "wecom_mass_recipients",
        sa.Column("batch_id", sa.String(200), primary_key=True),
        sa.Column("customer_id", sa.String(128), primary_key=True, index=True),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("queued_at", WHEN, nullable=False),
    )
    op.add_column("deliveries", sa.Column("status", sa.String(30)))


def downgrade() -> None:
    op.drop_column("deliveries", "status")
    op.drop_table("wecom_mass_recipients")
    op.drop_table("wecom_mass_sends")
