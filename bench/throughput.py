"""Event throughput (issue 7, benchmarks 1 and 2): sopflow against raw Temporal, same server,
same run.

- state: `POST /v1/events:batch` -> customer workflows -> a journey step that changes state
  only, measured until every step reached the journey ledger; raw: a trivial workflow per
  customer counting the same number of signals, sent with the SDK.
- delivery: every event causes one log-channel delivery, measured until the ledger holds
  them all; raw: a workflow appending one line per signal from a local activity.

Run: `.venv/bin/python -m bench.throughput [--customers 500] [--events 5] [--sqlite]`
Target: ratio >= 0.8 (one signal per customer for a batch may beat 1.0).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path

from bench import report
from bench.harness import (
    ONE_DELIVERY,
    STATE_ONLY,
    dev_server,
    raw_burst,
    raw_worker,
    sopflow_burst,
    sopflow_stack,
)

TARGET = 0.8


async def timed(burst: Awaitable[float]) -> tuple[float, float]:
    """A burst's seconds, and this process's CPU seconds meanwhile (client, API and worker
    share it): the CPU wanders less than the rate on a machine shared with other work."""
    cpu = time.process_time()
    seconds = await burst
    return seconds, time.process_time() - cpu


SIDES = {"sandboxed (default)": True, "unsandboxed": False}


Timing = tuple[float, float]  # seconds, CPU seconds


async def measure(
    customers: int, events: int, sqlite: bool
) -> dict[str, tuple[Timing, dict[str, Timing]]]:
    """Seconds and CPU seconds for each kind of step: raw, and sopflow with and without
    the sandbox."""
    steps = {
        "state-only step": (False, STATE_ONLY, "score_changed", events - 1),
        "one delivery (log channel)": (True, ONE_DELIVERY, "delivered", events),
    }
    results: dict[str, tuple[Timing, dict[str, Timing]]] = {}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        async with dev_server(folder, sqlite) as env:
            for kind, (deliver, playbook, done, per_customer) in steps.items():
                async with raw_worker(env.client, folder / "raw.jsonl") as queue:
                    await raw_burst(env.client, queue, 20, events, deliver)  # warm up
                    raw = await timed(raw_burst(env.client, queue, customers, events, deliver))
                ours: dict[str, Timing] = {}
                for side, sandboxed in SIDES.items():
                    home = folder / f"{done}-{sandboxed}"
                    async with sopflow_stack(env.client, home, playbook, sandboxed) as stack:
                        await sopflow_burst(stack, 20, events, done, 20 * per_customer)
                        ours[side] = await timed(
                            sopflow_burst(stack, customers, events, done, customers * per_customer)
                        )
                results[kind] = (raw, ours)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--events", type=int, default=5)
    parser.add_argument("--sqlite", action="store_true", help="SQLite-backed dev server")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    results = asyncio.run(measure(args.customers, args.events, args.sqlite))
    total = args.customers * args.events
    store = "SQLite file" if args.sqlite else "in memory"
    rows: list[list[object]] = []
    for kind, ((raw, raw_cpu), ours) in results.items():
        for side, (seconds, cpu) in ours.items():
            ratio = raw / seconds
            verdict = report.verdict(ratio >= TARGET)
            rows.append(
                [
                    kind,
                    side,
                    f"{total / raw:.0f}",
                    f"{total / seconds:.0f}",
                    f"{raw_cpu / total * 1000:.1f}",
                    f"{cpu / total * 1000:.1f}",
                    f"{ratio:.2f}",
                    verdict,
                ]
            )
    headers = [
        "step",
        "sopflow workflow",
        "raw events/s",
        "sopflow events/s",
        "raw CPU ms/event",
        "sopflow CPU ms/event",
        "ratio",
    ]
    body = report.table([*headers, f"target >= {TARGET}"], rows, right_from=2)
    print(body)
    print(f"Repeat: {report.command()}")
    if args.no_record:
        return
    notes = f"""
{args.customers} customers x {args.events} events ({total:,}), dev server {store}, after a
warm-up of 20 customers on each side. Raw: one workflow per customer started with its first
signal, the rest sent one by one with the SDK (50 customers in flight); for deliveries each
signal appends a line to a file from a local activity. sopflow: batches of 1,000 events
through `POST /v1/events:batch` (one signal per customer); the customer workflow steps the
core, upserts search attributes when they change, and delivers through the log channel
(one local activity that writes the journey ledger and checks and writes the delivery
ledger; a step that delivers nothing writes the journey ledger alone); timed until
the read model holds every step (state) or every delivery. Both workers poll with
autoscaling pollers. "unsandboxed" is `SOPFLOW_WORKFLOW_SANDBOX=false`. CPU ms per
event: this process's CPU during the burst (the client, the API and the worker share it;
the server is another process), divided by the events. The ratio is of the rates; the raw
workflows run without the sandbox, so the unsandboxed rows are the like-for-like ones.

{body}

What limits sopflow where a ratio is below the target: the worker process's CPU (one core
of two; the server takes most of the other). Per customer it validates the HTTP batch,
plans the deployment, runs the core, records the journey ledger and, per delivery, reads
and writes the delivery ledger in the database: the exactly-once bookkeeping that raw
Temporal does not do. The determinism sandbox re-imports the workflow module for every
customer it caches (compiled once per process) and routes each payload through it: the
difference between the sandboxed and unsandboxed rows. On SQLite the server's
synchronous writes limit both sides and one signal per customer batch makes up for
sopflow's extra work.
"""
    key = "throughput-sqlite" if args.sqlite else "throughput-memory"
    report.record(key, f"Event throughput against raw Temporal, {store} (benchmarks 1, 2)", notes)


if __name__ == "__main__":
    main()
