"""What a customer's events cost in history, on the time-skipping test server with the real
worker: a signal that leaves the earliest due time as it was keeps the pending timer, and a
step's ledger write goes out with its local messages (one marker for both)."""

import json
from collections import Counter
from datetime import timedelta

from sqlalchemy import select
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from sopflow.settings import Settings
from sopflow.store.tables import JourneyEvent
from tests.helpers import describe, eventually, plan_store, read_deliveries, send_event, terminate
from worker.activities import SopflowActivities
from worker.main import build_activities, build_worker
from workflows.contracts import (
    DELIVER_BATCH_ACTIVITY,
    DUE_TIMER_PATCH,
    LEDGER_WITH_DELIVERIES_PATCH,
    RECORD_TIMELINE_ACTIVITY,
    CustomerView,
    RecordTimelineInput,
    customer_workflow_id,
)
from workflows.customer_workflow import CustomerJourneyWorkflow
from workflows.sandbox import workflow_runner

# A ping sends a message and leaves the stage's 3-day countdown where it was.
COUNTDOWN = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: countdown}
enrol: {event: contact.added}
stages:
  waiting:
    triggers:
      - event: ping
        actions: [{send: {channel: log, text: pong}}]
      - after: 3d
        goto: done
  done:
    end: true
"""

# A ping is activity: each one moves the inactivity due time a day on.
INACTIVITY = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: quiet}
enrol: {event: contact.added}
stages:
  talking:
    triggers:
      - event: ping
        actions: [{send: {channel: log, text: pong}}]
      - inactive_for: 1d
        goto: gone
  gone:
    end: true
"""

TIMER_EVENTS = (
    EventType.EVENT_TYPE_TIMER_STARTED,
    EventType.EVENT_TYPE_TIMER_CANCELED,
    EventType.EVENT_TYPE_TIMER_FIRED,
)


def timer_events(history: WorkflowHistory) -> Counter[str]:
    return Counter(
        EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")
        for e in history.events
        if e.event_type in TIMER_EVENTS
    )


def ledger_seqs(activities: SopflowActivities, customer: str) -> list[int]:
    with activities.ledger.database.session() as session:
        query = select(JourneyEvent.seq).where(JourneyEvent.customer_id == customer)
        return list(session.scalars(query.order_by(JourneyEvent.seq)))


def markers(history: WorkflowHistory, name: str) -> list[dict[str, object]]:
    return [
        {k: v for k, v in e.marker_recorded_event_attributes.details.items()}
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == name
    ]


def patch_ids(history: WorkflowHistory) -> set[str]:
    return {
        json.loads(m["patch-data"].payloads[0].data)["id"]  # type: ignore[attr-defined]
        for m in markers(history, "core_patch")
    }


