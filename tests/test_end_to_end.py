"""Through HTTP on the real dev server: event in, stage change and a webhook delivery out."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from cli.serving import api_server
from sopflow.language import Plan
from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.keys import Role, create_key, revoke_key
from tests.conftest import free_port
from tests.helpers import (
    CONDITION_LIMIT_SECONDS,
    WebhookReceiver,
    eventually,
    plan_store,
    read_deliveries,
    terminate,
)
from worker.channels.webhook import sign
from worker.main import build_worker


@dataclass
class Running:
    http: httpx.AsyncClient
    client: Client
    settings: Settings
    receiver: WebhookReceiver
    database: Database


@pytest.fixture
async def running(
    dev_env: WorkflowEnvironment, settings: Settings, welcome_plan: Plan
) -> AsyncIterator[Running]:
    receiver = WebhookReceiver()
    settings = settings.model_copy(
        update={
            "webhook_url": receiver.url,
            "webhook_secret": SecretStr("hook-secret"),
            "publish_search_attributes": True,
            "api_port": free_port(),
        }
    )
    plan_store(settings).deploy(welcome_plan)
    database = Database.from_settings(settings)
    operator, _ = create_key(database, Role.OPERATOR, "tests")
    server = api_server(settings, dev_env.client)
    worker = build_worker(dev_env.client, settings)
    working = asyncio.create_task(worker.run())
    serving = asyncio.create_task(server.serve())
    await eventually(lambda: _started(server))
    base = f"http://{settings.api_host}:{settings.api_port}"
    headers = {"Authorization": f"Bearer {operator}"}
    async with httpx.AsyncClient(
        base_url=base, timeout=CONDITION_LIMIT_SECONDS, headers=headers
    ) as http:
        yield Running(http, dev_env.client, settings, receiver, database)
    server.should_exit = True
    await asyncio.wait_for(serving, 30)
    # Bounded: a test's teardown must not hang on the shared server's load; Temporal
    # retries whatever this worker leaves unfinished.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(worker.shutdown(), 30)
    working.cancel()
    receiver.close()


async def _started(server) -> bool:
    return bool(server.started)


async def test_event_in_stage_change_and_webhook_out(running: Running) -> None:
    http = running.http
    response = await http.post(
        "/v1/events",
        json={
            "customer_id": "e2e-1",
            "type": "contact.added",
            "idempotency_key": "add-1",
        },
    )
    assert response.status_code == 202
    assert response.json() == {
        "customer_id": "e2e-1",
        "idempotency_key": "add-1",
        "workflow_id": "customer/e2e-1",
        "duplicate": False,
    }
    first = await eventually(lambda: _customer_with(http, "e2e-1", "icebreak", "delivered"))
    assert [(e["kind"], e["stage"]) for e in first["timeline"]] == [
        ("enrolled", "icebreak"),
        ("stage_entered", "icebreak"),
        ("message", "icebreak"),
    ]
    assert read_deliveries(running.settings)[0]["customer_id"] == "e2e-1"

    reply = await http.post("/v1/events", json={"customer_id": "e2e-1", "type": "message.received"})
    assert reply.status_code == 202
    await eventually(lambda: _received(running.receiver))
    customer = await eventually(lambda: _customer_with(http, "e2e-1", "engaged", "delivered"))
    assert customer["journeys"][0]["status"] == "ended"

    [hook] = running.receiver.received
    assert hook.json()["stage"] == "engaged"
    assert hook.headers["Idempotency-Key"] == "e2e-1/welcome#1/2"
    assert hook.headers["X-Sopflow-Signature"] == sign(
        "hook-secret", hook.headers["X-Sopflow-Timestamp"], hook.body
    )


async def test_stage_is_searchable_in_temporal_visibility(running: Running) -> None:
    await running.http.post("/v1/events", json={"customer_id": "e2e-sa", "type": "contact.added"})

    async def listed() -> list[str]:
        query = "SopflowStages = 'welcome:icebreak' AND WorkflowId = 'customer/e2e-sa'"
        return [w.id async for w in running.client.list_workflows(query)]

    assert await eventually(listed) == ["customer/e2e-sa"]


async def test_malformed_event_gets_422_naming_the_field(running: Running) -> None:
    response = await running.http.post("/v1/events", json={"type": "contact.added"})
    assert response.status_code == 422
    assert response.json() == {
        "error": {
            "code": "invalid_request",
            "message": "customer_id: Field required",
            "details": [{"field": "customer_id", "message": "Field required"}],
        }
    }
    naive = await running.http.post(
        "/v1/events",
        json={"customer_id": "x", "type": "contact.added", "occurred_at": "2026-11-23T09:00:00"},
    )
    assert naive.status_code == 422
    assert naive.json()["error"]["details"][0]["field"] == "occurred_at"
    too_long = await running.http.post("/v1/events", json={"customer_id": "x", "type": "a" * 101})
    assert too_long.status_code == 422
    [detail] = too_long.json()["error"]["details"]
    assert (detail["field"], detail["limit"]) == ("type", "at most 100 characters")
    not_json = await running.http.post(
        "/v1/events", content=b"{oops", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 422 and not_json.json()["error"]["code"] == "invalid_request"


async def test_unknown_customer_is_404(running: Running) -> None:
    response = await running.http.get("/v1/customers/nobody-here")
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "customer_not_found",
        "message": "no customer 'nobody-here': send an event for it first",
        "details": [],
    }


async def _customer_with(http: httpx.AsyncClient, customer_id: str, stage: str, status: str):
    response = await http.get(f"/v1/customers/{customer_id}")
    if response.status_code != 200:
        return None
    body = response.json()
    last_message = [e for e in body["timeline"] if e["kind"] == "message"][-1:]
    on_stage = body["journeys"] and body["journeys"][0]["stage"] == stage
    return body if on_stage and last_message and last_message[0]["status"] == status else None


async def _received(receiver: WebhookReceiver) -> bool:
    return bool(receiver.received)


async def test_tier_lifecycle_tags_and_versions_are_searchable(running: Running) -> None:
    from sopflow.language import compile_paths
    from tests.conftest import REPO

    bundle = compile_paths([REPO / "playbooks"])
    store = plan_store(running.settings)
    store.deploy_all(list(bundle.plans.values()), bundle.profile)
    version = bundle.plans["snacks_high_frequency"].version
    http = running.http
    await http.post(
        "/v1/events",
        json={
            "customer_id": "e2e-vip",
            "type": "contact.added",
            "data": {"channel_code": "snack_store_qr"},
        },
    )
    await http.post(
        "/v1/events", json={"customer_id": "e2e-vip", "type": "order.paid", "data": {"amount": 59}}
    )

    async def listed(query: str) -> list[str]:
        full = f"{query} AND WorkflowId = 'customer/e2e-vip'"
        return [w.id async for w in running.client.list_workflows(full)]

    for query in (
        "SopflowStages = 'snacks_high_frequency:member'",
        f"SopflowVersions = 'snacks_high_frequency@{version}'",
        "SopflowTags = 'source_channel:snack_store_qr'",
        "SopflowTier = 'medium'",
        "SopflowLifecycle = 'growth'",
    ):
        assert await eventually(lambda q=query: listed(q)) == ["customer/e2e-vip"], query


async def test_keys_and_roles_guard_every_route(running: Running) -> None:
    base = str(running.http.base_url)
    # The customer's owner is li_lei: a staff key reads the customers it serves.
    event = {
        "customer_id": "e2e-auth",
        "type": "contact.added",
        "data": {"attributes": {"owner": "li_lei"}},
    }
    async with httpx.AsyncClient(base_url=base, timeout=CONDITION_LIMIT_SECONDS) as anonymous:
        missing = await anonymous.post("/v1/events", json=event)
        assert missing.status_code == 401
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        assert missing.json()["error"]["message"].startswith("missing API key")
        forged = await anonymous.post(
            "/v1/events", json=event, headers={"Authorization": "Bearer sf_abc_def"}
        )
        assert forged.status_code == 401
        assert forged.json()["error"]["message"] == "invalid or revoked API key"

    ingest, principal = create_key(running.database, Role.INGEST, "bridge")
    staff, _ = create_key(running.database, Role.STAFF, "li", staff_id="li_lei")

    def as_(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    accepted = await running.http.post("/v1/events", json=event, headers=as_(ingest))
    assert accepted.status_code == 202
    refused = await running.http.get("/v1/customers/e2e-auth", headers=as_(ingest))
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == (
        "this API key has the role 'ingest'; this needs staff or operator"
    )
    staff_read = await eventually(lambda: _status(running, "/v1/customers/e2e-auth", staff))
    assert staff_read == 200
    assert (
        await running.http.post("/v1/events", json=event, headers=as_(staff))
    ).status_code == 403
    revoke_key(running.database, principal.key_id)
    revoked = await running.http.post("/v1/events", json=event, headers=as_(ingest))
    assert revoked.status_code == 401


async def _status(running: Running, path: str, key: str) -> int | None:
    response = await running.http.get(path, headers={"Authorization": f"Bearer {key}"})
    return response.status_code if response.status_code == 200 else None


async def test_a_batch_reaches_each_customer_in_order_in_one_signal(running: Running) -> None:
    events = [
        {"customer_id": "e2e-b1", "type": "contact.added", "idempotency_key": "b1-1"},
        {"customer_id": "e2e-b2", "type": "contact.added", "idempotency_key": "b2-1"},
        {"customer_id": "e2e-b1", "type": "message.received", "idempotency_key": "b1-2"},
    ]
    response = await running.http.post("/v1/events:batch", json={"events": events})
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 3
    assert [r["idempotency_key"] for r in body["results"]] == ["b1-1", "b2-1", "b1-2"]
    first = await eventually(lambda: _customer_with(running.http, "e2e-b1", "engaged", "delivered"))
    assert [e["kind"] for e in first["timeline"]][:3] == ["enrolled", "stage_entered", "message"]
    second = await eventually(
        lambda: _customer_with(running.http, "e2e-b2", "icebreak", "delivered")
    )
    assert second["journeys"][0]["status"] == "active"
    history = await running.client.get_workflow_handle("customer/e2e-b1").fetch_history()
    signals = [
        e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert len(signals) == 1  # both of e2e-b1's events came in one signal


async def test_a_repeated_event_answers_the_same_and_acts_once(running: Running) -> None:
    event = {"customer_id": "e2e-rep", "type": "contact.added", "idempotency_key": "wecom-7"}
    first = await running.http.post("/v1/events", json=event)
    second = await running.http.post("/v1/events", json=event)
    assert first.status_code == second.status_code == 202
    assert second.json() == {**first.json(), "duplicate": True}
    await eventually(lambda: _customer_with(running.http, "e2e-rep", "icebreak", "delivered"))
    await running.http.post(
        "/v1/events", json={**event, "idempotency_key": "wecom-8", "type": "message.received"}
    )
    view = await eventually(lambda: _customer_with(running.http, "e2e-rep", "engaged", "delivered"))
    assert [e["kind"] for e in view["timeline"]].count("enrolled") == 1


async def test_unknown_types_future_dates_and_oversized_batches_are_refused(
    running: Running,
) -> None:
    typo = await running.http.post("/v1/events", json={"customer_id": "x", "type": "contact.aded"})
    assert typo.status_code == 422
    assert typo.json()["error"]["message"].startswith(
        "type: unknown event type 'contact.aded', did you mean 'contact.added'?"
    )
    [detail] = typo.json()["error"]["details"]
    assert (detail["field"], detail["nearest"]) == ("type", "contact.added")
    assert detail["limit"] == "a standard type or one a deployed playbook declares"
    future = await running.http.post(
        "/v1/events",
        json={"customer_id": "x", "type": "contact.added", "occurred_at": "2099-01-01T00:00:00Z"},
    )
    assert future.status_code == 422
    assert "is in the future" in future.json()["error"]["message"]
    [detail] = future.json()["error"]["details"]
    assert detail["field"] == "occurred_at"
    assert detail["limit"] == (
        "at most 300 s ahead of the server's clock (SOPFLOW_MAX_EVENT_SKEW_SECONDS)"
    )
    mixed = await running.http.post(
        "/v1/events:batch",
        json={
            "events": [
                {"customer_id": "ok-1", "type": "contact.added"},
                {"customer_id": "bad", "type": "nope"},
            ]
        },
    )
    assert mixed.status_code == 422
    assert mixed.json()["error"]["message"].startswith("events.1.type: unknown event type")
    assert mixed.json()["error"]["details"][0]["field"] == "events.1.type"
    # Every event is checked before any is sent: the valid one did not go out either.
    assert (await running.http.get("/v1/customers/ok-1")).status_code == 404
    too_many = [{"customer_id": f"c{i}", "type": "contact.added"} for i in range(1001)]
    oversized = await running.http.post("/v1/events:batch", json={"events": too_many})
    assert oversized.status_code == 413
    catalogue = await running.http.get("/v1/event-types")
    assert "order.paid" in catalogue.json()["standard"]


TASKS_PLAYBOOK = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: callbacks}
enrol: {event: form.submitted}
stages:
  calling:
    on_enter:
      - task: {id: call, title: "Call {{ customer.id }}", assignee: "staff:li_lei", due: 1d}
    triggers:
      - event: task.completed
        goto: done
  done: {end: true}
"""


