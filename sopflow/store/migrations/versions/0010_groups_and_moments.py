"""Groups and moments as audiences: group chats and their members (projected from the
groups' journey ledger), moments posts per staff member, the chat type of a mass send.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "group_chats",
        sa.Column("chat_id", sa.String(128), primary_key=True),
        sa.Column("owner", sa.String(100), index=True),
        sa.Column("name", sa.Text),
        sa.Column("member_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("created_at", WHEN),
        sa.Column("dismissed_at", WHEN),
        sa.Column("last_message_key", sa.String(300)),
        sa.Column("last_message_playbook", sa.String(100)),
        sa.Column("updated_seq", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "group_members",
        sa.Column("chat_id", sa.String(128), primary_key=True),
        sa.Column("member_id", sa.String(128), primary_key=True, index=True),
        sa.Column("member_type", sa.String(10), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("joined_at", WHEN, nullable=False),
        sa.Column("left_at", WHEN),
        sa.Column("joined_after", sa.String(300), index=True),
        sa.Column("joined_after_playbook", sa.String(100), index=True),
        sa.Column("left_after", sa.String(300), index=True),
    )
    op.create_table(
        "moment_posts",
        sa.Column("batch_id", sa.String(200), primary_key=True),
        sa.Column("sender", sa.String(100), nullable=False, index=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("visible_to", sa.JSON),
        sa.Column("jobid", sa.String(100)),
        sa.Column("moment_id", sa.String(100)),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("published_at", WHEN),
        sa.Column("reminded_at", WHEN),
    )
    op.add_column(
        "wecom_mass_sends",
        sa.Column("chat_type", sa.String(10), nullable=False, server_default="single"),
    )


def downgrade() -> None:
    op.drop_column("wecom_mass_sends", "chat_type")
    op.drop_table("moment_posts")
    op.drop_table("group_members")
    op.drop_table("group_chats")
