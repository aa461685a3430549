"""CustomerJourneyWorkflow on the time-skipping test server, with the real worker."""

from collections.abc import Iterator
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.testing import WorkflowEnvironment

from sopflow.core.state import Delivery
from sopflow.language import Plan
from sopflow.settings import Settings
from tests.helpers import (
    WebhookReceiver,
    describe,
    eventually,
    plan_store,
    read_deliveries,
    send_event,
    terminate,
)
from worker.main import build_activities, build_worker
from workflows.contracts import (
    DELIVER_ACTIVITY,
    DELIVER_BATCH_ACTIVITY,
    DeliveryBatch,
    DeliveryBatchOutcome,
    DeliveryOutcome,
    customer_workflow_id,
)

PING_PLAYBOOK = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: echo}
enrol: {event: contact.added}
stages:
  listening:
    triggers:
      - event: ping
        actions:
          - send: {channel: log, text: pong}
      - event: bye
        goto: done
  done:
    end: true
"""


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    yield server
    server.close()


def deploy(settings: Settings, plan: Plan) -> None:
    plan_store(settings).deploy(plan)


@pytest.mark.parametrize("sandboxed", [False, True], ids=["unsandboxed", "sandboxed"])
async def test_day_n_timers_pass_without_waiting(
    time_skipping_env: WorkflowEnvironment, settings: Settings, welcome_plan: Plan, sandboxed: bool
) -> None:
    # SOPFLOW_WORKFLOW_SANDBOX=false runs the same journey outside the sandbox.
    settings = settings.model_copy(update={"workflow_sandbox": sandboxed})
    deploy(settings, welcome_plan)
    client = time_skipping_env.client
    customer = f"c-silent-{sandboxed}"
    async with build_worker(client, settings):
        await send_event(client, settings, customer, "contact.added", "k1")
        await eventually(lambda: _enrolled(client, customer))
        # 3 days in icebreak, then 14 days in reactivate: skipped, not waited for.
        await time_skipping_env.sleep(timedelta(days=18))
        view = await describe(client, customer)
        await terminate(client, customer)
    [journey] = view.journeys
    assert (journey.stage, journey.status) == ("dormant", "ended")
    assert journey.ended_at is not None
    assert journey.ended_at - journey.enrolled_at == timedelta(days=17)
    texts = [d["text"] for d in read_deliveries(settings)]
    assert len(texts) == 2 and texts[1].startswith("新人礼包")


# The webhook tests run on the dev server, in real time: they send two events back to
# back, and the time-skipping test server may skip the welcome journey's days between them
# while a local activity runs (seen after another test skipped time in the same server).


async def test_a_reply_moves_the_customer_and_a_refused_webhook_is_recorded_failed(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    welcome_plan: Plan,
    receiver: WebhookReceiver,
) -> None:
    receiver.default_status = 404
    settings = settings.model_copy(update={"webhook_url": receiver.url})
    deploy(settings, welcome_plan)
    client = dev_env.client
    async with build_worker(client, settings):
        await send_event(client, settings, "c-reply", "contact.added", "k1")
        await send_event(client, settings, "c-reply", "message.received", "k2")
        view = await eventually(lambda: _with_failed_message(client, "c-reply"))
    [journey] = view.journeys
    assert (journey.stage, journey.status) == ("engaged", "ended")
    failed = [e for e in view.timeline if e.status == "failed"]
    assert [(e.channel, e.error) for e in failed] == [("webhook", "webhook refused with HTTP 404")]
    assert len(receiver.received) == 1  # a 4xx is permanent: not retried


async def test_a_failing_webhook_is_retried_until_delivered_once(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    welcome_plan: Plan,
    receiver: WebhookReceiver,
) -> None:
    receiver.statuses = [503, 503]
    settings = settings.model_copy(update={"webhook_url": receiver.url})
    deploy(settings, welcome_plan)
    client = dev_env.client
    async with build_worker(client, settings):
        await send_event(client, settings, "c-retry", "contact.added", "k1")
        await send_event(client, settings, "c-retry", "message.received", "k2")
        view = await eventually(lambda: _webhook_delivered(client, "c-retry"))
    keys = [r.headers["Idempotency-Key"] for r in receiver.received]
    assert keys == ["c-retry/welcome#1/2"] * 3  # the same key on every attempt
    assert [e.status for e in view.timeline if e.kind == "message"] == ["delivered", "delivered"]


async def test_duplicate_events_have_no_second_effect(
    time_skipping_env: WorkflowEnvironment, settings: Settings, make_plan
) -> None:
    deploy(settings, make_plan(PING_PLAYBOOK))
    client = time_skipping_env.client
    async with build_worker(client, settings):
        await send_event(client, settings, "c-dup", "contact.added", "add")
        for _ in range(3):
            await send_event(client, settings, "c-dup", "ping", "same-ping")
        await send_event(client, settings, "c-dup", "ping", "other-ping")
        await eventually(lambda: _count_messages(client, "c-dup", 2))
    assert len(read_deliveries(settings)) == 2


async def test_state_survives_continue_as_new_and_no_event_is_lost(
    dev_env: WorkflowEnvironment, settings: Settings, make_plan
) -> None:
    # On the dev server: the time-skipping test server (1.40) loses the new run when a
    # continue-as-new follows local activities (queries then time out); the real server
    # does not.
    import asyncio

    from workflows import client as workflow_client

    deploy(settings, make_plan(PING_PLAYBOOK))
    client = dev_env.client
    # Continue-as-new every ~40 history events instead of thousands, to exercise it here.
    original = workflow_client.WorkflowOptions
    workflow_client.WorkflowOptions = lambda **kw: original(continue_as_new_after_events=40, **kw)  # type: ignore[assignment,misc]
    try:
        async with build_worker(client, settings):
            await send_event(client, settings, "c-flood", "contact.added", "add")
            first_run = (
                await client.get_workflow_handle(customer_workflow_id("c-flood")).describe()
            ).run_id
            # A flood of signals, many landing while a continue-as-new is under way.
            await asyncio.gather(
                *(send_event(client, settings, "c-flood", "ping", f"p{i}") for i in range(60))
            )
            await send_event(client, settings, "c-flood", "bye", "bye")
            view = await eventually(lambda: _ended(client, "c-flood"))
            last_run = (
                await client.get_workflow_handle(customer_workflow_id("c-flood")).describe()
            ).run_id
    finally:
        workflow_client.WorkflowOptions = original  # type: ignore[misc]
    assert last_run != first_run
    assert sum(1 for e in view.timeline if e.kind == "message") == 60
    pongs = read_deliveries(settings)
    assert len(pongs) == 60 and len({p["idempotency_key"] for p in pongs}) == 60


async def _stage(client, customer_id: str, stage: str) -> bool:
    view = await describe(client, customer_id)
    return bool(view.journeys) and view.journeys[0].stage == stage


async def _enrolled(client, customer_id: str) -> bool:
    return bool((await describe(client, customer_id)).journeys)


async def _with_failed_message(client, customer_id: str):
    view = await describe(client, customer_id)
    return view if any(e.status == "failed" for e in view.timeline) else None


async def _webhook_delivered(client, customer_id: str):
    view = await describe(client, customer_id)
    done = any(e.channel == "webhook" and e.status == "delivered" for e in view.timeline)
    return view if done else None


async def _count_messages(client, customer_id: str, count: int) -> bool:
    view = await describe(client, customer_id)
    return sum(1 for e in view.timeline if e.status == "delivered") == count


async def _ended(client, customer_id: str):
    view = await describe(client, customer_id)
    journey = view.journeys[0] if view.journeys else None
    delivered = all(e.status == "delivered" for e in view.timeline if e.kind == "message")
    return view if journey and journey.status == "ended" and delivered else None


async def test_a_retry_after_the_remote_received_the_webhook_delivers_nothing_twice(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    welcome_plan: Plan,
    receiver: WebhookReceiver,
) -> None:
    settings = settings.model_copy(update={"webhook_url": receiver.url})
    deploy(settings, welcome_plan)
    real = build_activities(settings)

    @activity.defn(name=DELIVER_ACTIVITY)
    async def deliver_then_lose_the_worker(delivery: Delivery) -> DeliveryOutcome:
        outcome = await real.deliver_message(delivery)
        if delivery.channel == "webhook" and activity.info().attempt == 1:
            # The remote side has the webhook; the worker dies before reporting success.
            raise RuntimeError("worker lost after the webhook was received")
        return outcome

    client = dev_env.client
    replace = {DELIVER_ACTIVITY: deliver_then_lose_the_worker}
    async with build_worker(client, settings, real, replace=replace):
        await send_event(client, settings, "c-lost", "contact.added", "k1")
        await send_event(client, settings, "c-lost", "message.received", "k2")
        view = await eventually(lambda: _webhook_delivered(client, "c-lost"))
        await terminate(client, "c-lost")
    assert [r.headers["Idempotency-Key"] for r in receiver.received] == ["c-lost/welcome#1/2"]
    assert real.ledger.delivered("c-lost/welcome#1/2")
    webhook = next(e for e in view.timeline if e.channel == "webhook")
    assert webhook.status == "delivered"


TASK_PLAYBOOK = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: calls}
enrol: {event: contact.added}
stages:
  calling:
    on_enter:
      - task: {id: call, title: "Call {{ customer.id }}", assignee: "staff:li", due: 1d}
    triggers:
      - event: task.completed
        goto: done
  done: {end: true}
"""


