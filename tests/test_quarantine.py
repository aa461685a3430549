"""What the core cannot process is quarantined: recorded, counted, skipped, the state kept.

And what could make it fail does not: instants far in the past or future, amounts that
are not finite numbers, tags and attributes of any size (issue 11, findings 1 and 2).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from sopflow.core import actions
from sopflow.core.clock import EARLIEST, LATEST
from sopflow.core.journey import (
    MAX_FIRINGS_PER_STEP,
    apply_due_timers,
    apply_event,
    compact,
    next_due_at,
)
from sopflow.core.state import (
    ATTRIBUTES_MAX_BYTES,
    TAG_MAX_CHARS,
    TAGS_LIMIT,
    CustomerEvent,
    CustomerState,
    OrderRecord,
    ScheduledSend,
    TaskState,
    TimelineEntry,
    checkpoint,
)
from sopflow.core.step import Catalog
from sopflow.language import compile_paths, compile_playbook
from sopflow.language.plan import Plan
from tests.conftest import REPO
from workflows.contracts import CARRIED_STATE_MAX_BYTES

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)

STEPS = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: steps}
enrol: {event: contact.added}
stages:
  first:
    on_enter:
      - task: {id: call, title: "Call", assignee: "staff:li", due: 1d}
    triggers:
      - event: message.received
        actions:
          - tag: {add: ["intent:hot"]}
          - set: {note: "replied"}
          - send: {channel: log, text: "boom"}
        goto: second
      - event: ping
        actions: [{send: {channel: log, text: "pong"}}]
      - after: 1h
        actions: [{send: {channel: log, text: "boom"}}]
      - after: 2h
        actions: [{send: {channel: log, text: "two hours"}}]
  second: {end: true}
"""


@pytest.fixture
def steps() -> Plan:
    return compile_playbook(STEPS, filename="steps.yaml")


