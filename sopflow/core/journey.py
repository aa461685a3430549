"""The functional core: step a customer's journeys with one input and the current time.

Pure and deterministic: no I/O, no clock, no Temporal. The Temporal workflow and the
simulator both drive these functions, one with Temporal's clock and one with a virtual
clock, so both produce the same timeline for the same inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sopflow.core import profile as profile_rules
from sopflow.core.actions import (
    RUNAWAY_REASON,
    change_tags,
    complete_task,
    context_for,
    deliver_message,
    end_journey,
    escalate_task,
    guard_context_for,
    names_read_by,
    run_branch,
    shown_tag,
    try_enrol,
)
from sopflow.core.clock import EARLIEST, LATEST, parse_moment, shift, zone
from sopflow.core.context import countdown_view
from sopflow.core.deliveries import (
    SendCancel,
    as_status,
    record_delivery_outcome,
    record_send_outcome,
    request_cancels,
)
from sopflow.core.groups import learn_group
from sopflow.core.state import (
    SEEN_EVENT_KEYS_LIMIT,
    TIMELINE_LIMIT,
    CustomerEvent,
    CustomerState,
    JourneyState,
    ScheduledSend,
    StepResult,
    TaskState,
)
from sopflow.core.step import MAX_TRANSITIONS_PER_STEP, Catalog, Step, active_journeys
from sopflow.core.triggers import (
    countdown_branch,
    countdown_deadline,
    countdown_remaining,
    next_due,
    trigger_start,
)
from sopflow.language.channels import ENROLMENT_CHANNEL, TASK_CHANNEL
from sopflow.language.context import plain
from sopflow.language.durations import parse_duration
from sopflow.language.events import NOT_INTERACTIONS
from sopflow.language.plan import EVERYWHERE, CountdownPlan, Plan, TagStep, TriggerPlan
from sopflow.language.subjects import Audience

__all__ = [
    "Catalog",
    "SendCancel",
    "apply_due_timers",
    "apply_event",
    "as_status",
    "compact",
    "event_moment",
    "next_due_at",
    "quarantine",
    "record_delivery_outcome",
    "record_send_outcome",
    "request_cancels",
]

TASK_EVENTS = ("task.completed", "task.postponed")
ENROLMENT_REQUESTED = "enrolment.requested"
# Overdue timers fired in one step, each at its own instant (a year of a daily trigger is
# 365); past this many the rest are skipped at once (`_skip_overdue`), so that one step
# never holds a workflow task for seconds.
MAX_FIRINGS_PER_STEP = 5_000
# An order amount beyond this (or not a finite number) counts as 0: the API refuses it
# first (docs/limits.md); the core must not let one event turn a total into infinity.
MAX_AMOUNT = 1e12


def apply_event(
    state: CustomerState,
    event: CustomerEvent,
    catalog: Catalog,
    now: datetime,
    *,
    timeline_limit: int = TIMELINE_LIMIT,
    owned: bool = False,
    undo: bool = True,
    deliveries: bool = True,
) -> StepResult:
    """Feed one event: the profile learns first, then journeys react, then enrolment.

    The event acts at its `occurred_at`, clamped between the last time the core acted
    and `now`: a late event is honoured in order, never before what already happened.

    An event the core cannot process (anything raised while it acts) is quarantined:
    the state goes back to what it was before the event, the event is recorded in the
    timeline (kind `quarantined`, with its type, key and the error) and counted, and it
    has no other effect. What came due before it still happens.

    `undo=False` (with `owned`): no checkpoint is taken, and a failure raises UndoNeeded
    with the state half-applied; the caller drops it and runs the inputs again with undo.
    `deliveries=False`: the result carries no deliveries (for a caller that reads only the
    state); the state is the same.
    """
    step = Step(_own(state, owned), catalog, now, timeline_limit, undo, deliveries)
    if event.idempotency_key in step.state.seen_event_keys:
        return step.result()  # a duplicate event has no second effect
    moment = event_moment(step.state, event, now)
    _fire_due(step, moment)  # what was due before the event happens first
    saved = step.save()
    try:
        _remember_event_key(step.state, event.idempotency_key)
        step.now = moment
        step.event = event
        _learn(step, event)
        for journey in active_journeys(step.state):
            _react(step, journey, event)
        if event.type == ENROLMENT_REQUESTED:
            _requested_enrolment(step, event)
        for playbook in sorted(catalog.deployed):
            plan = catalog.deployed_plan(playbook)
            if plan is not None and plan.enrol.event == event.type:
                try_enrol(step, plan)  # a playbook of another audience enrols no one here
        _evaluate_conditions(step)
    except Exception as error:  # any failure of the core: quarantine, never half-applied
        step.restore(saved, error)
        step.event = None
        step.now = moment
        _remember_event_key(step.state, event.idempotency_key)
        step.quarantine(
            None,
            error,
            {"input": "event", "type": event.type, "idempotency_key": event.idempotency_key},
        )
    step.event = None
    step.state.clock = max(step.state.clock or moment, moment)
    return step.result()


def event_moment(state: CustomerState, event: CustomerEvent, now: datetime) -> datetime:
    """When an event acts: its `occurred_at`, not before the last time the core acted (nor
    before the earliest instant the core computes with), not after `now`."""
    return min(now, max(event.occurred_at, state.clock or event.occurred_at, EARLIEST))


def quarantine(
    state: CustomerState,
    now: datetime,
    error: BaseException,
    detail: dict[str, Any],
    *,
    owned: bool = False,
) -> CustomerState:
    """Record (and count) an input that could not be processed, for a shell that caught
    the failure itself: the timeline says what was skipped and why."""
    step = Step(_own(state, owned), Catalog(plans={}), now)
    step.quarantine(None, error, detail)
    return step.state


def apply_due_timers(
    state: CustomerState,
    catalog: Catalog,
    now: datetime,
    *,
    timeline_limit: int = TIMELINE_LIMIT,
    owned: bool = False,
    undo: bool = True,
    deliveries: bool = True,
) -> StepResult:
    """Fire everything due at or before `now`, earliest first, each at its own due time
    (`undo`, `deliveries`: as for `apply_event`)."""
    step = Step(_own(state, owned), catalog, now, timeline_limit, undo, deliveries)
    _fire_due(step, now)
    step.state.clock = max(step.state.clock or now, now)
    return step.result()


def _own(state: CustomerState, owned: bool) -> CustomerState:
    """The state a step may change: the caller's own when it hands it over (`owned`: the
    simulator and the workflow, which drop the old state), else a deep copy, so that the
    functions stay pure for everyone else. A deep copy of a long timeline per step made
    simulations quadratic."""
    return state if owned else state.model_copy(deep=True)


def next_due_at(state: CustomerState, catalog: Catalog) -> datetime | None:
    """The earliest moment anything is due for this customer, or None."""
    if state.clock is None:
        return None  # nothing has happened to this customer yet
    due = _earliest_due(Step(state, catalog, state.clock), None)
    return due.at if due else None


# ----------------------------------------------------------------------------- timers


@dataclass(frozen=True, slots=True, eq=False)
class TriggerDue:
    at: datetime
    journey: JourneyState
    key: str  # of the trigger in Plan.active_triggers of the journey's current stage


@dataclass(frozen=True, slots=True, eq=False)
class ScheduledDue:
    at: datetime
    journey: JourneyState
    send: ScheduledSend


@dataclass(frozen=True, slots=True, eq=False)
class TaskDue:
    at: datetime
    journey: JourneyState
    task: TaskState


@dataclass(frozen=True, slots=True, eq=False)
class ReviewDue:
    """A tier or lifecycle window closing."""

    at: datetime


DueItem = TriggerDue | ScheduledDue | TaskDue | ReviewDue


def _earliest_due(
    step: Step,
    limit: datetime | None,
    broken: list[tuple[JourneyState, str, Exception]] | None = None,
) -> DueItem | None:
    """The first thing due (at or before `limit`); of several at one instant, the first
    found, in a fixed order: journeys by name, then triggers, deferred sends, tasks. A
    trigger whose due time cannot be computed (a cron that never comes: croniter gives
    up) is left out, and reported in `broken`."""
    # The best so far as its parts: the item itself is built once, for the one returned
    # (the core asks after every event and every timer fired).
    best_at: datetime | None = None
    best_kind: type[TriggerDue | ScheduledDue | TaskDue] | None = None
    best_journey: JourneyState | None = None
    best_what: Any = None  # the trigger's key, the deferred send, the task
    state = step.state
    profile = state.profile
    for journey in active_journeys(state):
        plan = step.catalog.plan_of(journey)
        tz = step.timezone(plan)
        for key, trigger in plan.timed_triggers(journey.stage):
            try:
                due = next_due(trigger, key, journey, profile, tz, plan.interaction_events)
            except Exception as error:
                if broken is not None:
                    broken.append((journey, key, error))
                continue
            if (
                due is not None
                and (limit is None or due <= limit)
                and (best_at is None or due < best_at)
            ):
                best_at, best_kind, best_journey, best_what = due, TriggerDue, journey, key
        for scheduled in journey.scheduled:
            due = scheduled.due_at
            if (limit is None or due <= limit) and (best_at is None or due < best_at):
                best_at, best_kind, best_journey, best_what = (
                    due,
                    ScheduledDue,
                    journey,
                    scheduled,
                )
        for task in journey.tasks.values():
            if task.status == "open":
                due = task.due_at
                if (limit is None or due <= limit) and (best_at is None or due < best_at):
                    best_at, best_kind, best_journey, best_what = due, TaskDue, journey, task
    review = profile_rules.next_review(profile, step.profile_rules, state.clock or step.now)
    if (
        review is not None
        and (limit is None or review <= limit)
        and (best_at is None or review < best_at)
    ):
        return ReviewDue(review)
    if best_kind is None or best_at is None or best_journey is None:
        return None
    return best_kind(best_at, best_journey, best_what)


def _fire_due(step: Step, limit: datetime) -> None:
    """Fire what is due by `limit`, one item at a time. An item that fails is quarantined:
    its effects undone, the item consumed without acting (a trigger counts as fired, a
    deferred send is dropped, a task as escalated), the failure recorded; the next item
    fires as usual. If the due times themselves cannot be computed, that is recorded and
    nothing more fires in this step."""
    same_instant, last_instant, fired = 0, None, 0
    while True:
        broken: list[tuple[JourneyState, str, Exception]] = []
        try:
            item = _earliest_due(step, limit, broken)
        except Exception as error:
            step.quarantine(None, error, {"input": "timers"})
            break
        for journey_of, key, failure in broken:
            # Never due again in this stage visit; the others fire as usual.
            journey_of.fired[key] = LATEST
            given_up = {"input": "timer", "kind": "trigger", "trigger": key}
            step.quarantine(journey_of, failure, given_up)
        if item is None:
            break
        fired += 1
        if fired > MAX_FIRINGS_PER_STEP:
            _skip_overdue(step, limit)
            break
        step.now = max(item.at, step.state.clock or item.at)
        # Many firings at one instant mean a loop with no wait in it; months of overdue
        # timers after an outage are fine, each at its own instant.
        same_instant = same_instant + 1 if step.now == last_instant else 0
        last_instant = step.now
        if same_instant > MAX_TRANSITIONS_PER_STEP and not isinstance(item, ReviewDue):
            end_journey(step, item.journey, RUNAWAY_REASON)
            continue
        saved = step.save()
        try:
            _fire_item(step, item)
            _evaluate_conditions(step)
        except Exception as error:
            step.restore(saved, error)
            detail: dict[str, Any] = {
                "input": "timer",
                "kind": _KIND_OF[type(item)],
                "due_at": item.at.isoformat(),
            }
            try:  # the same item, in the restored state (the state it failed in is gone)
                again = _earliest_due(step, limit)
            except Exception:
                again = None
            if again is None:  # cannot be told apart from the rest: fire nothing more now
                step.quarantine(None, error, detail)
                break
            _consume(step, again)
            if isinstance(again, TriggerDue):
                detail["trigger"] = again.key
            step.quarantine(None if isinstance(again, ReviewDue) else again.journey, error, detail)
        step.state.clock = max(step.state.clock or step.now, step.now)
    step.now = limit


_KIND_OF: dict[type, str] = {
    TriggerDue: "trigger",
    ScheduledDue: "scheduled",
    TaskDue: "task",
    ReviewDue: "review",
}


def _skip_overdue(step: Step, limit: datetime) -> None:
    """Years of overdue timers (an event dated long ago, a daily trigger) would take one
    step minutes and stall the workflow: past MAX_FIRINGS_PER_STEP firings, what is still
    due by `limit` is consumed at once without acting, and recorded as one quarantine."""
    skipped = 0
    for journey in active_journeys(step.state):
        plan = step.catalog.plan_of(journey)
        tz = step.timezone(plan)
        for key, trigger in plan.timed_triggers(journey.stage):
            due = next_due(trigger, key, journey, step.state.profile, tz, plan.interaction_events)
            if due is not None and due <= limit:
                journey.fired[key] = limit
                skipped += 1
        overdue = [s for s in journey.scheduled if s.due_at <= limit]
        journey.scheduled = [s for s in journey.scheduled if s.due_at > limit]
        skipped += len(overdue)
        for task in journey.tasks.values():
            if task.status == "open" and task.due_at <= limit:
                task.status = "escalated"
                skipped += 1
    step.now = limit
    step.state.clock = max(step.state.clock or limit, limit)
    step.quarantine(
        None,
        RuntimeError(
            f"more than {MAX_FIRINGS_PER_STEP} timers came due in one step: the rest were "
            f"skipped up to {limit.isoformat()}"
        ),
        {"input": "timers", "skipped": skipped, "until": limit.isoformat()},
    )


def _fire_item(step: Step, item: DueItem) -> None:
    match item:
        case TriggerDue(journey=journey, key=key):
            _fire_trigger(step, journey, key)
        case ScheduledDue(journey=journey, send=scheduled):
            journey.scheduled.remove(scheduled)
            deliver_message(
                step,
                journey,
                step.catalog.plan_of(journey),
                scheduled.channel,
                scheduled.text,
                scheduled.transactional,
                visible_to=scheduled.visible_to,
            )
        case TaskDue(journey=journey, task=task):
            escalate_task(step, journey, task)
        case ReviewDue():
            _refresh_tiers(step)
            step.state.clock = step.now  # the review is done: look for the next one after it


def _consume(step: Step, item: DueItem) -> None:
    """Mark a due item done without acting on it (it is quarantined), so that it does not
    come due again: the next one can fire."""
    match item:
        case TriggerDue(journey=journey, key=key):
            journey.fired[key] = step.now
        case ScheduledDue(journey=journey, send=scheduled):
            journey.scheduled.remove(scheduled)
        case TaskDue(task=task):
            task.status = "escalated"
        case ReviewDue():
            step.state.clock = step.now


def _fire_trigger(step: Step, journey: JourneyState, key: str) -> None:
    plan = step.catalog.plan_of(journey)
    trigger = plan.trigger(journey.stage, key)
    start = trigger_start(journey, key)
    journey.fired[key] = step.now
    if trigger.kind == "wait":
        branch = trigger.on_timeout
        if branch is not None:
            run_branch(step, journey, plan, branch.actions, branch.goto)
        return
    if trigger.kind == "countdown":
        tz = step.timezone(plan)
        deadline = countdown_deadline(trigger, journey, step.state.profile, tz, start)
        branch_name = countdown_branch(trigger, start, deadline)
        if branch_name is not None and trigger.countdown is not None:
            _countdown_branch(step, journey, plan, trigger.countdown, branch_name, deadline)
            return
        if deadline is not None and step.now >= deadline:
            run_branch(step, journey, plan, (), trigger.goto)  # the deadline itself
            return
        extra = {
            "countdown": countdown_view(
                countdown_remaining(deadline or step.now, step.now), deadline
            )
        }
        run_branch(step, journey, plan, trigger.actions, None, extra)
        return
    run_branch(step, journey, plan, trigger.actions, trigger.goto)


def _countdown_branch(
    step: Step,
    journey: JourneyState,
    plan: Plan,
    countdown: CountdownPlan,
    name: str,
    deadline: datetime | None,
) -> None:
    """The deadline is missing or already past: record it, and take the declared branch."""
    written = (
        f"event.data.{countdown.deadline_event_key}"
        if countdown.deadline_event_key
        else countdown.deadline_attribute
    )
    step.record(
        "countdown_branch",
        journey,
        detail={
            "branch": name,
            "deadline": deadline.isoformat() if deadline else f"{written}: missing or not a time",
        },
    )
    branch = countdown.on_missing if name == "on_missing" else countdown.on_past
    assert branch is not None
    extra = {"countdown": countdown_view("0m", deadline)}
    run_branch(step, journey, plan, branch.actions, branch.goto, extra)


# ----------------------------------------------------------------------------- events


def _learn(step: Step, event: CustomerEvent) -> None:
    """Update the profile from the event before any journey sees it."""
    profile = step.state.profile
    data = event.data
    if event.type not in NOT_INTERACTIONS:
        profile.last_interaction_at = step.now
    profile.remember_event(event.type, step.now)
    if event.type == "contact.added" and profile.added_at is None:
        profile.added_at = step.now
    if isinstance(data.get("timezone"), str):
        try:
            zone(data["timezone"])
            profile.timezone = data["timezone"]
        except (KeyError, ValueError):
            pass  # an unknown zone keeps the current one rather than break every timer
    # Any event may carry what it teaches about the customer (a form, a CRM update).
    if isinstance(data.get("attributes"), dict):
        refused = profile_rules.set_attributes(profile.attributes, data["attributes"])
        for key, reason in refused:
            step.record(
                "attribute_rejected",
                None,
                detail={"scope": "customer", "attribute": key, "reason": reason},
            )
    if event.type in ("tag.added", "tag.removed") and isinstance(data.get("tag"), str):
        tags = (data["tag"],)
        change = TagStep(add=tags) if event.type == "tag.added" else TagStep(remove=tags)
        change_tags(step, None, change)
    match step.audience:
        case Audience.GROUP:
            learn_group(step, event)
            return
        case Audience.STAFF:
            return
    if event.type in ("group.joined", "group.left") and isinstance(data.get("chat_id"), str):
        groups = [g for g in profile.groups if g != data["chat_id"]]
        profile.groups = groups + ([data["chat_id"]] if event.type == "group.joined" else [])
    rules = step.catalog.profile
    if event.type in ("order.paid", "order.refunded"):
        amount = _number(data.get("amount"))
        if event.type == "order.paid":
            period = rules.tiers.period_seconds if rules and rules.tiers else None
            profile_rules.record_order(profile, step.now, amount, period)
        else:
            profile.total_spent = max(profile.total_spent - amount, 0.0)
    matching = [rule for rule in rules.tag_rules if rule.event == event.type] if rules else []
    if rules is not None and matching:
        # The context only when a tag rule reads it (most events have none), and of it
        # only the names the rules' guards and templates read.
        names = names_read_by([r.when for r in matching if r.when], [r.tag for r in matching])
        valid, rejected = profile_rules.event_tags(
            event,
            rules,
            context_for(step, None, None, roots=names),
            lambda source, ctx: step.guard(source, ctx),
        )
        change_tags(step, None, TagStep(add=tuple(valid)))
        for tag in rejected:
            step.record("tag_rejected", None, detail={"tag": shown_tag(tag), "event": event.type})
    _refresh_tiers(step)


def _number(value: Any) -> float:
    """An amount as a float; anything else (text, NaN, infinity, beyond MAX_AMOUNT) is 0."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return number if math.isfinite(number) and abs(number) <= MAX_AMOUNT else 0.0


