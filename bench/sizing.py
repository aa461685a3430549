"""Sizing, checked: the CPU each part spends per journey step and per delivery, measured
on real processes, and the formula of docs/scaling.md checked against a run of another mix.

A worker and an API run as processes of their own (`python -m cli worker`, `python -m cli
api`) on an in-memory dev server (one history shard) and a PostgreSQL schema of their own.
Customers' events arrive one HTTP request each, one round of every customer at a time, so
each event is a workflow task of its own, as events spread over a day are. Three runs:

- A, state only: an enrolling event and three events that change state (4 steps).
- B, one delivery per step: the same, each step delivering one log message.
- C, a mix the costs were not fitted on: enrolment with two messages, an event with one,
  two state-only events (4 steps, 3 deliveries).

From A and B, each part's CPU per step and per delivery; the formula predicts C's CPU, and
the run measures it. CPU is read from /proc for the worker, the API, the Temporal server
and the PostgreSQL backends serving them (application_name `sopflow-sizing`).

Run: `.venv/bin/python -m bench.sizing [--customers 200] [--no-record]`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import func, select, text
from temporalio.client import Client

from bench import report
from bench.harness import dev_server
from sopflow.settings import Settings
from sopflow.store.database import Database, database_url
from sopflow.store.keys import Role, create_key
from sopflow.store.tables import DeliveryRecord, JourneyEvent
from tests.conftest import free_port

REPO = Path(__file__).resolve().parent.parent
POSTGRES = os.environ.get("SOPFLOW_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
APPLICATION = "sopflow-sizing"
PARTS = ("worker", "API", "Temporal server", "PostgreSQL")
TICK = os.sysconf("SC_CLK_TCK")

PLAYBOOKS = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: sizing_state}
enrol: {event: sizing.state}
stages:
  counting:
    triggers:
      - event: content.read
        actions: [{score: {reads: 1}}]
      - after: 30d
        goto: done
  done: {end: true}
---
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: sizing_deliver}
enrol: {event: sizing.deliver}
stages:
  delivering:
    on_enter: [{send: {channel: log, text: "welcome"}}]
    triggers:
      - event: content.read
        actions: [{send: {channel: log, text: "read {{ event.data.n }}"}}]
      - after: 30d
        goto: done
  done: {end: true}
---
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: sizing_mixed}
enrol: {event: sizing.mixed}
stages:
  mixed:
    on_enter:
      - send: {channel: log, text: "welcome"}
      - send: {channel: log, text: "your coupon"}
    triggers:
      - event: link.clicked
        actions: [{send: {channel: log, text: "clicked"}}]
      - event: content.read
        actions: [{score: {reads: 1}}]
      - after: 30d
        goto: done
  done: {end: true}
"""


@dataclass(frozen=True)
class Run:
    name: str
    events: tuple[str, ...]  # each customer's events, in rounds
    deliveries_each: int
    scores_each: int

    @property
    def steps_each(self) -> int:
        return len(self.events)


RUNS = (
    Run("A: state only", ("sizing.state", "content.read", "content.read", "content.read"), 0, 3),
    Run(
        "B: one delivery per step",
        ("sizing.deliver", "content.read", "content.read", "content.read"),
        4,
        0,
    ),
    Run(
        "C: a mix (the check)",
        ("sizing.mixed", "link.clicked", "content.read", "content.read"),
        3,
        2,
    ),
)


@dataclass
class Measured:
    run: Run
    customers: int
    seconds: float
    cpu: dict[str, float]  # CPU seconds per part
    history_per_step: float
    rows_per_step: float

    @property
    def steps(self) -> int:
        return self.customers * self.run.steps_each

    @property
    def deliveries(self) -> int:
        return self.customers * self.run.deliveries_each