@pytest.fixture
def failing_send(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fault in the core: a send whose text is "boom" raises midway through a step (after
    the actions before it changed the state)."""
    real = actions.send

    def send(step: Any, journey: Any, plan: Any, action: Any, extra: Any = None) -> None:
        if action.text == "boom":
            raise RuntimeError("boom")
        real(step, journey, plan, action, extra)

    monkeypatch.setattr(actions, "send", send)


def catalog(*plans: Plan) -> Catalog:
    return Catalog(plans={p.version: p for p in plans}, deployed={p.name: p.version for p in plans})


def event(kind: str, key: str, at: datetime = T0, **data: Any) -> CustomerEvent:
    return CustomerEvent(
        customer_id="c1", type=kind, occurred_at=at, data=data, idempotency_key=key
    )


def dump(state: CustomerState) -> dict[str, Any]:
    return json.loads(state.model_dump_json())


# ----------------------------------------------------------------------------- checkpoints

# Where a checkpoint may share objects with the state: items the core never changes in
# place (it appends or replaces them), and attribute values (replaced, never edited).
SHARED_ITEMS = (TimelineEntry, OrderRecord, ScheduledSend, str, datetime)


def rich_state(steps: Plan) -> CustomerState:
    state = apply_event(
        CustomerState(customer_id="c1"), event("contact.added", "a"), catalog(steps), T0
    ).state
    state.profile.attributes = {"prefs": {"colour": ["red"]}, "n": 1}
    state.profile.scores = {"loyalty": 2.0}
    state.profile.recent_orders = [OrderRecord(at=T0, amount=9.9)]
    journey = state.journeys["steps"]
    journey.attributes = {"k": {"nested": [1]}}
    journey.counters = {"first": 1}
    journey.fired = {"0": T0}
    journey.conditions = {"1": True}
    journey.scheduled = [ScheduledSend(due_at=T0, stage="first", channel="log", text="x")]
    state.enrolment_counts = {"steps": 1}
    state.sent_at = [T0]
    return state


def assert_shares_nothing_mutable(original: Any, copy: Any, path: str) -> None:
    """Walk both, field by field: every model, dict and list that a step may change in
    place must be a distinct object in the copy."""
    if isinstance(original, SHARED_ITEMS):
        return
    if isinstance(original, TaskState) and original.status == "completed":
        assert original is copy  # shared: a completed task never changes again
        return
    if isinstance(original, BaseModel | dict | list):
        assert original is not copy, f"{path} is shared by the checkpoint"
    if isinstance(original, BaseModel):
        assert type(original) is type(copy)
        for name in type(original).model_fields:
            if path.endswith("tasks.*") and name == "on_complete":
                continue  # plan data, never changed
            assert_shares_nothing_mutable(
                getattr(original, name), getattr(copy, name), f"{path}.{name}"
            )
    elif isinstance(original, dict):
        assert original.keys() == copy.keys()
        if path.endswith(".attributes"):
            return  # values are replaced, never edited in place
        for key in original:
            assert_shares_nothing_mutable(original[key], copy[key], f"{path}.*")
    elif isinstance(original, list):
        assert len(original) == len(copy)
        for a, b in zip(original, copy, strict=True):
            assert_shares_nothing_mutable(a, b, f"{path}[]")


def test_a_checkpoint_shares_nothing_that_a_step_changes_in_place(steps: Plan) -> None:
    state = rich_state(steps)
    assert state.journeys["steps"].tasks  # a task, created on entering the stage
    saved = checkpoint(state)
    assert dump(saved) == dump(state)
    assert_shares_nothing_mutable(state, saved, "state")
    # A new field of any model is walked too: a checkpoint that forgot it fails here.
    assert isinstance(next(iter(saved.journeys["steps"].tasks.values())), TaskState)


def test_a_checkpoint_shares_a_completed_task_which_no_step_changes(steps: Plan) -> None:
    state = rich_state(steps)
    [task] = state.journeys["steps"].tasks.values()
    later = T0 + timedelta(minutes=5)
    state = apply_event(
        state, event("task.completed", "done", later, task_id=task.task_id), catalog(steps), later
    ).state
    [done] = state.journeys["steps"].tasks.values()
    assert done.status == "completed"
    saved = checkpoint(state)
    assert saved.journeys["steps"].tasks[done.task_id] is done
    assert_shares_nothing_mutable(state, saved, "state")
    # Why sharing it is safe: completing or postponing it again changes nothing in it.
    before = done.model_dump()
    for kind, data in (("task.postponed", {"by": "2d"}), ("task.completed", {})):
        state = apply_event(
            state,
            event(kind, f"again-{kind}", later, task_id=done.task_id, **data),
            catalog(steps),
            later,
            owned=True,
        ).state
    assert state.journeys["steps"].tasks[done.task_id].model_dump() == before


# ----------------------------------------------------------------------------- quarantine


@pytest.mark.usefixtures("failing_send")
def test_an_event_that_fails_midway_is_quarantined_and_the_state_is_as_before(
    steps: Plan,
) -> None:
    added = apply_event(
        CustomerState(customer_id="c1"), event("contact.added", "a"), catalog(steps), T0
    )
    before = dump(added.state)
    failed = apply_event(
        added.state, event("message.received", "m1"), catalog(steps), T0 + timedelta(minutes=1)
    )
    after = dump(failed.state)
    # The tag and the attribute written before the send raised are gone; no delivery.
    assert after["profile"] == before["profile"]
    assert after["journeys"] == before["journeys"]
    assert failed.deliveries == []
    [entry] = failed.state.timeline[len(added.state.timeline) :]
    assert (entry.kind, entry.error) == ("quarantined", "RuntimeError: boom")
    assert entry.detail == {"input": "event", "type": "message.received", "idempotency_key": "m1"}
    assert failed.state.quarantined == 1
    # Skipped once and for all: the same event again has no effect; the next one acts.
    again = apply_event(failed.state, event("message.received", "m1"), catalog(steps), T0)
    assert dump(again.state) == after
    ping = apply_event(again.state, event("ping", "p1"), catalog(steps), T0 + timedelta(minutes=2))
    assert [d.text for d in ping.deliveries] == ["pong"]
    assert ping.state.quarantined == 1


@pytest.mark.usefixtures("failing_send")
def test_a_timer_that_fails_is_quarantined_and_the_next_one_fires(steps: Plan) -> None:
    added = apply_event(
        CustomerState(customer_id="c1"), event("contact.added", "a"), catalog(steps), T0
    )
    fired = apply_due_timers(added.state, catalog(steps), T0 + timedelta(hours=3))
    quarantined = [e for e in fired.state.timeline if e.kind == "quarantined"]
    assert [(e.stage, e.error, e.detail) for e in quarantined] == [
        (
            "first",
            "RuntimeError: boom",
            {
                "input": "timer",
                "kind": "trigger",
                "due_at": (T0 + timedelta(hours=1)).isoformat(),
                "trigger": "2",
            },
        )
    ]
    assert [d.text for d in fired.deliveries] == ["two hours"]  # the next timer fired
    # Consumed: it does not come due again.
    assert next_due_at(fired.state, catalog(steps)) == T0 + timedelta(days=1)  # the task


# ----------------------------------------------------------------------------- instants

EVERY_TIMER = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: moments}
enrol: {event: contact.added}
stages:
  waiting:
    triggers:
      - at: {attribute: birthday, offset: -7d, time: "10:00", yearly: true}
        actions: [{send: {channel: log, text: birthday}}]
      - at: {attribute: renewal, offset: 36500d}
        actions: [{send: {channel: log, text: renewal}}]
      - countdown: {deadline: renewal, offsets: [3d, 1d]}
        actions: [{send: {channel: log, text: countdown}}]
      - day: 3
        actions: [{send: {channel: log, text: day three}}]
      - every: 1d
        actions: [{tag: {add: ["seen:daily"]}}]
"""


@pytest.mark.parametrize(
    "moment",
    [
        "0001-01-01",
        "0001-01-01T00:00:00+00:00",
        "9999-12-31",
        "9999-12-31T23:59:59+00:00",
        "0001-02-29",  # not even a date
    ],
)
def test_moments_at_the_ends_of_time_never_overflow(moment: str) -> None:
    plan = compile_playbook(EVERY_TIMER, filename="moments.yaml")
    bundle = compile_paths([REPO / "playbooks"])
    rules = Catalog(
        plans={plan.version: plan}, deployed={plan.name: plan.version}, profile=bundle.profile
    )
    attributes = {"birthday": moment, "renewal": moment}
    far_past = datetime(1, 1, 1, tzinfo=UTC)
    state = CustomerState(customer_id="c1")
    # The customer's first event dated year 1 (in New York, behind UTC), then orders.
    for index, (kind, data) in enumerate(
        [
            ("contact.added", {"timezone": "America/New_York", "attributes": attributes}),
            ("order.paid", {"amount": 10}),
            ("profile.updated", {"attributes": attributes}),
        ]
    ):
        state = apply_event(state, event(kind, f"k{index}", far_past, **data), rules, T0).state
    due = next_due_at(state, rules)
    assert due is not None and EARLIEST <= due <= LATEST
    state = apply_due_timers(state, rules, T0 + timedelta(days=400)).state
    assert all(EARLIEST <= e.at <= LATEST for e in state.timeline)
    # Nothing failed; the daily trigger's 46,000 overdue firings since 1900 (where the
    # year-1 event acts) were cut short at MAX_FIRINGS_PER_STEP and the rest skipped, so
    # the step stays short.
    quarantined = [e for e in state.timeline if e.kind == "quarantined"]
    assert [e.detail["input"] for e in quarantined] == ["timers"]
    assert quarantined[0].error == (
        f"RuntimeError: more than {MAX_FIRINGS_PER_STEP} timers came due in one step: the "
        f"rest were skipped up to {(T0 + timedelta(days=400)).isoformat()}"
    )
    assert state.journeys["moments"].fired["4"] >= T0  # the daily trigger caught up
    assert next_due_at(state, rules) is not None


@pytest.mark.parametrize("amount", ["inf", "-Infinity", "nan", float("nan"), 10**400, "1e999"])
def test_an_amount_that_is_not_a_finite_number_counts_as_zero(amount: object) -> None:
    bundle = compile_paths([REPO / "playbooks"])
    rules = Catalog(
        plans={p.version: p for p in bundle.plans.values()},
        deployed={n: p.version for n, p in bundle.plans.items()},
        profile=bundle.profile,
    )
    state = apply_event(
        CustomerState(customer_id="c1"), event("order.paid", "o1", amount=59), rules, T0
    ).state
    state = apply_event(state, event("order.paid", "o2", amount=amount), rules, T0).state
    assert (state.profile.order_count, state.profile.total_spent) == (2, 59.0)
    json.loads(state.model_dump_json())  # serialisable: no NaN, no infinity
    assert state.quarantined == 0


# ----------------------------------------------------------------------------- bounds


def test_tags_and_attributes_beyond_the_bounds_are_refused_and_recorded(steps: Plan) -> None:
    rules = catalog(steps)
    state = CustomerState(customer_id="c1")
    long_tag = "source_channel:" + "x" * 3000
    state = apply_event(state, event("tag.added", "t0", tag=long_tag), rules, T0).state
    for index in range(TAGS_LIMIT + 5):
        state = apply_event(
            state, event("tag.added", f"t{index + 1}", tag=f"g:{index}"), rules, T0
        ).state
    big = {"blob": "y" * 9000}
    many = {f"a{i}": "z" * 1000 for i in range(80)}
    state = apply_event(state, event("profile.updated", "p1", attributes=big), rules, T0).state
    state = apply_event(state, event("profile.updated", "p2", attributes=many), rules, T0).state
    assert len(state.profile.tags) == TAGS_LIMIT
    assert all(len(tag) <= TAG_MAX_CHARS for tag in state.profile.tags)
    refused = [e.detail for e in state.timeline if e.kind == "tag_rejected"]
    assert refused[0] == {
        "tag": long_tag[:TAG_MAX_CHARS] + "…",
        "reason": f"a tag of {len(long_tag)} characters: at most {TAG_MAX_CHARS}",
    }
    assert (
        refused[-1]["reason"] == f"the customer has {TAGS_LIMIT} tags already: at most {TAGS_LIMIT}"
    )
    assert "blob" not in state.profile.attributes
    size = len(json.dumps(state.profile.attributes, separators=(",", ":")).encode())
    assert size <= ATTRIBUTES_MAX_BYTES < size + 1000 + 10  # filled up to the bound, not past
    rejected = [e.detail for e in state.timeline if e.kind == "attribute_rejected"]
    assert rejected[0] == {
        "scope": "customer",
        "attribute": "blob",
        "reason": "a value of 9002 bytes: at most 8192",
    }
    assert rejected[-1]["reason"].startswith("the attributes would take ")


def test_the_carried_state_stays_bounded_whatever_the_events_carry(steps: Plan) -> None:
    """Thousands of the largest events the API accepts: the state stays far under
    Temporal's 2 MB payload limit, and compaction brings it under the carried bound."""
    rules = catalog(steps)
    state = CustomerState(customer_id="c1")
    for index in range(3000):
        data = {
            "attributes": {f"k{index % 300}": "v" * 8000},
            "tag": f"t:{index}-" + "x" * 120,
            "text": "字" * 8000,
        }
        kind = "tag.added" if index % 2 else "profile.updated"
        key = f"{index}-" + "k" * 190
        state = apply_event(state, event(kind, key, T0, **data), rules, T0, owned=True).state
    size = len(state.model_dump_json().encode())
    assert size < 1_000_000
    compact(state, CARRIED_STATE_MAX_BYTES, recorded_seq=state.timeline_seq)
    assert len(state.model_dump_json().encode()) <= CARRIED_STATE_MAX_BYTES


def test_compaction_drops_only_what_the_ledger_holds(steps: Plan) -> None:
    rules = catalog(steps)
    state = CustomerState(customer_id="c1")
    for index in range(400):
        state = apply_event(
            state, event("tag.added", f"k{index}", tag=f"t:{index}-" + "x" * 100), rules, T0
        ).state
    unrecorded = state.timeline[-50:]
    compact(state, 20_000, recorded_seq=unrecorded[0].seq - 1)
    assert state.timeline[-50:] == unrecorded  # not yet in the ledger: kept
    assert len(state.timeline) < 400


NEVER = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: never}
enrol: {event: contact.added}
stages:
  waiting:
    triggers:
      - cron: "0 9 1 1 *"
        actions: [{send: {channel: log, text: new year}}]
      - after: 1h
        actions: [{send: {channel: log, text: an hour later}}]
