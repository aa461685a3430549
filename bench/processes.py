"""Both sides as they are deployed: sopflow's API and worker, and the raw baseline's worker,
each in a process of its own, with the benchmark's client (the load) in the benchmark's
process.

In one process the benchmark's client, the API and the worker take turns on one core (one
interpreter lock); deployed, the API serves requests from elsewhere and the worker runs on
its own, as `make dev` runs them. The raw baseline gets the same: its worker in a process
of its own, its client (SDK signals) in the benchmark's. CPU is counted per process from
/proc, so each side's cost per event is the sum of its processes' (the Temporal server, a
process of its own on both sides, is not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from bench.harness import Stack, deployed, raw_worker
from bench.sizing import cpu_seconds
from cli.heap import freeze_startup_heap

READY_TIMEOUT = 120.0  # seconds for a process to start answering (a busy machine)


@dataclass
class Processes:
    """The child processes of one side, for their CPU time."""

    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def cpu_parts(self) -> dict[str, float]:
        """CPU seconds so far of each process, this one (the benchmark's client) first."""
        parts = {"client": time.process_time()}
        parts.update({name: cpu_seconds(p.pid) for name, p in self.children.items()})
        return parts


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


async def _until(
    ready: Callable[[], Awaitable[bool]], what: str, children: list[subprocess.Popen[bytes]]
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not await ready():
        for child in children:
            if child.poll() is not None:
                raise RuntimeError(f"{what}: a process exited with {child.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready within {READY_TIMEOUT:.0f} s")
        await asyncio.sleep(0.2)


@asynccontextmanager
async def sopflow_processes(
    client: Client, home: Path, playbook: str, database_url: str | None = None
) -> AsyncIterator[tuple[Stack, Processes]]:
    """`sopflow api` and `sopflow worker` as processes on one data folder, with `playbook`
    deployed; their read model is the database at `database_url`, else the embedded
    default (SQLite in WAL mode, shared by both)."""
    home.mkdir(parents=True, exist_ok=True)
    settings, database, key = deployed(client, home, playbook, database_url=database_url)
    env = {
        **os.environ,
        "SOPFLOW_HOME": str(home),
        "SOPFLOW_TEMPORAL_ADDRESS": settings.temporal_address,
        "SOPFLOW_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
        "SOPFLOW_API_PORT": str(settings.api_port),
        **({"SOPFLOW_DATABASE_URL": database_url} if database_url else {}),
    }
    processes = Processes(
        {
            "API": _spawn(["-m", "cli", "api"], env, home / "api.log"),
            "worker": _spawn(["-m", "cli", "worker"], env, home / "worker.log"),
        }
    )
    children = list(processes.children.values())
    base = f"http://127.0.0.1:{settings.api_port}"
    try:
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=300
        ) as http:

            async def answers() -> bool:
                try:
                    return (await http.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await _until(answers, "the API", children)
            yield Stack(settings, database, http), processes
    finally:
        await asyncio.to_thread(_stop, children)
        database.dispose()


@asynccontextmanager
async def raw_worker_process(client: Client, log: Path) -> AsyncIterator[tuple[str, Processes]]:
    """The raw baseline's worker (bench.harness's workflows) in a process of its own."""
    queue = f"raw-{uuid.uuid4().hex}"
    ready = log.with_suffix(".ready")
    child = _spawn(
        [
            "-m", "bench.processes",
            "--address", client.service_client.config.target_host,
            "--queue", queue, "--log", str(log), "--ready", str(ready),
        ],
        dict(os.environ),
        log.with_suffix(".worker.log"),
    )  # fmt: skip

    async def started() -> bool:
        return ready.exists()

    try:
        await _until(started, "the raw worker", [child])
        yield queue, Processes({"worker": child})
    finally:
        await asyncio.to_thread(_stop, [child])


async def _run_raw_worker(address: str, queue: str, log: Path, ready: Path) -> None:
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with raw_worker(client, log, queue):
        freeze_startup_heap()  # as sopflow's processes do (cli/heap.py)
        ready.touch()
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="The raw baseline's worker, alone.")
    parser.add_argument("--address", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(_run_raw_worker(args.address, args.queue, args.log, args.ready))


if __name__ == "__main__":
    main()
