"""Splits and holdouts: each customer's arm is a hash of the experiment and the customer,
the same in every version, on re-entry and after a migration; held-out customers are
enrolled and tracked but sent nothing; guards and templates read `journey.variant`."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sopflow.core.journey import apply_event
from sopflow.core.migration import apply_migration
from sopflow.core.simulator import CustomerSpec, ScenarioEvent, simulate, simulate_many
from sopflow.core.state import CustomerEvent, CustomerState, MigrationOrder
from sopflow.core.step import Catalog
from sopflow.language import compile_playbook
from sopflow.language.compiler import compile_bundle
from sopflow.language.loader import load_text
from sopflow.language.plan import Plan
from tests.conftest import T0

SPLIT = """
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: member_day}
enrol: {event: contact.added, reentry: always}
goal: {event: order.paid}
experiment:
  id: member_day_2026
  variants: {plain: 1, coupon: 3}
  holdout: 0.1
stages:
  invited:
    on_enter:
      - send:
          channel: wecom.private
          text: "{% if journey.variant == 'coupon' %}满 99 减 20{% else %}会员日来逛逛{% endif %}"
      - send: {channel: webhook, text: "invited {{ journey.variant }}"}
    triggers:
      - condition: "journey.variant == 'coupon'"
        goto: couponed
      - event: order.paid
        goto: bought
  couponed:
    triggers:
      - event: order.paid
        goto: bought
  bought:
    end: true
