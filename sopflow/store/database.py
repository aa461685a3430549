"""Engines, sessions and schema upgrades for the read model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from sopflow.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def database_url(settings: Settings) -> str:
    """SOPFLOW_DATABASE_URL, else a SQLite file under the data folder."""
    if settings.database_url:
        return settings.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    settings.home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(settings.home / 'sopflow.db').resolve()}"


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
    """Bring the schema to the newest Alembic revision (idempotent)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Alembic's config interpolates `%`; a URL's percent-escapes must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")


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
