"""Worker memory (issue 7, benchmark 6): RSS of a `sopflow worker` process as open customers
grow to `--customers` (100,000 for the issue's figure), with the default workflow cache,
and per cached customer against raw Temporal's per-workflow cost in the same run.

Each side's worker runs in its own process so that its RSS is its own: `sopflow worker`
for sopflow (customers enrolled through the API in batches, each then waiting on a 30-day
timer), and this module's `--raw-worker` mode for raw Temporal (the signal-counting
workflow, started with the SDK, waiting for signals that never come). Per cached
customer = (RSS with the cache full - RSS idle) / cache size.

Unless `--no-breakdown`, the account of what a cached workflow holds follows, from more
runs of each worker: Python's allocations by who made them and the RSS by allocator (a
traced pass), and, where heaptrack is installed, malloc's blocks by the native code that
asked for them (Temporal's core by part of its run state). About six minutes in all at
`--customers 2000` on a loaded 2-core machine. `--continued` measures only, in this
process, what a run started by continue-as-new keeps of its start (no server).

Run: `.venv/bin/python -m bench.memory [--customers 100000]`
Target: memory independent of the number of customers; per cached customer <= 1.2 x raw.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import os
import re
import shutil
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
from typing import Any, NamedTuple

from temporalio.client import Client
from temporalio.worker import Worker

from bench import report
from bench.harness import STATE_ONLY, CountSignals, Stack, dev_server, event, sopflow_stack
from sopflow.settings import Settings
from worker.main import POLLER

CACHE = 1000  # temporalio's default max_cached_workflows, which neither side changes
# The traced pass: a worker starts tracing its Python allocations (tracemalloc, FRAMES deep)
# only once TRACED[0] workflows are open and cached, snapshots, and snapshots again with
# TRACED[1] open (all within the cache: nothing is evicted in between); the difference
# divided by the workflows added is what one cached workflow holds. Tracing only that
# window keeps the traced worker's slowdown to 200 enrolments; the worker sums the
# difference itself, so no snapshot crosses processes.
TRACE_ENV = "SOPFLOW_BENCH_TRACE"
KEEP_ENV = "SOPFLOW_BENCH_KEEP_SNAPSHOTS"  # a path prefix: the traced workers' snapshots
TRACED = (100, 300)
# Deep enough that an allocation made while the sandbox imports the workflow module still
# shows the worker's frame that asked for the instance (about 40 frames down).
FRAMES = 64
TARGET = 1.2
REPO = Path(__file__).resolve().parent.parent


class Row(NamedTuple):
    open: int  # workflows
    rss: float  # MiB
    # The worker runs activations on a thread pool that grows with the activations in
    # flight (up to max_concurrent_workflow_tasks: 500 unless set, sopflow sets 10) and
    # keeps its threads: their stacks are RSS too.
    threads: int


NOTHING = Row(0, 0.0, 0)


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


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
    raw_idle: Row = NOTHING
    raw_full: Row = NOTHING
    idle: Row = NOTHING
    rows: list[Row] = field(default_factory=list)
    raw_traced: Account | None = None
    traced: Account | None = None
    raw_native: dict[str, float] | None = None
    native: dict[str, float] | None = None


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
    """Run `worker` until SIGTERM; with TRACE_ENV set, account for what the workflows
    opened between two requests hold (`trace_on_request`)."""
    folder = os.environ.get(TRACE_ENV)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tracing = asyncio.create_task(trace_on_request(Path(folder))) if folder else None
    async with worker:
        await stop.wait()
    if tracing:
        tracing.cancel()


async def trace_on_request(folder: Path) -> None:
    """On `request-0` in `folder`, start tracing (answering `traced-0`); on `request-1`,
    write what was allocated since and is still held to `account.json` (renamed in when
    complete)."""
    await appears(folder / "request-0")
    gc.collect()
    before, heap_before = census(), heap()
    tracemalloc.start(FRAMES)
    first = tracemalloc.take_snapshot()
    (folder / "traced-0").touch()
    await appears(folder / "request-1")
    gc.collect()
    second = tracemalloc.take_snapshot()
    tracemalloc.stop()
    if keep := os.environ.get(KEEP_ENV):  # for a closer look than the account's
        side = "raw" if "--raw-worker" in sys.argv else "sopflow"
        first.dump(f"{keep}-{side}-0")
        second.dump(f"{keep}-{side}-1")
    added = TRACED[1] - TRACED[0]
    account = account_of(first, second, before, census(), added)
    large = sum(t.size for t in second.traces if t.size > SMALL) - sum(
        t.size for t in first.traces if t.size > SMALL
    )
    del first, second
    gc.collect()
    # Read untraced (pymalloc reports nothing while tracemalloc wraps it); what tracing
    # itself allocated is freed by now, so only the "in use" figures are compared.
    heap_after = heap()
    account["heap"] = {
        name: (heap_after[name] - heap_before[name]) / 1024 / added for name in heap_after
    }
    account["heap"]["python_large"] = large / 1024 / added
    path = folder / "account.json"
    Path(f"{path}.part").write_text(json.dumps(account))
    os.replace(f"{path}.part", path)


async def appears(path: Path, timeout: float = 1800) -> None:
    for _ in range(int(timeout * 2)):
        if path.exists():
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"{path} did not appear")


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


def sopflow_enroller(stack: Stack, prefix: str) -> Enrol:
    """Customers `<prefix>-<n>`: each pass its own, since the server still runs the
    workflows of the pass before, whose worker is gone (the same customers again would
    only signal those, and the traced pass waited for ever)."""
    sent = 0

    async def enrol(target: int) -> None:
        nonlocal sent
        while sent < target:
            size = min(1000, target - sent)
            body = [
                event(f"{prefix}-{c}", "contact.added", f"{prefix}-{c}", c)
                for c in range(sent, sent + size)
            ]
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
) -> tuple[Row, list[Row]]:
    """Idle RSS, then RSS at each number of open workflows, in MiB, with the threads."""
    try:
        await asyncio.sleep(3)
        idle = Row(0, await settle(process.pid), threads(process.pid))
        rows: list[Row] = []
        for target in checkpoints:
            await enrol(target)
            rows.append(Row(target, await settle(process.pid), threads(process.pid)))
            print(f"  {label}: {target:>7,} open: worker RSS {rows[-1].rss:.0f} MiB, "
                  f"{rows[-1].threads} threads", flush=True)  # fmt: skip
        return idle, rows
    finally:
        stop_process(process)


async def traced(args: list[str], env: dict[str, str], enrol: Enrol) -> Account:
    """What each of the workflows opened between TRACED[0] and TRACED[1] holds, from a
    worker that traces its Python allocations meanwhile."""
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        process = start_process(args, {**env, TRACE_ENV: name})
        try:
            await asyncio.sleep(3)
            await enrol(TRACED[0])
            await settle(process.pid)
            (folder / "request-0").touch()
            await appears(folder / "traced-0")
            await enrol(TRACED[1])
            await settle(process.pid)
            (folder / "request-1").touch()
            await appears(folder / "account.json")
            account: Account = json.loads((folder / "account.json").read_text())
        finally:
            stop_process(process)
    return account


# ------------------------------------------------------------------------ the breakdown

# What a cached workflow holds, by who allocated it. First, when: while the worker created
# the workflow's instance (for a sandboxed one: importing the workflow module afresh), while
# it ran an activation, or outside both (the worker's own entry for the run, the bridge).
# Then, within that, the group of the innermost frame of the allocation's traceback that
# is in one (frames in none, the standard library's and pydantic's, are skipped: a model
# the core builds is the customer's state, one the SDK decodes a payload), else "other".
CREATING, ACTIVATING, OUTSIDE = "creating", "activating", "outside"
OWNERS: dict[str, tuple[tuple[tuple[str, ...], str], ...]] = {
    CREATING: (
        (("/temporalio/worker/workflow_sandbox/",),
         "sandbox: its importer and restricted module proxies"),
        (("/workflows/", "<frozen importlib"),
         "sandbox: the workflow module's own copy (module, class, functions)"),
        (("/temporalio/workflow/",),
         "sandbox: the workflow definition rebuilt from that copy (handlers, signatures)"),
        (("/temporalio/",), "SDK: the workflow instance before it runs"),
    ),
    ACTIVATING: (
        (("/workflows/",), "workflow: the object's own fields (outboxes, loops, flags)"),
        (("/sopflow/",), "workflow: the customer's state as the core builds it"),
        (("/temporalio/converter/", "/temporalio/contrib/pydantic"),
         "SDK: payloads it decoded and keeps (the start input, a signal's parts)"),
        (("/temporalio/",), "SDK: the run's state (commands, timers, conditions, futures)"),
    ),
    OUTSIDE: (
        (("/sopflow/", "/sqlalchemy/"),
         "activities: the ledger's database caches (bounded, not per workflow)"),
        (("",), "worker: outside the workflow (its entry for the run, the bridge)"),
    ),
}  # fmt: skip
OTHER = {
    CREATING: "other, while creating the instance (standard library)",
    ACTIVATING: "other, while activating (standard library)",
    OUTSIDE: "worker: outside the workflow (its entry for the run, the bridge)",
}
TOO_DEEP = f"not placed (traceback deeper than {FRAMES} frames)"
LABELS = [
    *dict.fromkeys(label for groups in OWNERS.values() for _, label in groups),
    OTHER[CREATING],
    OTHER[ACTIVATING],
    TOO_DEEP,
]
Account = dict[str, Any]  # account_of's answer, as JSON


def worker_phases() -> dict[str, tuple[str, int, int]]:
    """The worker's functions that create a workflow's instance and run its activations:
    (file, first line, last line), from the installed temporalio."""
    from temporalio.worker import _workflow

    spans = {}
    for phase, function in (
        (CREATING, _workflow._WorkflowWorker._create_workflow_instance),
        (ACTIVATING, _workflow._RunningWorkflow.activate),
    ):
        code = function.__code__
        lines = [line for _, _, line in code.co_lines() if line is not None]
        spans[phase] = (code.co_filename, min(lines), max(lines))
    return spans


def owner(trace: tracemalloc.Traceback, spans: dict[str, tuple[str, int, int]]) -> str:
    frames = list(trace)  # oldest first
    phase = next(
        (
            phase
            for frame in frames
            for phase, (filename, first, last) in spans.items()
            if frame.filename == filename and first <= frame.lineno <= last
        ),
        OUTSIDE,
    )
    if phase == OUTSIDE and trace.total_nframe and trace.total_nframe > len(frames):
        return TOO_DEEP
    for frame in reversed(frames):  # innermost first
        for markers, label in OWNERS[phase]:
            if any(marker in frame.filename for marker in markers):
                return label
    return OTHER[phase]


def where(frame: tracemalloc.Frame) -> str:
    name = frame.filename
    for prefix in ("site-packages/", f"{REPO}/", "python3.11/"):
        name = name.split(prefix, 1)[-1]
    return f"{name}:{frame.lineno}"


SMALL = 512  # bytes: Python's allocator serves blocks up to this itself, larger from malloc


def heap() -> dict[str, float]:
    """Bytes in use, by allocator: the C heap's blocks (glibc's malloc, which Temporal's
    core, Python's objects over 512 bytes and tracemalloc's own tables use) and the blocks
    of Python's small-object allocator (pymalloc)."""
    fields = ["arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
              "uordblks", "fordblks", "keepcost"]  # fmt: skip

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in fields]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Mallinfo2
    info = libc.mallinfo2()
    with tempfile.TemporaryFile() as out:  # _debugmallocstats writes to C's stderr
        saved = os.dup(2)
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        stats = out.read().decode()

    def stat(pattern: str) -> float:
        found = re.search(pattern + r"\s*=\s*([\d,]+)", stats)
        return float(found.group(1).replace(",", "")) if found else 0.0

    return {
        "c_heap_in_use": float(info.uordblks + info.hblkhd),
        "pymalloc_in_use": stat(r"# bytes in allocated blocks"),
    }


