"""The WeCom sender workflow on the real dev server against the fake WeCom: one task per
staff member and text, followed up to each customer's outcome; created exactly once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from cli.fake_wecom import FakeConfig, FakeWeCom
from sopflow.core import sender
from sopflow.core.sender import QueuedSend, SenderPolicy, SenderState
from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.ledger import Ledger
from sopflow.store.mass_sends import RECIPIENTS, MassSends
from tests.helpers import eventually
from tests.wecom_stack import fake_client
from worker.wecom.client import WeComClient
from worker.wecom.sender_activities import WeComSenderActivities
from workflows.sandbox import workflow_runner
from workflows.sender_contracts import (
    DESCRIBE_SENDER_QUERY,
    ENQUEUE_SIGNAL,
    SENDER_WORKFLOW_NAME,
    CreateMassSendInput,
    SenderWorkflowInput,
    sender_workflow_id,
)
from workflows.sender_workflow import WeComSenderWorkflow

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
FAST = SenderPolicy(batch_window_seconds=1, poll_seconds=1, remind_after_seconds=None)


@pytest.fixture
def fake() -> FakeWeCom:
    return FakeWeCom(FakeConfig())


@pytest.fixture
async def wecom(fake: FakeWeCom) -> AsyncIterator[WeComClient]:
    async with fake_client(fake) as client:
        yield client


@pytest.fixture
def database(tmp_path: Path) -> Database:
    return Database.from_settings(Settings(home=tmp_path / "home"))


def activities(
    wecom: WeComClient, database: Database, client: Client, **settings: object
) -> WeComSenderActivities:
    return WeComSenderActivities(
        wecom,
        MassSends(database),
        Ledger(database),
        client,
        Settings(home=Path("unused"), **settings),  # type: ignore[arg-type]
    )


def recipients(database: Database) -> dict[str, str]:
    with database.engine.connect() as connection:
        rows = connection.execute(RECIPIENTS.select()).all()
    return {row.customer_id: row.status for row in rows}


def test_the_core_batches_one_text_per_staff_member_into_one_task() -> None:
    state = SenderState(sender="li_lei")
    for i in range(300):
        send = QueuedSend(
            idempotency_key=f"c{i}/p#1/1", customer_id=f"c{i}", text="周五直播", queued_at=T0
        )
        assert sender.enqueue(state, send, T0)
    # The same key again (an activity retried after it signalled) is dropped.
    assert not sender.enqueue(state, send, T0)
    other = QueuedSend(idempotency_key="c0/q#1/1", customer_id="c0", text="另一条", queued_at=T0)
    sender.enqueue(state, other, T0)
    assert sender.due_batches(state, SenderPolicy(), T0 + timedelta(seconds=59)) == []
    due = sender.due_batches(state, SenderPolicy(), T0 + timedelta(seconds=60))
    assert sorted(len(b.sends) for b in due) == [1, 300]


def test_a_reminder_is_never_due_more_than_three_times_in_a_day() -> None:
    policy = SenderPolicy(remind_after_seconds=3600)
    state = SenderState(sender="li_lei")
    send = QueuedSend(idempotency_key="k", customer_id="c", text="t", queued_at=T0)
    sender.enqueue(state, send, T0)
    [batch] = sender.due_batches(state, policy, T0 + timedelta(minutes=1))
    sender.close_batch(state, batch, "msg1", {}, policy, T0)
    [task] = state.tasks.values()
    moments = []
    for _ in range(4):
        at = sender.next_reminder_at(task, policy)
        assert at is not None
        moments.append(at)
        task.reminded_at.append(at)
    assert moments[:3] == [T0 + timedelta(hours=h) for h in (1, 2, 3)]
    assert moments[3] == T0 + timedelta(hours=25)  # the first of the three left the 24 hours


async def test_three_hundred_customers_make_one_task_confirmed_once(
    dev_env: WorkflowEnvironment, fake: FakeWeCom, wecom: WeComClient, database: Database
) -> None:
    client = dev_env.client
    queue = f"sender-{uuid.uuid4().hex}"
    customers = [f"wm_{i}" for i in range(300)]
    for customer in customers:
        fake.add_contact("li_lei", customer)
    sends = activities(wecom, database, client)
    async with Worker(
        client,
        task_queue=queue,
        workflows=[WeComSenderWorkflow],
        activities=[
            sends.create_mass_send,
            sends.fetch_send_results,
            sends.remind,
            sends.cancel_task,
            sends.report_outcomes,
        ],
        workflow_runner=workflow_runner(True),
    ):
        for customer in customers:
            await client.start_workflow(
                SENDER_WORKFLOW_NAME,
                # The batch closes when the 300th customer joins it (a full batch does not
                # wait for its window): one task, whatever the machine's speed.
                SenderWorkflowInput(
                    sender="li_lei",
                    policy=FAST.model_copy(
                        update={"batch_window_seconds": 3600, "max_customers_per_task": 300}
                    ),
                ),
                id=sender_workflow_id("li_lei"),
                task_queue=queue,
                start_signal=ENQUEUE_SIGNAL,
                start_signal_args=[
                    QueuedSend(
                        idempotency_key=f"{customer}/p#1/1",
                        customer_id=customer,
                        text="周五 20:00 直播间见",
                        queued_at=datetime.now(UTC),
                    )
                ],
            )

        async def one_task() -> list[str]:
            return list(fake.mass_sends)

        [msgid] = await eventually(one_task, timeout=60)
        handle = client.get_workflow_handle(sender_workflow_id("li_lei"))

        async def awaiting() -> int:
            state = await handle.query(DESCRIBE_SENDER_QUERY, result_type=SenderState)
            return sum(len(t.awaiting) for t in state.tasks.values())

        assert await eventually(awaiting, timeout=30) == 300
        assert set(recipients(database).values()) == {"awaiting_confirmation"}

        fake.confirm(msgid, "li_lei")

        async def all_sent() -> bool:
            return set(recipients(database).values()) == {"sent"}

        await eventually(all_sent, timeout=60)
        await handle.result()  # nothing left open: the sender's run ends
    assert len(fake.mass_sends) == 1
    assert sorted(fake.mass_sends[msgid].tasks["li_lei"].recipients) == sorted(customers)


async def test_a_task_created_but_not_recorded_is_found_not_created_again(
    fake: FakeWeCom, wecom: WeComClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.add_contact("li_lei", "wm_1")
    sends = activities(wecom, database, client=None)  # type: ignore[arg-type]
    request = CreateMassSendInput(
        batch_id="li_lei/abc/1", sender="li_lei", text="首单立减", customers=["wm_1"]
    )
    record = sends.mass_sends.record_task

    def crash(*args: object) -> None:
        raise RuntimeError("the worker died after WeCom created the task")

    monkeypatch.setattr(sends.mass_sends, "record_task", crash)
    with pytest.raises(RuntimeError):
        await ActivityEnvironment().run(sends.create_mass_send, request)
    assert len(fake.mass_sends) == 1
    monkeypatch.setattr(sends.mass_sends, "record_task", record)
    retry = ActivityEnvironment()
    retry.info = retry.info.__class__(**{**retry.info.__dict__, "attempt": 2})
    result = await retry.run(sends.create_mass_send, request)
    assert len(fake.mass_sends) == 1
    assert result.msgid == next(iter(fake.mass_sends))
    assert recipients(database) == {"wm_1": "awaiting_confirmation"}


async def test_customers_over_the_corps_monthly_limit_are_refused_before_wecom(
    fake: FakeWeCom, wecom: WeComClient, database: Database
) -> None:
    fake.add_contact("li_lei", "wm_1")
    fake.add_contact("li_lei", "wm_2")
    sends = activities(wecom, database, client=None, wecom_customer_limit="day")  # type: ignore[arg-type]
    first = CreateMassSendInput(batch_id="b1", sender="li_lei", text="一", customers=["wm_1"])
    await ActivityEnvironment().run(sends.create_mass_send, first)
    second = CreateMassSendInput(
        batch_id="b2", sender="li_lei", text="二", customers=["wm_1", "wm_2"]
    )
    result = await ActivityEnvironment().run(sends.create_mass_send, second)
    assert result.refused == {"wm_1": "the corp's mass-message limit (1 per day) is reached"}
    assert sorted(fake.mass_sends[result.msgid].tasks["li_lei"].recipients) == ["wm_2"]
