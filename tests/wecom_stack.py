"""The API and a worker on the real dev server, speaking to the fake WeCom in process:
callbacks go from the fake to the API over HTTP, the worker's WeCom calls go to the fake
through httpx's ASGI transport (so the test reads what the fake received)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from cli.fake_wecom import (
    DEV_AGENT_ID,
    DEV_APP_SECRET,
    DEV_CALLBACK_AES_KEY,
    DEV_CALLBACK_TOKEN,
    DEV_CORP_ID,
    DEV_SECRET,
    CallbackGenerator,
    FakeConfig,
    FakeWeCom,
    create_app,
)
from cli.serving import api_server
from sopflow.language.compiler import compile_bundle
from sopflow.language.loader import load_text
from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.keys import Role, create_key
from tests.conftest import free_port
from tests.helpers import CONDITION_LIMIT_SECONDS, eventually, plan_store
from worker.main import build_worker
from worker.wecom.client import WeComClient


@dataclass
class WeComStack:
    http: httpx.AsyncClient  # the API, with an operator key
    callback_url: str
    fake: FakeWeCom
    hooks: httpx.AsyncClient  # the fake's app: its API and its /_fake hooks
    callbacks: CallbackGenerator
    wecom: WeComClient
    client: Client
    settings: Settings
    database: Database

    async def deliver(self, kind: str, **order: object) -> list[dict[str, object]]:
        """Fire a callback through the fake's hook; the deliveries' statuses and bodies."""
        response = await self.hooks.post(f"/_fake/callbacks/{kind}", json=order)
        assert response.status_code == 200, response.text
        deliveries: list[dict[str, object]] = response.json()["deliveries"]
        return deliveries


@contextlib.asynccontextmanager
async def fake_client(fake: FakeWeCom) -> AsyncIterator[WeComClient]:
    """A WeCom client whose calls reach `fake` in process (httpx's ASGI transport), with
    no rate limit to speak of."""
    transport = httpx.ASGITransport(app=create_app(fake))
    async with httpx.AsyncClient(transport=transport, base_url="http://fake") as http:
        yield WeComClient(
            DEV_CORP_ID,
            DEV_SECRET,
            api_base="http://fake/cgi-bin",
            requests_per_second=10_000,
            http=http,
        )


def wecom_settings(settings: Settings, **overrides: object) -> Settings:
    return settings.model_copy(
        update={
            **overrides,
            "api_port": free_port(),
            "wecom_corp_id": DEV_CORP_ID,
            "wecom_secret": SecretStr(DEV_SECRET),
            "wecom_app_secret": SecretStr(DEV_APP_SECRET),
            "wecom_agent_id": DEV_AGENT_ID,
            "wecom_callback_token": SecretStr(DEV_CALLBACK_TOKEN),
            "wecom_callback_aes_key": SecretStr(DEV_CALLBACK_AES_KEY),
            "wecom_api_base": "http://fake/cgi-bin",
            "wecom_requests_per_second": 10_000.0,
            "wecom_batch_window_seconds": 1,
            "wecom_poll_seconds": 1,
        }
    )


def deploy(settings: Settings, text: str) -> None:
    documents, problems = load_text(text, "stack.yaml")
    bundle = compile_bundle(documents, problems)
    bundle.raise_on_errors()
    plan_store(settings).deploy_all(list(bundle.plans.values()), bundle.profile)


@contextlib.asynccontextmanager
async def wecom_stack(
    dev_env: WorkflowEnvironment, settings: Settings, playbooks: str, **overrides: object
) -> AsyncIterator[WeComStack]:
    settings = wecom_settings(settings, **overrides)
    deploy(settings, playbooks)
    database = Database.from_settings(settings)
    operator, _ = create_key(database, Role.OPERATOR, "tests")
    callback_url = f"http://{settings.api_host}:{settings.api_port}/v1/wecom/callback"
    fake = FakeWeCom(FakeConfig(callback_url=callback_url))
    server = api_server(settings, dev_env.client)
    serving = asyncio.create_task(server.serve())
    transport = httpx.ASGITransport(app=create_app(fake))
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://fake") as hooks,
        httpx.AsyncClient(
            base_url=f"http://{settings.api_host}:{settings.api_port}",
            timeout=CONDITION_LIMIT_SECONDS,
            headers={"Authorization": f"Bearer {operator}"},
        ) as http,
    ):
        wecom = WeComClient(
            DEV_CORP_ID,
            DEV_SECRET,
            app_secret=DEV_APP_SECRET,
            agent_id=DEV_AGENT_ID,
            api_base="http://fake/cgi-bin",
            requests_per_second=10_000,
            http=hooks,
        )
        worker = build_worker(dev_env.client, settings, wecom=wecom)
        working = asyncio.create_task(worker.run())

        async def started() -> bool:
            return bool(server.started)

        await eventually(started)
        try:
            yield WeComStack(
                http,
                callback_url,
                fake,
                hooks,
                CallbackGenerator(fake),
                wecom,
                dev_env.client,
                settings,
                database,
            )
        finally:
            server.should_exit = True
            await asyncio.wait_for(serving, 30)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.shutdown(), 30)
            working.cancel()
