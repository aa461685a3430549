"""Groups and moments as audiences, through the durable runtime to the fake WeCom: one
group task per calendar slot for 300 members (not 300), one moments task per countdown
offset per consultant (not one per prospect), each tracked to its outcome.

The time-skipping server runs a day (and a week) of slots; the fake WeCom runs in
process, so the test reads what it received."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from cli.fake_wecom import FakeConfig, FakeWeCom
from sopflow.core.deployment import Deployment
from sopflow.core.sender import SenderPolicy
from sopflow.core.state import CustomerEvent, Delivery
from sopflow.language.compiler import compile_bundle
from sopflow.language.loader import load_text
from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.ledger import Ledger
from sopflow.store.mass_sends import MassSends
from sopflow.store.moments import Moments
from sopflow.store.tables import DeliveryRecord, TaskRecord
from sopflow.wecom import api
from tests.conftest import T0
from tests.helpers import describe, eventually, plan_store, send_event, terminate
from tests.wecom_stack import fake_client
from worker.channels.base import PermanentDeliveryError
from worker.channels.enrolment import EnrolmentChannel
from worker.channels.wecom import WeComGroupChannel
from worker.main import build_worker
from worker.wecom.client import WeComClient
from worker.wecom.sender_activities import WeComSenderActivities
from workflows.client import signal_with_start
from workflows.contracts import EventSignal
from workflows.sender_contracts import (
    CreateMassSendInput,
    CreateMassSendResult,
    SendResults,
    TaskRef,
    sender_workflow_id,
)

GROUP_CALENDAR = """
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: lunch_calendar}
audience: group
timezone: Asia/Shanghai
enrol: {event: group.created}
contact_policy: {max_per_day: 2}
stages:
  active:
    triggers:
      - cron: "30 11 * * *"
        actions: [{send: {channel: wecom.group, text: "午餐时间到！群内 8 折"}}]
      - cron: "0 20 * * *"
        actions: [{send: {channel: wecom.group, text: "20:00 直播间见"}}]
      - event: group.member_joined
        actions: [{enrol_member: group_member}]
---
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: group_member}
enrol: {}
stages:
  joined:
    on_enter: [{tag: {add: ["community:lunch_group"]}}]
    end: true
"""

CONSULTANT_MOMENTS = """
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: offer_moments}
audience: staff
timezone: Asia/Shanghai
enrol: {event: offer.announced}
stages:
  counting_down:
    triggers:
      - countdown: {deadline: offer_deadline, offsets: [3d, 1d]}
        actions:
          - send:
              channel: wecom.moments
              text: "本月权益倒计时 {{ countdown.remaining }}"
              visible_to: ["budget:150k_300k"]
        goto: done
  done: {end: true}
---
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: prospects}
enrol: {event: contact.added}
stages:
  nurturing:
    triggers: [{after: 30d, goto: done}]
  done: {end: true}
