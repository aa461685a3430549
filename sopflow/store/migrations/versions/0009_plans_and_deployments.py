"""Plans (playbook plans and profile rules, by content version), deployments and their
history: the plan store moves from a shared folder into the read model.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("kind", sa.String(10), primary_key=True),
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(100), index=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("stored_at", WHEN, nullable=False),
    )
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("based_on", sa.Integer),
        sa.Column("deployed_at", WHEN, nullable=False),
        sa.Column("deployed_by", sa.String(200), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("merged", sa.Boolean, nullable=False),
        sa.Column("playbooks", sa.JSON, nullable=False),
        sa.Column("profile", sa.String(64)),
        sa.Column("deployed", sa.JSON, nullable=False),
        sa.Column("changed", sa.JSON, nullable=False),
        sa.Column("profile_changed", sa.Boolean, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("deployments")
    op.drop_table("plans")