def _requested_enrolment(step: Step, event: CustomerEvent) -> None:
    """A group journey asked for this customer (`enrol_member`): enrol them in the
    playbook it names, under that playbook's own re-entry rules and guard."""
    name = event.data.get("playbook")
    plan = step.catalog.deployed_plan(name) if isinstance(name, str) else None
    if plan is None:
        step.record(
            "send_failed",
            None,
            channel=ENROLMENT_CHANNEL,
            error=f"enrolment requested in '{name}', which is not deployed",
        )
        return
    try_enrol(step, plan)


def _refresh_tiers(step: Step) -> None:
    rules = step.profile_rules
    if rules is None or rules.tiers is None:
        return
    profile = step.state.profile
    period = rules.tiers.period_seconds
    tier = profile_rules.level_of(rules.tiers.value, profile, step.now, period)
    lifecycle = profile_rules.level_of(rules.tiers.lifecycle, profile, step.now, period)
    if tier != profile.tier:
        step.record("tier_changed", None, detail={"from": profile.tier, "to": tier})
        profile.tier = tier
    if lifecycle != profile.lifecycle:
        step.record("lifecycle_changed", None, detail={"from": profile.lifecycle, "to": lifecycle})
        profile.lifecycle = lifecycle


def _react(step: Step, journey: JourneyState, event: CustomerEvent) -> None:
    plan = step.catalog.plan_of(journey)
    # The guards read the journey as the event found it: built before a task event acts,
    # else only when a guard asks (most events match no guarded rule or trigger).
    context = _Context(step, journey, plan)
    if event.type in TASK_EVENTS:
        if event.type in plan.guarded_events():
            context.snapshot()
        _task_event(step, journey, event)
    for rule in plan.exit:
        if rule.event == event.type and (
            not rule.when or step.guard(rule.when, context(), journey)
        ):
            end_journey(step, journey, f"exit on {event.type}")
            return
    goal = plan.goal
    if (
        goal
        and goal.event == event.type
        and (not goal.when or step.guard(goal.when, context(), journey))
    ):
        if journey.goal_reached_at is None:
            journey.goal_reached_at = step.now
            step.record("goal_reached", journey, detail={"event": event.type})
        if goal.exit:
            end_journey(step, journey, "goal reached")
            return
    # The stage's own triggers first, then the playbook-wide ones: in each list the first
    # trigger that matches runs, so one event can run one of each (docs/language.md).
    own = [(str(i), t) for i, t in enumerate(plan.stages[journey.stage].triggers)]
    ran = _first_match(step, journey, plan, event, own, context)
    if journey.status != "active" or not plan.triggers:
        return
    if ran:  # the stage's trigger may have changed what the guards read
        context = _Context(step, journey, plan)
    everywhere = [(f"{EVERYWHERE}{i}", t) for i, t in enumerate(plan.triggers)]
    _first_match(step, journey, plan, event, everywhere, context)


