"""WeCom fault drills with exact counts: a burst of customers' wecom.private messages
through the durable runtime (time-skipping server) to the in-process fake WeCom, while
WeCom is unreachable for two minutes, its tokens are revoked mid-burst, it answers a 45009
storm, or the worker is stopped after WeCom created a task and before it was recorded.

Each drill asserts the same: one task per staff member (nothing created twice), every
customer in exactly one task and nobody lost, each confirmed message received exactly
once by its customer (the fake's state), every message `sent` in the customer's timeline
and the delivery ledger, and every staff member's sender workflow done (no task left
open). `make test` runs them with 12 customers; `make drills` with 300
(SOPFLOW_DRILL_WECOM_CUSTOMERS) and records the counts in bench/RESULTS.md
(SOPFLOW_DRILL_RECORD=1)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from cli.fake_wecom import DEV_CORP_ID, DEV_SECRET, FakeConfig, FakeWeCom, create_app
from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.mass_sends import RECIPIENTS
from sopflow.wecom import errors as codes
from tests.helpers import describe, eventually, send_event, terminate
from tests.test_audiences_wecom import (
    delivery_statuses,
    deploy,
    end_senders,
    sleep_until,
    wecom_settings,
)
from worker.main import build_worker
from worker.wecom.client import WeComClient
from workflows.sender_contracts import sender_workflow_id

CUSTOMERS = int(os.environ.get("SOPFLOW_DRILL_WECOM_CUSTOMERS", "12"))
STAFF = ("li_lei", "han_meimei", "wang_wu")
OUTAGE = timedelta(minutes=2)  # virtual time: the full two minutes in `make test` too
STORM = 12  # answers of 45009 in a row
REVOKE_EVERY = 4  # requests between two revocations of every token
RECORD = os.environ.get("SOPFLOW_DRILL_RECORD") == "1"
REPEAT = (
    "SOPFLOW_DRILL_WECOM_CUSTOMERS=300 SOPFLOW_DRILL_RECORD=1 "
    ".venv/bin/pytest tests/test_wecom_drills.py -q"
)
TEXT = "双十二会员价，今晚 8 点开抢"

BURST = f"""
apiVersion: sopflow/v1
kind: Playbook
metadata: {{name: wecom_burst}}
enrol: {{event: contact.added}}
stages:
  offer:
    on_enter: [{{send: {{channel: wecom.private, text: "{TEXT}"}}}}]
    triggers: [{{after: 30d, goto: done}}]
  done: {{end: true}}
