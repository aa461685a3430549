"""Event throughput: sopflow (HTTP batch -> customer workflows -> a state-only step) against
raw Temporal (a trivial workflow counting signals, sent with the SDK), same server, same run.

Run: `.venv/bin/python -m bench.throughput [--customers 200] [--events 5] [--sqlite]`
Target (issue 7): ratio >= 0.8; one signal per customer for a batch may beat 1.0.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import func, select
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.history import CountSignals
from sopflow.binaries import temporal_cli
from sopflow.language import compile_playbook
from sopflow.plan_store import PlanStore
from sopflow.readmodel.database import Database
from sopflow.readmodel.keys import Role, create_key
from sopflow.readmodel.tables import JourneyEvent
from sopflow.serving import api_server
from sopflow.settings import Settings
from tests.conftest import free_port
from worker.main import build_worker
from workflows.contracts import SEARCH_ATTRIBUTES

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


async def raw(client: Client, customers: int, events: int) -> float:
    queue = f"raw-{uuid.uuid4().hex}"
    async with Worker(client, task_queue=queue, workflows=[CountSignals]):
        began = time.perf_counter()
        gate = asyncio.Semaphore(50)

        async def one(index: int) -> None:
            async with gate:
                handle = await client.start_workflow(
                    CountSignals.run,
                    events,
                    id=f"raw-{queue}-{index}",
                    task_queue=queue,
                    start_signal="bump",
                )
                for _ in range(events - 1):
                    await handle.signal(CountSignals.bump)
            await handle.result()

        await asyncio.gather(*(one(i) for i in range(customers)))
        return time.perf_counter() - began


async def sopflow_batch(client: Client, customers: int, events: int, home: Path) -> float:
    settings = Settings(
        home=home, temporal_task_queue=f"tp-{uuid.uuid4().hex}", api_port=free_port()
    )
    PlanStore(settings.plans_dir).deploy(compile_playbook(STATE_ONLY))
    database = Database.from_settings(settings)
    key, _ = create_key(database, Role.OPERATOR, "bench")
    server = api_server(settings, client)
    async with build_worker(client, settings):
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        run = uuid.uuid4().hex[:6]
        now = datetime.now(UTC).isoformat()
        body = [
            {
                "customer_id": f"tp-{run}-{c}",
                "type": "contact.added" if e == 0 else "content.read",
                "idempotency_key": f"{run}-{c}-{e}",
                "occurred_at": now,
            }
            for c in range(customers)
            for e in range(events)
        ]
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.api_port}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=120,
        ) as http:
            began = time.perf_counter()
            for offset in range(0, len(body), 1000):
                (
                    await http.post(
                        "/v1/events:batch", json={"events": body[offset : offset + 1000]}
                    )
                ).raise_for_status()
            expected = customers * (events - 1)
            while True:  # done when every state-only step reached the journey ledger
                with database.session() as session:
                    done = session.scalar(
                        select(func.count())
                        .select_from(JourneyEvent)
                        .where(JourneyEvent.kind == "score_changed")
                    )
                if done >= expected:
                    break
                await asyncio.sleep(0.1)
            elapsed = time.perf_counter() - began
        server.should_exit = True
        await serving
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--events", type=int, default=5)
    parser.add_argument("--sqlite", action="store_true", help="SQLite-backed dev server")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        env = await WorkflowEnvironment.start_local(
            data_converter=pydantic_data_converter,
            dev_server_existing_path=str(temporal_cli()),
            dev_server_database_filename=str(Path(folder) / "t.db") if args.sqlite else None,
            search_attributes=[
                SearchAttributeKey.for_keyword_list(n)
                if k == "KeywordList"
                else SearchAttributeKey.for_keyword(n)
                for n, k in SEARCH_ATTRIBUTES.items()
            ],
        )
        async with env:
            raw_seconds = await raw(env.client, args.customers, args.events)
            ours = await sopflow_batch(
                env.client, args.customers, args.events, Path(folder) / "home"
            )
    total = args.customers * args.events
    store = "SQLite" if args.sqlite else "in-memory"
    print(f"{'':<34}{'seconds':>9}{'events/s':>10}")
    print(f"{'raw Temporal (signals, SDK)':<34}{raw_seconds:>9.2f}{total / raw_seconds:>10.0f}")
    print(f"{'sopflow (HTTP batch, state step)':<34}{ours:>9.2f}{total / ours:>10.0f}")
    print(
        f"ratio sopflow / raw: {raw_seconds / ours:.2f}  ({args.customers} customers x "
        f"{args.events} events, {store} dev server)"
    )
    print(
        f"Repeat: .venv/bin/python -m bench.throughput --customers {args.customers} "
        f"--events {args.events}{' --sqlite' if args.sqlite else ''}"
    )


if __name__ == "__main__":
    asyncio.run(main())