async def test_staff_work_their_inbox_through_the_api(running: Running, make_plan) -> None:
    plan_store(running.settings).deploy(make_plan(TASKS_PLAYBOOK))
    customers = [f"e2e-task-{i}" for i in range(3)]
    for customer in customers:
        await running.http.post(
            "/v1/events", json={"customer_id": customer, "type": "form.submitted"}
        )
    li, _ = create_key(running.database, Role.STAFF, "李雷", staff_id="li_lei")
    han, _ = create_key(running.database, Role.STAFF, "韩梅梅", staff_id="han_meimei")
    as_li = {"Authorization": f"Bearer {li}"}

    async def inbox() -> list[dict] | None:
        page = (await running.http.get("/v1/tasks?status=open", headers=as_li)).json()
        mine = [t for t in page["tasks"] if t["customer_id"].startswith("e2e-task-")]
        return mine if len(mine) == 3 else None

    tasks = await eventually(inbox)
    assert {t["title"] for t in tasks} == {f"Call {c}" for c in customers}
    first = (await running.http.get("/v1/tasks?limit=2", headers=as_li)).json()
    second = (
        await running.http.get(f"/v1/tasks?limit=2&cursor={first['next_cursor']}", headers=as_li)
    ).json()
    paged = [t["task_id"] for t in first["tasks"] + second["tasks"]]
    assert len(paged) == len(set(paged)) >= 3

    task_id = tasks[0]["task_id"]
    url = f"/v1/tasks/{task_id.replace('#', '%23')}"
    other = await running.http.post(f"{url}/complete", headers={"Authorization": f"Bearer {han}"})
    assert other.status_code == 403
    assert (
        await running.http.get(
            "/v1/tasks?assignee=li_lei", headers={"Authorization": f"Bearer {han}"}
        )
    ).status_code == 403
    bad = await running.http.post(f"{url}/postpone", json={}, headers=as_li)
    assert bad.status_code == 422
    done = await running.http.post(f"{url}/complete", headers=as_li)
    assert done.status_code == 202 and done.json() == {"task_id": task_id, "status": "completed"}
    customer = tasks[0]["customer_id"]
    await eventually(lambda: _in_stage(running.http, customer, "done"))
    stats = (await running.http.get("/v1/tasks/stats", headers=as_li)).json()
    [li_stats] = stats
    assert li_stats["assignee"] == "li_lei" and li_stats["completed"] >= 1
    assert li_stats["execution_rate"] == round(li_stats["completed"] / li_stats["total"], 4)
    missing = await running.http.post("/v1/tasks/nope/complete", headers=as_li)
    assert missing.status_code == 404