"""


class FaultyNetwork(httpx.AsyncBaseTransport):
    """The fake WeCom behind a network the drill breaks: refused while `down`; a hook
    after each API call WeCom answered (`after`)."""

    def __init__(self, fake: FakeWeCom) -> None:
        self.inner = httpx.ASGITransport(app=create_app(fake))
        self.down = False
        self.refused = 0
        self.after: Callable[[str], Awaitable[None]] | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            self.refused += 1
            raise httpx.ConnectError("connection refused (drill)", request=request)
        response = await self.inner.handle_async_request(request)
        if self.after is not None:
            await self.after(request.url.path)
        return response


@contextlib.asynccontextmanager
async def client_over(network: FaultyNetwork) -> AsyncIterator[WeComClient]:
    async with httpx.AsyncClient(transport=network, base_url="http://fake") as http:
        yield WeComClient(
            DEV_CORP_ID,
            DEV_SECRET,
            api_base="http://fake/cgi-bin",
            requests_per_second=10_000,
            http=http,
        )


@dataclass
class Drill:
    env: WorkflowEnvironment
    settings: Settings
    fake: FakeWeCom
    # How long the polls take to report a confirmation (virtual time, or real time on
    # the dev server).
    settle: timedelta = timedelta(hours=1)
    customers: list[str] = field(
        default_factory=lambda: [f"wm_drill_{i:04d}" for i in range(CUSTOMERS)]
    )

    def owner(self, customer: str) -> str:
        return STAFF[self.customers.index(customer) % len(STAFF)]

    async def burst(self) -> None:
        """Every customer is added (in one burst) and handed to their owner's sender."""
        start = await self.env.get_current_time()
        for customer in self.customers:
            await send_event(
                self.env.client,
                self.settings,
                customer,
                "contact.added",
                f"added-{customer}",
                {"attributes": {"owner": self.owner(customer)}},
                occurred_at=start,
            )
        with self.env.auto_time_skipping_disabled():  # all in one batch per staff member
            for customer in self.customers:

                async def handed_over(c: str = customer) -> bool:
                    return await self.status(c) == "awaiting_confirmation"

                await eventually(handed_over, timeout=120)

    async def status(self, customer: str) -> str | None:
        view = await describe(self.env.client, customer)
        [message] = [e for e in view.timeline if e.kind == "message"]
        return message.status

    def targeted(self) -> Counter[str]:
        """How many WeCom tasks hold each customer."""
        return Counter(
            customer
            for mass_send in self.fake.mass_sends.values()
            for task in mass_send.tasks.values()
            for customer in task.recipients
        )

    async def until_everyone_is_in_a_task(self, step: timedelta, steps: int) -> None:
        for _ in range(steps):
            if set(self.targeted()) == set(self.customers):
                return
            await sleep_until(self.env, await self.env.get_current_time() + step)
        raise AssertionError(f"not in a task: {set(self.customers) - set(self.targeted())}")

    async def confirm_and_settle(self) -> None:
        """Every staff member confirms their task; an hour of polls reports it."""
        for msgid, mass_send in self.fake.mass_sends.items():
            for sender, task in mass_send.tasks.items():
                if task.status == 0:
                    self.fake.confirm(msgid, sender)
        await sleep_until(self.env, await self.env.get_current_time() + self.settle)
        with self.env.auto_time_skipping_disabled():

            async def all_sent() -> bool:
                return all([await self.status(c) == "sent" for c in self.customers])

            await eventually(all_sent, timeout=120)

            async def senders_done() -> bool:
                for staff in STAFF:
                    handle = self.env.client.get_workflow_handle(sender_workflow_id(staff))
                    if (await handle.describe()).status != WorkflowExecutionStatus.COMPLETED:
                        return False
                return True

            await eventually(senders_done, timeout=120)

    def check(self) -> dict[str, int]:
        """The exact counts every drill asserts; returned for the report."""
        targeted = self.targeted()
        received = {c: len(self.fake.received[c]) for c in self.customers}
        database = Database.from_settings(self.settings)
        try:
            ledger = Counter(
                status
                for c in self.customers
                for status in delivery_statuses(database, c, "wecom.private")
            )
        finally:
            database.dispose()
        recipients = self.recipients()
        assert len(self.fake.mass_sends) == len(STAFF)  # one task each, none twice
        assert set(targeted) == set(self.customers)  # nobody lost
        assert set(targeted.values()) == {1}  # nobody in two tasks
        assert received == dict.fromkeys(self.customers, 1)  # each got it exactly once
        assert ledger == {"sent": len(self.customers)}
        assert recipients == {"sent": len(self.customers)}
        return {
            "tasks": len(self.fake.mass_sends),
            "received": sum(received.values()),
            "twice": sum(1 for n in received.values() if n > 1),
            "lost": len(self.customers) - len(targeted),
        }

    def recipients(self) -> Counter[str]:
        """The mass-send recipients sopflow recorded, by status."""
        database = Database.from_settings(self.settings)
        try:
            with database.engine.connect() as connection:
                return Counter(r.status for r in connection.execute(RECIPIENTS.select()))
        finally:
            database.dispose()

    async def end(self) -> None:
        await terminate(self.env.client, *self.customers)
        await end_senders(self.env.client, *STAFF)


@pytest.fixture
def fake() -> FakeWeCom:
    return FakeWeCom(FakeConfig())


