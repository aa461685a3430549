"""The functional core, stepped by hand on a virtual clock: no Temporal anywhere."""

import subprocess
import sys
from datetime import datetime, timedelta

from sopflow.core.journey import apply_due_timers, apply_event, next_due_at, record_delivery_outcome
from sopflow.core.state import CustomerEvent, CustomerState, StepResult
from sopflow.core.step import Catalog
from sopflow.language import Plan
from sopflow.language.plan import EnrolPlan, StagePlan, TriggerPlan
from tests.conftest import REPO, T0


def catalog(*plans: Plan, deployed: bool = True) -> Catalog:
    return Catalog(
        plans={p.version: p for p in plans},
        deployed={p.name: p.version for p in plans} if deployed else {},
    )


def event(kind: str, key: str, at: datetime = T0) -> CustomerEvent:
    return CustomerEvent(customer_id="c1", type=kind, occurred_at=at, idempotency_key=key)


def added(plan: Plan, state: CustomerState | None = None) -> StepResult:
    state = state or CustomerState(customer_id="c1")
    return apply_event(
        state,
        event("contact.added", "k-added"),
        catalog(plan),
        T0,
    )


def kinds(state: CustomerState) -> list[tuple[str, str]]:
    return [(e.kind, e.stage) for e in state.timeline]


def test_enrolment_event_starts_a_journey_and_runs_on_enter(welcome_plan: Plan) -> None:
    result = added(welcome_plan)
    journey = result.state.journeys["welcome"]
    assert (journey.stage, journey.status, journey.version) == (
        "icebreak",
        "active",
        welcome_plan.version,
    )
    assert kinds(result.state) == [
        ("enrolled", "icebreak"),
        ("stage_entered", "icebreak"),
        ("message", "icebreak"),
    ]
    [delivery] = result.deliveries
    assert delivery.channel == "log" and delivery.text.startswith("你好")
    assert delivery.idempotency_key == "c1/welcome#1/1"


def test_other_events_do_not_enrol(welcome_plan: Plan) -> None:
    result = apply_event(
        CustomerState(customer_id="c1"),
        event("order.paid", "k"),
        catalog(welcome_plan),
        T0,
    )
    assert result.state.journeys == {} and result.deliveries == []


def test_event_trigger_moves_to_its_goto_stage(welcome_plan: Plan) -> None:
    plans = catalog(welcome_plan)
    state = added(welcome_plan).state
    later = T0 + timedelta(hours=5)
    result = apply_event(state, event("message.received", "k2", later), plans, later)
    journey = result.state.journeys["welcome"]
    assert (journey.stage, journey.status, journey.ended_at) == ("engaged", "ended", later)
    assert [(d.channel, d.stage) for d in result.deliveries] == [("webhook", "engaged")]
    assert kinds(result.state)[-3:] == [
        ("stage_entered", "engaged"),
        ("message", "engaged"),
        ("journey_ended", "engaged"),
    ]


def test_after_trigger_fires_when_due_and_not_before(welcome_plan: Plan) -> None:
    plans = catalog(welcome_plan)
    state = added(welcome_plan).state
    assert next_due_at(state, plans) == T0 + timedelta(days=3)
    early = apply_due_timers(state, plans, T0 + timedelta(days=3) - timedelta(seconds=1))
    assert early.state.journeys["welcome"].stage == "icebreak" and early.deliveries == []
    due = apply_due_timers(state, plans, T0 + timedelta(days=3))
    assert due.state.journeys["welcome"].stage == "reactivate"
    assert [d.idempotency_key for d in due.deliveries] == ["c1/welcome#1/2"]
    assert next_due_at(due.state, plans) == T0 + timedelta(days=17)


def test_overdue_timers_fire_in_order_at_their_own_due_times(welcome_plan: Plan) -> None:
    # A worker that was down for a month catches up: both timers fire, each stamped
    # with the time it was due, so the timeline reads as if nothing had been late.
    state = added(welcome_plan).state
    result = apply_due_timers(state, catalog(welcome_plan), T0 + timedelta(days=30))
    stages = [(e.kind, e.stage, e.at - T0) for e in result.state.timeline[3:]]
    assert stages == [
        ("stage_entered", "reactivate", timedelta(days=3)),
        ("message", "reactivate", timedelta(days=3)),
        ("stage_entered", "dormant", timedelta(days=17)),
        ("journey_ended", "dormant", timedelta(days=17)),
    ]
    assert next_due_at(result.state, catalog(welcome_plan)) is None