def _first_match(
    step: Step,
    journey: JourneyState,
    plan: Plan,
    event: CustomerEvent,
    triggers: list[tuple[str, TriggerPlan]],
    context: _Context,
) -> bool:
    """Run the first event or wait trigger of `triggers` that this event matches."""
    for key, trigger in triggers:
        if trigger.kind not in ("event", "wait") or trigger.event != event.type:
            continue
        if trigger.when and not step.guard(trigger.when, context(), journey):
            continue
        journey.fired[key] = step.now  # a wait that got its event no longer times out
        run_branch(step, journey, plan, trigger.actions, trigger.goto)
        return True
    return False


class _Context:
    """A journey's guard context, each value computed when a guard first reads it
    (`guard_context`): building it whole cost more than the guards themselves.
    `snapshot()` fixes every value as the state holds it now, for guards that must read
    the journey as it was before the step changes it."""

    __slots__ = ("_built", "_journey", "_plan", "_step")

    def __init__(self, step: Step, journey: JourneyState, plan: Plan) -> None:
        self._step, self._journey, self._plan = step, journey, plan
        self._built: Mapping[str, Any] | None = None

    def __call__(self) -> Mapping[str, Any]:
        if self._built is None:
            self._built = guard_context_for(self._step, self._journey, self._plan)
        return self._built

    def snapshot(self) -> None:
        self._built = plain(self())


