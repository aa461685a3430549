"""Partial indexes for the console's overview: where each journey stands, and messages.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

POSITIONS = sa.text("kind IN ('enrolled', 'stage_entered', 'migrated', 'journey_ended')")
MESSAGES = sa.text("kind = 'message'")


def upgrade() -> None:
    # Partial: only the rows the overview reads, so the worker's ledger writes pay little.
    op.create_index(
        "ix_journey_events_positions",
        "journey_events",
        ["playbook", "customer_id", "seq", "kind", "stage"],
        sqlite_where=POSITIONS,
        postgresql_where=POSITIONS,
    )
    op.create_index(
        "ix_journey_events_messages",
        "journey_events",
        ["playbook", "at", "channel", "idempotency_key"],
        sqlite_where=MESSAGES,
        postgresql_where=MESSAGES,
    )


def downgrade() -> None:
    op.drop_index("ix_journey_events_messages", "journey_events")
    op.drop_index("ix_journey_events_positions", "journey_events")
