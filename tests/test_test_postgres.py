"""`make test` on a machine with no PostgreSQL: the suite starts a throwaway server (from
the pgserver wheel) and runs the read model on it (tests/postgres.py)."""

from pathlib import Path

import pytest

from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.keys import Role, authenticate, create_key
from tests import postgres
from tests.conftest import free_port


@pytest.mark.timeout(300)  # initdb and a first start, on a machine other work may load
def test_with_none_answering_a_throwaway_postgres_serves_the_read_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOPFLOW_TEST_POSTGRES_URL", raising=False)
    nobody = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    monkeypatch.setattr(postgres, "DEFAULT_URL", nobody)
    assert not postgres.answers(nobody)
    with postgres.session_postgres_url() as url:
        assert url != nobody and postgres.answers(url)
        database = Database.from_settings(Settings(home=tmp_path, database_url=url))
        token, principal = create_key(database, Role.OPERATOR, "ci")
        assert authenticate(database, token) == principal
        database.dispose()
    assert not postgres.answers(url)  # stopped, its folder deleted


def test_a_configured_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOPFLOW_TEST_POSTGRES_URL", "postgresql://someone@db.example/x")
    with postgres.session_postgres_url() as url:
        assert url == "postgresql://someone@db.example/x"


def test_an_option_joins_a_url_with_or_without_a_query() -> None:
    assert (
        postgres.with_option("postgresql://h/db", "options", "o") == "postgresql://h/db?options=o"
    )
    socket = "postgresql://postgres:@/postgres?host=/tmp/s"
    assert postgres.with_option(socket, "options", "o") == f"{socket}&options=o"