def _task_event(step: Step, journey: JourneyState, event: CustomerEvent) -> None:
    task = _find_task(journey, event.data)
    if task is None or task.status == "completed":
        return
    if event.type == "task.completed":
        complete_task(step, journey, step.catalog.plan_of(journey), task)
        return
    until = parse_moment(event.data.get("until"), zone(step.timezone()))
    if until is None and isinstance(event.data.get("by"), str):
        try:
            until = shift(task.due_at, parse_duration(event.data["by"]).total_seconds())
        except (ValueError, OverflowError):
            until = None
    if until is not None:
        task.due_at = until
        task.status = "open"
        step.record(
            "task_postponed",
            journey,
            channel=TASK_CHANNEL,
            text=task.title,
            detail={"task": task.name, "task_id": task.task_id, "due_at": until.isoformat()},
        )


def _find_task(journey: JourneyState, data: dict[str, Any]) -> TaskState | None:
    if isinstance(data.get("task_id"), str):
        return journey.tasks.get(data["task_id"])
    if isinstance(data.get("task"), str):
        named = [t for t in journey.tasks.values() if t.name == data["task"]]
        return named[-1] if named else None
    return None


def _evaluate_conditions(step: Step) -> None:
    """Fire condition triggers that became true, and exit rules that hold, after a change."""
    for _ in range(10):  # a firing may change the profile: look again, a bounded few times
        changed = False
        for journey in active_journeys(step.state):
            plan = step.catalog.plan_of(journey)
            exits = [rule.when for rule in plan.exit if rule.event is None and rule.when]
            triggers = plan.condition_triggers(journey.stage)
            if not exits and not triggers:
                continue  # nothing to evaluate: skip building the guard context
            context: Mapping[str, Any] = guard_context_for(step, journey, plan)
            if any(step.guard(when, context, journey) for when in exits):
                end_journey(step, journey, "exit condition met")
                changed = True
                continue
            for key, trigger in triggers:
                assert trigger.condition is not None
                value = step.guard(trigger.condition, context, journey)
                was = journey.conditions.get(key, False)
                journey.conditions[key] = value
                if value and not was:
                    stage_before = journey.stage
                    # The conditions after this one read the state as it was before it.
                    context = plain(context)
                    run_branch(step, journey, plan, trigger.actions, trigger.goto)
                    changed = True
                    if journey.stage != stage_before or journey.status != "active":
                        break
        if not changed:
            return


def _remember_event_key(state: CustomerState, key: str) -> None:
    state.seen_event_keys.append(key)
    if len(state.seen_event_keys) > SEEN_EVENT_KEYS_LIMIT:
        del state.seen_event_keys[: len(state.seen_event_keys) - SEEN_EVENT_KEYS_LIMIT]


def compact(state: CustomerState, max_bytes: int, recorded_seq: int) -> CustomerState:
    """Shrink a state whose JSON is over `max_bytes` (in place): the oldest timeline entries
    the journey ledger already holds (seq <= recorded_seq) go first, then the oldest
    remembered event keys. The timeline is a recent window anyway; the ledger keeps all."""

    def size() -> int:
        return len(state.model_dump_json().encode())

    while size() > max_bytes:
        recorded = sum(1 for e in state.timeline if e.seq <= recorded_seq)
        if recorded:
            drop = max(recorded // 2, 1)
            state.timeline = [
                e for i, e in enumerate(state.timeline) if i >= drop or e.seq > recorded_seq
            ]
        elif len(state.seen_event_keys) > 1:
            del state.seen_event_keys[: len(state.seen_event_keys) // 2]
        else:
            break  # nothing left to drop: the caps on the profile bound the rest
    return state
