"""The customer workflow against hostile inputs, on the real dev server (issue 11).

No event wedges or ends a customer: poison events are handled or quarantined, search
attributes stay under the server's limits, a failing channel delays only its own lane,
and a history recorded with this code replays.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from sopflow.core import actions
from sopflow.language import Plan, compile_paths
from sopflow.settings import Settings
from tests.conftest import REPO
from tests.helpers import (
    WebhookReceiver,
    describe,
    eventually,
    failed_tasks,
    plan_store,
    read_deliveries,
    runs,
    send_event,
)
from tests.helpers import terminate as terminate_customers
from worker.main import build_activities, build_worker
from workflows import client as workflow_client
from workflows.contracts import TAGS_SEARCH_ATTRIBUTE, customer_workflow_id
from workflows.customer_workflow import CustomerJourneyWorkflow
from workflows.sandbox import workflow_runner
from workflows.visibility import MAX_LIST_BYTES, encoded_size

TAGS = SearchAttributeKey.for_keyword_list(TAGS_SEARCH_ATTRIBUTE)

PING = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: echo}
enrol: {event: contact.added}
stages:
  listening:
    triggers:
      - event: ping
        actions: [{send: {channel: log, text: pong}}]
      - event: boom
        actions: [{send: {channel: log, text: boom}}]
"""


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    yield server
    server.close()


@contextlib.contextmanager
def continue_as_new_after(events: int, force: int = 10_000) -> Iterator[None]:
    """New customers' workflows continue as new after this many history events."""
    original = workflow_client.WorkflowOptions

    def options(**kw: Any) -> Any:
        return original(
            continue_as_new_after_events=events, force_continue_as_new_after_events=force, **kw
        )

    workflow_client.WorkflowOptions = options  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        workflow_client.WorkflowOptions = original  # type: ignore[misc]


async def test_poison_events_never_wedge_a_customer(
    dev_env: WorkflowEnvironment, settings: Settings, welcome_plan: Plan
) -> None:
    """Finding 2, sent straight to the workflow (past the API's checks): a first event (an
    order) dated 0001-01-01, amounts of "inf", NaN and 10**400, attributes of 1.5 MB each;
    then a reply moves the customer on, across continues-as-new, with no failed task."""
    # With the shipped taxonomy and tiers: the tier rules' date arithmetic is where a
    # year-one order overflowed.
    profile = compile_paths([REPO / "playbooks"]).profile
    plan_store(settings).deploy_all([welcome_plan], profile)
    client, customer = dev_env.client, "poison-1"
    year_one = datetime(1, 1, 1, tzinfo=UTC)
    poison = [
        ("order.paid", {"amount": 10, "timezone": "America/New_York"}, year_one),
        ("contact.added", {}, None),
        ("order.paid", {"amount": "inf"}, None),
        ("order.paid", {"amount": float("nan")}, None),
        ("order.paid", {"amount": 10**400}, None),
        ("profile.updated", {"attributes": {"blob": "x" * 1_500_000}}, None),
        ("profile.updated", {"attributes": {"blob2": "y" * 1_500_000}}, None),
    ]
    with continue_as_new_after(30):
        async with build_worker(client, settings):
            for index, (kind, data, at) in enumerate(poison):
                await send_event(client, settings, customer, kind, f"p{index}", data, at)
            for index in range(10):
                await send_event(client, settings, customer, "content.read", f"r{index}")
            await send_event(client, settings, customer, "message.received", "reply")

            async def engaged() -> Any:
                view = await describe(client, customer)
                stages = [j.stage for j in view.journeys]
                return view if stages == ["engaged"] else None

            view = await eventually(engaged, timeout=60)
            failures = await failed_tasks(client, customer)
            statuses = [status for _, status in await runs(client, customer)]
            await terminate_customers(client, customer)
    assert failures == []
    assert len(statuses) > 1  # continued as new, carrying the state
    assert WorkflowExecutionStatus.FAILED not in statuses
    assert WorkflowExecutionStatus.TERMINATED not in statuses[1:]  # only our clean-up
    assert (view.profile.order_count, view.profile.total_spent) == (4, 10.0)
    refused = {e.detail.get("attribute") for e in view.timeline if e.kind == "attribute_rejected"}
    assert refused == {"blob", "blob2"}