"""


@pytest.fixture
def fake() -> FakeWeCom:
    return FakeWeCom(FakeConfig())


@pytest.fixture
async def wecom(fake: FakeWeCom) -> AsyncIterator[WeComClient]:
    async with fake_client(fake) as client:
        yield client


def deploy(text: str, settings: Settings) -> None:
    documents, problems = load_text(text, "audiences.yaml")
    bundle = compile_bundle(documents, problems)
    bundle.raise_on_errors()
    plan_store(settings).deploy_all(list(bundle.plans.values()), bundle.profile)


def wecom_settings(settings: Settings, **overrides: object) -> Settings:
    # Slow polls: a day of time skipping polls each open task a day's worth of times.
    return settings.model_copy(
        update={
            "wecom_batch_window_seconds": 60,
            "wecom_poll_seconds": 3600,
            "wecom_remind_after_seconds": None,
            **overrides,
        }
    )


def group_tasks(fake: FakeWeCom) -> list[tuple[str, list[str], str]]:
    """(sender, chats, text) of every group mass send the fake received."""
    return [
        (sender, sorted(task.recipients), m.content["text"]["content"])
        for m in fake.mass_sends.values()
        if m.chat_type == "group"
        for sender, task in m.tasks.items()
    ]


async def end_senders(client: Client, *staff: str) -> None:
    """End the staff members' sender workflows: on the time-skipping server, a sender left
    polling after its worker is gone stops time for the tests that follow."""
    for userid in staff:
        with contextlib.suppress(RPCError):
            await client.get_workflow_handle(sender_workflow_id(userid)).terminate()


async def sleep_until(env: WorkflowEnvironment, moment: datetime) -> None:
    wait = moment - await env.get_current_time()
    if wait > timedelta(0):
        await env.sleep(wait)


def delivery_statuses(database: Database, subject: str, channel: str) -> list[str | None]:
    """The statuses of a subject's deliveries on a channel, in the order they were made."""
    with database.session() as session:
        rows = (
            session.query(DeliveryRecord)
            .filter(DeliveryRecord.customer_id == subject, DeliveryRecord.channel == channel)
            .order_by(DeliveryRecord.scheduled_at)
        )
        return [r.status for r in rows]


@pytest.mark.timeout(300)  # 300 members' workflows on a shared machine
async def test_300_members_get_one_group_task_per_calendar_slot_for_the_owner(
    time_skipping_env: WorkflowEnvironment,
    settings: Settings,
    fake: FakeWeCom,
    wecom: WeComClient,
) -> None:
    settings = wecom_settings(settings)
    deploy(GROUP_CALENDAR, settings)
    members = [f"wm_member_{i:03d}" for i in range(300)]
    fake.add_chat("wr_lunch", "li_lei", members, "午餐群")
    env = time_skipping_env
    client = env.client
    start = await env.get_current_time()
    deployment = plan_store(settings).deployment()
    database = Database.from_settings(settings)
    try:
        async with build_worker(client, settings, wecom=wecom):
            await send_event(
                client,
                settings,
                "group/wr_lunch",
                "group.created",
                "created",
                {"owner": "li_lei", "name": "午餐群"},
                occurred_at=start,
            )
            # The 300 joins as a chat callback brings them: one signal to the group.
            joins = [
                CustomerEvent(
                    customer_id="group/wr_lunch",
                    type="group.member_joined",
                    occurred_at=start,
                    data={"member": member, "join_scene": 3},
                    idempotency_key=f"join-{member}",
                )
                for member in members
            ]
            await signal_with_start(
                client, settings, EventSignal(events=joins, deployment=deployment)
            )

            async def everyone_enrolled() -> bool:
                view = await describe(client, members[-1])
                return "community:lunch_group" in view.profile.tags

            await eventually(everyone_enrolled, timeout=90)
            view = await describe(client, "group/wr_lunch")
            assert view.group is not None and len(view.group.members) == 300

            # A day of slots: 11:30 and 20:00 in Shanghai, each one task for the group,
            # which the owner confirms when it comes.
            confirmed: list[str] = []
            for hour in range(1, 25):
                await sleep_until(env, start + timedelta(hours=hour))
                for msgid in [m for m in fake.mass_sends if m not in confirmed]:
                    fake.confirm(msgid, "li_lei")
                    confirmed.append(msgid)
            with env.auto_time_skipping_disabled():  # the day is over: time stands still

                async def outcomes() -> list[str | None]:
                    return delivery_statuses(database, "group/wr_lunch", "wecom.group")

                statuses = await eventually(outcomes, timeout=30)
    finally:
        await terminate(client, "group/wr_lunch", *members)
        await end_senders(client, "li_lei")
        database.dispose()
    assert len(statuses) == 2  # two slots in the day: two group messages
    # Polled hourly: the second is sent unless its slot was in the day's last hour.
    assert statuses[0] == "sent" and statuses[1] in ("sent", "awaiting_confirmation")
    texts = sorted(text for _, _, text in group_tasks(fake))
    assert texts == ["20:00 直播间见", "午餐时间到！群内 8 折"]
    assert {(sender, tuple(chats)) for sender, chats, _ in group_tasks(fake)} == {
        ("li_lei", ("wr_lunch",))
    }
    assert all(m.chat_type == "group" for m in fake.mass_sends.values())  # nothing per member