def census() -> dict[str, tuple[int, int]]:
    """Objects the garbage collector tracks, by type: (count, bytes by sys.getsizeof);
    a sandbox's copy of a class counts with its original (same module and name)."""
    counts: dict[str, list[int]] = {}
    for obj in gc.get_objects():
        kind = type(obj)
        entry = counts.setdefault(f"{kind.__module__}.{kind.__qualname__}", [0, 0])
        entry[0] += 1
        with contextlib.suppress(Exception):  # a restricted proxy may refuse
            entry[1] += sys.getsizeof(obj)
    return {name: (count, size) for name, (count, size) in counts.items()}


def account_of(
    first: tracemalloc.Snapshot,
    second: tracemalloc.Snapshot,
    before: dict[str, tuple[int, int]],
    after: dict[str, tuple[int, int]],
    added: int,
) -> Account:
    """KiB per workflow added, by owner (LABELS), by the line that allocated it, and the
    objects added per workflow by type."""
    spans = worker_phases()
    groups: dict[str, float] = {}
    lines: dict[str, float] = {}
    for stat in second.compare_to(first, "traceback"):
        kib = stat.size_diff / 1024 / added
        label = owner(stat.traceback, spans)
        groups[label] = groups.get(label, 0.0) + kib
        innermost = where(list(stat.traceback)[-1])
        lines[innermost] = lines.get(innermost, 0.0) + kib
    types = [
        (name, (count - before.get(name, (0, 0))[0]) / added,
         (size - before.get(name, (0, 0))[1]) / 1024 / added)
        for name, (count, size) in after.items()
    ]  # fmt: skip
    return {
        "groups": groups,
        "lines": sorted(lines.items(), key=lambda item: -item[1])[:TOP],
        "types": sorted(types, key=lambda item: -item[2])[:TOP],
        "objects": sum(count for _, count, _ in types),
    }