async def test_tasks_and_the_journey_ledger_reach_the_read_model(
    dev_env: WorkflowEnvironment, settings: Settings, make_plan
) -> None:
    # Real time (dev server): the task is due in a day, and nothing here should skip it.
    deploy(settings, make_plan(TASK_PLAYBOOK))
    activities = build_activities(settings)
    client = dev_env.client
    async with build_worker(client, settings, activities):
        await send_event(client, settings, "c-task", "contact.added", "k1")
        [task] = await eventually(lambda: _tasks(activities, "li"))
        assert (task.title, task.status, task.task_id) == (
            "Call c-task",
            "open",
            "c-task/calls#1/1",
        )
        await send_event(
            client, settings, "c-task", "task.completed", "k2", {"task_id": task.task_id}
        )
        await eventually(lambda: _task_done(activities))
        view = await describe(client, "c-task")
        await eventually(lambda: _ledger_complete(activities, "c-task", len(view.timeline)))
        await terminate(client, "c-task")


async def _tasks(activities, assignee: str):
    return activities.ledger.tasks_of(assignee)


async def _task_done(activities) -> bool:
    return [t.status for t in activities.ledger.tasks_of("li")] == ["completed"]


async def _ledger_complete(activities, customer_id: str, expected: int) -> bool:
    from sqlalchemy import select

    from sopflow.store.tables import JourneyEvent

    with activities.ledger.database.session() as session:
        query = select(JourneyEvent.seq).where(JourneyEvent.customer_id == customer_id)
        seqs = list(session.scalars(query.order_by(JourneyEvent.seq)))
    return seqs == list(range(1, expected + 1))


