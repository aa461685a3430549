"""Staff tasks told to their assignee as a WeCom app message, against the fake WeCom: the
notice links to the console, is recorded, and never holds back or fails its task."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from sopflow.settings import Settings
from sopflow.store.tables import DeliveryRecord, TaskRecord
from tests.helpers import eventually, terminate
from tests.wecom_stack import WeComStack, wecom_stack

PLAYBOOK = """
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: call_back}
enrol: {event: contact.added}
stages:
  new:
    on_enter:
      - task: {id: call, title: "Call the new contact", script: "Ask about the budget", due: 2h}
    triggers: [{after: 30d, goto: done}]
  done: {end: true}
"""


@pytest.fixture
async def stack(dev_env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[WeComStack]:
    async with wecom_stack(
        dev_env,
        settings,
        PLAYBOOK,
        wecom_notify_tasks=True,
        console_base_url="https://sop.example.com",
    ) as running:
        yield running


def notices(stack: WeComStack) -> list[tuple[str, str | None, str | None]]:
    table = DeliveryRecord.__table__
    query = select(table.c.idempotency_key, table.c.status, table.c.detail).where(
        table.c.kind == "notice"
    )
    with stack.database.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]  # type: ignore[misc]


def open_tasks(stack: WeComStack, customer: str) -> list[str]:
    query = select(TaskRecord.task_id).where(
        TaskRecord.customer_id == customer, TaskRecord.status == "open"
    )
    with stack.database.engine.connect() as connection:
        return list(connection.execute(query).scalars())


async def test_a_new_task_reaches_its_assignee_as_an_app_message(stack: WeComStack) -> None:
    await stack.deliver("add_external_contact", userid="li_lei", external_userid="wmNote1")

    async def recorded() -> list[tuple[str, str | None, str | None]]:
        return notices(stack)

    [(key, status, detail)] = await eventually(recorded)
    [task_id] = open_tasks(stack, "wmNote1")
    [message] = stack.fake.app_messages
    assert (key, status) == (f"{task_id}/notice", "sent")
    assert detail == f"app message {message['msgid']} to li_lei"
    assert message["touser"] == "li_lei"
    assert message["textcard"]["title"] == "New task: Call the new contact"
    assert "Ask about the budget" in message["textcard"]["description"]
    assert message["textcard"]["url"] == "https://sop.example.com/console/staff?assignee=li_lei"
    await terminate(stack.client, "wmNote1")


async def test_a_notice_wecom_refuses_is_recorded_and_the_task_stays(stack: WeComStack) -> None:
    stack.fake.fail_next("message/send", 1, 40056)  # a permanent refusal (invalid agent id)
    await stack.deliver("add_external_contact", userid="li_lei", external_userid="wmNote2")

    async def recorded() -> list[tuple[str, str | None, str | None]]:
        return notices(stack)

    [(_, status, detail)] = await eventually(recorded)
    assert status == "failed"
    assert detail is not None and "errcode 40056" in detail
    assert stack.fake.app_messages == []
    assert len(open_tasks(stack, "wmNote2")) == 1
    await terminate(stack.client, "wmNote2")
