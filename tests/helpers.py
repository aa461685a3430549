"""Small tools shared by the tests that talk to real servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from sopflow.core.simulator import ScenarioEvent
from sopflow.core.state import CustomerEvent
from sopflow.settings import Settings
from sopflow.store.database import database_url
from sopflow.store.plans import PlanStore
from workflows.client import signal_with_start
from workflows.contracts import DESCRIBE_QUERY, CustomerView, EventSignal, subject_workflow_id

T = TypeVar("T")
_STORES: dict[str, PlanStore] = {}


def plan_store(settings: Settings) -> PlanStore:
    """The plan store on a test's read model, opened (its schema upgraded) once a process."""
    url = database_url(settings)
    if url not in _STORES:
        _STORES[url] = PlanStore.from_settings(settings)
    return _STORES[url]


# Limits of the waits on real servers. They wait on a condition and return as soon as it
# holds; the limit only bounds a failure, so it is set for a machine whose cores other work
# keeps busy (a 2-core machine under a parallel build took minutes where an idle one takes
# seconds): generous, never a measure of speed.
SERVER_START_LIMIT = timedelta(seconds=180)  # a Temporal server, from spawn to ready
CONDITION_LIMIT_SECONDS = 60.0  # a workflow acting on a signal, a delivery, a listing


async def eventually(
    probe: Callable[[], Awaitable[T]], timeout: float = CONDITION_LIMIT_SECONDS
) -> T:
    """Poll `probe` until it returns something truthy; fail with the last value seen.

    A query that fails (the workflow is between runs of a continue-as-new on a loaded
    machine) counts as "not yet", as it would for any polling client.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await probe()
        except RPCError as e:
            last = e
        else:
            if last:
                return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


async def send_event(
    client: Client,
    settings: Settings,
    customer_id: str,
    kind: str,
    key: str,
    data: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> None:
    """What POST /v1/events does, without HTTP: signal-with-start the customer's workflow."""
    event = CustomerEvent(
        customer_id=customer_id,
        type=kind,
        occurred_at=occurred_at or datetime.now(UTC),
        data=data or {},
        idempotency_key=key,
    )
    deployment = plan_store(settings).deployment()
    await signal_with_start(client, settings, EventSignal(event=event, deployment=deployment))


async def play(
    env: WorkflowEnvironment,
    settings: Settings,
    customer_id: str,
    events: list[ScenarioEvent],
    until: datetime,
) -> None:
    """Send scenario events at their virtual times on the time-skipping server, then let
    time run to `until` (a worker must be running)."""
    for index, event in enumerate(events):
        wait = event.at - await env.get_current_time()
        if wait > timedelta(0):
            await env.sleep(wait)
        await send_event(
            env.client,
            settings,
            customer_id,
            event.type,
            f"sim-{index}",
            event.data,
            occurred_at=event.at,
        )
    await env.sleep(until - await env.get_current_time())


async def terminate(client: Client, *customer_ids: str) -> None:
    """End customers' workflows after a test: on the time-skipping server, a workflow whose
    worker is gone but whose timers come due would stop time from skipping for later tests."""
    for customer_id in customer_ids:
        with contextlib.suppress(RPCError):  # never started, or already ended
            await client.get_workflow_handle(subject_workflow_id(customer_id)).terminate()


async def runs(client: Client, customer_id: str) -> list[tuple[str, WorkflowExecutionStatus]]:
    """Every run of the customer's workflow (continues-as-new), from visibility."""
    query = f"WorkflowId = '{subject_workflow_id(customer_id)}'"
    return [(w.run_id, w.status) async for w in client.list_workflows(query)]


# Failed workflow tasks that are the server's own bookkeeping, not a failure of the
# workflow's code: UNHANDLED_COMMAND (a signal came in while the task closed the run: the
# workflow runs again with it) and FORCE_CLOSE_COMMAND (signals buffered during a task
# passed the server's buffer size: the task runs again with them).
SERVER_BOOKKEEPING = (
    WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
    WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_FORCE_CLOSE_COMMAND,
)


async def failed_tasks(client: Client, customer_id: str) -> list[str]:
    """`cause: message` of every failed workflow task of every run of the customer (the
    server's bookkeeping left out)."""
    failures = []
    for run_id, _ in await runs(client, customer_id):
        handle = client.get_workflow_handle(subject_workflow_id(customer_id), run_id=run_id)
        async for event in handle.fetch_history_events():
            if event.event_type != EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                continue
            attributes = event.workflow_task_failed_event_attributes
            if attributes.cause not in SERVER_BOOKKEEPING:
                cause = WorkflowTaskFailedCause.Name(attributes.cause)
                failures.append(f"{cause}: {attributes.failure.message}")
    return failures


async def describe(client: Client, customer_id: str) -> CustomerView:
    handle = client.get_workflow_handle(subject_workflow_id(customer_id))
    view: CustomerView = await handle.query(DESCRIBE_QUERY, result_type=CustomerView)
    return view


def read_deliveries(settings: Settings) -> list[dict[str, Any]]:
    path: Path = settings.deliveries_log
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@dataclass
class ReceivedRequest:
    headers: dict[str, str]
    body: bytes
    status: int = 200

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """An HTTP server on a free loopback port that records POSTs and answers as told.

    `statuses` is consumed one per request; when empty, `default_status` answers.
    """

    default_status: int = 200
    statuses: list[int] = field(default_factory=list)
    received: list[ReceivedRequest] = field(default_factory=list)
    # When set, decides each answer (an outage that ends at some time, say).
    answer: Callable[[], int] | None = None
    # Headers of every answer (a redirect's Location, say).
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.answer is not None:
                    status = receiver.answer()
                elif receiver.statuses:
                    status = receiver.statuses.pop(0)
                else:
                    status = receiver.default_status
                receiver.received.append(ReceivedRequest(dict(self.headers.items()), body, status))
                self.send_response(status)
                for name, value in receiver.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
