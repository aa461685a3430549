"""What the live benchmarks share: a dev server, the raw Temporal baseline workflows, and a
sopflow stack (worker + HTTP API + read model) on the same server.

The baseline is what Temporal itself can do on this machine: trivial workflows that count
signals (and, for deliveries, append one line to a file per signal from a local activity,
as sopflow's log channel does), driven straight from the SDK. Both sides use the same
worker poller settings (`worker.main.POLLER`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, select
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from cli.binaries import temporal_cli
from cli.heap import freeze_startup_heap
from cli.serving import api_server
from sopflow.language import compile_playbook
from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.keys import Role, create_key
from sopflow.store.plans import PlanStore
from sopflow.store.tables import DeliveryRecord, JourneyEvent
from tests.conftest import free_port
from worker.main import POLLER, build_worker
from workflows.contracts import SEARCH_ATTRIBUTES

# A journey step that changes state only (benchmark 1).
STATE_ONLY = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: counting}
enrol: {event: contact.added}
stages:
  counting:
    triggers:
      - event: content.read
        actions: [{score: {reads: 1}}]
      - after: 30d
        goto: done
  done: {end: true}
"""

# One log-channel delivery per event, the enrolling one included (benchmarks 2 and 3);
# the text carries the event's number so a delivery can be matched to its event.
ONE_DELIVERY = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: delivering}
enrol: {event: contact.added}
stages:
  delivering:
    on_enter:
      - send: {channel: log, text: "{{ event.data.n }}"}
    triggers:
      - event: content.read
        actions: [{send: {channel: log, text: "{{ event.data.n }}"}}]
      - after: 30d
        goto: done
  done: {end: true}
"""


@asynccontextmanager
async def dev_server(folder: Path, sqlite: bool) -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=str(temporal_cli()),
        dev_server_database_filename=str(folder / "temporal.db") if sqlite else None,
        search_attributes=[
            SearchAttributeKey.for_keyword_list(n)
            if k == "KeywordList"
            else SearchAttributeKey.for_keyword(n)
            for n, k in SEARCH_ATTRIBUTES.items()
        ],
    )
    async with env:
        yield env


# ------------------------------------------------------------------------- the baseline


@workflow.defn(sandboxed=False)
class CountSignals:
    """The baseline: a workflow that does nothing but count signals."""

    def __init__(self) -> None:
        self.count = 0

    @workflow.signal
    def bump(self, text: str = "") -> None:  # the same signal as DeliverPerSignal's
        self.count += 1

    @workflow.run
    async def run(self, expected: int) -> int:
        await workflow.wait_condition(lambda: self.count >= expected)
        return self.count


@workflow.defn(sandboxed=False)
class DeliverPerSignal:
    """The delivery baseline: each signal appends one line to a file (a local activity)."""

    def __init__(self) -> None:
        self.pending: list[str] = []

    @workflow.signal
    def bump(self, text: str) -> None:
        self.pending.append(text)

    @workflow.run
    async def run(self, expected: int) -> int:
        done = 0
        while done < expected:
            await workflow.wait_condition(lambda: bool(self.pending))
            await workflow.execute_local_activity(
                "raw_append", self.pending.pop(0), start_to_close_timeout=timedelta(seconds=30)
            )
            done += 1
        return done


class RawAppend:
    """The baseline's effect: the same JSON line the log channel writes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @activity.defn(name="raw_append")
    async def append(self, text: str) -> None:
        line = json.dumps({"delivered_at": datetime.now(UTC).isoformat(), "text": text})
        await asyncio.to_thread(self._write, line)

    def _write(self, line: str) -> None:
        with self.path.open("a", encoding="utf-8") as file:
            file.write(line + "\n")


@asynccontextmanager
async def raw_worker(client: Client, log: Path, queue: str | None = None) -> AsyncIterator[str]:
    """The baseline's worker on `queue` (a new one unless given); yields the queue."""
    queue = queue or f"raw-{uuid.uuid4().hex}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[CountSignals, DeliverPerSignal],
        activities=[RawAppend(log).append],
        workflow_task_poller_behavior=POLLER,
        activity_task_poller_behavior=POLLER,
    ):
        yield queue