@pytest.mark.timeout(300)
async def test_one_moments_task_per_countdown_offset_per_consultant(
    time_skipping_env: WorkflowEnvironment,
    settings: Settings,
    fake: FakeWeCom,
    wecom: WeComClient,
) -> None:
    # A post not published within 6 hours gives its consultant a reminder task.
    settings = wecom_settings(settings, wecom_remind_after_seconds=6 * 3600)
    deploy(CONSULTANT_MOMENTS, settings)
    request = api.AddCorpTagRequest(group_name="budget", tag=[api.NewTag(name="150k_300k")])
    budget = (await wecom.add_corp_tag(request)).tag_group
    assert budget is not None
    consultants = ["li_lei", "han_meimei"]
    prospects = [f"wm_prospect_{i}" for i in range(20)]
    env = time_skipping_env
    client = env.client
    start = await env.get_current_time()
    deadline = start + timedelta(days=4)
    database = Database.from_settings(settings)
    try:
        async with build_worker(client, settings, wecom=wecom):
            for index, prospect in enumerate(prospects):
                owner = consultants[index % 2]
                await send_event(
                    client,
                    settings,
                    prospect,
                    "contact.added",
                    f"added-{prospect}",
                    {"attributes": {"owner": owner}},
                    occurred_at=start,
                )
            for consultant in consultants:
                await send_event(
                    client,
                    settings,
                    f"staff/{consultant}",
                    "offer.announced",
                    f"offer-{consultant}",
                    {"attributes": {"offer_deadline": deadline.isoformat()}},
                    occurred_at=start,
                )
            # 3 days before the deadline: one post per consultant.
            await sleep_until(env, deadline - timedelta(days=3) + timedelta(minutes=10))

            async def first_posts() -> int:
                return len(fake.moments)

            assert await eventually(first_posts, timeout=30) == 2
            # li_lei publishes at once; han_meimei does not, and is reminded.
            [li_lei_job] = [j for j in fake.moments.values() if j.senders() == ["li_lei"]]
            fake.publish_moment(li_lei_job.jobid, "li_lei")
            await sleep_until(env, deadline - timedelta(days=1) + timedelta(minutes=10))
            assert await eventually(first_posts, timeout=30) == 4
            await sleep_until(env, deadline + timedelta(hours=1))

            moments = Moments(database)

            async def states() -> dict[str, list[str]]:
                found: dict[str, list[str]] = {}
                for consultant in consultants:
                    found[consultant] = sorted(p.status for p in moments.posts(consultant))
                return found

            async def settled() -> bool:
                found = await states()
                return "published" in found["li_lei"] and "overdue" in found["han_meimei"]

            await eventually(settled, timeout=30)
            view = await describe(client, "staff/han_meimei")
    finally:
        await terminate(client, *(f"staff/{c}" for c in consultants), *prospects)
        await end_senders(client, *consultants)
    per_consultant = sorted(tuple(job.senders()) for job in fake.moments.values())
    assert per_consultant == [("han_meimei",), ("han_meimei",), ("li_lei",), ("li_lei",)]
    texts = sorted(job.request["text"]["content"] for job in fake.moments.values())
    assert texts == ["本月权益倒计时 1d"] * 2 + ["本月权益倒计时 3d"] * 2
    tag_id = budget.tag[0].id
    assert all(
        job.request["visible_range"]["external_contact_list"]["tag_list"] == [tag_id]
        for job in fake.moments.values()
    )
    assert [e.text for e in view.timeline if e.kind == "message"] == [
        "本月权益倒计时 3d",
        "本月权益倒计时 1d",
    ]
    with database.session() as session:
        reminders = session.query(TaskRecord).filter(TaskRecord.assignee == "han_meimei").all()
    database.dispose()
    assert reminders and all(t.title.startswith("发表企业朋友圈") for t in reminders)
    assert not fake.mass_sends  # no prospect got the countdown: the consultant's moments did