"""


def catalog(*plans: Plan) -> Catalog:
    return Catalog(plans={p.version: p for p in plans}, deployed={p.name: p.version for p in plans})


def enrol(plans: Catalog, customer: str, state: CustomerState | None = None) -> CustomerState:
    event = CustomerEvent(
        customer_id=customer, type="contact.added", occurred_at=T0, idempotency_key=f"add-{T0}"
    )
    return apply_event(state or CustomerState(customer_id=customer), event, plans, T0).state


def test_over_ten_thousand_customers_the_shares_follow_the_weights() -> None:
    plan = compile_playbook(SPLIT)
    counts = simulate_many(
        {plan.name: plan},
        None,
        [ScenarioEvent(T0, "contact.added")],
        T0,
        0,
        CustomerSpec(id="c"),
        10_000,
    )
    customers = {row.arm: row.customers for row in counts}
    assert sum(customers.values()) == 10_000
    # Holdout 10%; the other 90% split 1:3.
    expected = {"holdout": 0.10, "plain": 0.9 * 0.25, "coupon": 0.9 * 0.75}
    for arm, share in expected.items():
        assert abs(customers[arm] / 10_000 - share) < 0.02, (arm, customers)
    held = next(row for row in counts if row.arm == "holdout")
    # The held-out receive no customer message (the webhook to the brand still goes).
    assert (held.messages, held.held_out) == (held.customers, held.customers)


def test_a_customer_keeps_the_arm_across_versions_reentry_and_migration() -> None:
    plan = compile_playbook(SPLIT)
    reworded = compile_playbook(SPLIT.replace("会员日来逛逛", "会员日到啦"))
    assert reworded.version != plan.version
    without = compile_playbook(
        SPLIT.split("experiment:")[0]
        + "stages:"
        + SPLIT.split("stages:")[1].replace("journey.variant == 'coupon'", "false")
    )
    customers = [f"c{i}" for i in range(200)]
    first = {c: enrol(catalog(plan), c).journeys["member_day"].variant for c in customers}
    assert set(first.values()) == {"plain", "coupon", "holdout"}
    for customer in customers:
        # The same customer, another version of the playbook: the same arm.
        assert enrol(catalog(reworded), customer).journeys["member_day"].variant == first[customer]
    # Re-entry after the journey ended: the same arm again.
    customer = next(c for c in customers if first[c] == "plain")
    state = enrol(catalog(plan), customer)
    paid = CustomerEvent(
        customer_id=customer, type="order.paid", occurred_at=T0, idempotency_key="o"
    )
    state = apply_event(state, paid, catalog(plan), T0 + timedelta(hours=1)).state
    assert state.journeys["member_day"].status == "ended"
    again = CustomerEvent(
        customer_id=customer, type="contact.added", occurred_at=T0, idempotency_key="again"
    )
    state = apply_event(state, again, catalog(plan), T0 + timedelta(days=1)).state
    assert state.journeys["member_day"].journey_id == "member_day#2"
    assert state.journeys["member_day"].variant == "plain"
    # A journey that started before the experiment gets its arm when migrated into it.
    for customer in customers[:20]:
        before = enrol(catalog(without), customer)
        assert before.journeys["member_day"].variant is None
        order = MigrationOrder(
            playbook="member_day", from_version=without.version, to_version=plan.version
        )
        moved = apply_migration(before, order, catalog(without, plan), T0 + timedelta(hours=1))
        assert moved.state.journeys["member_day"].variant == first[customer]


def test_the_arm_is_in_the_timeline_guards_templates_and_the_held_out_send() -> None:
    plan = compile_playbook(SPLIT)
    plans = catalog(plan)
    by_arm: dict[str, CustomerState] = {}
    for i in range(100):
        state = enrol(plans, f"c{i}")
        by_arm.setdefault(state.journeys["member_day"].variant or "", state)
    coupon, plain, held = by_arm["coupon"], by_arm["plain"], by_arm["holdout"]
    [enrolled] = [e for e in coupon.timeline if e.kind == "enrolled"]
    assert enrolled.detail["variant"] == "coupon"
    assert coupon.journeys["member_day"].stage == "couponed"  # the guard read the arm
    assert plain.journeys["member_day"].stage == "invited"
    [message] = [e for e in coupon.timeline if e.kind == "message" and e.channel != "webhook"]
    assert message.text == "满 99 减 20"
    # Held out: what would have gone out is recorded, nothing customer-facing is sent.
    [held_out] = [e for e in held.timeline if e.kind == "held_out"]
    assert (held_out.channel, held_out.text) == ("wecom.private", "会员日来逛逛")
    customer_messages = [
        e for e in held.timeline if e.kind == "message" and e.channel == "wecom.private"
    ]
    assert customer_messages == []
    result = apply_event(
        CustomerState(customer_id=held.customer_id),
        CustomerEvent(
            customer_id=held.customer_id,
            type="contact.added",
            occurred_at=T0,
            idempotency_key="k",
        ),
        plans,
        T0,
    )
    assert [d.channel for d in result.deliveries] == ["webhook"]
    # The held-out are tracked: their goal counts like anyone's.
    paid = CustomerEvent(
        customer_id=held.customer_id, type="order.paid", occurred_at=T0, idempotency_key="o"
    )
    after = apply_event(held, paid, plans, T0 + timedelta(hours=2)).state
    assert [e.kind for e in after.timeline if e.kind == "goal_reached"] == ["goal_reached"]


def test_the_timeline_of_a_simulated_customer_shows_the_arm() -> None:
    plan = compile_playbook(SPLIT)
    timeline = simulate(
        {plan.name: plan}, None, [ScenarioEvent(T0, "contact.added")], T0, 1, CustomerSpec("c7")
    )
    assert timeline[0].kind == "enrolled" and "variant" in timeline[0].detail


@pytest.mark.parametrize(
    "experiment,message",
    [
        ("{variants: {a: 1, holdout: 1}}", "cannot be called 'holdout'"),
        ("{holdout: 0}", "neither variants nor a holdout"),
        ("{holdout: 0.6}", "expected at most 0.5"),
        ("{variants: {a: 0}}", "0 is out of range"),
    ],
)
def test_an_experiment_that_cannot_work_is_refused(experiment: str, message: str) -> None:
    text = SPLIT.replace(
        "experiment:\n  id: member_day_2026\n  variants: {plain: 1, coupon: 3}\n  holdout: 0.1\n",
        f"experiment: {experiment}\n",
    ).replace("journey.variant == 'coupon'", "true")
    bundle = compile_bundle(*load_text(text, "p.yaml"))
    assert any(message in d.message for d in bundle.errors), bundle.diagnostics


def test_a_variant_compared_to_no_arm_is_a_warning() -> None:
    text = SPLIT.replace("journey.variant == 'coupon'\"", "journey.variant == 'cupon'\"")
    bundle = compile_bundle(*load_text(text, "p.yaml"))
    assert [d.message for d in bundle.diagnostics] == [
        "journey.variant is compared to 'cupon', which is no arm of the experiment "
        "(arms: coupon, holdout, plain)"
    ]
