"""Files sopflow creates are its owner's alone, whatever the umask (issue 11, finding 10:
`sopflow.db` and `deliveries.jsonl` were world-readable)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cli.dev import development_key
from sopflow.core.state import Delivery
from sopflow.files import private_folder
from sopflow.settings import Settings
from sopflow.store.database import Database
from tests.helpers import plan_store
from worker.channels.log import LogChannel


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """The common default, under which a plain open() makes files anyone can read."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def modes(home: Path) -> dict[str, int]:
    return {
        path.relative_to(home).as_posix(): stat.S_IMODE(path.stat().st_mode)
        for path in [home, *home.rglob("*")]
    }


@pytest.mark.usefixtures("permissive_umask")
async def test_the_read_model_logs_and_keys_are_private(tmp_path: Path, welcome_plan) -> None:
    settings = Settings(home=tmp_path / "data" / "home")
    database = Database.from_settings(settings)
    key = development_key(settings)
    plan_store(settings).deploy(welcome_plan)
    delivery = Delivery(
        idempotency_key="c1/welcome#1/1",
        customer_id="c1",
        playbook="welcome",
        journey_id="welcome#1",
        stage="icebreak",
        channel="log",
        text="你好",
        scheduled_at=datetime(2026, 11, 23, tzinfo=UTC),
    )
    await LogChannel(settings.deliveries_log).deliver(delivery)
    await LogChannel(settings.home / "tasks.jsonl").deliver(delivery)
    database.dispose()
    found = modes(settings.home)
    # Plans and deployments live in the read model (sopflow.db), not in files of their own.
    assert key and {"sopflow.db", "deliveries.jsonl", "tasks.jsonl"} <= set(found)
    assert "dev-operator.key" in found
    files = {p: m for p, m in found.items() if (settings.home / p).is_file()}
    folders = {p: m for p, m in found.items() if (settings.home / p).is_dir()}
    assert set(files.values()) == {0o600}, files
    assert set(folders.values()) == {0o700}, folders
    # The parent the data folder was created in is the sopflow's too.
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700


@pytest.mark.usefixtures("permissive_umask")
def test_a_folder_that_exists_keeps_its_mode(tmp_path: Path) -> None:
    chosen = tmp_path / "shared"
    chosen.mkdir(mode=0o750)
    os.chmod(chosen, 0o750)
    private_folder(chosen / "inner")
    assert stat.S_IMODE(chosen.stat().st_mode) == 0o750
    assert stat.S_IMODE((chosen / "inner").stat().st_mode) == 0o700