async def _in_stage(http: httpx.AsyncClient, customer_id: str, stage: str) -> bool:
    response = await http.get(f"/v1/customers/{customer_id}")
    return response.status_code == 200 and response.json()["journeys"][0]["stage"] == stage


async def test_customer_lists_filter_page_and_follow_manual_tags(running: Running) -> None:
    http = running.http
    suffix = running.settings.temporal_task_queue[-6:]
    ids = [f"e2e-list-{suffix}-{i}" for i in range(3)]
    for customer in ids:
        await http.post("/v1/events", json={"customer_id": customer, "type": "contact.added"})
    tagged = await http.put(f"/v1/customers/{ids[0]}/tags/intent:hot")
    assert tagged.status_code == 202

    async def listed(query: str) -> set[str]:
        body = (await http.get(f"/v1/customers?{query}&limit=500")).json()
        return {c["customer_id"] for c in body["customers"]} & set(ids)

    async def exactly(query: str, expected: set[str]) -> bool:
        return await listed(query) == expected

    await eventually(lambda: exactly("playbook=welcome&stage=icebreak", set(ids)))
    await eventually(lambda: exactly("playbook=welcome", set(ids)))
    await eventually(lambda: exactly("tag=intent:hot", {ids[0]}))
    pages, cursor = [], None
    while True:
        query = "/v1/customers?playbook=welcome&stage=icebreak&limit=1"
        body = (await http.get(query + (f"&cursor={cursor}" if cursor else ""))).json()
        pages.append([c["customer_id"] for c in body["customers"]])
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert all(len(page) <= 1 for page in pages)
    assert set(ids) <= {c for page in pages for c in page}
    assert (await http.delete(f"/v1/customers/{ids[0]}/tags/intent:hot")).status_code == 202
    await eventually(lambda: exactly("tag=intent:hot", set()))
    injected = await http.get("/v1/customers?tag=x' OR 1=1")
    assert injected.status_code == 422
    unknown = await http.get("/v1/customers?playbook=nope")
    assert unknown.status_code == 404