TOP = 12


# ------------------------------------------------------------------- the native account

# What RSS holds beyond Python's objects, by who asked malloc for it: heaptrack (if
# installed) records every allocation with its native stack; a worker is killed (SIGKILL,
# so nothing is freed on the way out) with TRACED[0] and, in a second run, TRACED[1]
# workflows open, and what each left allocated is summed by owner; the difference per
# workflow added is what a cached workflow holds.
# An owner is found from the innermost frame of the stack that names one (Rust frames
# carry their crate and type names even mangled). Temporal's core is split by the part of
# its run state that asked.
NATIVE_OWNERS = (
    ("upb", "protobuf messages held from Python (the activations' arenas)"),
    ("pydantic_core", "pydantic_core"),
    ("sqlite3", "SQLite (the ledger's page cache)"),
    ("temporalio_sdk_core", "Temporal's core"),
)
CORE_PARTS = (  # within Temporal's core: the innermost frame naming one
    ("CommandAndMachine", "core: the command queue of a workflow task (capacity kept)"),
    ("7slotmap", "core: the run's state machines (one per command)"),
    ("history_update", "core: history updates (events buffered and being applied)"),
    ("local_activity", "core: local activities (their markers' data)"),
    ("", "core: the run itself, its search attributes, metrics, jobs"),
)
PYTHON_FRAME = re.compile(r"^_?Py|\((obmalloc|dictobject|listobject|unicodeobject|typeobject)\.c\)")
NATIVE_LABELS = [
    *(label for _, label in CORE_PARTS),
    *(label for key, label in NATIVE_OWNERS if key != "temporalio_sdk_core"),
    "Python's own objects (asked of malloc by Python's allocator)",
    "other native code (tokio, gRPC, the C library)",
]