"""


def test_a_trigger_whose_due_time_cannot_be_computed_is_given_up_alone() -> None:
    """A cron that never comes (31 February: croniter gives up with an error) must not
    stop the customer's other timers: it is quarantined once, the rest fire."""
    compiled = compile_playbook(NEVER, filename="never.yaml")
    stage = compiled.stages["waiting"]
    impossible = stage.triggers[0].model_copy(update={"cron": "0 0 31 2 *"})
    stage = stage.model_copy(update={"triggers": (impossible, *stage.triggers[1:])})
    plan = compiled.model_copy(update={"stages": {**compiled.stages, "waiting": stage}})
    rules = catalog(plan)
    state = apply_event(
        CustomerState(customer_id="c1"), event("contact.added", "a"), rules, T0
    ).state
    assert next_due_at(state, rules) == T0 + timedelta(hours=1)
    fired = apply_due_timers(state, rules, T0 + timedelta(hours=2))
    assert [d.text for d in fired.deliveries] == ["an hour later"]
    [given_up] = [e for e in fired.state.timeline if e.kind == "quarantined"]
    assert given_up.detail == {"input": "timer", "kind": "trigger", "trigger": "0"}
    assert given_up.error is not None and given_up.error.startswith("CroniterBadDateError")
    later = apply_due_timers(fired.state, rules, T0 + timedelta(days=3))
    assert later.state.quarantined == 1  # recorded once, not at every step
    assert next_due_at(later.state, rules) is None
