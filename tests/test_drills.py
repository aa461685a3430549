"""Fault drills with exact counts. `make test` runs them small; `make drills` at full size
(SOPFLOW_DRILL_CUSTOMERS=1000)."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from temporalio.testing import WorkflowEnvironment

from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.tables import DeliveryRecord
from tests.conftest import REPO
from tests.helpers import WebhookReceiver, plan_store, send_event, terminate
from tests.test_end_to_end import running  # noqa: F401 - the API-and-worker fixture

CUSTOMERS = int(os.environ.get("SOPFLOW_DRILL_CUSTOMERS", "30"))
MESSAGES_EACH = 3

BURST = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: burst}
enrol: {event: contact.added}
stages:
  notify:
    on_enter:
      - send: {channel: webhook, text: "one"}
      - send: {channel: webhook, text: "two"}
      - send: {channel: webhook, text: "three"}
    end: true
"""


def drill_settings(
    tmp_path: Path, prefix: str, webhook_url: str | None = None
) -> tuple[str, Settings]:
    """A drill's own task queue and home (and webhook endpoint), without search attributes."""
    queue = f"{prefix}-{tmp_path.name[-8:]}"
    settings = Settings(
        home=tmp_path / "home",
        temporal_task_queue=queue,
        publish_search_attributes=False,
        webhook_url=webhook_url,
    )
    return queue, settings


