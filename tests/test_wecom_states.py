"""WeCom delivery states that tell the truth, through the durable runtime and the API to
the in-process fake WeCom: a customer's wecom.private message is awaiting_confirmation in
the timeline until the staff member confirms it, then sent; not confirmed in time,
expired; the journey left the stage, cancelled; WeCom's monthly limit, failed with the
reason. The core's rules (forward only, unknown and late reports ignored, which sends to
cancel) are tested without Temporal below."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.console.views import timeline_rows
from cli.fake_wecom import FakeConfig, FakeWeCom
from sopflow.core import journey
from sopflow.core.deliveries import FINAL, RANK
from sopflow.core.sender import (
    Outcome,
    QueuedSend,
    SenderPolicy,
    SenderState,
    close_batch,
    due_batches,
    enqueue,
    next_reminder_at,
)
from sopflow.core.state import (
    CustomerEvent,
    CustomerState,
    Delivery,
    DeliveryStatus,
    TimelineEntry,
)
from sopflow.core.step import Catalog
from sopflow.language.compiler import compile_bundle
from sopflow.language.loader import load_text
from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.keys import Role, create_key
from sopflow.store.ledger import Ledger
from tests.helpers import describe, eventually, failed_tasks, send_event, terminate
from tests.test_audiences_wecom import (
    delivery_statuses,
    deploy,
    end_senders,
    sleep_until,
    wecom_settings,
)
from tests.test_audiences_wecom import (
    wecom as wecom,
)
from worker.main import build_worker
from worker.wecom.client import WeComClient
from workflows.contracts import CustomerView, subject_workflow_id
from workflows.sender_contracts import DELIVERY_OUTCOME_SIGNAL, DeliveryOutcomeSignal

OFFER = """
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: first_order}
enrol: {event: contact.added}
wecom: {remind_after: 6h, cancel_on_leave: true}
stages:
  offer:
    on_enter: [{send: {channel: wecom.private, text: "首单立减 20 元"}}]
    triggers: [{event: order.paid, goto: bought}]
  bought: {end: true}