async def raw_burst(
    client: Client, queue: str, customers: int, events: int, deliver: bool
) -> float:
    """Seconds for `customers` workflows to take `events` signals each (50 in flight)."""
    began = time.perf_counter()
    gate = asyncio.Semaphore(50)

    run = DeliverPerSignal.run if deliver else CountSignals.run

    async def one(index: int) -> None:
        async with gate:
            handle = await client.start_workflow(
                run,
                events,
                id=f"{queue}-{index}",
                task_queue=queue,
                start_signal="bump",
                start_signal_args=["0"],
            )
            for n in range(1, events):
                await handle.signal("bump", str(n))
        await handle.result()

    await asyncio.gather(*(one(i) for i in range(customers)))
    return time.perf_counter() - began


# ------------------------------------------------------------------------------ sopflow


@dataclass
class Stack:
    settings: Settings
    database: Database
    http: httpx.AsyncClient

    def count(self, kind: str) -> int:
        """Deliveries in the ledger (`delivered`), or journey-ledger rows of one kind."""
        with self.database.session() as session:
            if kind == "delivered":
                query = select(func.count()).select_from(DeliveryRecord)
            else:
                query = (
                    select(func.count()).select_from(JourneyEvent).where(JourneyEvent.kind == kind)
                )
            return session.scalar(query) or 0

    async def wait_for(self, kind: str, expected: int, timeout: float = 600) -> None:
        # Counted off the event loop and not too often: the worker shares this process,
        # and a busy poll would take CPU from it (the end is known within 0.2 s).
        deadline = time.monotonic() + timeout
        while (found := await asyncio.to_thread(self.count, kind)) < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{found} of {expected} {kind}")
            await asyncio.sleep(0.2)


def deployed(
    client: Client, home: Path, playbook: str, **overrides: object
) -> tuple[Settings, Database, str]:
    """Settings for a benchmark's sopflow on `client`'s server (a task queue and an API port
    of its own, `overrides` on top), with `playbook` deployed and an operator key."""
    settings = Settings(
        home=home,
        temporal_task_queue=f"bench-{uuid.uuid4().hex}",
        temporal_address=client.service_client.config.target_host,
        api_port=free_port(),
        **overrides,  # type: ignore[arg-type]
    )
    PlanStore.from_settings(settings).deploy(compile_playbook(playbook))
    database = Database.from_settings(settings)
    key, _ = create_key(database, Role.OPERATOR, "bench")
    return settings, database, key


@asynccontextmanager
async def sopflow_stack(
    client: Client,
    home: Path,
    playbook: str,
    sandboxed: bool = True,
    worker: bool = True,
    **overrides: object,
) -> AsyncIterator[Stack]:
    """The API (and, unless `worker=False`, a worker in this process) with `playbook`
    deployed and an operator key; a benchmark that runs its worker in another process
    points it at `stack.settings`. `overrides` are more settings (WeCom's callback)."""
    settings, database, key = deployed(
        client, home, playbook, workflow_sandbox=sandboxed, **overrides
    )
    server = api_server(settings, client)
    async with build_worker(client, settings) if worker else contextlib.nullcontext():
        freeze_startup_heap()  # as `sopflow worker` and `sopflow api` do (cli/heap.py)
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{settings.api_port}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=300,
            ) as http:
                yield Stack(settings, database, http)
        finally:
            server.should_exit = True
            await serving


def event(customer: str, type_: str, key: str, n: int) -> dict[str, object]:
    return {
        "customer_id": customer,
        "type": type_,
        "idempotency_key": key,
        "occurred_at": datetime.now(UTC).isoformat(),
        "data": {"n": n},
    }


async def sopflow_burst(
    stack: Stack, customers: int, events: int, done_kind: str, done_count: int
) -> float:
    """Seconds from the first batch sent until `done_count` rows of `done_kind` exist."""
    run = uuid.uuid4().hex[:6]
    body = [
        event(f"b-{run}-{c}", "contact.added" if e == 0 else "content.read", f"{run}-{c}-{e}", e)
        for c in range(customers)
        for e in range(events)
    ]
    already = stack.count(done_kind)
    began = time.perf_counter()
    for offset in range(0, len(body), 1000):
        reply = await stack.http.post(
            "/v1/events:batch", json={"events": body[offset : offset + 1000]}
        )
        reply.raise_for_status()
    await stack.wait_for(done_kind, already + done_count)
    return time.perf_counter() - began


def delivered_lines(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