# --------------------------------------------------------------------------- activities


def sender_activities(wecom: WeComClient, database: Database) -> WeComSenderActivities:
    return WeComSenderActivities(
        wecom,
        MassSends(database),
        Ledger(database),
        None,  # type: ignore[arg-type]  # these activities report nothing to workflows
        Settings(home=Path("unused")),
        Moments(database),
    )


async def test_a_post_is_created_polled_to_its_moment_and_published(
    fake: FakeWeCom, wecom: WeComClient, settings: Settings
) -> None:
    database = Database.from_settings(settings)
    sends = sender_activities(wecom, database)
    await wecom.add_corp_tag(
        api.AddCorpTagRequest(group_name="budget", tag=[api.NewTag(name="high")])
    )
    unknown = CreateMassSendInput(
        batch_id="li_lei/a/1",
        sender="li_lei",
        text="本月权益",
        customers=["staff/li_lei"],
        chat_type="moment",
        visible_to=["budget:low"],
    )
    refused = await ActivityEnvironment().run(sends.create_mass_send, unknown)
    assert refused == CreateMassSendResult(
        refused={
            "staff/li_lei": "moments visibility: budget:low not in the corp tag library (a "
            "tag group named as the part before ':', a tag as the part after)"
        }
    )
    assert not fake.moments
    known = unknown.model_copy(update={"batch_id": "li_lei/a/2", "visible_to": ["budget:high"]})
    created = await ActivityEnvironment().run(sends.create_mass_send, known)
    [job] = fake.moments.values()
    assert created.msgid == job.jobid and not created.refused
    ref = TaskRef(msgid=job.jobid, sender="li_lei", batch_id="li_lei/a/2", chat_type="moment")
    running = await ActivityEnvironment().run(sends.fetch_send_results, ref)
    assert running == SendResults(confirmed=False)  # the job is still running
    unpublished = await ActivityEnvironment().run(sends.fetch_send_results, ref)
    assert unpublished == SendResults(confirmed=False)
    fake.publish_moment(job.jobid, "li_lei")
    published = await ActivityEnvironment().run(sends.fetch_send_results, ref)
    assert published == SendResults(confirmed=True, statuses={"staff/li_lei": "sent"})
    posts = {p.batch_id: p.status for p in Moments(database).posts("li_lei")}
    assert posts == {"li_lei/a/1": "failed", "li_lei/a/2": "published"}
    database.dispose()


async def test_a_groups_owner_comes_from_wecom_and_a_stranger_is_no_member(
    fake: FakeWeCom, wecom: WeComClient
) -> None:
    fake.add_chat("wr1", "li_lei", ["wm_1"])
    channel = WeComGroupChannel(wecom, None, "q", SenderPolicy())  # type: ignore[arg-type]
    assert await channel._owner("wr1") == "li_lei"
    with pytest.raises(PermanentDeliveryError, match="no owner to send group wr9's message"):
        await channel._owner("wr9")
    enrolment = EnrolmentChannel(None, Settings(home=Path("unused")), Deployment)  # type: ignore[arg-type]
    delivery = Delivery(
        idempotency_key="group/wr1/p#1/1",
        kind="enrolment",
        customer_id="group/wr1",
        playbook="p",
        journey_id="p#1",
        stage="s",
        channel="enrolment",
        text="welcome",
        scheduled_at=T0,
        target="group/evil",
    )
    with pytest.raises(PermanentDeliveryError, match="'group/evil' cannot be a customer id"):
        await enrolment.deliver(delivery)