"""
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
# Each customer has their own staff member: four tasks, each with one customer, so that
# confirming, expiring or cancelling one task touches one customer only.
OWNERS = {"wm_sent": "li_lei", "wm_late": "han_meimei", "wm_gone": "wang_wu", "wm_over": "zhao_liu"}


@pytest.fixture
def fake() -> FakeWeCom:
    # One mass message a month per customer: wm_over had theirs (see below).
    return FakeWeCom(FakeConfig(mass_messages_per_customer_per_month=1))


@pytest.fixture
async def api(
    time_skipping_env: WorkflowEnvironment, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    database = Database.from_settings(settings)
    operator, _ = create_key(database, Role.OPERATOR, "tests")
    app = create_app(settings, temporal=time_skipping_env.client, database=database)
    app.state.temporal = time_skipping_env.client  # ASGITransport runs no lifespan
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {operator}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://api", headers=headers
    ) as http:
        yield http
    database.dispose()


def message_of(customer: dict[str, Any]) -> dict[str, Any]:
    [message] = [e for e in customer["timeline"] if e["kind"] == "message"]
    return dict(message)


async def state_of(http: httpx.AsyncClient, customer_id: str) -> tuple[str, str | None]:
    response = await http.get(f"/v1/customers/{customer_id}")
    assert response.status_code == 200, response.text
    message = message_of(response.json())
    return message["status"], message["error"]


@pytest.mark.timeout(300)
async def test_a_wecom_send_is_awaiting_then_sent_expired_cancelled_or_failed(
    time_skipping_env: WorkflowEnvironment,
    settings: Settings,
    fake: FakeWeCom,
    wecom: WeComClient,
    api: httpx.AsyncClient,
) -> None:
    settings = wecom_settings(settings)  # tasks polled hourly, batched for 60 s
    deploy(OFFER, settings)
    for customer, owner in OWNERS.items():
        fake.add_contact(owner, customer)
    fake.received["wm_over"].append(fake.clock.now())  # this month's one mass message
    env = time_skipping_env
    client = env.client
    start = await env.get_current_time()
    database = Database.from_settings(settings)
    try:
        async with build_worker(client, settings, wecom=wecom):
            for customer, owner in OWNERS.items():
                await send_event(
                    client,
                    settings,
                    customer,
                    "contact.added",
                    f"added-{customer}",
                    {"attributes": {"owner": owner}},
                    occurred_at=start,
                )
            # The batch window closes: four tasks, each awaiting its staff member.
            await sleep_until(env, start + timedelta(minutes=5))
            with env.auto_time_skipping_disabled():

                async def four_tasks() -> bool:
                    return len(fake.mass_sends) == 4

                await eventually(four_tasks)
                for customer in OWNERS:

                    async def awaiting(c: str = customer) -> bool:
                        status, _ = await state_of(api, c)
                        return status == "awaiting_confirmation"

                    await eventually(awaiting)
                task_of = {
                    sender: msgid
                    for msgid, mass_send in fake.mass_sends.items()
                    for sender in mass_send.tasks
                }
                fake.confirm(task_of["li_lei"], "li_lei")
                fake.confirm(task_of["zhao_liu"], "zhao_liu")  # WeCom drops wm_over: 3
            # wm_gone buys before wang_wu confirms: the journey leaves the stage.
            await send_event(client, settings, "wm_gone", "order.paid", "paid-wm_gone")
            # A poll reports the confirmed ones; han_meimei never confirms (72 hours).
            await sleep_until(env, start + timedelta(hours=73))
            with env.auto_time_skipping_disabled():

                async def settled() -> dict[str, tuple[str, str | None]]:
                    found = {c: await state_of(api, c) for c in OWNERS}
                    pending = [s for s, _ in found.values() if s == "awaiting_confirmation"]
                    return {} if pending else found

                states = await eventually(settled)
                response = await api.get("/v1/metrics/deliveries")
    finally:
        await terminate(client, *OWNERS)
        await end_senders(client, *OWNERS.values())
    assert states == {
        "wm_sent": ("sent", None),
        "wm_late": ("expired", "not confirmed by the staff member within 72 hours"),
        "wm_gone": (
            "cancelled",
            "every customer left the stage before the staff member confirmed",
        ),
        "wm_over": ("failed", "WeCom's per-customer limit on mass messages was reached"),
    }
    # The delivery ledger and the metrics say the same.
    ledger = {c: delivery_statuses(database, c, "wecom.private") for c in OWNERS}
    database.dispose()
    assert ledger == {
        "wm_sent": ["sent"],
        "wm_late": ["expired"],
        "wm_gone": ["cancelled"],
        "wm_over": ["failed"],
    }
    assert response.status_code == 200
    metrics = response.json()
    assert metrics["by_channel"] == {
        "wecom.private": {"sent": 1, "expired": 1, "cancelled": 1, "failed": 1}
    }
    assert (metrics["sent"], metrics["failed"], metrics["pending_confirmation"]) == (1, 1, 0)
    # WeCom's side: only the confirmed task reached its customer; the others were
    # cancelled (the customer who left, the one nobody confirmed).
    assert [len(fake.received[c]) for c in OWNERS] == [1, 0, 0, 1]
    cancelled = {s for m in fake.mass_sends.values() if m.cancelled for s in m.tasks}
    assert cancelled == {"han_meimei", "wang_wu"}
    # The setting reminds nobody; the playbook's remind_after (6 hours) reminded the one
    # staff member who left their task unconfirmed that long.
    reminded = {s for m in fake.mass_sends.values() if m.reminders for s in m.tasks}
    assert reminded == {"han_meimei"}


async def test_unknown_repeated_and_malformed_reports_never_fail_a_workflow_task(
    dev_env: WorkflowEnvironment, settings: Settings
) -> None:
    """Without WeCom the message goes to the log (delivered); reports for it and for keys
    the customer never had, twice, and one that is not a report at all."""
    deploy(OFFER, settings)
    client = dev_env.client
    handle = client.get_workflow_handle(subject_workflow_id("wm_reports"))
    try:
        async with build_worker(client, settings):
            await send_event(
                client, settings, "wm_reports", "contact.added", "add", {"attributes": {}}
            )

            async def delivered() -> str | None:
                view = await describe(client, "wm_reports")
                found = [e for e in view.timeline if e.kind == "message"]
                done = found and found[0].status == "delivered"
                return found[0].idempotency_key if done else None

            key = await eventually(delivered)
            sent = Outcome(idempotency_key=key, customer_id="wm_reports", status="sent")
            unknown = Outcome(
                idempotency_key="wm_reports/gone#1/1",
                customer_id="wm_reports",
                status="failed",
                detail="x",
            )
            for outcomes in ([unknown, sent], [sent], [unknown]):
                await handle.signal(
                    DELIVERY_OUTCOME_SIGNAL, DeliveryOutcomeSignal(outcomes=outcomes)
                )
            await handle.signal(DELIVERY_OUTCOME_SIGNAL, {"outcomes": [{"status": "bogus"}]})
            late = sent.model_copy(update={"status": "expired", "detail": "late"})
            await handle.signal(DELIVERY_OUTCOME_SIGNAL, DeliveryOutcomeSignal(outcomes=[late]))
            # An event after the reports: the workflow still steps.
            await send_event(client, settings, "wm_reports", "order.paid", "paid")

            async def bought() -> CustomerView | None:
                view = await describe(client, "wm_reports")
                return view if view.journeys[0].status == "ended" else None

            view = await eventually(bought)
        failures = await failed_tasks(client, "wm_reports")
    finally:
        await terminate(client, "wm_reports")
    assert failures == []
    [message] = [e for e in view.timeline if e.kind == "message"]
    assert (message.status, message.error) == ("sent", None)


# --------------------------------------------------------------------------- the core


def offer_catalog(text: str = OFFER) -> Catalog:
    documents, problems = load_text(text, "offer.yaml")
    bundle = compile_bundle(documents, problems)
    bundle.raise_on_errors()
    [plan] = bundle.plans.values()
    return Catalog(plans={plan.version: plan}, deployed={plan.name: plan.version})


def offered(catalog: Catalog) -> tuple[CustomerState, str]:
    """wm_1 entered the offer stage and their message was handed to li_lei's sender."""
    event = CustomerEvent(
        customer_id="wm_1",
        type="contact.added",
        occurred_at=T0,
        data={"attributes": {"owner": "li_lei"}},
        idempotency_key="add",
    )
    result = journey.apply_event(CustomerState(customer_id="wm_1"), event, catalog, T0)
    [delivery] = result.deliveries
    assert delivery.remind_after_seconds == 6 * 3600  # the playbook's remind_after
    state = journey.record_delivery_outcome(
        result.state,
        delivery.idempotency_key,
        True,
        "in li_lei's next WeCom task",
        status="awaiting_confirmation",
        sender="li_lei",
    )
    return state, delivery.idempotency_key


