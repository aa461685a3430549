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
import gc
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from bench import report
from bench.harness import STATE_ONLY, CountSignals, Stack, dev_server, event, sopflow_stack
from sopflow.settings import Settings
from worker.main import POLLER

CACHE = 1000  # temporalio's default max_cached_workflows, which neither side changes
# The traced pass: a worker that traces its Python allocations (tracemalloc, FRAMES deep)
# is snapshotted with TRACED[0] and then TRACED[1] workflows open, both within the cache;
# the difference divided by the workflows added is what one cached workflow holds.
TRACE_ENV = "SOPFLOW_BENCH_TRACE"
TRACED = (CACHE // 2, CACHE)
FRAMES = 16
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


@dataclass
class Measured:
    raw_idle: float = 0.0
    raw_full: float = 0.0
    idle: float = 0.0
    rows: list[tuple[int, float]] = field(default_factory=list)
    raw_traced: tuple[tracemalloc.Snapshot, tracemalloc.Snapshot] | None = None
    traced: tuple[tracemalloc.Snapshot, tracemalloc.Snapshot] | None = None


# ---------------------------------------------------------------------------- raw side


async def raw_worker_main(address: str, queue: str) -> None:
    client = await Client.connect(address)
    worker = Worker(
        client,
        task_queue=queue,
        workflows=[CountSignals],
        workflow_task_poller_behavior=POLLER,
    )
    await serve_until_stopped(worker)


async def sopflow_worker_main() -> None:
    """What `sopflow worker` runs (its settings from the environment), for the traced pass."""
    from sopflow.settings import Settings
    from worker.main import build_worker
    from workflows.client import connect

    settings = Settings()
    await serve_until_stopped(build_worker(await connect(settings), settings))


async def serve_until_stopped(worker: Worker) -> None:
    """Run `worker` until SIGTERM; with TRACE_ENV set, trace Python's allocations and,
    for each `request-<n>` file that appears in that folder, write a snapshot there
    (`snapshot-<n>`, renamed in when complete)."""
    folder = os.environ.get(TRACE_ENV)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    snapshots = asyncio.create_task(snapshot_on_request(Path(folder))) if folder else None
    async with worker:
        await stop.wait()
    if snapshots:
        snapshots.cancel()


async def snapshot_on_request(folder: Path) -> None:
    # From here on: tracing the imports too would slow the start by minutes.
    tracemalloc.start(FRAMES)
    taken = 0
    while True:
        await asyncio.sleep(0.5)
        if (folder / f"request-{taken}").exists():
            gc.collect()
            path = folder / f"snapshot-{taken}"
            tracemalloc.take_snapshot().dump(f"{path}.part")
            os.replace(f"{path}.part", path)
            taken += 1


Enrol = Callable[[int], Awaitable[None]]  # brings the open workflows up to a number


def raw_enroller(client: Client, queue: str) -> Enrol:
    started = 0
    gate = asyncio.Semaphore(50)

    async def one(index: int) -> None:
        async with gate:
            await client.start_workflow(
                CountSignals.run, 1, id=f"{queue}-{index}", task_queue=queue
            )

    async def enrol(target: int) -> None:
        nonlocal started
        await asyncio.gather(*(one(i) for i in range(started, target)))
        started = target
        # Each workflow's first task follows its start within moments; the caller then
        # waits for the RSS to stop moving.
        await asyncio.sleep(5)

    return enrol


def sopflow_enroller(stack: Stack) -> Enrol:
    sent = 0

    async def enrol(target: int) -> None:
        nonlocal sent
        while sent < target:
            size = min(1000, target - sent)
            body = [event(f"m-{c}", "contact.added", f"m-{c}", c) for c in range(sent, sent + size)]
            await post_batch(stack, body)
            sent += size
        await stack.wait_for("enrolled", target, timeout=3 * 3600)

    return enrol


async def post_batch(stack: Stack, body: list[dict[str, object]]) -> None:
    """One batch, sent again while the API answers 503 (Temporal slow to answer on a
    loaded machine: the API's own advice is to retry shortly; keys make it idempotent)."""
    for attempt in range(10):
        reply = await stack.http.post("/v1/events:batch", json={"events": body})
        if reply.status_code != 503 or attempt == 9:
            reply.raise_for_status()
            return
        await asyncio.sleep(5)


def sopflow_env(settings: Settings, sandboxed: bool) -> dict[str, str]:
    return {
        "SOPFLOW_HOME": str(settings.home),
        "SOPFLOW_TEMPORAL_ADDRESS": settings.temporal_address,
        "SOPFLOW_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
        "SOPFLOW_WORKFLOW_SANDBOX": "true" if sandboxed else "false",
    }


async def rss_curve(
    process: subprocess.Popen[bytes], enrol: Enrol, checkpoints: list[int], label: str
) -> tuple[float, list[tuple[int, float]]]:
    """Idle RSS, then RSS at each number of open workflows, in MiB."""
    try:
        await asyncio.sleep(3)
        idle = await settle(process.pid)
        rows: list[tuple[int, float]] = []
        for target in checkpoints:
            await enrol(target)
            rows.append((target, await settle(process.pid)))
            print(f"  {label}: {target:>7,} open: worker RSS {rows[-1][1]:.0f} MiB", flush=True)
        return idle, rows
    finally:
        stop_process(process)


async def traced(
    args: list[str], env: dict[str, str], enrol: Enrol
) -> tuple[tracemalloc.Snapshot, tracemalloc.Snapshot]:
    """Snapshots of the worker's Python allocations with TRACED[0] and TRACED[1] cached."""
    with tempfile.TemporaryDirectory() as name:
        process = start_process(args, {**env, TRACE_ENV: name})
        snapshots: list[tracemalloc.Snapshot] = []
        try:
            await asyncio.sleep(3)
            for count in TRACED:
                await enrol(count)
                await settle(process.pid)
                path = Path(name) / f"snapshot-{len(snapshots)}"
                (Path(name) / f"request-{len(snapshots)}").touch()
                for _ in range(600):
                    if path.exists():
                        break
                    await asyncio.sleep(0.5)
                snapshots.append(tracemalloc.Snapshot.load(str(path)))
        finally:
            stop_process(process)
    return snapshots[0], snapshots[1]


# ------------------------------------------------------------------------ the breakdown

# Who allocated what a cached workflow holds: the innermost frame of an allocation's
# traceback that belongs to one of these (checked in order; other frames, the standard
# library's, are skipped), else "other".
OWNERS = (
    ("<frozen importlib", "the sandbox's import of the workflow module (module, class, functions)"),
    ("/workflows/", "the workflow's own code (its fields, outboxes, loops)"),
    ("/sopflow/", "sopflow's core and language (the customer's state)"),
    ("/pydantic", "pydantic (payloads decoded into state, plans, signals)"),
    ("/temporalio/worker/workflow_sandbox/", "the sandbox's machinery (importer, proxies)"),
    ("/temporalio/", "the SDK's workflow instance (activations, commands, handlers)"),
    ("/asyncio/", "asyncio (the workflow's tasks and futures)"),
)
OTHER = "other (standard library: inspect, typing, ...)"


def owner(trace: tracemalloc.Traceback) -> str:
    for frame in trace:  # innermost first
        for marker, label in OWNERS:
            if marker in frame.filename:
                return label
    return OTHER


def breakdown(pair: tuple[tracemalloc.Snapshot, tracemalloc.Snapshot]) -> dict[str, float]:
    """KiB per cached workflow by owner, from the two snapshots of the traced pass."""
    first, second = pair
    added = TRACED[1] - TRACED[0]
    kib: dict[str, float] = {}
    for stat in second.compare_to(first, "traceback"):
        label = owner(stat.traceback)
        kib[label] = kib.get(label, 0.0) + stat.size_diff / 1024 / added
    return kib


# -------------------------------------------------------------------------------- main


async def measure(customers: int, sandboxed: bool, breakdown: bool) -> Measured:
    checkpoints = sorted({c for c in (CACHE, 2 * CACHE, 5 * CACHE, customers // 2, customers)
                          if 0 < c <= customers})  # fmt: skip
    measured = Measured()
    python = [sys.executable, "-m", "bench.memory"]
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        async with dev_server(folder, sqlite=False) as env:
            client = env.client
            address = client.service_client.config.target_host
            queue = f"raw-mem-{uuid.uuid4().hex}"
            measured.raw_idle, raw_rows = await rss_curve(
                start_process([*python, "--raw-worker", address, queue], {}),
                raw_enroller(client, queue),
                [2 * CACHE],
                "raw",
            )
            measured.raw_full = raw_rows[-1][1]
            async with sopflow_stack(
                client, folder / "home", STATE_ONLY, sandboxed, worker=False
            ) as stack:
                measured.idle, measured.rows = await rss_curve(
                    start_process(
                        [str(Path(sys.executable).parent / "sopflow"), "worker"],
                        sopflow_env(stack.settings, sandboxed),
                    ),
                    sopflow_enroller(stack),
                    checkpoints,
                    "sopflow",
                )
            if not breakdown:
                return measured
            queue = f"raw-traced-{uuid.uuid4().hex}"
            measured.raw_traced = await traced(
                [*python, "--raw-worker", address, queue], {}, raw_enroller(client, queue)
            )
            async with sopflow_stack(
                client, folder / "traced", STATE_ONLY, sandboxed, worker=False
            ) as stack:
                measured.traced = await traced(
                    [*python, "--sopflow-worker"],
                    sopflow_env(stack.settings, sandboxed),
                    sopflow_enroller(stack),
                )
    return measured


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--raw-worker", nargs=2, metavar=("ADDRESS", "QUEUE"))
    parser.add_argument("--unsandboxed", action="store_true", help="SOPFLOW_WORKFLOW_SANDBOX=false")
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the traced pass")
    parser.add_argument("--sopflow-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keep-snapshots", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_worker:
        asyncio.run(raw_worker_main(*args.raw_worker))
        return
    if args.sopflow_worker:
        asyncio.run(sopflow_worker_main())
        return
    began = time.monotonic()
    measured = asyncio.run(measure(args.customers, not args.unsandboxed, not args.no_breakdown))
    if args.keep_snapshots:
        args.keep_snapshots.mkdir(parents=True, exist_ok=True)
        for side, pair in (("raw", measured.raw_traced), ("sopflow", measured.traced)):
            for i, snap in enumerate(pair or ()):
                snap.dump(str(args.keep_snapshots / f"{side}-{i}"))
    raw_idle, raw_full, idle, rows = (
        measured.raw_idle,
        measured.raw_full,
        measured.idle,
        measured.rows,
    )
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
    account = ""
    if measured.raw_traced and measured.traced:
        account = ACCOUNT.format(
            FRAMES=FRAMES, first=TRACED[0], second=TRACED[1]
        ) + breakdown_table(
            breakdown(measured.raw_traced), breakdown(measured.traced), raw_per, ours_per
        )
    print(table, summary, account, sep="\n\n")
    print(f"Repeat: {report.command()}  ({time.monotonic() - began:.0f} s)")
    if args.no_record:
        return
    flat = growth < 0.1 * full_at_cache
    notes = f"""
In-memory dev server; each worker in its own process with temporalio's default cache of
{CACHE:,} workflows. sopflow customers are enrolled in a state-only playbook and wait on a
30-day timer; raw workflows wait for a signal (unsandboxed: the least a workflow costs).
Raw: {raw_idle:.0f} MiB idle, {raw_full:.0f} MiB with {2 * CACHE:,} open workflows.

{table}

{summary}

- Memory independent of the number of customers: {report.verdict(flat)} (from {2 * CACHE:,}
  to {rows[-1][0]:,} open customers the worker grew by {growth:.0f} MiB; the cache holds
  at most {CACHE:,}, the rest live only in Temporal).
- Per cached customer: {report.verdict(ratio <= TARGET)} (docs/benchmarks.md says what a
  cached customer holds beyond a raw workflow; a run without `--no-breakdown` adds the
  traced account below).

{account}
"""
    mode = "unsandboxed" if args.unsandboxed else "sandboxed"
    report.record(
        f"memory-{mode}", f"Worker memory with open customers, {mode} (benchmark 6)", notes
    )


ACCOUNT = """\
What one cached workflow holds, by who allocated it: a second pass runs each worker
with Python's allocations traced (tracemalloc, {FRAMES} frames) and diffs snapshots taken with
{first:,} and {second:,} workflows open, per workflow added; an allocation belongs to
the innermost frame of its traceback in one of the groups below. What RSS grows by beyond
that is native: Temporal's core (Rust) keeps each cached run's state machines, and the
allocators keep their overhead. Tracing slows the worker, so these figures come from a
separate run of each worker; RSS and traced totals are not exactly comparable.

"""


def breakdown_table(
    raw: dict[str, float], ours: dict[str, float], raw_rss: float, ours_rss: float
) -> str:
    labels = [label for _, label in OWNERS] + [OTHER]
    rows: list[list[object]] = [
        [label, f"{raw.get(label, 0):.1f}", f"{ours.get(label, 0):.1f}"] for label in labels
    ]
    raw_traced, ours_traced = sum(raw.values()), sum(ours.values())
    rows += [
        ["**Python allocations (traced)**", f"{raw_traced:.1f}", f"{ours_traced:.1f}"],
        ["native (RSS per workflow - traced)", f"{raw_rss - raw_traced:.1f}",
         f"{ours_rss - ours_traced:.1f}"],
    ]  # fmt: skip
    return report.table(["KiB per cached workflow", "raw Temporal", "sopflow"], rows)


if __name__ == "__main__":
    main()
