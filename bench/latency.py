"""Latency (issue 7, benchmark 3): event sent -> its action delivered, p50 and p99, at a
steady load of half the measured maximum, against raw Temporal at the same load.

First the maximum: a burst of customers' events each causing one log delivery (as in
bench.throughput). Then a steady stream at half that rate for `--seconds`, spread over
already enrolled customers: sopflow through `POST /v1/events` (one request per event),
raw Temporal through SDK signals to workflows that append a line per signal. Latency is
from the moment the request is sent to the `delivered_at` the delivery line records.

Run: `.venv/bin/python -m bench.latency [--seconds 30] [--customers 200]`
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from temporalio.client import Client, WorkflowHandle

from bench import report
from bench.harness import (
    ONE_DELIVERY,
    DeliverPerSignal,
    Stack,
    delivered_lines,
    dev_server,
    event,
    raw_worker,
    sopflow_burst,
    sopflow_stack,
)
from bench.processes import raw_worker_process, sopflow_processes
from bench.sizing import throwaway_schema
from cli.heap import freeze_startup_heap


async def steady(
    rate: float, seconds: float, send: Callable[[int], Awaitable[None]]
) -> dict[int, float]:
    """Send event n at t0 + n / rate (open loop: a slow reply does not slow the schedule);
    returns the wall-clock send time of each."""
    sent: dict[int, float] = {}
    tasks = []
    began = time.monotonic()
    count = int(rate * seconds)
    for n in range(count):
        delay = began + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[n] = time.time()
        tasks.append(asyncio.create_task(send(n)))
    await asyncio.gather(*tasks)
    return sent


async def wait_for_lines(path: Path, marker: str, expected: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        # Counted in the text, not parsed: the check shares the process (and its core)
        # with the worker and the API, and the log grows with every run.
        count = await asyncio.to_thread(_count_marked, path, marker)
        if count >= expected:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {expected} deliveries marked {marker}")
        await asyncio.sleep(0.2)


def _count_marked(path: Path, marker: str) -> int:
    if not path.exists():
        return 0
    return path.read_text(encoding="utf-8").count(f'"text": "{marker}')


def latencies(path: Path, marker: str, sent: dict[int, float]) -> list[float]:
    """Milliseconds from send to delivery, for the lines whose text is `marker<n>`."""
    found = []
    for line in delivered_lines(path):
        text = str(line["text"])
        if text.startswith(marker):
            n = int(text.removeprefix(marker))
            at = datetime.fromisoformat(str(line["delivered_at"])).timestamp()
            found.append((at - sent[n]) * 1000)
    return found


async def enrol(stack: Stack, customers: int) -> list[str]:
    run = uuid.uuid4().hex[:6]
    ids = [f"l-{run}-{c}" for c in range(customers)]
    body = [event(c, "contact.added", f"{c}-add", -1) for c in ids]
    already = stack.count("delivered")
    (await stack.http.post("/v1/events:batch", json={"events": body})).raise_for_status()
    await stack.wait_for("delivered", already + customers)
    return ids


def single(ids: list[str], marker: str, n: int) -> dict[str, object]:
    body = event(ids[n % len(ids)], "content.read", f"{marker}{n}", 0)
    body["data"] = {"n": f"{marker}{n}"}
    return body


# CPU seconds so far, by process (one entry when both sides share this process).
CpuClock = Callable[[], dict[str, float]]


def this_process() -> dict[str, float]:
    return {"one process": time.process_time()}


def per_event(before: dict[str, float], after: dict[str, float], events: int) -> dict[str, float]:
    return {name: (after[name] - before[name]) / events for name in after}


async def sopflow_maximum(stack: Stack, events: int, cpu_clock: CpuClock) -> Rate:
    """Events/s with one request per event (50 in flight), each causing one delivery.

    Each event goes to a different enrolled customer: events of one customer that queue
    up while its workflow is busy are handled (and delivered) together, which a steady
    load of single events does not enjoy; measured that way, the maximum overstated what
    the steady load could sustain."""
    ids = await enrol(stack, events)
    marker = f"m{uuid.uuid4().hex[:6]}:"
    gate = asyncio.Semaphore(50)

    async def send(n: int) -> None:
        async with gate:
            reply = await stack.http.post("/v1/events", json=single(ids, marker, n))
            reply.raise_for_status()

    began, cpu = time.perf_counter(), cpu_clock()
    await asyncio.gather(*(send(n) for n in range(events)))
    await wait_for_lines(stack.settings.deliveries_log, marker, events)
    return Rate(events / (time.perf_counter() - began), per_event(cpu, cpu_clock(), events))


@dataclass(frozen=True)
class Rate:
    """A maximum: events/s, and the side's CPU seconds per event meanwhile (its processes',
    the benchmark's client included; not the Temporal server's): the CPU wanders less than
    the rate on a busy machine."""

    per_second: float
    cpu_parts: dict[str, float]  # CPU seconds per event, by process

    @property
    def cpu_per_event(self) -> float:
        return sum(self.cpu_parts.values())

    def cpu_text(self) -> str:
        if len(self.cpu_parts) == 1:
            return f"{self.cpu_per_event * 1000:.1f}"
        parts = ", ".join(f"{name} {cpu * 1000:.1f}" for name, cpu in self.cpu_parts.items())
        return f"{self.cpu_per_event * 1000:.1f} ({parts})"


@asynccontextmanager
async def raw_side(
    client: Client, log: Path, separate: bool
) -> AsyncIterator[tuple[str, CpuClock]]:
    """The baseline's task queue and CPU clock: its worker in this process, or in its own."""
    if separate:
        async with raw_worker_process(client, log) as (queue, processes):
            yield queue, processes.cpu_parts
    else:
        async with raw_worker(client, log) as queue:
            yield queue, this_process


