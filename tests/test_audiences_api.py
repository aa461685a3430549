"""Audiences through HTTP on the real dev server: customers' own events feed the
profiles audiences read (tags through their journey ledger, attributes as the API
accepts them); an audience is defined, previewed and enrolled in a playbook, and the
batch is followed to its end."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from cli.serving import api_server
from sopflow.language import compile_playbook
from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.keys import Role, create_key
from tests.conftest import free_port
from tests.helpers import eventually, plan_store, terminate
from worker.main import build_worker

CAMPAIGN = """
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: member_day}
enrol: {}
goal: {event: order.paid}
experiment: {variants: {plain: 1, coupon: 1}, holdout: 0.2}
stages:
  invited:
    on_enter:
      - send: {channel: log, text: "会员日：{{ customer.attributes.city }} 门店 8 折"}
"""


@dataclass
class Running:
    http: httpx.AsyncClient
    database: Database


@pytest.fixture
async def running(dev_env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[Running]:
    settings = settings.model_copy(update={"api_port": free_port()})
    plan_store(settings).deploy(compile_playbook(CAMPAIGN))
    database = Database.from_settings(settings)
    operator, _ = create_key(database, Role.OPERATOR, "tests")
    server = api_server(settings, dev_env.client)
    worker = build_worker(dev_env.client, settings)
    working = asyncio.create_task(worker.run())
    serving = asyncio.create_task(server.serve())

    async def started() -> bool:
        return bool(server.started)

    await eventually(started)
    base = f"http://{settings.api_host}:{settings.api_port}"
    headers = {"Authorization": f"Bearer {operator}"}
    async with httpx.AsyncClient(base_url=base, timeout=10, headers=headers) as http:
        yield Running(http, database)
    server.should_exit = True
    await asyncio.wait_for(serving, 30)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(worker.shutdown(), 30)
    working.cancel()
    database.dispose()


async def call(http: httpx.AsyncClient, method: str, path: str, expected: int, **kw: Any) -> Any:
    response = await http.request(method, path, **kw)
    assert response.status_code == expected, response.text
    return response.json()


async def test_an_audience_from_customers_events_is_previewed_and_enrolled(
    running: Running, dev_env: WorkflowEnvironment
) -> None:
    http = running.http
    prefix = uuid.uuid4().hex[:6]
    customers = [f"{prefix}-{i}" for i in range(6)]
    events = [
        {
            "customer_id": c,
            "type": "tag.added",
            "data": {"tag": f"skin_type:{'dry' if i % 2 == 0 else 'oily'}"},
        }
        for i, c in enumerate(customers)
    ] + [
        {"customer_id": c, "type": "profile.updated", "data": {"attributes": {"city": "杭州"}}}
        for c in customers[:4]
    ]
    await call(http, "POST", "/v1/events:batch", 202, json={"events": events})
    await call(
        http,
        "PUT",
        "/v1/audiences/dry_hangzhou",
        200,
        json={
            "title": "Dry skin in Hangzhou",
            "when": "'skin_type:dry' in customer.tags && "
            "'city' in customer.attributes && customer.attributes.city == '杭州'",
        },
    )

    async def previewed() -> Any:
        # The tags reach the profiles once each customer's ledger is written.
        found = await call(http, "GET", "/v1/audiences/dry_hangzhou", 200)
        return found if found["count"] == 2 else None

    preview = await eventually(previewed)
    assert preview["sample"] == [customers[0], customers[2]]
    assert preview["scanned"] == 6

    bad = await http.put("/v1/audiences/broken", json={"when": "journey.stage == 'x'"})
    assert bad.status_code == 422 and "journey" in bad.text
    missing = await http.post("/v1/audiences/dry_hangzhou/enrolments", json={"playbook": "nope"})
    assert missing.status_code == 404

    started = await call(
        http,
        "POST",
        "/v1/audiences/dry_hangzhou/enrolments",
        202,
        json={"playbook": "member_day", "batch_id": f"md-{prefix}"},
    )
    assert started["batch_id"] == f"md-{prefix}"

    async def finished() -> Any:
        progress = await call(http, "GET", f"/v1/enrolments/md-{prefix}", 200)
        return progress if progress["status"] != "running" else None

    done = await eventually(finished)
    assert (done["status"], done["matched"], done["done"], done["skipped"]) == (
        "completed",
        2,
        2,
        0,
    )

    async def enrolled(customer: str) -> bool:
        view = await call(http, "GET", f"/v1/customers/{customer}", 200)
        return any(j["playbook"] == "member_day" for j in view["journeys"])

    for customer in (customers[0], customers[2]):
        await eventually(lambda c=customer: enrolled(c))  # type: ignore[misc]
    assert not await enrolled(customers[1])

    async def measured() -> Any:
        report = await call(http, "GET", "/v1/metrics/uplift/member_day", 200)
        return report if sum(a["customers"] for a in report["arms"]) == 2 else None

    report = await eventually(measured)
    assert [a["arm"] for a in report["arms"]] == ["plain", "coupon", "holdout"]
    assert report["baseline"] == "holdout"
    assert all(c["verdict"].startswith("not enough data yet") for c in report["comparisons"])
    wrong = await http.get("/v1/metrics/uplift/member_day", params={"baseline": "nope"})
    assert wrong.status_code == 422

    again = await http.post(
        "/v1/audiences/dry_hangzhou/enrolments",
        json={"playbook": "member_day", "batch_id": f"md-{prefix}"},
    )
    assert again.status_code == 409
    assert (await http.get("/v1/enrolments/nobatch")).status_code == 404
    await terminate(dev_env.client, *customers)