def heaptrack_installed() -> bool:
    return bool(shutil.which("heaptrack") and shutil.which("heaptrack_print"))


def native_owner(stack: str) -> str:
    frames = [f for f in stack.split(";") if f and not f.startswith("0x")]
    for frame in reversed(frames):  # innermost first
        for key, label in NATIVE_OWNERS:
            if key not in frame:
                continue
            if key != "temporalio_sdk_core":
                return label
            inner_first = [f for f in reversed(frames) if "temporalio_sdk_core" in f]
            return next(
                (name for f in inner_first for part, name in CORE_PARTS if part and part in f),
                CORE_PARTS[-1][1],
            )
        if PYTHON_FRAME.search(frame):
            return NATIVE_LABELS[-2]
    return NATIVE_LABELS[-1]


Launch = Callable[[], tuple[list[str], dict[str, str], Enrol]]


async def native(launch: Launch, folder: Path) -> dict[str, float]:
    """KiB per workflow added between TRACED[0] and TRACED[1], by native owner."""
    left: list[dict[str, float]] = []
    for count in TRACED:
        args, env, enrol = launch()
        out = folder / f"heaptrack-{uuid.uuid4().hex}"
        wrapper = start_process(["heaptrack", "-o", str(out), *args], env)
        try:
            await asyncio.sleep(8)
            await enrol(count)
            children = subprocess.run(
                ["pgrep", "-P", str(wrapper.pid), "-f", "bench.memory"],
                capture_output=True, text=True, check=True,
            ).stdout.split()  # fmt: skip
            worker = int(children[0])
            await settle(worker)
            os.kill(worker, signal.SIGKILL)  # with the workflows still held
            wrapper.wait(timeout=600)
        finally:
            if wrapper.poll() is None:
                stop_process(wrapper)
        folded = folder / f"{out.name}-folded.txt"
        [recording] = folder.glob(f"{out.name}.*")  # .zst or .gz, as heaptrack was built
        subprocess.run(
            ["heaptrack_print", "-f", str(recording), "--flamegraph-cost-type", "leaked",
             "-F", str(folded)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
        )  # fmt: skip
        sums: dict[str, float] = {}
        for line in folded.read_text().splitlines():
            stack, _, size = line.rpartition(" ")
            label = native_owner(stack)
            sums[label] = sums.get(label, 0.0) + int(size)
        left.append(sums)
    added = TRACED[1] - TRACED[0]
    return {
        label: (left[1].get(label, 0.0) - left[0].get(label, 0.0)) / 1024 / added
        for label in NATIVE_LABELS
    }


# ------------------------------------------------------------ a continued customer's start

CONTINUED_PLAYBOOKS = ("welcome", "one_to_one_five_stage", "auto_high_ticket")


def continued(copies: int = 20) -> None:
    """What a run started by continue-as-new keeps of its start, in this process: the
    workflow object and the start input the SDK keeps for the run, the input decoded from
    JSON as the SDK decodes it, with the playbook's plan, which the process already holds
    (another customer loaded it). The benchmark above enrols new customers only, whose
    start carries no plan."""
    from sopflow.core.state import CustomerState
    from sopflow.language.compiler import compile_playbook_file
    from sopflow.language.plan import shared_plan
    from workflows.contracts import CustomerWorkflowInput
    from workflows.customer_workflow import CustomerJourneyWorkflow

    rows: list[list[object]] = []
    for name in CONTINUED_PLAYBOOKS:
        plan = shared_plan(compile_playbook_file(REPO / "playbooks" / f"{name}.yaml"))
        carried = CustomerWorkflowInput(
            customer_id="c", state=CustomerState(customer_id="c"), plans={plan.version: plan}
        ).model_dump_json()
        gc.collect()
        tracemalloc.start()
        kept = []
        for _ in range(copies):
            start = CustomerWorkflowInput.model_validate_json(carried)
            kept.append((start, CustomerJourneyWorkflow(start)))
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        rows.append([name, f"{len(carried) / 1024:.1f}", f"{held / 1024 / copies:.1f}"])
    print(report.table(["playbook", "carried JSON KiB", "KiB kept per continued run"], rows))


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
            measured.raw_full = raw_rows[-1]
            async with sopflow_stack(
                client, folder / "home", STATE_ONLY, sandboxed, worker=False
            ) as stack:
                measured.idle, measured.rows = await rss_curve(
                    start_process(
                        [str(Path(sys.executable).parent / "sopflow"), "worker"],
                        sopflow_env(stack.settings, sandboxed),
                    ),
                    sopflow_enroller(stack, "m"),
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
                    sopflow_enroller(stack, "traced"),
                )
            if not heaptrack_installed():
                return measured

            def raw_launch() -> tuple[list[str], dict[str, str], Enrol]:
                queue = f"raw-native-{uuid.uuid4().hex}"
                return [*python, "--raw-worker", address, queue], {}, raw_enroller(client, queue)

            measured.raw_native = await native(raw_launch, folder)
            async with sopflow_stack(
                client, folder / "native", STATE_ONLY, sandboxed, worker=False
            ) as stack:
                prefixes = iter(("native-a", "native-b"))
                measured.native = await native(
                    lambda: (
                        [*python, "--sopflow-worker"],
                        sopflow_env(stack.settings, sandboxed),
                        sopflow_enroller(stack, next(prefixes)),
                    ),
                    folder,
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
    parser.add_argument(
        "--continued", action="store_true", help="only what a continued run's start keeps"
    )
    args = parser.parse_args()
    if args.continued:
        continued()
        return
    if args.raw_worker:
        asyncio.run(raw_worker_main(*args.raw_worker))
        return
    if args.sopflow_worker:
        asyncio.run(sopflow_worker_main())
        return
    began = time.monotonic()
    measured = asyncio.run(measure(args.customers, not args.unsandboxed, not args.no_breakdown))
    raw_idle, raw_full, idle, rows = (
        measured.raw_idle,
        measured.raw_full,
        measured.idle,
        measured.rows,
    )
    raw_per = (raw_full.rss - raw_idle.rss) * 1024 / CACHE
    # Both sides at twice the cache: full, whatever the order the cache filled in.
    full_at_cache = next(row.rss for row in rows if row.open >= 2 * CACHE)
    ours_per = (full_at_cache - idle.rss) * 1024 / CACHE
    growth = rows[-1].rss - full_at_cache
    ratio = ours_per / raw_per
    table = report.table(
        ["open customers", "worker RSS MiB", "worker threads"],
        [["0 (idle)", f"{idle.rss:.0f}", idle.threads]]
        + [[f"{row.open:,}", f"{row.rss:.0f}", row.threads] for row in rows],
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
        ) + breakdown_tables(measured.raw_traced, measured.traced, raw_per, ours_per)
    if measured.raw_native and measured.native:
        account += (
            "\n\n"
            + NATIVE_ACCOUNT.format(first=TRACED[0], second=TRACED[1])
            + native_table(measured.raw_native, measured.native)
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
Raw: {raw_idle.rss:.0f} MiB idle, {raw_full.rss:.0f} MiB with {2 * CACHE:,} open workflows
({raw_idle.threads} and {raw_full.threads} threads).

{table}

{summary}

- Memory independent of the number of customers: {report.verdict(flat)} (from {2 * CACHE:,}
  to {rows[-1].open:,} open customers the worker grew by {growth:.0f} MiB; the cache holds
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
again and, from {first:,} workflows open to {second:,}, traces its Python allocations
(tracemalloc, {FRAMES} frames) and reads both allocators' figures (glibc's mallinfo2,
Python's pymalloc statistics) before and after; what was allocated and is still held is
divided by the workflows added. The first table says who allocated the Python objects; the
second splits the RSS per cached workflow of the run above by allocator (what malloc holds
that is not Python's is native code's, Temporal's core for the most part). Runs differ by
a few KiB per workflow.

"""


NATIVE_ACCOUNT = """\
What malloc holds that is not Python's, by who asked for it: a third pass runs each
worker under heaptrack, killed with {first:,} and (a second run) {second:,} workflows open,
and divides the difference in what was left allocated by the workflows added (what was
asked of malloc, not the pages it takes).

"""


def kib(value: float) -> str:
    return f"{round(value, 1) + 0.0:.1f}"  # + 0.0: no "-0.0" for a difference of nothing


def native_table(raw: dict[str, float], ours: dict[str, float]) -> str:
    rows: list[list[object]] = [
        [label, kib(raw.get(label, 0)), kib(ours.get(label, 0))] for label in NATIVE_LABELS
    ]
    rows.append(["**total**", f"{sum(raw.values()):.1f}", f"{sum(ours.values()):.1f}"])
    return report.table(["KiB per cached workflow, by heaptrack", "raw Temporal", "sopflow"], rows)


def _native(account: Account) -> float:
    return float(account["heap"]["c_heap_in_use"] - account["heap"]["python_large"])


# The RSS per cached workflow (the untraced run's) split by allocator, from the traced
# pass's readings of glibc's malloc (mallinfo2) and Python's (pymalloc), taken before
# tracing started and after it stopped.
RSS_PARTS: list[tuple[str, Callable[[Account, float], float]]] = [
    ("Python objects up to 512 bytes (pymalloc's blocks in use)",
     lambda a, rss: float(a["heap"]["pymalloc_in_use"])),
    ("Python objects over 512 bytes (from malloc)",
     lambda a, rss: float(a["heap"]["python_large"])),
    ("native: malloc's blocks in use that are not Python's (Temporal's core)",
     lambda a, rss: _native(a)),
    ("the rest: free space the allocators keep, thread stacks, other mappings",
     lambda a, rss: rss - a["heap"]["pymalloc_in_use"] - a["heap"]["python_large"] - _native(a)),
]  # fmt: skip


def breakdown_tables(raw: Account, ours: Account, raw_rss: float, ours_rss: float) -> str:
    rows: list[list[object]] = [
        [label, f"{raw['groups'].get(label, 0):.1f}", f"{ours['groups'].get(label, 0):.1f}"]
        for label in LABELS
        if abs(raw["groups"].get(label, 0)) >= 0.05 or abs(ours["groups"].get(label, 0)) >= 0.05
    ]
    raw_traced, ours_traced = sum(raw["groups"].values()), sum(ours["groups"].values())
    rows += [
        ["**Python allocations (traced)**", f"{raw_traced:.1f}", f"{ours_traced:.1f}"],
        ["objects tracked by the garbage collector", f"{raw['objects']:.0f}",
         f"{ours['objects']:.0f}"],
    ]  # fmt: skip
    split: list[list[object]] = [
        [label, f"{part(raw, raw_rss):.1f}", f"{part(ours, ours_rss):.1f}"]
        for label, part in RSS_PARTS
    ]
    split.append(["**RSS per cached workflow**", f"{raw_rss:.1f}", f"{ours_rss:.1f}"])
    heap = report.table(["KiB per cached workflow, by allocator", "raw Temporal", "sopflow"], split)
    owners = report.table(["KiB per cached workflow", "raw Temporal", "sopflow"], rows)
    lines = report.table(
        ["sopflow: where it was allocated (innermost frame)", "KiB per workflow"],
        [[f"`{line}`", f"{kib:.1f}"] for line, kib in ours["lines"] if kib >= 0.05],
    )
    types = report.table(
        ["sopflow: objects by type", "per workflow", "KiB (shallow)"],
        [
            [f"`{name}`", f"{count:.0f}", f"{kib:.1f}"]
            for name, count, kib in ours["types"]
            if kib >= 0.05
        ],
    )
    return "\n\n".join((owners, heap, lines, types))


if __name__ == "__main__":
    main()