@pytest.fixture
def drill(time_skipping_env: WorkflowEnvironment, settings: Settings, fake: FakeWeCom) -> Drill:
    # Polled every 10 minutes; no reminders (they would count as calls of their own).
    settings = wecom_settings(settings, wecom_poll_seconds=600)
    deploy(BURST, settings)
    made = Drill(time_skipping_env, settings, fake)
    for customer in made.customers:
        fake.add_contact(made.owner(customer), customer)
    return made


@pytest.fixture
def live_drill(dev_env: WorkflowEnvironment, settings: Settings, fake: FakeWeCom) -> Drill:
    """On the dev server, in real time: a stopped worker's activity is retried after its
    start-to-close timeout, which the time-skipping server would not skip (an activity in
    flight stops it) and would hold every later sleep for."""
    window = max(10, CUSTOMERS // 10)  # longer than the burst: one batch per staff member
    settings = wecom_settings(settings, wecom_batch_window_seconds=window, wecom_poll_seconds=2)
    deploy(BURST, settings)
    made = Drill(dev_env, settings, fake, settle=timedelta(seconds=5))
    for customer in made.customers:
        fake.add_contact(made.owner(customer), customer)
    return made


REPORT: dict[str, list[object]] = {}


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    if RECORD and REPORT:
        _record(REPORT)


@pytest.mark.timeout(600)
async def test_wecom_unreachable_for_two_minutes_then_back(drill: Drill, fake: FakeWeCom) -> None:
    began = time.monotonic()
    network = FaultyNetwork(fake)
    try:
        async with (
            client_over(network) as wecom,
            build_worker(drill.env.client, drill.settings, wecom=wecom),
        ):
            network.down = True
            await drill.burst()
            # The batches close inside the outage: creating their tasks is refused and
            # retried with back-off until WeCom is back.
            await sleep_until(drill.env, await drill.env.get_current_time() + OUTAGE)
            network.down = False
            await drill.until_everyone_is_in_a_task(timedelta(minutes=5), 24)
            await drill.confirm_and_settle()
    finally:
        await drill.end()
    assert network.refused > 0
    counts = drill.check()
    REPORT["WeCom unreachable (connection refused) for two minutes, then back"] = [
        f"{network.refused:,} requests refused",
        counts,
        time.monotonic() - began,
    ]


@pytest.mark.timeout(600)
async def test_the_token_revoked_mid_burst(drill: Drill, fake: FakeWeCom) -> None:
    began = time.monotonic()
    network = FaultyNetwork(fake)
    calls = Counter[str]()
    revocations = 0

    async def revoke_now_and_then(path: str) -> None:
        nonlocal revocations
        calls[path] += 1
        if path.endswith("/gettoken"):
            return
        if sum(calls.values()) % REVOKE_EVERY == 0:
            fake.revoke_tokens()  # the next call with the old token answers 40014
            revocations += 1

    network.after = revoke_now_and_then
    try:
        async with (
            client_over(network) as wecom,
            build_worker(drill.env.client, drill.settings, wecom=wecom),
        ):
            await drill.burst()
            await drill.until_everyone_is_in_a_task(timedelta(minutes=2), 30)
            await drill.confirm_and_settle()
    finally:
        await drill.end()
    assert revocations > 0 and fake.tokens_issued > 1
    counts = drill.check()
    REPORT["the access token revoked mid-burst"] = [
        f"every token revoked {revocations} times; {fake.tokens_issued} tokens issued",
        counts,
        time.monotonic() - began,
    ]


@pytest.mark.timeout(600)
async def test_a_45009_storm(drill: Drill, fake: FakeWeCom) -> None:
    began = time.monotonic()
    network = FaultyNetwork(fake)
    try:
        async with (
            client_over(network) as wecom,
            build_worker(drill.env.client, drill.settings, wecom=wecom),
        ):
            await drill.burst()
            # Every API answers 45009 (rate limited) the next STORM times: the activities
            # back off 60 s, doubling while it lasts.
            fake.fail_next("*", STORM, codes.RATE_LIMITED)
            await drill.until_everyone_is_in_a_task(timedelta(minutes=30), 48)
            await drill.confirm_and_settle()
    finally:
        await drill.end()
    assert not fake.failures["*"]  # the storm was used up
    counts = drill.check()
    REPORT["a 45009 storm"] = [
        f"{STORM} answers of 45009 in a row",
        counts,
        time.monotonic() - began,
    ]


@pytest.mark.timeout(600)
async def test_the_worker_stopped_between_creating_a_task_and_recording_it(
    live_drill: Drill, fake: FakeWeCom
) -> None:
    """WeCom created each staff member's task, and the worker stopped before the answer
    was recorded; the retry on a new worker finds each task with get_groupmsg_list_v2
    instead of creating a second one."""
    began = time.monotonic()
    drill = live_drill
    network = FaultyNetwork(fake)
    hung: list[str] = []
    stopping: list[asyncio.Task[None]] = []

    async with client_over(network) as wecom:
        worker = build_worker(drill.env.client, drill.settings, wecom=wecom)

        async def stop_once_every_task_is_created(path: str) -> None:
            if not path.endswith("/add_msg_template"):
                return
            hung.append(path)
            if len(hung) == len(STAFF):
                # Stopping cancels the activities still waiting below: WeCom's answers
                # are lost with the worker, before anything recorded them.
                stopping.append(asyncio.create_task(worker.shutdown()))
            await asyncio.Event().wait()

        network.after = stop_once_every_task_is_created
        running = asyncio.create_task(worker.run())
        try:
            await drill.burst()

            async def stopped() -> bool:
                return running.done()

            await eventually(stopped, timeout=120)
            # The worker is gone with WeCom's answers; the tasks exist in WeCom.
            assert len(hung) == len(fake.mass_sends) == len(STAFF)
            assert drill.recipients() == {}  # nothing recorded them
            network.after = None
            async with build_worker(drill.env.client, drill.settings, wecom=wecom):
                # The stopped worker never reported its activities: the server retries
                # each after its start-to-close timeout (60 s).
                async def recorded() -> bool:
                    return drill.recipients() == {"awaiting_confirmation": CUSTOMERS}

                await eventually(recorded, timeout=240)
                await drill.until_everyone_is_in_a_task(timedelta(seconds=2), 60)
                await drill.confirm_and_settle()
        finally:
            if not running.done():  # the drill failed before the stop
                await worker.shutdown()
            await drill.end()
    assert fake.calls["externalcontact/get_groupmsg_list_v2"] >= len(STAFF)
    counts = drill.check()
    REPORT["the worker stopped after WeCom created the tasks, before they were recorded"] = [
        f"{len(hung)} creations answered to a worker that stopped",
        counts,
        time.monotonic() - began,
    ]


def _record(rows: dict[str, list[object]]) -> None:
    from bench import report

    table = report.table(
        [
            "drill",
            "fault",
            "tasks created",
            "messages received",
            "received twice",
            "lost",
            "seconds",
        ],
        [
            [name, fault, c["tasks"], c["received"], c["twice"], c["lost"], f"{took:.0f}"]  # type: ignore[index]
            for name, (fault, c, took) in rows.items()
        ],
        right_from=2,
    )
    body = (
        f"{CUSTOMERS:,} customers of {len(STAFF)} staff members, each sent one "
        "`wecom.private` message in one burst, through Temporal and the in-process fake "
        "WeCom: the first three on the time-skipping server (the two-minute outage and the "
        "back-offs at their full length, in virtual time), the stopped worker on the dev "
        "server in real time. Asserted in each: one task per staff "
        "member, every customer in exactly one task, each confirmed message received once "
        "(the fake's state), every message `sent` in the timeline, the delivery ledger and "
        "the mass-send recipients, every sender workflow completed (no task left open).\n\n" + table
    )
    report.record("wecom_drills", "WeCom drills", body, repeat=REPEAT, drill=True)
