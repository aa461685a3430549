"""The corp tag library's ids for the taxonomy's tags.

Revision ID: 0012
Revises: 0011

`sopflow wecom sync-tags` creates the taxonomy's missing groups and tags in WeCom's corp
tag library and keeps here the id WeCom gave each `group:value`; the `wecom.tag` channel
reads it to tag customers (`mark_tag` takes ids, not names).
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wecom_corp_tags",
        sa.Column("tag", sa.String(128), primary_key=True),
        sa.Column("group_id", sa.String(100), nullable=False),
        sa.Column("tag_id", sa.String(100), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_wecom_corp_tags_tag_id", "wecom_corp_tags", ["tag_id"])


def downgrade() -> None:
    op.drop_index("ix_wecom_corp_tags_tag_id", table_name="wecom_corp_tags")
    op.drop_table("wecom_corp_tags")
