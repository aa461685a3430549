"""Audiences and bulk enrolment on the real dev server: a batch pages through an
audience of the read model and enrols each member once, however often it runs and
whatever happens to the worker meanwhile."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from sopflow.core.state import TimelineEntry
from sopflow.language import compile_playbook
from sopflow.language.segments import SegmentPlan
from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.segments import (
    load_segment,
    preview_segment,
    project_customer,
    save_segments,
)
from sopflow.store.tables import JourneyEvent
from tests.helpers import CONDITION_LIMIT_SECONDS, eventually, plan_store, terminate
from worker.main import build_worker
from workflows.enrolment_client import BatchExists, batch_progress, cancel_batch, start_batch
from workflows.enrolment_contracts import (
    BATCH_WORKFLOW_NAME,
    BatchInput,
    BatchProgress,
    batch_workflow_id,
)
from workflows.enrolment_workflow import EnrolmentBatchWorkflow
from workflows.sandbox import workflow_runner

PLAYBOOK = """
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: member_day}
enrol: {}
stages:
  invited:
    on_enter:
      - send: {channel: log, text: "Member day: 20% off today."}
    triggers:
      - event: order.paid
        goto: bought
  bought:
    end: true
"""
DRY = "customer.tags.exists(t, t == 'skin_type:dry')"
# Customers signalled per second by the test batches: slow enough to stop a worker
# mid-batch, fast enough for a test.
RATE = 150.0
# A batch of 1,000 customers on a shared 2-core machine takes a few minutes at worst.
BATCH_LIMIT = CONDITION_LIMIT_SECONDS * 5


def seed(database: Database, prefix: str, dry: int, oily: int) -> list[str]:
    """Customers in the read model, as their ledgers would project them."""
    now = datetime.now(UTC)
    members = [f"{prefix}-{i:05d}" for i in range(dry)]
    others = [f"{prefix}-x{i:05d}" for i in range(oily)]
    with database.session() as session, session.begin():
        for customer, tag in [(c, "skin_type:dry") for c in members] + [
            (c, "skin_type:oily") for c in others
        ]:
            entry = TimelineEntry(at=now, kind="tag_added", seq=1, detail={"tag": tag})
            project_customer(session, customer, [entry])
    return members


def enrolments(database: Database, playbook: str) -> tuple[int, int]:
    """(enrolled entries of the playbook, customers enrolled more than once)."""
    kind = JourneyEvent.kind == "enrolled"
    of = JourneyEvent.playbook == playbook
    with database.session() as session:
        total = session.scalar(select(func.count()).select_from(JourneyEvent).where(kind, of))
        twice = session.scalar(
            select(func.count()).select_from(
                select(JourneyEvent.customer_id)
                .where(kind, of)
                .group_by(JourneyEvent.customer_id)
                .having(func.count() > 1)
                .subquery()
            )
        )
    return total or 0, twice or 0


@pytest.fixture
def stack(settings: Settings) -> Iterator[tuple[Settings, Database]]:
    settings = settings.model_copy(update={"enrolment_page_size": 200})
    plan_store(settings).deploy(compile_playbook(PLAYBOOK))
    database = Database.from_settings(settings)
    save_segments(database, [SegmentPlan(name="dry_skin", when=DRY)], "tests")
    yield settings, database


def test_an_audience_previews_its_members(stack: tuple[Settings, Database]) -> None:
    _, database = stack
    members = seed(database, "p", dry=30, oily=12)
    segment = load_segment(database, "dry_skin")
    assert segment is not None
    preview = preview_segment(database, segment, sample_size=5)
    assert (preview.count, preview.scanned, preview.sample) == (30, 42, members[:5])


@pytest.mark.timeout(360)  # 1,000 customers' workflows: about 90 s on an idle machine
async def test_an_audience_enrolled_twice_is_enrolled_once(
    dev_env: WorkflowEnvironment, stack: tuple[Settings, Database]
) -> None:
    settings, database = stack
    client = dev_env.client
    members = seed(database, f"e{uuid.uuid4().hex[:6]}", dry=1000, oily=50)
    try:
        async with build_worker(client, settings):
            first = await start_batch(
                client, settings, "dry_skin", "member_day", rate_per_second=RATE
            )

            async def finished(batch_id: str) -> object:
                progress = await batch_progress(client, batch_id)
                return progress if progress and progress.status != "running" else None

            done = await eventually(lambda: finished(first.batch_id), BATCH_LIMIT)
            assert (done.status, done.matched, done.done, done.skipped) == (
                "completed",
                1000,
                1000,
                0,
            )
            assert done.scanned == 1050
            await eventually(lambda: _count_is(database, 1000), BATCH_LIMIT)

            # The same batch again is refused; a new batch skips everyone enrolled.
            with pytest.raises(BatchExists):
                await start_batch(client, settings, "dry_skin", "member_day", first.batch_id)
            second = await start_batch(client, settings, "dry_skin", "member_day")
            again = await eventually(lambda: finished(second.batch_id), BATCH_LIMIT)
            assert (again.status, again.matched, again.done, again.skipped) == (
                "completed",
                1000,
                0,
                1000,
            )
        assert enrolments(database, "member_day") == (1000, 0)
    finally:
        await terminate(client, *members)


async def _count_is(database: Database, expected: int) -> bool:
    total, twice = enrolments(database, "member_day")
    assert total <= expected and twice == 0, (total, twice)
    return total == expected


@pytest.mark.timeout(360)  # 1,000 customers' workflows: about 90 s on an idle machine
async def test_a_batch_resumes_after_its_worker_dies_without_duplicates(
    dev_env: WorkflowEnvironment, stack: tuple[Settings, Database]
) -> None:
    settings, database = stack
    client = dev_env.client
    members = seed(database, f"r{uuid.uuid4().hex[:6]}", dry=1000, oily=0)
    try:
        async with build_worker(client, settings):
            batch = await start_batch(
                client, settings, "dry_skin", "member_day", rate_per_second=RATE
            )

            async def partway() -> bool:
                progress = await batch_progress(client, batch.batch_id)
                return progress is not None and 200 <= progress.done < 1000

            await eventually(partway, BATCH_LIMIT)
        # The worker is gone mid-batch; another one takes over from the history.
        async with build_worker(client, settings):

            async def finished() -> object:
                progress = await batch_progress(client, batch.batch_id)
                return progress if progress and progress.status != "running" else None

            done = await eventually(finished, BATCH_LIMIT)
            assert done.status == "completed"
            assert done.done + done.skipped == 1000
            await eventually(lambda: _count_is(database, 1000), BATCH_LIMIT)
        assert enrolments(database, "member_day") == (1000, 0)
    finally:
        await terminate(client, *members)


async def test_a_batch_can_be_cancelled(
    dev_env: WorkflowEnvironment, stack: tuple[Settings, Database]
) -> None:
    settings, database = stack
    client = dev_env.client
    members = seed(database, f"c{uuid.uuid4().hex[:6]}", dry=600, oily=0)
    try:
        async with build_worker(client, settings):
            batch = await start_batch(
                client, settings, "dry_skin", "member_day", rate_per_second=10
            )

            async def started() -> bool:
                progress = await batch_progress(client, batch.batch_id)
                return progress is not None and progress.done > 0

            await eventually(started)
            assert await cancel_batch(client, batch.batch_id)

            async def finished() -> object:
                progress = await batch_progress(client, batch.batch_id)
                return progress if progress and progress.status != "running" else None

            done = await eventually(finished)
            assert done.status == "cancelled"
            assert 0 < done.done < 600
    finally:
        await terminate(client, *members)


async def test_the_command_line_previews_an_audience_and_follows_its_batch(
    dev_env: WorkflowEnvironment,
    stack: tuple[Settings, Database],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    settings, database = stack
    client = dev_env.client
    members = seed(database, f"cli{uuid.uuid4().hex[:6]}", dry=30, oily=5)
    for name, value in {
        "SOPFLOW_HOME": str(settings.home),
        "SOPFLOW_TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "SOPFLOW_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
    }.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    try:
        preview = runner.invoke(app, ["audiences", "preview", "dry_skin", "--sample", "2"])
        assert preview.exit_code == 0, preview.output
        assert preview.output.splitlines() == [
            "30 customers of 35 in audience dry_skin",
            *members[:2],
        ]
        async with build_worker(client, settings):
            # The command runs its own event loop: in a thread, beside the worker's.
            enrolled = await asyncio.to_thread(
                runner.invoke, app, ["enrol", "--audience", "dry_skin", "member_day"]
            )
        assert enrolled.exit_code == 0, enrolled.output
        assert enrolled.output.splitlines()[-1].endswith(
            "completed: 30 customers in audience dry_skin, 30 enrolled in member_day, "
            "0 skipped, 0 failed"
        )
        missing = await asyncio.to_thread(
            runner.invoke, app, ["enrol", "--cancel", "no-such-batch", "member_day"]
        )
        assert missing.exit_code == 1 and "no enrolment batch" in missing.output
    finally:
        await terminate(client, *members)


async def test_a_long_batch_continues_as_new_and_its_histories_replay(
    dev_env: WorkflowEnvironment, stack: tuple[Settings, Database]
) -> None:
    settings, database = stack
    settings = settings.model_copy(update={"enrolment_page_size": 20})
    client = dev_env.client
    members = seed(database, f"l{uuid.uuid4().hex[:6]}", dry=90, oily=10)
    batch_id = f"long-{uuid.uuid4().hex[:6]}"
    try:
        async with build_worker(client, settings):
            # Two pages a run: five pages of 20, and a sixth that finds the end, in three.
            await client.start_workflow(
                BATCH_WORKFLOW_NAME,
                BatchInput(
                    progress=BatchProgress(
                        batch_id=batch_id, audience="dry_skin", playbook="member_day"
                    ),
                    rate_per_second=1000,
                    page_size=20,
                    pages_per_run=2,
                ),
                id=batch_workflow_id(batch_id),
                task_queue=settings.temporal_task_queue,
            )

            async def finished() -> object:
                progress = await batch_progress(client, batch_id)
                return progress if progress and progress.status != "running" else None

            done = await eventually(finished, BATCH_LIMIT)
            assert (done.status, done.pages, done.scanned, done.matched, done.done) == (
                "completed",
                6,
                100,
                90,
                90,
            )
            await eventually(lambda: _count_is(database, 90), BATCH_LIMIT)
        query = f"WorkflowId = '{batch_workflow_id(batch_id)}'"
        histories = [
            await client.get_workflow_handle(w.id, run_id=w.run_id).fetch_history()
            async for w in client.list_workflows(query)
        ]
        assert len(histories) == 3
        replayer = Replayer(
            workflows=[EnrolmentBatchWorkflow],
            data_converter=pydantic_data_converter,
            workflow_runner=workflow_runner(True),
        )
        for history in histories:
            await replayer.replay_workflow(history)
    finally:
        await terminate(client, *members)


def test_a_customer_refuses_a_repeated_enrolment_of_the_same_batch() -> None:
    """What the batch's keys and the playbook's rules leave to the customer's own core:
    the same batch's event again (a chunk repeated after a crash) has no effect even when
    the playbook allows re-entry; another batch re-enrols as the re-entry rule says."""
    from sopflow.core.journey import apply_event
    from sopflow.core.state import CustomerEvent, CustomerState
    from sopflow.core.step import Catalog
    from sopflow.language import compile_playbook
    from workflows.enrolment_contracts import ENROLMENT_REQUESTED, enrolment_key

    plan = compile_playbook(
        PLAYBOOK.replace("enrol: {}", "enrol: {reentry: always}").replace(
            "goto: bought", "goto: bought\n      - after: 1h\n        goto: bought"
        )
    )
    plans = Catalog(plans={plan.version: plan}, deployed={plan.name: plan.version})
    now = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)

    def requested(batch: str, at: datetime) -> CustomerEvent:
        return CustomerEvent(
            customer_id="c1",
            type=ENROLMENT_REQUESTED,
            occurred_at=at,
            data={"playbook": plan.name, "batch": batch},
            idempotency_key=enrolment_key(batch, "c1"),
        )

    state = apply_event(CustomerState(customer_id="c1"), requested("b1", now), plans, now).state
    later = now.replace(hour=3)
    # Past the end of the journey (2:00): the same batch's event again does nothing.
    state = apply_event(state, requested("b1", later), plans, later).state
    assert state.enrolment_counts == {"member_day": 1}
    state = apply_event(state, requested("b2", later), plans, later).state
    assert state.enrolment_counts == {"member_day": 2}
