"""Deploying operator content never stalls the API (issue 11, findings 4 and 5).

A deploy parses and checks its body in a worker thread; meanwhile the event loop answers
`/healthz`. The test holds the compile at its start with an event it controls, so it
asserts an order (healthz answered while the compile was still running), not a time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.routes import playbooks
from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.keys import Role, create_key
from tests.worst_case import worst_case_playbook

BROKEN = Path(__file__).resolve().parent / "broken"


@dataclass
class Api:
    http: httpx.AsyncClient
    headers: dict[str, str]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    settings = Settings(home=tmp_path / "home")
    database = Database.from_settings(settings)
    key, _ = create_key(database, Role.OPERATOR, "tests")
    app = create_app(settings, temporal=None, database=database)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sopflow") as http:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/yaml"}
        yield Api(http, headers)


class HeldCompile:
    """Wraps the route's compile: it signals that it started, then waits to be released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()
        real = playbooks.compile_text

        def held(text: str) -> Any:
            self.started.set()
            # Bounded, so that a compile wrongly run on the loop fails the test, not hangs it.
            self.release.wait(timeout=10)
            try:
                return real(text)
            finally:
                self.finished.set()

        monkeypatch.setattr(playbooks, "compile_text", held)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (worst_case_playbook(), 201),
        ((BROKEN / "yaml_alias_bomb.yaml").read_text(encoding="utf-8"), 422),
        ("a: " + "[" * 50_000 + "]" * 50_000, 422),
    ],
    ids=["worst-accepted", "alias-bomb", "deep-nesting"],
)
async def test_healthz_answers_while_a_deploy_is_being_compiled(
    api: Api, monkeypatch: pytest.MonkeyPatch, body: str, status: int
) -> None:
    compile_ = HeldCompile(monkeypatch)
    deploy = asyncio.create_task(api.http.post("/v1/playbooks", content=body, headers=api.headers))
    assert await asyncio.to_thread(compile_.started.wait, 10)
    health = await api.http.get("/healthz")
    assert health.status_code == 200
    # The compile has not even begun its work: the loop answered beside it.
    assert not deploy.done() and not compile_.finished.is_set()
    compile_.release.set()
    response = await deploy
    assert response.status_code == status, response.text


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("yaml_alias_bomb", "alias '*d' takes the nodes repeated through aliases past 10000"),
        ("yaml_deep_nesting", "nested deeper than 64 levels (the limit)"),
        ("guard_limits", "guard nests 3 of all/exists/exists_one/map/filter inside one another"),
        ("template_limits", "repeating with * would build a value of 100,000,000 characters"),
    ],
)
async def test_a_hostile_body_is_a_422_with_its_diagnostics(
    api: Api, name: str, message: str
) -> None:
    body = (BROKEN / f"{name}.yaml").read_text(encoding="utf-8")
    response = await api.http.post("/v1/playbooks", content=body, headers=api.headers)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_playbook"
    assert any(message in detail["message"] for detail in error["details"])