def message(state: CustomerState) -> tuple[str | None, str | None]:
    [entry] = [e for e in state.timeline if e.kind == "message"]
    return entry.status, entry.error


def test_a_state_only_moves_forward_and_unknown_or_late_reports_change_nothing() -> None:
    state, key = offered(offer_catalog())
    assert message(state) == ("awaiting_confirmation", None)
    sent, moved = journey.record_send_outcome(state, key, "sent")
    assert moved and message(sent) == ("sent", None)
    # A repeated report, a late one, and a retried activity's "already delivered".
    for status in ("sent", "awaiting_confirmation", "expired"):
        again, moved = journey.record_send_outcome(sent, key, status, "late")
        assert not moved and message(again) == ("sent", None)
    retried = journey.record_delivery_outcome(sent, key, True, "already delivered (ledger)")
    assert message(retried) == ("sent", None)
    unknown, moved = journey.record_send_outcome(state, "wm_1/nobody#1/9", "failed", "x")
    assert not moved and unknown == state


def test_leaving_the_stage_asks_once_to_cancel_an_unconfirmed_send() -> None:
    catalog = offer_catalog()
    state, key = offered(catalog)
    assert journey.request_cancels(state, catalog)[1] == []  # still in the stage
    paid = CustomerEvent(
        customer_id="wm_1",
        type="order.paid",
        occurred_at=T0 + timedelta(hours=1),
        idempotency_key="paid",
    )
    left = journey.apply_event(state, paid, catalog, T0 + timedelta(hours=1)).state
    asked, cancels = journey.request_cancels(left, catalog)
    assert cancels == [journey.SendCancel(key, "li_lei")]
    assert journey.request_cancels(asked, catalog)[1] == []  # asked once
    cancelled, _ = journey.record_send_outcome(asked, key, "cancelled", "left the stage")
    assert message(cancelled) == ("cancelled", "left the stage")