async def test_operators_deploy_inspect_and_simulate_playbooks(running: Running) -> None:
    from tests.conftest import REPO

    http = running.http
    text = (REPO / "playbooks/welcome.yaml").read_text(encoding="utf-8")
    yaml_headers = {"Content-Type": "application/yaml"}
    broken = await http.post(
        "/v1/playbooks",
        content=text.replace("goto: dormant", "goto: dormnat"),
        headers=yaml_headers,
    )
    assert broken.status_code == 422
    error = broken.json()["error"]
    assert error["code"] == "invalid_playbook"
    assert error["details"][0]["message"] == "unknown stage 'dormnat', did you mean 'dormant'?"
    assert error["details"][0]["field"].endswith("stages.reactivate.triggers.1.goto")

    changed = text.replace("after: 14d", "after: 10d")
    deployed = await http.post("/v1/playbooks", content=changed, headers=yaml_headers)
    assert deployed.status_code == 201
    [welcome] = deployed.json()["deployed"]
    listed = {p["name"]: p for p in (await http.get("/v1/playbooks")).json()}
    assert listed["welcome"]["version"] == welcome["version"]
    versions = (await http.get("/v1/playbooks/welcome/versions")).json()
    assert [v["deployed"] for v in versions if v["version"] == welcome["version"]] == [True]
    assert len(versions) >= 2  # the fixture's version is still there for journeys in flight
    graph = (await http.get("/v1/playbooks/welcome/graph")).json()
    assert "    reactivate --> dormant : after 10d" in graph["mermaid"].splitlines()
    timeline = (
        await http.post(
            "/v1/playbooks/welcome/simulate",
            json={"start": "2026-11-23T09:00:00+08:00", "days": 20},
        )
    ).json()
    ended = [e for e in timeline if e["kind"] == "journey_ended"]
    assert [e["at"] for e in ended] == ["2026-12-06T01:00:00Z"]  # day 3 + 10 days
    assert (await http.get("/v1/playbooks/nope/graph")).status_code == 404
    as_ingest, _ = create_key(running.database, Role.INGEST, "bridge")
    refused = await http.post(
        "/v1/playbooks",
        content=changed,
        headers={**yaml_headers, "Authorization": f"Bearer {as_ingest}"},
    )
    assert refused.status_code == 403


