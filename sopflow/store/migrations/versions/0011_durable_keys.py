"""Durable idempotency keys per customer; paid orders keyed per customer.

Revision ID: 0011
Revises: 0010

`event_keys` remembers every idempotency key a client gave, per customer, with a hash of
the event it named: a repeat answers the same (and is not sent again), a key reused for a
different event is refused. `orders` was keyed by the idempotency key alone, so two
customers' `order-1` counted once in revenue and ROI; its key is now (customer, key).
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "event_keys",
        sa.Column("customer_id", sa.String(128), primary_key=True),
        sa.Column("idempotency_key", sa.String(200), primary_key=True),
        sa.Column("payload_hash", sa.String(64), nullable=False),
        sa.Column("accepted_at", WHEN, nullable=False),
        sa.Column("sent", sa.Boolean, nullable=False),
    )
    # A new primary key: rebuild the table (portable to SQLite) and copy the rows over.
    op.drop_index("ix_orders_customer_id", table_name="orders")
    op.rename_table("orders", "orders_0003")
    op.create_table(
        "orders",
        sa.Column("customer_id", sa.String(128), primary_key=True),
        sa.Column("idempotency_key", sa.String(200), primary_key=True),
        sa.Column("amount", sa.Float, nullable=False),
        sa.Column("paid_at", WHEN, nullable=False),
    )
    op.create_index("ix_orders_customer_id", "orders", ["customer_id"])
    op.execute(
        "INSERT INTO orders (customer_id, idempotency_key, amount, paid_at) "
        "SELECT customer_id, idempotency_key, amount, paid_at FROM orders_0003"
    )
    op.drop_table("orders_0003")


def downgrade() -> None:
    op.drop_index("ix_orders_customer_id", table_name="orders")
    op.rename_table("orders", "orders_0004")
    op.create_table(
        "orders",
        sa.Column("idempotency_key", sa.String(200), primary_key=True),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("amount", sa.Float, nullable=False),
        sa.Column("paid_at", WHEN, nullable=False),
    )
    op.create_index("ix_orders_customer_id", "orders", ["customer_id"])
    # Keys shared by several customers keep one row, as before this revision.
    op.execute(
        "INSERT INTO orders (idempotency_key, customer_id, amount, paid_at) "
        "SELECT idempotency_key, MIN(customer_id), MIN(amount), MIN(paid_at) "
        "FROM orders_0004 GROUP BY idempotency_key"
    )
    op.drop_table("orders_0004")
    op.drop_table("event_keys")
