"""Groups and staff members through HTTP on the real dev server: a group's events in, its
members enrolled in their own journeys, the groups list, a group's members, timeline and
metrics, moments posts per staff member, and what a staff key may see."""

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
from sopflow.language.compiler import compile_bundle
from sopflow.language.loader import load_text
from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.keys import Role, create_key
from sopflow.store.moments import Moments
from tests.conftest import T0, free_port
from tests.helpers import eventually, plan_store, terminate
from worker.main import build_worker

PLAYBOOKS = """apiVersion: sopflow/v1
kind: Playbook
metadata: {name: lunch_group}
audience: group
enrol: {event: group.created}
stages:
  warm_up:
    triggers:
      - event: group.member_joined
        actions: [{enrol_member: newcomer}]
      - condition: "group.member_count >= 2"
        actions: [{send: {channel: wecom.group, text: "满 {{ group.member_count }} 人啦"}}]
        goto: active
  active:
    triggers:
      - event: group.member_joined
        actions: [{enrol_member: newcomer}]
---
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: newcomer}
enrol: {}
stages:
  welcomed:
    on_enter: [{tag: {add: ["community:lunch"]}}]
    end: true
---
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: consultant_posts}
audience: staff
enrol: {event: offer.announced}
stages:
  posting:
    on_enter: [{send: {channel: wecom.moments, text: "本月权益"}}]
    end: true
"""


@dataclass
class Running:
    http: httpx.AsyncClient
    staff: httpx.AsyncClient
    database: Database
    base: str


