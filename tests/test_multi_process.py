"""Several hosts, one brand: two workers and two APIs as processes of their own, each with
its own data folder, sharing nothing but one Temporal server and one PostgreSQL schema.

They start together on the empty schema (the migration lock), take 30 pairs of concurrent
deploys through both APIs (each kept or refused with 409, none lost), then the events of
1,000 customers through both APIs while one worker and one API are killed with SIGKILL
and replaced. Counts are exact: each delivery once in the ledger and in the deliveries
logs, each customer enrolled once, each accepted deploy in the history.
`make drills` runs it with 10,000 customers (SOPFLOW_MULTI_CUSTOMERS)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from sqlalchemy import func, select
from temporalio.testing import WorkflowEnvironment

from sopflow.settings import Settings
from sopflow.store.database import Database, database_url
from sopflow.store.keys import Role, create_key
from sopflow.store.tables import DeliveryRecord, JourneyEvent
from tests.conftest import REPO, free_port
from tests.helpers import terminate

CUSTOMERS = int(os.environ.get("SOPFLOW_MULTI_CUSTOMERS", "1000"))
DEPLOY_PAIRS = 30
MESSAGES_EACH = 2
IN_FLIGHT = 16  # event requests in flight, half through each API

BURST = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: burst}
enrol: {event: contact.added}
stages:
  notify:
    on_enter:
      - send: {channel: log, text: "one"}
      - send: {channel: log, text: "two"}
    end: true
"""
# The playbooks the deploy pairs change: enrolled by an event the burst never sends.
CONTESTED = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: %s}
enrol: {event: drill.never}
stages:
  only:
    on_enter: [{send: {channel: log, text: "%s"}}]
    end: true