# --------------------------------------------------------------------------- processes


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def server_pid() -> int:
    """The Temporal dev server: this process's child running the temporal binary."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            status = (entry / "status").read_text()
            parent = next(line for line in status.splitlines() if line.startswith("PPid:"))
            command = (entry / "cmdline").read_bytes().split(b"\0")[0]
            if int(parent.split()[1]) == os.getpid() and b"temporal" in command:
                return int(entry.name)
    raise RuntimeError("the Temporal dev server process was not found")


def backend_pids(url: str) -> set[int]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (APPLICATION,)
        ).fetchall()
    return {row[0] for row in rows}


@contextlib.contextmanager
def throwaway_schema() -> Iterator[str]:
    schema = f"sizing_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}&application_name={APPLICATION}"
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


@dataclass
class Cluster:
    client: Client
    http: httpx.AsyncClient
    database: Database
    pids: dict[str, int]
    url: str

    def cpu(self) -> dict[str, float | dict[int, float]]:
        """CPU so far of each part; the PostgreSQL backends one by one (they come and go
        with the pools: one that appears counts from zero)."""
        found: dict[str, float | dict[int, float]] = {
            part: cpu_seconds(pid) for part, pid in self.pids.items()
        }
        found["PostgreSQL"] = {pid: cpu_seconds(pid) for pid in backend_pids(self.url)}
        return found

    def rss_mib(self, part: str) -> float:
        status = Path(f"/proc/{self.pids[part]}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    def count(self, query: Any) -> int:
        with self.database.engine.connect() as connection:
            return connection.scalar(query) or 0


@contextlib.asynccontextmanager
async def cluster(folder: Path) -> AsyncIterator[Cluster]:
    with throwaway_schema() as url:
        async with dev_server(folder, sqlite=False) as env:
            port = free_port()
            environment = {
                **os.environ,
                "PYTHONPATH": str(REPO),
                "SOPFLOW_TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
                "SOPFLOW_TEMPORAL_TASK_QUEUE": f"sizing-{uuid.uuid4().hex[:8]}",
                "SOPFLOW_DATABASE_URL": url,
                "SOPFLOW_API_PORT": str(port),
            }
            processes = {
                part: subprocess.Popen(
                    [sys.executable, "-m", "cli", command],
                    env={**environment, "SOPFLOW_HOME": str(folder / command)},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for part, command in (("worker", "worker"), ("API", "api"))
            }
            database = Database(database_url(Settings(database_url=url)))
            try:
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}", timeout=60
                ) as http:
                    await wait_until_up(http)
                    token, _ = create_key(database, Role.OPERATOR, "sizing")
                    http.headers["Authorization"] = f"Bearer {token}"
                    deployed = await http.post(
                        "/v1/playbooks",
                        content=PLAYBOOKS,
                        headers={"Content-Type": "application/yaml"},
                    )
                    deployed.raise_for_status()
                    pids = {part: p.pid for part, p in processes.items()}
                    pids["Temporal server"] = server_pid()
                    yield Cluster(env.client, http, database, pids, url)
            finally:
                for process in processes.values():
                    process.terminate()
                    process.wait(timeout=60)
                database.dispose()


async def wait_until_up(http: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if (await http.get("/healthz")).status_code == 200:
                return
        await asyncio.sleep(0.1)
    raise RuntimeError("the API did not start")


# --------------------------------------------------------------------------------- runs


async def idle_rate(stack: Cluster, seconds: float = 5.0) -> dict[str, float]:
    """CPU per second of each part with nothing to do (pollers, the server's own timers)."""
    before = stack.cpu()
    await asyncio.sleep(seconds)
    return {part: used / seconds for part, used in spent(before, stack.cpu()).items()}


async def measure(
    stack: Cluster, run: Run, customers: int, in_flight: int, idle: dict[str, float]
) -> Measured:
    """One run; each part's CPU beyond what it spends idle over the same time."""
    prefix = f"z{uuid.uuid4().hex[:6]}"
    delivered = select(func.count()).select_from(DeliveryRecord)
    scored = (
        select(func.count()).select_from(JourneyEvent).where(JourneyEvent.kind == "score_changed")
    )
    rows = text(
        "SELECT (SELECT count(*) FROM deliveries) + (SELECT count(*) FROM journey_events)"
        " + (SELECT count(*) FROM acquisitions)"
    )
    deliveries_before, scores_before = stack.count(delivered), stack.count(scored)
    rows_before = stack.count(rows)
    gate = asyncio.Semaphore(in_flight)

    async def send(customer: str, kind: str, n: int) -> None:
        body = {"customer_id": customer, "type": kind, "idempotency_key": f"e{n}", "data": {"n": n}}
        async with gate:
            response = await stack.http.post("/v1/events", json=body)
            response.raise_for_status()

    ids = [f"{prefix}-{i}" for i in range(customers)]
    before = stack.cpu()
    began = time.perf_counter()
    for n, kind in enumerate(run.events):  # one round of every customer at a time
        await asyncio.gather(*(send(c, kind, n) for c in ids))
    want_deliveries = deliveries_before + customers * run.deliveries_each
    want_scores = scores_before + customers * run.scores_each
    while (
        await asyncio.to_thread(stack.count, delivered) < want_deliveries
        or await asyncio.to_thread(stack.count, scored) < want_scores
    ):
        await asyncio.sleep(0.1)
    seconds = time.perf_counter() - began
    after = stack.cpu()
    histories = [
        (await stack.client.get_workflow_handle(f"customer/{c}").describe()).history_length
        for c in ids[:20]
    ]
    return Measured(
        run=run,
        customers=customers,
        seconds=seconds,
        cpu={
            part: max(used - idle[part] * seconds, 0.0)
            for part, used in spent(before, after).items()
        },
        history_per_step=sum(histories) / len(histories) / run.steps_each,
        rows_per_step=(stack.count(rows) - rows_before) / (customers * run.steps_each),
    )


def spent(
    before: dict[str, float | dict[int, float]], after: dict[str, float | dict[int, float]]
) -> dict[str, float]:
    used: dict[str, float] = {}
    for part in PARTS:
        start, end = before[part], after[part]
        if isinstance(start, dict) and isinstance(end, dict):
            used[part] = sum(cpu - start.get(pid, 0.0) for pid, cpu in end.items())
        elif isinstance(start, float) and isinstance(end, float):
            used[part] = end - start
    return used


# ----------------------------------------------------------------------- the formula


@dataclass(frozen=True)
class Costs:
    """CPU seconds of each part per journey step and per delivery."""

    per_step: dict[str, float]
    per_delivery: dict[str, float]

    def cpu(self, steps: float, deliveries: float) -> dict[str, float]:
        return {
            part: steps * self.per_step[part] + deliveries * self.per_delivery[part]
            for part in PARTS
        }


def fit(state_only: Measured, delivering: Measured) -> Costs:
    per_step = {part: state_only.cpu[part] / state_only.steps for part in PARTS}
    per_delivery = {
        part: max(
            (delivering.cpu[part] - per_step[part] * delivering.steps) / delivering.deliveries,
            0.0,
        )
        for part in PARTS
    }
    return Costs(per_step, per_delivery)


@dataclass(frozen=True)
class Brand:
    """A brand's load: what docs/scaling.md sizes."""

    customers: int
    events_per_customer_day: float = 2.0
    timer_steps_per_customer_day: float = 1.0
    deliveries_per_step: float = 0.5
    peak_factor: float = 3.0  # the busiest hour's rate over the day's average
    # The worst shipped scenario (bench/RESULTS.md, history per customer event).
    history_per_step: float = 13.0
    rows_per_step: float = 2.5  # the read model: journey ledger, deliveries (run B)


# One history shard (the dev server's only one) carried raw Temporal's 285 signals/s of
# 4.1 history events each in bench/throughput.py, CPU-bound on 2 cores: a shard takes at
# least this many history events a second. Shards are sized to a quarter of it at the peak.
SHARD_EVENTS_PER_SECOND = 1_000
SHARD_HEADROOM = 4


@dataclass(frozen=True)
class Sizing:
    steps_per_second: float
    cores: dict[str, float]
    workers: int
    apis: int
    history_per_second: float
    shards: int
    rows_per_second: float


def size(brand: Brand, costs: Costs, utilisation: float = 0.6) -> Sizing:
    """Cores per part at the peak, processes (a Python worker or API uses one core),
    history shards and read-model writes."""
    per_day = brand.customers * (brand.events_per_customer_day + brand.timer_steps_per_customer_day)
    steps = per_day / 86_400 * brand.peak_factor
    events = brand.customers * brand.events_per_customer_day / 86_400 * brand.peak_factor
    cpu = costs.cpu(steps, steps * brand.deliveries_per_step)
    # The API works per event, not per timer step; timers cost the worker and the server
    # what an event's step costs (an approximation: no signal, a timer instead).
    cpu["API"] = events * costs.per_step["API"]
    cores = {part: value / utilisation for part, value in cpu.items()}
    history = steps * brand.history_per_step
    return Sizing(
        steps_per_second=steps,
        cores=cores,
        workers=max(2, math.ceil(cores["worker"])),
        apis=max(2, math.ceil(cores["API"])),
        history_per_second=history,
        shards=2
        ** math.ceil(math.log2(max(history * SHARD_HEADROOM / SHARD_EVENTS_PER_SECOND, 1))),
        rows_per_second=steps * brand.rows_per_step,
    )


# ------------------------------------------------------------------------------ main


async def run_all(
    customers: int, in_flight: int
) -> tuple[list[Measured], dict[str, float], dict[str, float]]:
    """The three runs, each part's idle CPU per second, and the worker's and the API's
    memory (RSS, MiB) after them."""
    with tempfile.TemporaryDirectory() as name:
        async with cluster(Path(name)) as stack:
            nothing = {part: 0.0 for part in PARTS}
            for run in RUNS[:2]:  # warm up every part on the runs the costs are fitted on
                await measure(stack, run, 50, in_flight, nothing)
            idle = await idle_rate(stack)
            measured = [await measure(stack, run, customers, in_flight, idle) for run in RUNS]
            return measured, idle, {part: stack.rss_mib(part) for part in ("worker", "API")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    (state_only, delivering, mixed), idle, rss = asyncio.run(
        run_all(args.customers, args.in_flight)
    )
    costs = fit(state_only, delivering)
    predicted = costs.cpu(mixed.steps, mixed.deliveries)
    cost_rows: list[list[object]] = [
        [part, f"{costs.per_step[part] * 1000:.2f}", f"{costs.per_delivery[part] * 1000:.2f}"]
        for part in PARTS
    ]
    cost_table = report.table(["part", "ms CPU per step", "ms CPU per delivery"], cost_rows)
    check_rows: list[list[object]] = [
        [
            part,
            f"{predicted[part]:.2f}",
            f"{mixed.cpu[part]:.2f}",
            f"{(predicted[part] - mixed.cpu[part]) / mixed.cpu[part] * 100:+.0f}%"
            if mixed.cpu[part]
            else "-",
        ]
        for part in PARTS
    ]
    total_predicted, total_measured = sum(predicted.values()), sum(mixed.cpu.values())
    check_rows.append(
        [
            "all",
            f"{total_predicted:.2f}",
            f"{total_measured:.2f}",
            f"{(total_predicted - total_measured) / total_measured * 100:+.0f}%",
        ]
    )
    check_table = report.table(["part", "predicted CPU s", "measured CPU s", "error"], check_rows)
    run_rows: list[list[object]] = [
        [
            m.run.name,
            f"{m.steps:,}",
            f"{m.deliveries:,}",
            f"{m.steps / m.seconds:.0f}",
            f"{sum(m.cpu.values()) / m.seconds / (os.cpu_count() or 1) * 100:.0f}%",
            f"{m.history_per_step:.1f}",
            f"{m.rows_per_step:.2f}",
        ]
        for m in (state_only, delivering, mixed)
    ]
    run_table = report.table(
        [
            "run",
            "steps",
            "deliveries",
            "steps/s",
            "CPU busy",
            "history events per step",
            "read-model rows per step",
        ],
        run_rows,
    )
    brands = [Brand(n) for n in (100_000, 1_000_000, 10_000_000)]
    sized = [size(brand, costs) for brand in brands]
    example_rows: list[list[object]] = [
        [
            f"{brand.customers:,}",
            f"{result.steps_per_second:,.0f}",
            f"{result.cores['worker']:.1f} ({result.workers})",
            f"{result.cores['API']:.1f} ({result.apis})",
            f"{result.cores['Temporal server']:.1f}",
            f"{result.history_per_second:,.0f} ({result.shards})",
            f"{result.cores['PostgreSQL']:.1f}",
            f"{result.rows_per_second:,.0f}",
        ]
        for brand, result in zip(brands, sized, strict=True)
    ]
    example_table = report.table(
        [
            "customers",
            "peak steps/s",
            "worker cores (processes)",
            "API cores (processes)",
            "Temporal server cores",
            "history events/s (min. shards)",
            "PostgreSQL cores",
            "read-model rows/s",
        ],
        example_rows,
    )
    print(run_table, cost_table, check_table, example_table, sep="\n\n")
    memory = f"worker {rss['worker']:.0f} MiB, API {rss['API']:.0f} MiB"
    idling = ", ".join(f"{part} {idle[part] * 1000:.0f} ms/s" for part in PARTS)
    print(f"Idle CPU: {idling}")
    print(f"RSS after the runs: {memory}")
    print(f"Repeat: {report.command()}")
    if args.no_record:
        return
    notes = f"""
{args.customers} customers a run, each with 4 events sent one HTTP request each
({args.in_flight} in flight, one round of every customer at a time, so each event is a
workflow task of its own); a worker and an API as processes of their own, an in-memory dev
server (one history shard), PostgreSQL. CPU from /proc: the worker, the API, the Temporal
server and the PostgreSQL backends serving them.

{run_table}

Idle, each part spends some CPU (pollers, the server's timers), subtracted from each run
over its duration: {idling}.

Memory after the runs ({3 * args.customers + 100:,} customers; a worker caches at most
1,000 workflows): {memory}.

Per step and per delivery, fitted on runs A and B:

{cost_table}

The check: run C (enrolment with two messages, an event with one, two state-only events)
predicted from the costs above and measured:

{check_table}

Brands sized by the formula of docs/scaling.md with these costs (2 events and 1 timer step
a customer a day, one delivery every other step, the busiest hour at 3 x the day's average,
parts 60% busy at the peak, 13 history events per step as the worst shipped scenario):

{example_table}
"""
    report.record("sizing", "Per-step costs and the sizing formula, checked", notes)


if __name__ == "__main__":
    main()