def test_a_send_and_a_goto_in_one_step_is_not_cancelled_by_that_goto() -> None:
    """A trigger that sends and moves on (a countdown's post, a farewell before `end`):
    the message is the stage's parting one; leaving the next stage later cancels it."""
    catalog = offer_catalog(
        OFFER.replace(
            "triggers: [{event: order.paid, goto: bought}]",
            "triggers: [{event: order.paid, actions: [{send: {channel: wecom.private, "
            'text: "谢谢惠顾"}}], goto: bought}]',
        ).replace(
            "bought: {end: true}",
            "bought: {triggers: [{after: 1d, goto: done}]}\n  done: {end: true}",
        )
    )
    state, _ = offered(catalog)
    paid = CustomerEvent(
        customer_id="wm_1",
        type="order.paid",
        occurred_at=T0 + timedelta(hours=1),
        idempotency_key="paid",
    )
    result = journey.apply_event(state, paid, catalog, T0 + timedelta(hours=1))
    [thanks] = result.deliveries
    moved = journey.record_delivery_outcome(
        result.state, thanks.idempotency_key, True, status="awaiting_confirmation", sender="li_lei"
    )
    asked, cancels = journey.request_cancels(moved, catalog)
    assert [c.idempotency_key for c in cancels] == ["wm_1/first_order#1/1"]  # the offer only
    later = journey.apply_due_timers(asked, catalog, T0 + timedelta(days=2)).state
    assert journey.request_cancels(later, catalog)[1] == [
        journey.SendCancel(thanks.idempotency_key, "li_lei")
    ]


def test_a_playbook_that_keeps_its_sends_cancels_nothing() -> None:
    catalog = offer_catalog(OFFER.replace("cancel_on_leave: true", "cancel_on_leave: false"))
    state, _ = offered(catalog)
    paid = CustomerEvent(
        customer_id="wm_1",
        type="order.paid",
        occurred_at=T0 + timedelta(hours=1),
        idempotency_key="paid",
    )
    left = journey.apply_event(state, paid, catalog, T0 + timedelta(hours=1)).state
    assert journey.request_cancels(left, catalog)[1] == []


def test_the_wecom_block_keeps_the_versions_of_playbooks_without_it() -> None:
    without = offer_catalog(OFFER.replace("wecom: {remind_after: 6h, cancel_on_leave: true}\n", ""))
    defaults = offer_catalog(OFFER.replace("remind_after: 6h, ", ""))
    # Written with its defaults or not at all: the same plan, the same version.
    assert without.deployed == defaults.deployed
    assert offer_catalog().deployed != without.deployed