@pytest.fixture
async def running(dev_env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[Running]:
    settings = settings.model_copy(update={"api_port": free_port()})
    documents, problems = load_text(PLAYBOOKS, "groups.yaml")
    bundle = compile_bundle(documents, problems)
    bundle.raise_on_errors()
    plan_store(settings).deploy_all(list(bundle.plans.values()), bundle.profile)
    database = Database.from_settings(settings)
    operator, _ = create_key(database, Role.OPERATOR, "tests")
    staff, _ = create_key(database, Role.STAFF, "李雷", "li_lei")
    server = api_server(settings, dev_env.client)
    worker = build_worker(dev_env.client, settings)
    working = asyncio.create_task(worker.run())
    serving = asyncio.create_task(server.serve())

    async def started() -> bool:
        return bool(server.started)

    await eventually(started)
    base = f"http://{settings.api_host}:{settings.api_port}"
    async with (
        httpx.AsyncClient(
            base_url=base, timeout=10, headers={"Authorization": f"Bearer {operator}"}
        ) as http,
        httpx.AsyncClient(
            base_url=base, timeout=10, headers={"Authorization": f"Bearer {staff}"}
        ) as as_staff,
    ):
        yield Running(http, as_staff, database, base)
    server.should_exit = True
    await asyncio.wait_for(serving, 30)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(worker.shutdown(), 30)
    working.cancel()
    database.dispose()


async def get(http: httpx.AsyncClient, path: str, **params: Any) -> Any:
    response = await http.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_groups_events_members_lists_and_metrics(
    running: Running, dev_env: WorkflowEnvironment
) -> None:
    http = running.http
    chat = f"wr{uuid.uuid4().hex[:10]}"
    members = [f"wm_{chat}_{i}" for i in range(3)]

    async def group_event(kind: str, key: str, **data: Any) -> httpx.Response:
        return await http.post(
            f"/v1/groups/{chat}/events",
            json={"type": kind, "data": data, "idempotency_key": key},
        )

    created = await group_event("group.created", "c", owner="li_lei", name="午餐群")
    assert created.status_code == 202
    assert created.json() == {
        "customer_id": f"group/{chat}",
        "idempotency_key": "c",
        "workflow_id": f"group/{chat}",
        "duplicate": False,
    }
    try:
        for index, member in enumerate(members[:2]):
            await group_event("group.member_joined", f"j{index}", member=member)

        async def two_members() -> Any:
            found = await get(http, "/v1/groups", owner="li_lei", stage="lunch_group:active")
            return [g for g in found if g["chat_id"] == chat and g["member_count"] == 2]

        [listed] = await eventually(two_members, timeout=30)
        assert (listed["name"], listed["stages"]) == ("午餐群", ["lunch_group:active"])
        # The third joins after the group's message: the metrics say so.
        await group_event("group.member_joined", "j2", member=members[2])

        async def enrolled() -> bool:
            response = await http.get(f"/v1/customers/{members[2]}")
            return (
                response.status_code == 200
                and "community:lunch" in (response.json()["profile"]["tags"])
            )

        await eventually(enrolled, timeout=30)

        async def all_members() -> Any:
            found = await get(http, f"/v1/groups/{chat}/members")
            return found if len(found) == 3 else None

        listed_members = await eventually(all_members, timeout=30)
        assert [m["member_id"] for m in listed_members] == members
        assert [m["joined_after_playbook"] for m in listed_members] == [
            None,
            None,
            "lunch_group",
        ]
        view = await get(http, f"/v1/groups/{chat}")
        assert view["summary"]["owner"] == "li_lei"
        assert sorted(view["live"]["group"]["members"]) == sorted(members)
        timeline = await get(http, f"/v1/groups/{chat}/timeline")
        assert [e["kind"] for e in timeline if e["kind"] == "message"] == ["message"]
        metrics = await get(http, "/v1/metrics/group-playbooks/lunch_group")
        assert (metrics["messages"], metrics["joined_after_messages"]) == (1, 1)
        assert metrics["recent"][0]["text"] == "满 2 人啦"

        # What an event of a group may be.
        refused = await group_event("contact.added", "x")
        assert refused.status_code == 422
        assert refused.json()["error"]["message"] == (
            "type: contact.added is a customer's event, not a group's: send it to "
            "POST /v1/events with the customer's id"
        )
        unknown = await group_event("group.memberjoined", "y")
        assert unknown.json()["error"]["message"] == (
            "type: unknown event type 'group.memberjoined' for a group, did you mean "
            "'group.member_joined'?; use a standard type of a group or one a deployed "
            "playbook declares"
        )
        customer_metrics = await http.get("/v1/metrics/group-playbooks/newcomer")
        assert customer_metrics.json()["error"]["message"] == (
            "'newcomer' is a customer playbook; these metrics are a group playbook's "
            "(GET /v1/metrics/funnel/{playbook} for any)"
        )

        # A staff key sees the groups it owns, and no one else's.
        mine = await get(running.staff, "/v1/groups")
        assert chat in [g["chat_id"] for g in mine]
        assert all(g["owner"] == "li_lei" for g in mine)
        other = await running.staff.get("/v1/groups", params={"owner": "han_meimei"})
        assert other.status_code == 403
    finally:
        await terminate(dev_env.client, f"group/{chat}", *members)


async def test_moments_posts_per_staff_member_and_staff_events(
    running: Running, dev_env: WorkflowEnvironment
) -> None:
    moments = Moments(running.database)
    moments.record("li_lei/a/1", "li_lei", "本月权益", ["budget:high"], "job1", None, T0)
    moments.record("han_meimei/a/1", "han_meimei", "本月权益", None, "job2", None, T0)
    moments.set_state("li_lei/a/1", "published", None, T0)
    posts = await get(running.http, "/v1/moments")
    assert {(p["sender"], p["status"]) for p in posts} >= {
        ("li_lei", "published"),
        ("han_meimei", "awaiting_publication"),
    }
    own = await get(running.staff, "/v1/moments")
    assert {p["sender"] for p in own} == {"li_lei"}
    assert [p["status"] for p in await get(running.staff, "/v1/staff/li_lei/moments")] == [
        "published"
    ]
    forbidden = await running.staff.get("/v1/staff/han_meimei/moments")
    assert forbidden.status_code == 403

    staff_id = f"staff_{uuid.uuid4().hex[:8]}"
    accepted = await running.http.post(
        f"/v1/staff/{staff_id}/events", json={"type": "offer.announced"}
    )
    assert accepted.status_code == 202 and accepted.json()["workflow_id"] == f"staff/{staff_id}"
    try:

        async def posted() -> Any:
            response = await running.http.get(f"/v1/staff/{staff_id}")
            timeline = response.json().get("timeline", []) if response.status_code == 200 else []
            return [(e["kind"], e["channel"]) for e in timeline if e["kind"] == "message"]

        assert await eventually(posted) == [("message", "wecom.moments")]
        assert (await running.staff.get(f"/v1/staff/{staff_id}")).status_code == 403
    finally:
        await terminate(dev_env.client, f"staff/{staff_id}")
