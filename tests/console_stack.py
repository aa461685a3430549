"""Shared by the console's tests: an app without servers, and a real stack (dev server,
worker, API on a free port), as tests/test_end_to_end.py runs it."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import httpx
from fastapi import FastAPI
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from cli.serving import api_server
from sopflow.core.state import Delivery
from sopflow.language.plan import Plan, ProfilePlan
from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.keys import Role, create_key
from sopflow.store.ledger import Ledger
from tests.conftest import free_port
from tests.helpers import eventually, plan_store
from worker.main import build_worker

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def offline_app(settings: Settings, database: Database) -> FastAPI:
    """The API app with its read model and no Temporal (pages that need it answer 5xx)."""
    app = create_app(settings, temporal=None, database=database)
    app.state.temporal = None  # the lifespan would connect; these tests never start it
    return app


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


async def sign_in(http: httpx.AsyncClient, key: str) -> str:
    """Sign in through the form; returns the session's CSRF token."""
    form = await http.get("/console/login")
    response = await http.post(
        "/console/login", data={"api_key": key, "csrf_token": csrf_of(form.text)}
    )
    assert response.status_code == 303, response.text
    page = await http.get(response.headers["location"])
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


def seed_task(
    database: Database,
    task_id: str,
    customer_id: str,
    assignee: str,
    title: str,
    due_at: datetime,
) -> None:
    """A staff task as the worker writes it (the delivery ledger's task row)."""
    Ledger(database).record_delivery(
        Delivery(
            idempotency_key=task_id,
            kind="task",
            customer_id=customer_id,
            playbook="callbacks",
            journey_id=f"{customer_id}/callbacks#1",
            stage="calling",
            channel="task",
            text=title,
            scheduled_at=due_at,
            assignee=assignee,
            due_at=due_at,
        ),
        None,
    )


@dataclass
class Stack:
    base: str
    http: httpx.AsyncClient  # authenticated with the operator key
    operator_key: str
    settings: Settings
    database: Database
    env: WorkflowEnvironment


@contextlib.asynccontextmanager
async def running_stack(
    env: WorkflowEnvironment,
    settings: Settings,
    plans: list[Plan],
    profile: ProfilePlan | None = None,
) -> AsyncIterator[Stack]:
    """Worker and API on the dev server, with these plans deployed."""
    settings = settings.model_copy(
        update={"publish_search_attributes": True, "api_port": free_port()}
    )
    plan_store(settings).deploy_all(plans, profile, keep_profile=profile is None)
    database = Database.from_settings(settings)
    operator, _ = create_key(database, Role.OPERATOR, "运营 Ops")
    server = api_server(settings, env.client)
    worker = build_worker(env.client, settings)
    working = asyncio.create_task(worker.run())
    serving = asyncio.create_task(server.serve())

    async def started() -> bool:
        return bool(server.started)

    await eventually(started)
    base = f"http://{settings.api_host}:{settings.api_port}"
    headers = {"Authorization": f"Bearer {operator}"}
    async with httpx.AsyncClient(base_url=base, timeout=10, headers=headers) as http:
        yield Stack(base, http, operator, settings, database, env)
    server.should_exit = True
    await asyncio.wait_for(serving, 30)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(worker.shutdown(), 30)
    working.cancel()