async def replays(history: WorkflowHistory) -> bool:
    replayer = Replayer(
        workflows=[CustomerJourneyWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(sandboxed=True),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    return result.replay_failure is None


async def ping_hourly(
    env: WorkflowEnvironment, settings: Settings, customer: str, pings: int
) -> None:
    """Enrol the customer, then ping once an hour, each ping delivered before the next."""
    # Events occur at the server's (skipped) time, as they would at the real one.
    now = await env.get_current_time()
    await send_event(env.client, settings, customer, "contact.added", "add", occurred_at=now)
    await eventually(lambda: _enrolled(env, customer))
    for n in range(1, pings + 1):
        await env.sleep(timedelta(hours=1))
        now = await env.get_current_time()
        await send_event(env.client, settings, customer, "ping", f"ping-{n}", occurred_at=now)
        await eventually(lambda n=n: _delivered(settings, n))  # type: ignore[misc]


async def _delivered(settings: Settings, count: int) -> bool:
    return len(read_deliveries(settings)) == count


async def _ended(env: WorkflowEnvironment, customer: str) -> CustomerView | None:
    view = await describe(env.client, customer)
    return view if all(j.status == "ended" for j in view.journeys) else None


async def _enrolled(env: WorkflowEnvironment, customer: str) -> bool:
    return bool((await describe(env.client, customer)).journeys)


async def test_a_signal_before_an_unchanged_due_time_keeps_the_pending_timer(
    time_skipping_env: WorkflowEnvironment, settings: Settings, make_plan
) -> None:
    env, customer = time_skipping_env, "timer-kept"
    plan_store(settings).deploy(make_plan(COUNTDOWN))
    async with build_worker(env.client, settings):
        await ping_hourly(env, settings, customer, pings=3)
        handle = env.client.get_workflow_handle(customer_workflow_id(customer))
        before_due = await handle.fetch_history()
        await env.sleep(timedelta(days=3, hours=1))
        view = await eventually(lambda: _ended(env, customer))
        after_due = await handle.fetch_history()
        await terminate(env.client, customer)
    # Three pings, one countdown: the timer started on enrolment is the one that fires
    # (before the patch, each ping cancelled it and started another: 4 started, 3 cancelled).
    assert timer_events(before_due) == {"TIMER_STARTED": 1}
    assert timer_events(after_due) == {"TIMER_STARTED": 1, "TIMER_FIRED": 1}
    [journey] = view.journeys
    assert (journey.stage, journey.status) == ("done", "ended")
    assert journey.ended_at is not None
    assert journey.ended_at - journey.enrolled_at == timedelta(days=3)
    assert DUE_TIMER_PATCH in patch_ids(after_due)
    assert await replays(after_due)


async def test_a_signal_that_moves_the_due_time_replaces_the_timer(
    time_skipping_env: WorkflowEnvironment, settings: Settings, make_plan
) -> None:
    env, customer = time_skipping_env, "timer-moved"
    plan_store(settings).deploy(make_plan(INACTIVITY))
    async with build_worker(env.client, settings):
        await ping_hourly(env, settings, customer, pings=2)
        await env.sleep(timedelta(days=1, hours=1))
        view = await eventually(lambda: _ended(env, customer))
        history = await env.client.get_workflow_handle(
            customer_workflow_id(customer)
        ).fetch_history()
        await terminate(env.client, customer)
    # Each ping moves the inactivity due time: its timer is replaced, and only the last fires.
    assert timer_events(history) == {"TIMER_STARTED": 3, "TIMER_CANCELED": 2, "TIMER_FIRED": 1}
    [journey] = view.journeys
    assert (journey.stage, journey.status) == ("gone", "ended")
    assert journey.ended_at is not None
    # A day after the last ping (sent two hours after enrolment), not after the first.
    quiet_for = journey.ended_at - journey.enrolled_at
    assert timedelta(days=1, hours=2) <= quiet_for < timedelta(days=1, hours=2, minutes=1)
    assert await replays(history)


async def test_a_steps_ledger_write_goes_out_with_its_local_messages(
    time_skipping_env: WorkflowEnvironment, settings: Settings, make_plan
) -> None:
    env, customer = time_skipping_env, "ledger-with-messages"
    plan_store(settings).deploy(make_plan(COUNTDOWN))
    activities = build_activities(settings)
    async with build_worker(env.client, settings, activities):
        await ping_hourly(env, settings, customer, pings=3)
        view = await describe(env.client, customer)
        handle = env.client.get_workflow_handle(customer_workflow_id(customer))
        history = await handle.fetch_history()
        await terminate(env.client, customer)
    # Each ping writes its timeline entries and sends its message: one local activity (before
    # the patch, a ledger write and a delivery batch, two markers). The enrolment loads the
    # plan first (a third marker of its own).
    assert LEDGER_WITH_DELIVERIES_PATCH in patch_ids(history)
    assert len(markers(history, "core_local_activity")) == 1 + 1 + 3
    # The ledger has every entry of the timeline, once.
    assert ledger_seqs(activities, customer) == [e.seq for e in view.timeline]
    assert [d["text"] for d in read_deliveries(settings)] == ["pong"] * 3
    assert await replays(history)


async def test_a_failed_ledger_write_in_a_batch_holds_no_message_back(
    time_skipping_env: WorkflowEnvironment, settings: Settings, make_plan
) -> None:
    env, customer = time_skipping_env, "ledger-down-for-batches"
    plan_store(settings).deploy(make_plan(COUNTDOWN))
    activities = build_activities(settings)
    record = activities._record
    writes: list[str] = []

    async def down_for_batches(request: RecordTimelineInput) -> int:
        """The journey ledger refuses every write made from a delivery batch."""
        writes.append(activity.info().activity_type)
        if writes[-1] == DELIVER_BATCH_ACTIVITY:
            raise RuntimeError("journey ledger unavailable")
        return await record(request)

    activities._record = down_for_batches  # type: ignore[method-assign]
    async with build_worker(env.client, settings, activities):
        await ping_hourly(env, settings, customer, pings=1)
        view = await describe(env.client, customer)

        async def ledger_complete() -> bool:
            return ledger_seqs(activities, customer) == [e.seq for e in view.timeline]

        await eventually(ledger_complete)
        await terminate(env.client, customer)
    # The message went out with the batch (a failure there would have retried the batch
    # for a day); the ledger loop wrote the entries the batch could not.
    assert [d["text"] for d in read_deliveries(settings)] == ["pong"]
    assert writes == [RECORD_TIMELINE_ACTIVITY, DELIVER_BATCH_ACTIVITY, RECORD_TIMELINE_ACTIVITY]