@asynccontextmanager
async def sopflow_side(
    client: Client, home: Path, separate: bool
) -> AsyncIterator[tuple[Stack, CpuClock]]:
    """sopflow's API and worker: in this process, or each in its own (as deployed: sharing
    a PostgreSQL schema, as the processes of a cluster do)."""
    if separate:
        with throwaway_schema() as url:
            async with sopflow_processes(client, home, ONE_DELIVERY, url) as (stack, processes):
                yield stack, processes.cpu_parts
    else:
        async with sopflow_stack(client, home, ONE_DELIVERY) as stack:
            yield stack, this_process


async def raw_maximum(client: Client, log: Path, events: int, separate: bool) -> Rate:
    """The baseline's maximum: raw single signals (50 in flight), each to a different
    running workflow that appends one line per signal from a local activity."""
    marker = f"x{uuid.uuid4().hex[:6]}:"
    async with raw_side(client, log, separate) as (queue, cpu_clock):
        handles: list[WorkflowHandle[DeliverPerSignal, int]] = [
            await client.start_workflow(
                DeliverPerSignal.run, 10**9, id=f"{queue}-{c}", task_queue=queue
            )
            for c in range(events)
        ]
        gate = asyncio.Semaphore(50)

        async def send(n: int) -> None:
            async with gate:
                await handles[n].signal(DeliverPerSignal.bump, f"{marker}{n}")

        began, cpu = time.perf_counter(), cpu_clock()
        await asyncio.gather(*(send(n) for n in range(events)))
        await wait_for_lines(log, marker, events)
        rate = Rate(events / (time.perf_counter() - began), per_event(cpu, cpu_clock(), events))
        for handle in handles:
            await handle.terminate()
    return rate


async def sopflow_steady(stack: Stack, customers: int, rate: float, seconds: float) -> list[float]:
    ids = await enrol(stack, customers)
    marker = f"s{uuid.uuid4().hex[:6]}:"

    async def send(n: int) -> None:
        reply = await stack.http.post("/v1/events", json=single(ids, marker, n))
        reply.raise_for_status()

    sent = await steady(rate, seconds, send)
    await wait_for_lines(stack.settings.deliveries_log, marker, len(sent))
    return latencies(stack.settings.deliveries_log, marker, sent)


