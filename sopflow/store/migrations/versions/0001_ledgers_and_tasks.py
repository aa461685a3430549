"""Delivery ledger, staff tasks and the journey ledger.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("idempotency_key", sa.String(300), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("customer_id", sa.String(128), nullable=False, index=True),
        sa.Column("playbook", sa.String(100), nullable=False),
        sa.Column("journey_id", sa.String(120), nullable=False),
        sa.Column("stage", sa.String(100), nullable=False),
        sa.Column("channel", sa.String(40), nullable=False, index=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("scheduled_at", WHEN, nullable=False),
        sa.Column("delivered_at", WHEN, nullable=False),
        sa.Column("detail", sa.Text),
    )
    op.create_table(
        "tasks",
        sa.Column("task_id", sa.String(300), primary_key=True),
        sa.Column("customer_id", sa.String(128), nullable=False, index=True),
        sa.Column("playbook", sa.String(100), nullable=False),
        sa.Column("journey_id", sa.String(120), nullable=False),
        sa.Column("stage", sa.String(100), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("script", sa.Text),
        sa.Column("assignee", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("due_at", WHEN),
        sa.Column("completed_at", WHEN),
        sa.Column("escalated_at", WHEN),
    )
    op.create_index("ix_tasks_inbox", "tasks", ["assignee", "status", "due_at"])
    op.create_table(
        "journey_events",
        sa.Column("customer_id", sa.String(128), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("playbook", sa.String(100)),
        sa.Column("stage", sa.String(100)),
        sa.Column("channel", sa.String(40)),
        sa.Column("text", sa.Text),
        sa.Column("idempotency_key", sa.String(300)),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_journey_events_funnel", "journey_events", ["playbook", "kind", "stage"])


def downgrade() -> None:
    op.drop_table("journey_events")
    op.drop_index("ix_tasks_inbox", table_name="tasks")
    op.drop_table("tasks")
    op.drop_table("deliveries")