"""
DRILLED = ("left", "right", "contested")


@dataclass
class Cluster:
    """The processes of the drill and what each sees; a replaced process gets a new home,
    as a replacement host would."""

    tmp: Path
    env: dict[str, str]
    api_ports: list[int]
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    apis: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: list[IO[bytes]] = field(default_factory=list)

    def start_worker(self, host: str) -> None:
        self.workers[host] = self._spawn("worker", host, {})

    def start_api(self, index: int, host: str) -> None:
        port = {"SOPFLOW_API_PORT": str(self.api_ports[index])}
        self.apis[index] = self._spawn("api", host, port)

    def _spawn(self, command: str, host: str, extra: dict[str, str]) -> subprocess.Popen[bytes]:
        home = self.tmp / host
        home.mkdir()
        log = (self.tmp / f"{host}.log").open("wb")
        self.logs.append(log)
        return subprocess.Popen(
            [sys.executable, "-m", "cli", command],
            env={**self.env, **extra, "SOPFLOW_HOME": str(home)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def base(self, index: int) -> str:
        return f"http://127.0.0.1:{self.api_ports[index]}"

    def stop(self) -> None:
        for process in [*self.workers.values(), *self.apis.values()]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [*self.workers.values(), *self.apis.values()]:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self.logs:
            log.close()

    def log_keys(self, host: str) -> list[str]:
        log = self.tmp / host / "deliveries.jsonl"
        lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
        return [json.loads(line)["idempotency_key"] for line in lines]


def count_rows(database: Database, query: Any) -> int:
    with database.engine.connect() as connection:
        return connection.scalar(query) or 0


async def wait_for(probe, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f}s"
        await asyncio.sleep(0.2)


async def healthy(http: httpx.AsyncClient, base: str) -> bool:
    try:
        return (await http.get(f"{base}/healthz")).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.timeout(300 + CUSTOMERS // 5)
async def test_two_workers_and_two_apis_share_only_temporal_and_the_database(
    dev_env: WorkflowEnvironment, postgres_url: str, tmp_path: Path
) -> None:
    queue = f"multi-{tmp_path.name[-8:]}"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SOPFLOW_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "SOPFLOW_TEMPORAL_TASK_QUEUE": queue,
        "SOPFLOW_DATABASE_URL": postgres_url,
        "SOPFLOW_PUBLISH_SEARCH_ATTRIBUTES": "false",
    }
    cluster = Cluster(tmp_path, env, [free_port(), free_port()])
    database = Database(database_url(Settings(database_url=postgres_url)))
    customers = [f"{queue}-{i}" for i in range(CUSTOMERS)]
    expected = {f"{c}/burst#1/{n}" for c in customers for n in range(1, MESSAGES_EACH + 1)}
    try:
        # Four processes upgrade the empty schema at once.
        cluster.start_worker("worker-a")
        cluster.start_worker("worker-b")
        cluster.start_api(0, "api-a")
        cluster.start_api(1, "api-b")
        async with httpx.AsyncClient(timeout=30) as http:
            for index in (0, 1):
                await wait_for(lambda i=index: healthy(http, cluster.base(i)), 90, "API up")
            token, _ = create_key(database, Role.OPERATOR, "multi-process drill")
            http.headers["Authorization"] = f"Bearer {token}"
            first = await http.post(
                f"{cluster.base(0)}/v1/playbooks",
                content="---\n".join([BURST, *(CONTESTED % (n, "start") for n in DRILLED)]),
                headers={"Content-Type": "application/yaml", "If-Match": '"0"'},
            )
            assert first.status_code == 201, first.text
            outcomes = await deploy_pairs(http, cluster)
            await burst_with_chaos(http, cluster, database, customers, expected)
            history = (await http.get(f"{cluster.base(1)}/v1/deployments?limit=500")).json()
        # The survivors and the replacements are all running.
        assert sorted(cluster.workers) == ["worker-b", "worker-c"]
        assert [p.poll() for p in [*cluster.workers.values(), *cluster.apis.values()]] == [None] * 4
        check_deploys(outcomes, history)
        check_deliveries(cluster, database, customers, expected)
    finally:
        cluster.stop()
        database.dispose()
        await terminate(dev_env.client, *customers)


@dataclass
class DeployOutcome:
    kind: str  # same / other / blind
    api: int
    status: int
    playbook: str
    version: str | None  # the version it sent, from the 201 or compiled here
    body: dict[str, Any]


async def deploy_pairs(http: httpx.AsyncClient, cluster: Cluster) -> list[DeployOutcome]:
    """Each pair reads the current deployment, then deploys through both APIs at once:
    the same playbook on that base (one must win, one 409), two different playbooks on
    that base (both kept, one merged), or the same playbook with no base."""
    from sopflow.language import compile_playbook

    outcomes: list[DeployOutcome] = []
    for pair in range(DEPLOY_PAIRS):
        current = await http.get(f"{cluster.base(pair % 2)}/v1/deployments/current")
        etag = current.headers["ETag"]
        kind = ("same", "other", "blind")[pair % 3]
        names = ("contested", "contested") if kind != "other" else ("left", "right")
        texts = (f"{pair}-a", f"{pair}-b")

        async def deploy(
            api: int, name: str, text: str, kind: str = kind, etag: str = etag
        ) -> DeployOutcome:
            headers = {"Content-Type": "application/yaml"}
            if kind != "blind":
                headers["If-Match"] = etag
            response = await http.post(
                f"{cluster.base(api)}/v1/playbooks",
                content=CONTESTED % (name, text),
                headers=headers,
            )
            version = compile_playbook(CONTESTED % (name, text), filename="pair.yaml").version
            return DeployOutcome(kind, api, response.status_code, name, version, response.json())

        outcomes += await asyncio.gather(
            deploy(0, names[0], texts[0]), deploy(1, names[1], texts[1])
        )
    return outcomes


def check_deploys(outcomes: list[DeployOutcome], history: list[dict[str, Any]]) -> None:
    assert {o.status for o in outcomes} <= {201, 409}, [o.body for o in outcomes]
    pairs = [outcomes[i : i + 2] for i in range(0, len(outcomes), 2)]
    for pair in pairs:
        statuses = sorted(o.status for o in pair)
        if pair[0].kind == "same":  # one base, one playbook: exactly one wins
            assert statuses == [201, 409]
            [refused] = [o for o in pair if o.status == 409]
            assert refused.body["error"]["code"] == "deployment_conflict"
        elif pair[0].kind == "other":  # one base, two playbooks: both kept, one merged
            assert statuses == [201, 201]
            assert sorted(o.body["merged"] for o in pair) == [False, True]
        else:  # no base: each is based on what its own transaction read
            assert statuses in ([201, 201], [201, 409])
    by_number = {h["id"]: h for h in history}
    accepted = [o for o in outcomes if o.status == 201]
    # Numbered without a gap: the first deploy, then exactly the accepted ones.
    assert sorted(by_number) == list(range(1, len(accepted) + 2))
    for outcome in accepted:  # every accepted deploy is in the history, as it was sent
        entry = by_number[outcome.body["deployment"]]
        assert entry["deployed"] == {outcome.playbook: outcome.version}
        assert entry["source"] == "api" and entry["deployed_by"].startswith("multi-process")
    refused_versions = {o.version for o in outcomes if o.status == 409}
    assert not refused_versions & {v for h in history for v in h["deployed"].values()}
    current = by_number[max(by_number)]["playbooks"]
    for name in DRILLED:  # the last accepted change of each playbook is what is deployed
        changes = [by_number[n] for n in sorted(by_number) if name in by_number[n]["changed"]]
        assert current[name] == changes[-1]["deployed"][name]


async def burst_with_chaos(
    http: httpx.AsyncClient,
    cluster: Cluster,
    database: Database,
    customers: list[str],
    expected: set[str],
) -> None:
    """Every customer's contact.added through one API or the other, one request each,
    retried through the other API when one fails; halfway, SIGKILL a worker and an API."""
    delivered = select(func.count()).select_from(DeliveryRecord)
    sent = 0
    chaos = asyncio.Event()
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def send(index: int, customer: str) -> None:
        nonlocal sent
        event = {"customer_id": customer, "type": "contact.added", "idempotency_key": "add"}
        api = index % 2
        async with gate:
            for attempt in range(200):
                try:
                    response = await http.post(f"{cluster.base(api)}/v1/events", json=event)
                    if response.status_code == 202:
                        break
                    assert response.status_code >= 500, response.text
                except httpx.TransportError:
                    pass
                api = 1 - api  # that API is down or failing: the other one
                await asyncio.sleep(min(0.05 * attempt, 1.0))
            else:
                raise AssertionError(f"{customer}: no API accepted the event")
        sent += 1

    async def kill_and_replace() -> tuple[int, int]:
        async def halfway() -> bool:
            rows = await asyncio.to_thread(count_rows, database, delivered)
            return sent >= len(customers) // 2 and rows >= min(len(expected) // 10, 50)

        await wait_for(halfway, 120 + len(customers) / 20, "half the burst")
        sent_then = sent
        for process in (cluster.workers.pop("worker-a"), cluster.apis.pop(1)):
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        delivered_then = await asyncio.to_thread(count_rows, database, delivered)
        cluster.start_worker("worker-c")
        cluster.start_api(1, "api-c")
        chaos.set()
        return sent_then, delivered_then

    killing = asyncio.create_task(kill_and_replace())
    await asyncio.gather(*(send(i, c) for i, c in enumerate(customers)))
    sent_then, delivered_then = await killing
    assert sent_then < len(customers), "the API was killed after the burst was sent"
    assert 0 < delivered_then < len(expected), "the worker was killed outside the burst"
    await wait_for(lambda: healthy(http, cluster.base(1)), 90, "the replacement API")

    async def all_delivered() -> bool:
        return await asyncio.to_thread(count_rows, database, delivered) >= len(expected)

    await wait_for(all_delivered, 240 + len(customers) / 10, "every delivery")
    # A retried delivery would arrive after the last first one: wait until the logs rest.
    sizes: list[int] = []

    async def logs_rest() -> bool:
        sizes.append(sum(len(cluster.log_keys(h)) for h in ("worker-a", "worker-b", "worker-c")))
        return len(sizes) > 10 and len(set(sizes[-10:])) == 1

    await wait_for(logs_rest, 60, "the deliveries logs to rest")


def check_deliveries(
    cluster: Cluster, database: Database, customers: list[str], expected: set[str]
) -> None:
    with database.engine.connect() as connection:
        ledger = [row[0] for row in connection.execute(select(DeliveryRecord.idempotency_key))]
        enrolled = connection.scalar(
            select(func.count()).select_from(JourneyEvent).where(JourneyEvent.kind == "enrolled")
        )
    assert len(ledger) == len(expected) and set(ledger) == expected  # each once
    assert enrolled == len(customers)  # no event acted twice, whichever API took it
    killed = cluster.log_keys("worker-a")
    others = cluster.log_keys("worker-b") + cluster.log_keys("worker-c")
    assert set(killed) | set(others) == expected  # every delivery reached a log
    # The ledger is the record of a delivery: each once, above. The log channel appends a
    # line before the ledger write, so a delivery whose local activity ran twice (the
    # killed worker's, or a workflow task that timed out on a loaded machine and ran on
    # the other worker) logs twice, with the same idempotency key for a reader to drop.
    # At most one such second run per delivery.
    assert max((Counter(killed) + Counter(others)).values()) <= 2