THREE_SENDS = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: trio}
enrol: {event: contact.added}
stages:
  greeting:
    on_enter:
      - send: {channel: log, text: one}
      - send: {channel: wecom.private, text: two}
      - send: {channel: log, text: three}
    end: true
"""


async def test_a_steps_local_messages_go_out_in_one_batch_and_a_retry_skips_what_got_through(
    dev_env: WorkflowEnvironment, settings: Settings, make_plan
) -> None:
    deploy(settings, make_plan(THREE_SENDS))
    real = build_activities(settings)
    calls: list[list[str]] = []

    @activity.defn(name=DELIVER_BATCH_ACTIVITY)
    async def lose_the_worker_after_the_first(batch: DeliveryBatch) -> DeliveryBatchOutcome:
        calls.append([d.idempotency_key for d in batch.deliveries])
        if len(calls) == 1:
            # The first message reached its channel and the ledger; then the worker dies.
            await real.deliver_message(batch.deliveries[0])
            raise RuntimeError("worker lost mid-batch")
        return await real.deliver_messages(batch)

    client = dev_env.client
    replace = {DELIVER_BATCH_ACTIVITY: lose_the_worker_after_the_first}
    async with build_worker(client, settings, real, replace=replace):
        await send_event(client, settings, "c-trio", "contact.added", "k1")
        view = await eventually(lambda: _ended(client, "c-trio"))
    keys = [f"c-trio/trio#1/{n}" for n in (1, 2, 3)]
    assert calls == [keys, keys]  # one batch for the step, retried whole
    lines = read_deliveries(settings)
    assert [line["text"] for line in lines] == ["one", "two", "three"]  # each once, in order
    assert real.ledger.delivered_keys(keys) == set(keys)
    assert [e.status for e in view.timeline if e.kind == "message"] == ["delivered"] * 3


async def test_a_worker_holds_only_its_setting_of_workflow_tasks(
    time_skipping_env: WorkflowEnvironment, settings: Settings
) -> None:
    """SOPFLOW_WORKER_WORKFLOW_TASKS bounds the workflow tasks a worker takes from the
    server: the rest wait there, not inside the worker where their timeout runs."""
    settings = settings.model_copy(update={"worker_workflow_tasks": 3})
    worker = build_worker(time_skipping_env.client, settings)
    assert worker.config()["max_concurrent_workflow_tasks"] == 3
    default = build_worker(time_skipping_env.client, Settings(home=settings.home))
    assert default.config()["max_concurrent_workflow_tasks"] == 10
