"""Alembic environment: the URL comes from the caller (sopflow.store.database.upgrade)."""

from alembic import context
from sqlalchemy import create_engine

from sopflow.store.tables import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "sqlalchemy.url must be set by the caller"
engine = create_engine(url)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
