"""Worker memory (issue 7, benchmark 6): RSS of a `sopflow worker` process as open customers
grow to `--customers` (100,000 for the issue's figure), with the default workflow cache,
and per cached customer against raw Temporal's per-workflow cost in the same run.

Each side's worker runs in its own process so that its RSS is its own: `sopflow worker`
for sopflow (customers enrolled through the API in batches, each then waiting on a 30-day
timer), and this module's `--raw-worker` mode for raw Temporal (the signal-counting
workflow, started with the SDK, waiting for signals that never come). Per cached
customer = (RSS with the cache full - RSS idle) / cache size.

Run: `.venv/bin/python -m bench.memory [--customers 100000]`
Target: memory independent of the number of customers; per cached customer <= 1.2 x raw.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from bench import report
from bench.harness import STATE_ONLY, CountSignals, dev_server, event, sopflow_stack
from worker.main import POLLER

CACHE = 1000  # temporalio's default max_cached_workflows, which neither side changes
TARGET = 1.2
REPO = Path(__file__).resolve().parent.parent


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def settle(pid: int) -> float:
    """RSS once it stops moving (the worker finished what it was handed)."""
    last = rss_mib(pid)
    for _ in range(20):
        await asyncio.sleep(1)
        now = rss_mib(pid)
        if abs(now - last) < 0.5:
            return now
        last = now
    return last


def start_process(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args,
        env={**os.environ, **env},
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


# ---------------------------------------------------------------------------- raw side


async def raw_worker_main(address: str, queue: str) -> None:
    client = await Client.connect(address)
    worker = Worker(
        client,
        task_queue=queue,
        workflows=[CountSignals],
        workflow_task_poller_behavior=POLLER,
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with worker:
        await stop.wait()


async def raw_side(client: Client, address: str, count: int) -> tuple[float, float]:
    """Idle RSS and RSS with `count` (> cache) open raw workflows, in MiB."""
    queue = f"raw-mem-{uuid.uuid4().hex}"
    process = start_process(
        [sys.executable, "-m", "bench.memory", "--raw-worker", address, queue], {}
    )
    try:
        await asyncio.sleep(3)
        idle = await settle(process.pid)
        gate = asyncio.Semaphore(50)

        async def one(index: int) -> None:
            async with gate:
                await client.start_workflow(
                    CountSignals.run, 1, id=f"{queue}-{index}", task_queue=queue
                )

        await asyncio.gather(*(one(i) for i in range(count)))
        # Each workflow's first task follows its start within moments: wait for the RSS
        # to stop moving.
        await asyncio.sleep(5)
        full = await settle(process.pid)
        return idle, full
    finally:
        stop_process(process)


# ------------------------------------------------------------------------ sopflow side


async def sopflow_side(
    client: Client, home: Path, checkpoints: list[int], sandboxed: bool
) -> tuple[float, list[tuple[int, float]]]:
    """Idle RSS, then RSS at each number of open customers, of a `sopflow worker`."""
    async with sopflow_stack(client, home, STATE_ONLY, sandboxed, worker=False) as stack:
        settings = stack.settings
        process = start_process(
            [str(Path(sys.executable).parent / "sopflow"), "worker"],
            {
                "SOPFLOW_HOME": str(settings.home),
                "SOPFLOW_TEMPORAL_ADDRESS": settings.temporal_address,
                "SOPFLOW_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
                "SOPFLOW_WORKFLOW_SANDBOX": "true" if sandboxed else "false",
            },
        )
        try:
            await asyncio.sleep(3)
            idle = await settle(process.pid)
            rows: list[tuple[int, float]] = []
            sent = 0
            for target in checkpoints:
                while sent < target:
                    size = min(1000, target - sent)
                    body = [
                        event(f"m-{c}", "contact.added", f"m-{c}", c)
                        for c in range(sent, sent + size)
                    ]
                    reply = await stack.http.post("/v1/events:batch", json={"events": body})
                    reply.raise_for_status()
                    sent += size
                await stack.wait_for("enrolled", target, timeout=3 * 3600)
                rows.append((target, await settle(process.pid)))
                print(
                    f"  {target:>7,} open customers: worker RSS {rows[-1][1]:.0f} MiB", flush=True
                )
            return idle, rows
        finally:
            stop_process(process)


# -------------------------------------------------------------------------------- main


async def measure(
    customers: int, sandboxed: bool
) -> tuple[float, float, float, list[tuple[int, float]]]:
    checkpoints = sorted({c for c in (CACHE, 2 * CACHE, 5 * CACHE, customers // 2, customers)
                          if 0 < c <= customers})  # fmt: skip
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        async with dev_server(folder, sqlite=False) as env:
            address = env.client.service_client.config.target_host
            raw_idle, raw_full = await raw_side(env.client, address, 2 * CACHE)
            idle, rows = await sopflow_side(env.client, folder / "home", checkpoints, sandboxed)
    return raw_idle, raw_full, idle, rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--raw-worker", nargs=2, metavar=("ADDRESS", "QUEUE"))
    parser.add_argument("--unsandboxed", action="store_true", help="SOPFLOW_WORKFLOW_SANDBOX=false")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    if args.raw_worker:
        asyncio.run(raw_worker_main(*args.raw_worker))
        return
    began = time.monotonic()
    raw_idle, raw_full, idle, rows = asyncio.run(measure(args.customers, not args.unsandboxed))
    raw_per = (raw_full - raw_idle) * 1024 / CACHE
    # Both sides at twice the cache: full, whatever the order the cache filled in.
    full_at_cache = next(rss for count, rss in rows if count >= 2 * CACHE)
    ours_per = (full_at_cache - idle) * 1024 / CACHE
    growth = rows[-1][1] - full_at_cache
    ratio = ours_per / raw_per
    table = report.table(
        ["open customers", "worker RSS MiB"],
        [["0 (idle)", f"{idle:.0f}"]] + [[f"{c:,}", f"{rss:.0f}"] for c, rss in rows],
    )
    summary = report.table(
        ["", "raw Temporal", "sopflow", "ratio", f"target <= {TARGET}"],
        [
            [
                "KiB per cached workflow",
                f"{raw_per:.0f}",
                f"{ours_per:.0f}",
                f"{ratio:.2f}",
                report.verdict(ratio <= TARGET),
            ]
        ],
    )
    print(table, summary, sep="\n\n")
    print(f"Repeat: {report.command()}  ({time.monotonic() - began:.0f} s)")
    if args.no_record:
        return
    flat = growth < 0.1 * full_at_cache
    notes = f"""
In-memory dev server; each worker in its own process with temporalio's default cache of
{CACHE:,} workflows. sopflow customers are enrolled in a state-only playbook and wait on a
30-day timer; raw workflows wait for a signal. Raw: {raw_idle:.0f} MiB idle, {raw_full:.0f}
MiB with {2 * CACHE:,} open workflows.

{table}

{summary}

- Memory independent of the number of customers: {report.verdict(flat)} (from {2 * CACHE:,}
  to {rows[-1][0]:,} open customers the worker grew by {growth:.0f} MiB; the cache holds
  at most {CACHE:,}, the rest live only in Temporal).
- Per cached customer: {report.verdict(ratio <= TARGET)}. What a cached sopflow customer
  holds beyond a raw workflow: its state (profile, journeys, the last timeline entries),
  the determinism sandbox's copy of the workflow module, and the pydantic payload
  converter's objects. Plans are shared: one object per version per worker.
"""
    mode = "unsandboxed" if args.unsandboxed else "sandboxed"
    report.record(
        f"memory-{mode}", f"Worker memory with open customers, {mode} (benchmark 6)", notes
    )


if __name__ == "__main__":
    main()