def test_a_tasks_reminder_follows_its_playbook_before_the_setting() -> None:
    policy = SenderPolicy(remind_after_seconds=4 * 3600)
    state = SenderState(sender="li_lei")
    for customer, remind_after in (("wm_1", 2 * 3600), ("wm_2", None), ("wm_3", 3600)):
        send = QueuedSend(
            idempotency_key=f"{customer}/p#1/1",
            customer_id=customer,
            text="t",
            queued_at=T0,
            remind_after_seconds=remind_after,
        )
        enqueue(state, send, T0, policy)
    closed = T0 + timedelta(minutes=5)
    [batch] = due_batches(state, policy, closed)
    close_batch(state, batch, "msg1", {}, policy, closed)
    [task] = state.tasks.values()
    assert task.remind_after_seconds == 3600  # the shortest its playbooks ask for
    assert next_reminder_at(task, policy) == closed + timedelta(hours=1)
    default = task.model_copy(update={"remind_after_seconds": None})
    assert next_reminder_at(default, policy) == closed + timedelta(hours=4)


# --------------------------------------------------------------------------- read side


def test_the_console_says_each_state_and_flags_those_that_did_not_arrive() -> None:
    def entry(status: str, error: str | None = None, **detail: object) -> TimelineEntry:
        return TimelineEntry(
            at=T0,
            kind="message",
            channel="wecom.private",
            text="首单立减",
            status=status,  # type: ignore[arg-type]
            error=error,
            detail=detail,
        )

    entries = [
        entry("awaiting_confirmation", sender="li_lei"),
        entry("awaiting_confirmation", sender="li_lei", cancel_requested=True),
        entry("sent"),
        entry("cancelled", "every customer left the stage before the staff member confirmed"),
        entry("expired", "not confirmed by the staff member within 72 hours"),
    ]
    rows = timeline_rows(entries, "Asia/Shanghai")
    assert [(r.why, r.flagged) for r in rows] == [
        ("awaiting li_lei's confirmation in WeCom", False),
        (
            "awaiting li_lei's confirmation in WeCom (cancel asked: the journey left the stage)",
            False,
        ),
        ("sent: confirmed in WeCom and delivered", False),
        ("cancelled: every customer left the stage before the staff member confirmed", True),
        ("expired: not confirmed by the staff member within 72 hours", True),
    ]


def test_the_ledger_moves_a_state_forward_only_and_counts_by_state(settings: Settings) -> None:
    database = Database.from_settings(settings)
    ledger = Ledger(database)
    for index, channel in enumerate(["wecom.private", "wecom.private", "log"]):
        delivery = Delivery(
            idempotency_key=f"wm_{index}/p#1/1",
            customer_id=f"wm_{index}",
            playbook="first_order",
            journey_id="p#1",
            stage="offer",
            channel=channel,
            text="首单立减",
            scheduled_at=T0,
        )
        status = "awaiting_confirmation" if channel != "log" else None
        ledger.record_delivery(delivery, None, status)
    assert ledger.set_delivery_status("wm_0/p#1/1", "sent", None)
    assert not ledger.set_delivery_status("wm_0/p#1/1", "awaiting_confirmation", "late")
    assert not ledger.set_delivery_status("wm_0/p#1/1", "expired", "late")
    assert ledger.set_delivery_status("wm_1/p#1/1", "awaiting_confirmation", "in task m1")
    assert ledger.status_counts() == {
        "wecom.private": {"sent": 1, "awaiting_confirmation": 1},
        "log": {"delivered": 1},
    }
    assert ledger.status_counts("another") == {}
    database.dispose()


def test_every_delivery_status_has_its_rank() -> None:
    def flat(kind: object) -> set[str]:
        args = get_args(kind)
        return {a for a in args if isinstance(a, str)} | {
            value for a in args if not isinstance(a, str) for value in flat(a)
        }

    assert set(RANK) == flat(DeliveryStatus)
    assert set(FINAL) == {"sent", "failed", "cancelled", "expired"}