async def raw_steady(
    client: Client, log: Path, customers: int, rate: float, seconds: float, separate: bool
) -> list[float]:
    marker = f"r{uuid.uuid4().hex[:6]}:"
    async with raw_side(client, log, separate) as (queue, _):
        handles: list[WorkflowHandle[DeliverPerSignal, int]] = [
            await client.start_workflow(
                DeliverPerSignal.run, 10**9, id=f"{queue}-{c}", task_queue=queue
            )
            for c in range(customers)
        ]

        async def send(n: int) -> None:
            await handles[n % customers].signal(DeliverPerSignal.bump, f"{marker}{n}")

        sent = await steady(rate, seconds, send)
        await wait_for_lines(log, marker, len(sent))
        for handle in handles:
            await handle.terminate()
    return latencies(log, marker, sent)


def percentiles(values: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[98]


@dataclass
class Measured:
    raw_maximum: Rate
    maximum: Rate
    rate: float
    ours: list[float]
    raw: list[float]


async def measure(customers: int, seconds: float, burst: int, separate: bool) -> Measured:
    """One topology: everything in this process, or (`separate`) each side's workers and
    sopflow's API in processes of their own."""
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        async with dev_server(folder, sqlite=False) as env:
            # The load generator settles its heap as the processes it measures do: a full
            # collection in it would delay sends on both sides (cli/heap.py).
            freeze_startup_heap()
            # The baseline's maximum before and after sopflow's, averaged: the load of a
            # shared machine drifts over a run.
            raw_before = await raw_maximum(env.client, folder / "raw-max.jsonl", burst, separate)
            async with sopflow_side(env.client, folder / "s", separate) as (stack, cpu_clock):
                await sopflow_burst(stack, 20, 5, "delivered", 100)  # warm up
                maximum = await sopflow_maximum(stack, burst, cpu_clock)
                raw_after = await raw_maximum(
                    env.client, folder / "raw-max-2.jsonl", burst, separate
                )
                raw_max = Rate(
                    (raw_before.per_second + raw_after.per_second) / 2,
                    {
                        name: (raw_before.cpu_parts[name] + raw_after.cpu_parts[name]) / 2
                        for name in raw_before.cpu_parts
                    },
                )
                rate = maximum.per_second / 2
                ours = await sopflow_steady(stack, customers, rate, seconds)
            raw = await raw_steady(
                env.client, folder / "raw.jsonl", customers, rate, seconds, separate
            )
    return Measured(raw_max, maximum, rate, ours, raw)


THROUGHPUT_TARGET = 0.5  # of raw single signals with one delivery
P99_TARGET = 2.0  # x raw at half load


TOPOLOGIES = {
    "processes": "as deployed: sopflow's API and worker, and raw's worker, each in a process "
    "of its own; the benchmark's client in another",
    "one-process": "one process: the benchmark's client, the API and the worker (raw: the "
    "client and the worker) share one interpreter",
}


@dataclass(frozen=True)
class Verdicts:
    throughput: bool
    p99: bool


def tables(measured: Measured) -> tuple[str, str, str, Verdicts]:
    """The targets' table, the latency table and the p50/p99 ratios of one topology."""
    ours, raw = measured.ours, measured.raw
    maximum, raw_max = measured.maximum.per_second, measured.raw_maximum.per_second
    cpu, raw_cpu = measured.maximum, measured.raw_maximum
    rows = []
    for side, values in (("raw Temporal (SDK signal)", raw), ("sopflow (HTTP event)", ours)):
        p50, p99 = percentiles(values)
        rows.append([side, len(values), f"{p50:.0f}", f"{p99:.0f}", f"{max(values):.0f}"])
    raw50, raw99 = percentiles(raw)
    ours50, ours99 = percentiles(ours)
    share = maximum / raw_max
    verdicts = Verdicts(share >= THROUGHPUT_TARGET, ours99 / raw99 <= P99_TARGET)
    body = report.table(["", "events", "p50 ms", "p99 ms", "max ms"], rows)
    targets = report.table(
        ["", "raw Temporal", "sopflow", "ratio", "target"],
        [
            ["events/s, one per request, one delivery each", f"{raw_max:.0f}",
             f"{maximum:.0f}", f"{share:.2f}",
             f">= {THROUGHPUT_TARGET} {report.verdict(verdicts.throughput)}"],
            ["CPU ms per event meanwhile (the side's processes, not the server's)",
             raw_cpu.cpu_text(), cpu.cpu_text(),
             f"{raw_cpu.cpu_per_event / cpu.cpu_per_event:.2f}",
             "the rate's ratio were CPU the limit"],
            [f"p99 ms at {measured.rate:.0f} events/s, half of sopflow's maximum",
             f"{raw99:.0f}", f"{ours99:.0f}", f"{ours99 / raw99:.2f}",
             f"<= {P99_TARGET:.0f} {report.verdict(verdicts.p99)}"],
        ],
    )  # fmt: skip
    ratios = f"sopflow / raw: p50 {ours50 / raw50:.2f}, p99 {ours99 / raw99:.2f}"
    return targets, body, ratios, verdicts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--customers", type=int, default=200, help="customers under load")
    parser.add_argument("--burst", type=int, default=1000, help="events in the max burst")
    parser.add_argument(
        "--topology", choices=[*TOPOLOGIES, "both"], default="both", help="where each side runs"
    )
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    chosen = list(TOPOLOGIES) if args.topology == "both" else [args.topology]
    sections = []
    for topology in chosen:
        measured = asyncio.run(
            measure(args.customers, args.seconds, args.burst, topology == "processes")
        )
        targets, body, ratios, _ = tables(measured)
        print(f"== {TOPOLOGIES[topology]}")
        print(targets)
        print(body)
        print(ratios)
        sections.append(
            f"**{TOPOLOGIES[topology].capitalize()}.**\n\n{targets}\n\n{body}\n\n{ratios}."
        )
    print(f"Repeat: {report.command()}")
    if args.no_record:
        return
    measured_sections = "\n\n".join(sections)
    notes = f"""
In-memory dev server. Maximum: {args.burst} events to as many running customers, one HTTP
request each, 50 in flight, each causing one log delivery (sandboxed workflow); the
baseline, in the same run (before and after sopflow's, averaged), sends {args.burst} raw
SDK signals (50 in flight) to as many running workflows that append one line per signal
from a local activity. Steady load: half of sopflow's maximum, for {args.seconds:.0f} s over
{args.customers} enrolled customers, on both sides at the same rate. From the request sent
(HTTP for sopflow, an SDK signal for raw) to the delivery line's `delivered_at` (same
machine clock). Two topologies, each in a run of its own on a new server: as deployed
(`sopflow api` and `sopflow worker` as processes on one data folder, as `make dev` runs
them; raw's worker in a process of its own; the load from the benchmark's process), and
everything in one process, as the other benchmarks here run. The Temporal server takes a
core of its own on both sides; the machine has two.

{measured_sections}

What sopflow adds per event: the HTTP request and its validation, the API key and the
event key in the read model (shared by the requests that arrive together), the signal;
then in the worker the workflow task of the signal (the determinism sandbox and the
payload conversion: the SDK calls into the sandbox for a serialization context several
times per activation, an exec each), and one local activity that writes the journey
ledger and reads and writes the delivery ledger around the log line. Raw Temporal does
none of the bookkeeping and runs no sandbox: its workflow task is a counter.
"""
    report.record("latency", "Single events: throughput and latency against raw signals", notes)


if __name__ == "__main__":
    main()