def ledger_rows(settings: Settings) -> int:
    """Rows in the delivery ledger: each effect that reached its channel, once."""
    database = Database.from_settings(settings)
    with database.session() as session:
        recorded = session.scalar(select(func.count()).select_from(DeliveryRecord))
    database.dispose()
    return recorded or 0


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_until(probe, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, "drill did not converge in time"
        time.sleep(0.1)


@pytest.mark.timeout(900)
async def test_kill_9_the_worker_mid_burst_and_every_delivery_arrives_once(
    dev_env: WorkflowEnvironment, tmp_path: Path, make_plan
) -> None:
    receiver = WebhookReceiver()
    queue, settings = drill_settings(tmp_path, "drill", receiver.url)
    plan_store(settings).deploy(make_plan(BURST))
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SOPFLOW_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "SOPFLOW_TEMPORAL_TASK_QUEUE": queue,
        "SOPFLOW_HOME": str(settings.home),
        "SOPFLOW_WEBHOOK_URL": receiver.url,
        "SOPFLOW_PUBLISH_SEARCH_ATTRIBUTES": "false",
    }
    expected = CUSTOMERS * MESSAGES_EACH
    customers = [f"{queue}-{i}" for i in range(CUSTOMERS)]
    worker = start_worker(env)
    try:
        for customer in customers:
            await send_event(dev_env.client, settings, customer, "contact.added", "add")
        # Let part of the burst through, then kill the worker without warning.
        wait_until(lambda: len(receiver.received) >= min(expected // 3, 20), timeout=120)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        killed_at = len(receiver.received)
        worker = start_worker(env)
        keys = lambda: {r.headers["Idempotency-Key"] for r in receiver.received}  # noqa: E731
        wait_until(lambda: len(keys()) >= expected, timeout=600)
        time.sleep(2)  # anything still to come would be a duplicate
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        await terminate(dev_env.client, *customers)
        receiver.close()
    posts = [r.headers["Idempotency-Key"] for r in receiver.received]
    assert set(posts) == {
        f"{c}/burst#1/{n}" for c in customers for n in range(1, MESSAGES_EACH + 1)
    }
    assert ledger_rows(settings) == expected  # the ledger holds each effect once
    # A POST the remote answered just before the kill, whose ledger write never happened,
    # is sent again with the same Idempotency-Key: receivers drop it. Only those repeat.
    repeats = len(posts) - len(set(posts))
    assert repeats <= 8, f"{repeats} repeated POSTs (killed at {killed_at} of {expected})"
    assert 0 < killed_at < expected  # the kill really fell mid-burst


FLOOD = int(os.environ.get("SOPFLOW_DRILL_EVENTS", "600"))


async def test_a_flood_of_bad_duplicate_and_out_of_order_events(running) -> None:  # noqa: F811
    """No 5xx, no crash, no double effect; a batch's out-of-order events act in order."""
    import asyncio
    import random
    from datetime import UTC, datetime, timedelta

    from tests.helpers import eventually

    http = running.http
    rng = random.Random(7)
    now = datetime.now(UTC)
    good_customers = [f"flood-{i}" for i in range(10)]
    # Each good customer is added, then replies; each pair comes reply-first in a batch.
    good = [
        {
            "customer_id": c,
            "type": kind,
            "idempotency_key": f"{c}-{kind}",
            "occurred_at": (now - timedelta(minutes=minutes)).isoformat(),
        }
        for c in good_customers
        for kind, minutes in (("message.received", 5), ("contact.added", 10))
    ]
    batch = await http.post("/v1/events:batch", json={"events": good})
    assert batch.status_code == 202
    bad_bodies: list[bytes | dict] = [
        b"{not json",
        b"[]",
        b"null",
        b'{"customer_id": 1, "type": []}',
        {"customer_id": "", "type": "contact.added"},
        {"customer_id": "x" * 500, "type": "contact.added"},
        {"customer_id": "ok", "type": "Contact Added"},
        {"customer_id": "ok", "type": "contact.aded"},
        {"customer_id": "ok", "type": "contact.added", "occurred_at": "yesterday"},
        {"customer_id": "ok", "type": "contact.added", "occurred_at": "2099-01-01T00:00:00Z"},
        {"customer_id": "ok", "type": "contact.added", "data": "not a map"},
        {"customer_id": "ok", "type": "contact.added", "unexpected": True},
        {"customer_id": "ok'; DROP TABLE tasks;--", "type": "contact.added"},
    ]
    requests: list[bytes | dict] = []
    while len(requests) < FLOOD:
        requests.append(rng.choice(bad_bodies))
    requests += good * 3  # every good event three more times: duplicates
    rng.shuffle(requests)
    gate = asyncio.Semaphore(20)
    statuses: list[int] = []

    async def send(body: bytes | dict) -> None:
        async with gate:
            if isinstance(body, bytes):
                response = await http.post(
                    "/v1/events", content=body, headers={"Content-Type": "application/json"}
                )
            else:
                response = await http.post("/v1/events", json=body)
            statuses.append(response.status_code)

    await asyncio.gather(*(send(body) for body in requests))
    assert not [s for s in statuses if s >= 500]
    assert statuses.count(202) == len(good) * 3
    assert (await http.get("/healthz")).status_code == 200

    async def settled(customer: str) -> dict | None:
        response = await http.get(f"/v1/customers/{customer}")
        body = response.json() if response.status_code == 200 else None
        done = body and body["journeys"] and body["journeys"][0]["stage"] == "engaged"
        return body if done else None

    for customer in good_customers:
        view = await eventually(lambda c=customer: settled(c), timeout=60)
        kinds = [e["kind"] for e in view["timeline"]]
        assert kinds.count("enrolled") == 1  # duplicates had no second effect
        # Came reply-first in the batch, honoured add-first: icebreak, then engaged.
        entered = [(e["stage"], e["at"]) for e in view["timeline"] if e["kind"] == "stage_entered"]
        assert [stage for stage, _ in entered] == ["icebreak", "engaged"]


OUTAGE_SECONDS = float(os.environ.get("SOPFLOW_DRILL_OUTAGE", "8"))


@pytest.mark.timeout(900)
async def test_a_webhook_down_for_a_while_then_back_gets_everything_once(
    dev_env: WorkflowEnvironment, tmp_path: Path, make_plan
) -> None:
    """Deliveries retry with backoff through the outage; after it, each arrives once."""
    receiver = WebhookReceiver()
    recovers_at = time.monotonic() + OUTAGE_SECONDS
    receiver.answer = lambda: 503 if time.monotonic() < recovers_at else 200
    queue, settings = drill_settings(tmp_path, "outage", receiver.url)
    plan_store(settings).deploy(make_plan(BURST))
    customers = [f"{queue}-{i}" for i in range(max(CUSTOMERS // 3, 5))]
    expected = {f"{c}/burst#1/{n}" for c in customers for n in range(1, MESSAGES_EACH + 1)}
    from worker.main import build_worker

    async with build_worker(dev_env.client, settings):
        for customer in customers:
            await send_event(dev_env.client, settings, customer, "contact.added", "add")

        def delivered():
            return {r.headers["Idempotency-Key"] for r in receiver.received if r.status == 200}

        deadline = time.monotonic() + OUTAGE_SECONDS + 300
        while len(delivered()) < len(expected):
            assert time.monotonic() < deadline, "deliveries did not recover"
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)
        await terminate(dev_env.client, *customers)
    receiver.close()
    assert any(r.status == 503 for r in receiver.received), "the outage refused nothing"
    assert delivered() == expected
    assert ledger_rows(settings) == len(expected)  # each once, whatever the retries


REFUSED = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: refused}
enrol: {event: contact.added}
stages:
  notify:
    on_enter:
      - send: {channel: webhook, text: "to a CRM that refuses it"}
    triggers:
      - after: 2s
        goto: followed_up
  followed_up:
    on_enter:
      - send: {channel: log, text: "the follow-up still goes out"}
    end: true
"""


@pytest.mark.timeout(900)
async def test_a_4xx_endpoint_is_recorded_failed_once_and_the_journey_goes_on(
    dev_env: WorkflowEnvironment, tmp_path: Path, make_plan
) -> None:
    """A 404 is permanent: one POST per message, no retry, the message marked failed with
    the endpoint's answer, and the journey follows its playbook (the next stage's send)."""
    receiver = WebhookReceiver()
    receiver.default_status = 404
    queue, settings = drill_settings(tmp_path, "refused", receiver.url)
    plan_store(settings).deploy(make_plan(REFUSED))
    customers = [f"{queue}-{i}" for i in range(CUSTOMERS)]
    from tests.helpers import describe, read_deliveries
    from worker.main import build_worker

    async with build_worker(dev_env.client, settings):
        for customer in customers:
            await send_event(dev_env.client, settings, customer, "contact.added", "add")
        deadline = time.monotonic() + 300
        while len(read_deliveries(settings)) < len(customers):
            assert time.monotonic() < deadline, "the journeys did not go on"
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # a retry of a refused POST would show by now
        views = [await describe(dev_env.client, c) for c in customers]
        await terminate(dev_env.client, *customers)
    receiver.close()
    posts = [r.headers["Idempotency-Key"] for r in receiver.received]
    assert sorted(posts) == sorted(f"{c}/refused#1/1" for c in customers)  # once each
    for view in views:
        [webhook] = [e for e in view.timeline if e.channel == "webhook"]
        assert (webhook.status, webhook.error) == ("failed", "webhook refused with HTTP 404")
        [journey] = view.journeys
        assert (journey.stage, journey.status) == ("followed_up", "ended")
    followups = read_deliveries(settings)
    assert sorted(d["customer_id"] for d in followups) == sorted(customers)
    assert ledger_rows(settings) == len(
        customers
    )  # the follow-ups; a refused message is not delivered


SHORT_TIMER = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: soon}
enrol: {event: contact.added}
stages:
  waiting:
    on_enter: [{send: {channel: log, text: "hello"}}]
    triggers:
      - after: 6s
        actions: [{send: {channel: log, text: "six seconds later"}}]
        goto: done
  done: {end: true}
"""


@pytest.mark.timeout(300)
def test_the_embedded_server_restarted_mid_journey_still_fires_its_timers(
    tmp_path: Path,
) -> None:
    import json

    import httpx

    from tests.test_cli import DevProcess

    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    (playbooks / "soon.yaml").write_text(SHORT_TIMER)
    dev = DevProcess(tmp_path)
    dev.process = subprocess.Popen(
        dev.command(playbooks),
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    _wait_ready(dev)
    key = (tmp_path / ".sopflow" / "dev-operator.key").read_text().strip()
    response = httpx.post(
        f"http://127.0.0.1:{dev.api_port}/v1/events",
        json={"customer_id": "restart-1", "type": "contact.added"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 202
    log = tmp_path / ".sopflow" / "deliveries.jsonl"
    wait_until(lambda: log.exists() and "hello" in log.read_text(), timeout=30)
    assert dev.stop()[0] == 0  # everything down, the timer still pending
    time.sleep(7)  # the timer comes due while nothing runs
    dev.process = subprocess.Popen(
        dev.command(playbooks),
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    _wait_ready(dev)
    try:
        wait_until(lambda: "six seconds later" in log.read_text(), timeout=60)
        time.sleep(1)
    finally:
        assert dev.stop()[0] == 0
    texts = [json.loads(line)["text"] for line in log.read_text().splitlines()]
    assert texts == ["hello", "six seconds later"]  # fired late, once, nothing lost


def _wait_ready(dev) -> None:
    assert dev.process is not None and dev.process.stdout is not None
    for line in dev.process.stdout:
        if "sopflow: ready" in line:
            return
    raise AssertionError("sopflow dev exited before it was ready")


V1_PINNED = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: pinned}
enrol: {event: contact.added}
stages:
  a:
    on_enter: [{send: {channel: log, text: "v1 hello"}}]
    triggers:
      - event: content.read
        actions: [{send: {channel: log, text: "v1 pong"}}]
        goto: b
  b: {end: true}
"""
# Breaking: the stage is renamed, the texts change, the reply ends the journey elsewhere.
V2_PINNED = (
    V1_PINNED.replace("  a:", "  first:")
    .replace("v1 hello", "v2 hello")
    .replace("v1 pong", "v2 pong")
    .replace("goto: b", "goto: c")
    .replace("  b: {end: true}", "  c: {end: true}")
)


@pytest.mark.timeout(900)
async def test_a_breaking_redeploy_changes_no_journey_in_flight(
    dev_env: WorkflowEnvironment, tmp_path: Path, make_plan
) -> None:
    import json

    queue, settings = drill_settings(tmp_path, "redeploy")
    store = plan_store(settings)
    store.deploy(make_plan(V1_PINNED))
    customers = [f"{queue}-{i}" for i in range(CUSTOMERS)]

    def texts() -> list[str]:
        log = settings.deliveries_log
        lines = log.read_text().splitlines() if log.exists() else []
        return [json.loads(line)["text"] for line in lines]

    from worker.main import build_worker

    async with build_worker(dev_env.client, settings):
        for customer in customers:
            await send_event(dev_env.client, settings, customer, "contact.added", "add")
        deadline = time.monotonic() + 300
        while texts().count("v1 hello") < len(customers):  # async: the worker shares the loop
            assert time.monotonic() < deadline, "the customers were not all enrolled"
            await asyncio.sleep(0.2)
        store.deploy(make_plan(V2_PINNED))  # every customer is in flight on v1
        newcomer = f"{queue}-new"
        await send_event(dev_env.client, settings, newcomer, "contact.added", "add")
        for customer in customers:
            await send_event(dev_env.client, settings, customer, "content.read", "read")
        deadline = time.monotonic() + 300
        while texts().count("v1 pong") < len(customers) or "v2 hello" not in texts():
            assert time.monotonic() < deadline, "the journeys did not finish"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)
        await terminate(dev_env.client, *customers, newcomer)
    final = texts()
    assert final.count("v1 hello") == final.count("v1 pong") == len(customers)
    assert "v2 pong" not in final  # no journey in flight took the new behaviour
    assert final.count("v2 hello") == 1  # the newcomer starts on the new version