def test_a_duplicate_event_has_no_second_effect(welcome_plan: Plan) -> None:
    plans = catalog(welcome_plan)
    first = added(welcome_plan)
    again = apply_event(
        first.state,
        event("contact.added", "k-added"),
        plans,
        T0 + timedelta(minutes=1),
    )
    assert again.deliveries == [] and again.state == first.state


def test_a_finished_journey_is_not_entered_again(welcome_plan: Plan) -> None:
    plans = catalog(welcome_plan)
    ended = apply_event(added(welcome_plan).state, event("message.received", "k2"), plans, T0)
    again = apply_event(ended.state, event("contact.added", "k3"), plans, T0)
    assert again.deliveries == [] and again.state.enrolment_counts == {"welcome": 1}


def test_in_flight_journey_keeps_its_version(welcome_plan: Plan, make_plan) -> None:
    state = added(welcome_plan).state
    text = (REPO / "playbooks/welcome.yaml").read_text().replace("after: 3d", "after: 1d")
    newer = make_plan(text)
    plans = Catalog(
        plans={welcome_plan.version: welcome_plan, newer.version: newer},
        deployed={"welcome": newer.version},
    )
    # Deploying the newer version changes nothing for this customer: the timer stays at 3d.
    result = apply_due_timers(state, plans, T0 + timedelta(days=2))
    assert result.state.journeys["welcome"].stage == "icebreak"
    assert next_due_at(result.state, plans) == T0 + timedelta(days=3)


def test_end_action_and_end_stage(make_plan) -> None:
    plan = make_plan("""\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: short}
enrol: {event: contact.added}
stages:
  only:
    on_enter:
      - send: {channel: log, text: one}
      - end: true
      - send: {channel: log, text: never sent}
""")
    result = added(plan)
    assert [d.text for d in result.deliveries] == ["one"]
    assert result.state.journeys["short"].status == "ended"


def test_a_zero_delay_loop_cannot_hang_the_step() -> None:
    # The compiler refuses such a playbook; a plan built by hand shows the runtime bound.
    loop = {
        "a": StagePlan(triggers=(TriggerPlan(kind="after", after_seconds=0, goto="b"),)),
        "b": StagePlan(triggers=(TriggerPlan(kind="after", after_seconds=0, goto="a"),)),
    }
    plan = Plan(
        name="loop",
        version="v1",
        entry_stage="a",
        enrol=EnrolPlan(event="contact.added"),
        stages=loop,
    )
    result = apply_due_timers(added(plan).state, catalog(plan), T0)
    assert result.state.journeys["loop"].status == "ended"
    assert (
        next_due_at(result.state, catalog(plan)) is None
    )  # so the workflow cannot spin on it either
    ended = result.state.timeline[-1]
    assert ended.kind == "journey_ended" and "zero-delay cycle" in (ended.error or "")


def test_inputs_are_never_mutated(welcome_plan: Plan) -> None:
    state = CustomerState(customer_id="c1")
    before = state.model_copy(deep=True)
    added(welcome_plan, state)
    assert state == before


def test_delivery_outcome_is_recorded_on_the_message(welcome_plan: Plan) -> None:
    state = added(welcome_plan).state
    failed = record_delivery_outcome(state, "c1/welcome#1/1", delivered=False, error="HTTP 404")
    message = failed.timeline[-1]
    assert (message.status, message.error) == ("failed", "HTTP 404")
    assert state.timeline[-1].status == "pending"


def test_timeline_and_seen_keys_stay_bounded(welcome_plan: Plan) -> None:
    from sopflow.core.state import SEEN_EVENT_KEYS_LIMIT

    plans = catalog(welcome_plan)
    state = CustomerState(customer_id="c1")
    for index in range(SEEN_EVENT_KEYS_LIMIT + 50):
        state = apply_event(state, event("page.viewed", f"k{index}"), plans, T0).state
    assert len(state.seen_event_keys) == SEEN_EVENT_KEYS_LIMIT
    assert state.seen_event_keys[-1] == f"k{SEEN_EVENT_KEYS_LIMIT + 49}"


def test_core_imports_nothing_from_temporal() -> None:
    code = (
        "import sys, sopflow.core.journey, sopflow.language; "
        "bad = [m for m in sys.modules if m.startswith('temporalio')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
