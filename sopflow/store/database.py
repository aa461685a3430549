"""Engines, sessions and schema upgrades for the read model."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, NullPool, create_engine, event, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from sopflow.files import private_file
from sopflow.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"
# The PostgreSQL advisory lock that schema upgrades hold (any number, the same everywhere):
# "sopflow" in ASCII.
MIGRATION_LOCK = 0x736F70666C6F77


def database_url(settings: Settings) -> str:
    """SOPFLOW_DATABASE_URL, else a SQLite file under the data folder."""
    if settings.database_url:
        return settings.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    # Created 0600 before SQLite opens it: its -wal and -shm files take the same mode.
    path = private_file(settings.home / "sopflow.db")
    return f"sqlite:///{path.resolve()}"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: Any, _: Any) -> None:
            # WAL lets the API read while the worker writes; a busy timeout rides out the
            # short write locks instead of failing the activity.
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def upgrade(url: str) -> None:
    """Bring the schema to the newest Alembic revision (idempotent).

    Every worker, API and command upgrades at start, so several may do it at once: they
    take turns behind a lock, and whoever comes second finds the schema current.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Alembic's config interpolates `%`; a URL's percent-escapes must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    with migration_lock(url):
        command.upgrade(config, "head")


@contextlib.contextmanager
def migration_lock(url: str) -> Iterator[None]:
    """Hold the schema-upgrade lock: a PostgreSQL advisory lock (held by a connection of
    its own, so it is released if this process dies), or for a SQLite file an exclusive
    lock on `<file>.migrate.lock` beside it (released by the kernel likewise)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
                connection.commit()  # a session-level lock outlives the transaction
                try:
                    yield
                finally:
                    connection.execute(
                        text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK}
                    )
                    connection.commit()
        finally:
            engine.dispose()
    elif parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        lock_path = private_file(Path(f"{parsed.database}.migrate.lock"))
        with lock_path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    else:
        yield


class Database:
    """One engine and a session factory; `Database.from_settings` also upgrades the schema."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Settings, *, migrate: bool = True) -> Database:
        url = database_url(settings)
        if migrate:
            upgrade(url)
        return cls(url)

    def session(self) -> Session:
        return self.sessions()

    def dispose(self) -> None:
        self.engine.dispose()