async def test_an_oversized_body_is_refused_before_it_is_read(running: Running) -> None:
    huge = b'{"events": [' + b" " * 2_100_000 + b"]}"
    response = await running.http.post(
        "/v1/events:batch", content=huge, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


# A hundred customers' histories: seconds on an idle machine, minutes on a busy one. The
# comparison is polled and returns as soon as the funnels agree.
FUNNEL_LIMIT_SECONDS = 600.0


@pytest.mark.timeout(FUNNEL_LIMIT_SECONDS + 2 * CONDITION_LIMIT_SECONDS)
async def test_the_funnel_of_100_customers_equals_the_simulators_prediction(
    running: Running,
) -> None:
    from scripts.funnel_scenario import _comparable, run
    from sopflow.language import compile_paths
    from tests.conftest import REPO

    bundle = compile_paths([REPO / "playbooks"])
    plan_store(running.settings).deploy_all(list(bundle.plans.values()), bundle.profile)
    measured, predicted, customers = await run(running.http, timeout=FUNNEL_LIMIT_SECONDS)
    await terminate(running.client, *customers)  # a hundred busy workflows, ended cleanly
    assert _comparable(measured) == _comparable(predicted)
    assert predicted.enrolled == 100
    entered = {s.stage: s.entered for s in predicted.stages}
    # A real shape: everyone enrolled, fewer at each later layer, some deposits.
    assert entered["icebreak"] == 100 > entered["solution"] > entered["deposit"] > 0
    assert 0 < predicted.goal_conversion_rate < 1


async def test_acquisition_costs_and_figures_through_the_api(running: Running) -> None:
    http = running.http
    period = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    put = await http.put("/v1/metrics/costs", json={"period": period, "fixed_cost": 300})
    assert put.status_code == 200
    await http.put(
        "/v1/metrics/costs", json={"period": period, "channel_code": "qr_door", "traffic_cost": 300}
    )
    await http.post(
        "/v1/events:batch",
        json={
            "events": [
                {
                    "customer_id": "acq-1",
                    "type": "contact.added",
                    "data": {"channel_code": "qr_door"},
                },
                {
                    "customer_id": "acq-2",
                    "type": "contact.added",
                    "data": {"channel_code": "qr_door"},
                },
                {"customer_id": "acq-1", "type": "order.paid", "data": {"amount": 1200}},
            ]
        },
    )
    figures = (await http.get(f"/v1/metrics/acquisition?period={period}")).json()
    assert (figures["new_fans"], figures["cost_per_new_fan"]) == (2, 300.0)
    assert (figures["conversion_rate"], figures["roi"]) == (50.0, 2.0)
    bad = await http.put("/v1/metrics/costs", json={"period": "2026-13"})
    assert bad.status_code == 422