@pytest.fixture
def failing_send(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fault in the core, inside the worker (the core passes through the sandbox): a send
    of "boom" raises."""
    real = actions.send

    def send(step: Any, journey: Any, plan: Any, action: Any, extra: Any = None) -> None:
        if action.text == "boom":
            raise ZeroDivisionError("division by zero")
        real(step, journey, plan, action, extra)

    monkeypatch.setattr(actions, "send", send)


@pytest.mark.usefixtures("failing_send")
async def test_an_event_the_core_cannot_process_is_quarantined_and_the_next_one_acts(
    dev_env: WorkflowEnvironment, settings: Settings, make_plan
) -> None:
    plan_store(settings).deploy(make_plan(PING))
    client, customer = dev_env.client, "quarantine-1"
    async with build_worker(client, settings):
        await send_event(client, settings, customer, "contact.added", "add")
        await send_event(client, settings, customer, "boom", "boom-1")
        await send_event(client, settings, customer, "ping", "ping-1")

        async def answered() -> Any:
            view = await describe(client, customer)
            delivered = [e for e in view.timeline if e.status == "delivered"]
            return view if delivered else None

        view = await eventually(answered, timeout=30)
        failures = await failed_tasks(client, customer)
        await terminate_customers(client, customer)
    assert failures == []
    assert view.quarantined == 1
    [entry] = [e for e in view.timeline if e.kind == "quarantined"]
    assert entry.error == "ZeroDivisionError: division by zero"
    assert entry.detail == {"input": "event", "type": "boom", "idempotency_key": "boom-1"}
    assert [d["text"] for d in read_deliveries(settings)] == ["pong"]


async def test_long_tags_never_fail_the_search_attribute_upsert(
    dev_env: WorkflowEnvironment, settings: Settings, welcome_plan: Plan
) -> None:
    """Finding 1: forty tags of a hundred characters, over the server's 2,048 bytes as one
    list: the customer's workflow keeps running with its whole state, the published list
    is cut to fit."""
    settings = settings.model_copy(update={"publish_search_attributes": True})
    plan_store(settings).deploy(welcome_plan)
    client, customer = dev_env.client, f"tags-{settings.temporal_task_queue[-8:]}"
    async with build_worker(client, settings):
        await send_event(client, settings, customer, "contact.added", "add")
        for index in range(40):
            tag = f"interest:{index:02d}-" + "t" * 88
            await send_event(client, settings, customer, "tag.added", f"t{index}", {"tag": tag})
        await send_event(client, settings, customer, "message.received", "reply")

        async def settled() -> Any:
            view = await describe(client, customer)
            done = len(view.profile.tags) == 40 and view.journeys[0].stage == "engaged"
            return view if done else None

        view = await eventually(settled, timeout=60)
        handle = client.get_workflow_handle(customer_workflow_id(customer))

        async def published() -> list[str] | None:
            listed = (await handle.describe()).typed_search_attributes.get(TAGS)
            return list(listed) if listed else None

        tags = await eventually(published)
        failures = await failed_tasks(client, customer)
        description = await handle.describe()
        await terminate_customers(client, customer)
    assert failures == []
    assert description.status == WorkflowExecutionStatus.RUNNING
    assert encoded_size(tags) <= MAX_LIST_BYTES
    assert 0 < len(tags) < 40 and tags == sorted(view.profile.tags)[: len(tags)]


LANES = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: lanes}
enrol: {event: contact.added}
stages:
  greeting:
    on_enter:
      - send: {channel: webhook, text: "to the CRM, first"}
      - send: {channel: webhook, text: "to the CRM, second"}
      - send: {channel: wecom.private, text: "hello"}
      - task: {id: call, title: "Call {{ customer.id }}", assignee: "staff:li", due: 1d}
"""


async def test_a_failing_webhook_delays_only_its_own_lane_and_the_history_replays(
    dev_env: WorkflowEnvironment, settings: Settings, make_plan, receiver: WebhookReceiver
) -> None:
    """Finding 6: while the webhook answers 503 (retried for up to a day), the WeCom
    message and the staff task of the same step go out; the webhooks keep their order."""
    down = True
    receiver.answer = lambda: 503 if down else 200
    settings = settings.model_copy(update={"webhook_url": receiver.url})
    plan_store(settings).deploy(make_plan(LANES))
    activities = build_activities(settings)
    client, customer = dev_env.client, "lanes-1"
    async with build_worker(client, settings, activities):
        await send_event(client, settings, customer, "contact.added", "add")

        async def local_ones_out() -> bool:
            texts = [d["text"] for d in read_deliveries(settings)]
            tasks = activities.ledger.tasks_of("li")
            return texts == ["hello"] and bool(tasks) and bool(receiver.received)

        await eventually(local_ones_out, timeout=30)
        assert receiver.received and all(r.status == 503 for r in receiver.received)
        keys = {r.headers["Idempotency-Key"] for r in receiver.received}
        assert keys == {f"{customer}/lanes#1/1"}  # the second waits behind the first
        down = False

        async def webhooks_out() -> list[str] | None:
            done = [r.headers["Idempotency-Key"] for r in receiver.received if r.status == 200]
            return done if len(done) == 2 else None

        delivered = await eventually(webhooks_out, timeout=60)
        handle = client.get_workflow_handle(customer_workflow_id(customer))
        history = await handle.fetch_history()
        await terminate_customers(client, customer)
    assert delivered == [f"{customer}/lanes#1/1", f"{customer}/lanes#1/2"]
    patches = [
        e
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]
    assert patches, "the per-channel patch is recorded"
    replayer = Replayer(
        workflows=[CustomerJourneyWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(sandboxed=True),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None


CHATTY = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: chatty}
enrol: {event: contact.added}
stages:
  talking:
    triggers:
      - event: ping
        actions:
          - send: {channel: webhook, text: "ping {{ event.data.n }}"}
          - send: {channel: log, text: "pong {{ event.data.n }}"}
"""


async def test_a_continue_as_new_is_not_held_by_a_failing_webhook(
    dev_env: WorkflowEnvironment, settings: Settings, make_plan, receiver: WebhookReceiver
) -> None:
    """Events go on while a continue-as-new waits for a failing webhook; past the forced
    bound the run continues anyway and carries the undelivered webhooks, each delivered
    once, in order, when the endpoint is back."""
    down = True
    receiver.answer = lambda: 503 if down else 200
    settings = settings.model_copy(update={"webhook_url": receiver.url})
    plan_store(settings).deploy(make_plan(CHATTY))
    client, customer, count = dev_env.client, "chatty-1", 25
    with continue_as_new_after(20, force=40):
        async with build_worker(client, settings):
            await send_event(client, settings, customer, "contact.added", "add")
            for n in range(count):
                await send_event(client, settings, customer, "ping", f"p{n}", {"n": n})

            async def all_pongs() -> bool:
                return len(read_deliveries(settings)) == count

            await eventually(all_pongs, timeout=60)  # not held by the webhook lane

            async def continued() -> list[Any] | None:
                listed = await runs(client, customer)
                return listed if len(listed) > 1 else None

            # A continue-as-new happened while the webhook was failing.
            ran = await eventually(continued, timeout=30)
            down = False

            async def all_pings() -> list[str] | None:
                done = [r.headers["Idempotency-Key"] for r in receiver.received if r.status == 200]
                return done if len(set(done)) == count else None

            delivered = await eventually(all_pings, timeout=120)
            failures = await failed_tasks(client, customer)
            await terminate_customers(client, customer)
    assert failures == []
    assert len(ran) > 1
    keys = [f"{customer}/chatty#1/{2 * n + 1}" for n in range(count)]
    assert sorted(set(delivered), key=keys.index) == keys
    assert [k for k in delivered if k in keys] == sorted(delivered, key=keys.index)  # in order


def test_the_plans_carried_across_continue_as_new_are_bounded_pinned_first(make_plan) -> None:
    from workflows.contracts import CARRIED_PLANS_MAX_BYTES

    many = {}
    for index in range(120):
        stages = "\n".join(
            f"  s{n}:\n    on_enter: [{{send: {{channel: log, text: '{'x' * 400} {n}'}}}}]"
            for n in range(20)
        )
        text = (
            f"apiVersion: sopflow/v1\nkind: Playbook\nmetadata: {{name: p{index}}}\n"
            f"enrol: {{event: contact.added}}\nstages:\n{stages}\n"
        )
        plan = make_plan(text)
        many[plan.version] = plan
    pinned = {sorted(many)[-1]}
    kept = CustomerJourneyWorkflow._plans_that_fit(many, pinned)
    assert sum(len(p.model_dump_json()) for p in many.values()) > CARRIED_PLANS_MAX_BYTES
    assert sum(len(p.model_dump_json()) for p in kept.values()) <= CARRIED_PLANS_MAX_BYTES
    assert pinned <= set(kept) and 0 < len(kept) < len(many)


def test_a_customers_events_go_in_signals_of_bounded_size_in_order() -> None:
    from sopflow.core.state import CustomerEvent
    from workflows.client import MAX_SIGNAL_BYTES, _chunks

    events = [
        CustomerEvent(
            customer_id="c1",
            type="profile.updated",
            occurred_at=datetime(2026, 11, 23, tzinfo=UTC),
            data={"attributes": {"note": "x" * 30_000}},
            idempotency_key=f"k{i}",
        )
        for i in range(40)
    ]
    chunks = _chunks(events)
    assert len(chunks) > 1
    assert [e for chunk in chunks for e in chunk] == events
    assert all(sum(len(e.model_dump_json()) for e in c) <= MAX_SIGNAL_BYTES for c in chunks)
