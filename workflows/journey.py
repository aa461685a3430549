"""The functional core: step a customer's journeys with one input and the current time.

Pure and deterministic: no I/O, no clock, no Temporal. The Temporal workflow and the
simulator both drive these functions, one with Temporal's clock and one with a virtual
clock, so both produce the same timeline for the same inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from sopflow.language.plan import ActionStep, Plan, SendStep
from workflows.state import (
    SEEN_EVENT_KEYS_LIMIT,
    TIMELINE_LIMIT,
    CustomerEvent,
    CustomerState,
    Delivery,
    JourneyState,
    StepResult,
    TimelineEntry,
    Timer,
)

# A playbook whose stages jump to each other with no wait could loop forever inside one
# step; the compiler will reject such cycles, and this bound keeps the runtime safe anyway.
MAX_TRANSITIONS_PER_STEP = 100
RUNAWAY_REASON = (
    f"stopped after {MAX_TRANSITIONS_PER_STEP} transitions without a wait (a zero-delay cycle)"
)


class _Step:
    """Mutable scratchpad for one step; callers only ever see the returned copy."""

    def __init__(self, state: CustomerState, now: datetime) -> None:
        self.state = state
        self.now = now
        self.deliveries: list[Delivery] = []
        self.transitions = 0

    def record(self, entry: TimelineEntry) -> None:
        timeline = self.state.timeline
        timeline.append(entry)
        if len(timeline) > TIMELINE_LIMIT:
            del timeline[: len(timeline) - TIMELINE_LIMIT]

    def result(self) -> StepResult:
        return StepResult(state=self.state, deliveries=self.deliveries)


def apply_event(
    state: CustomerState,
    event: CustomerEvent,
    plans: Mapping[str, Plan],
    deployed: Mapping[str, str],
    now: datetime,
) -> StepResult:
    """Feed one event: existing journeys react first, then deployed playbooks may enrol.

    `plans` maps plan version -> plan and must hold every version referenced by a journey
    or by `deployed` (playbook name -> version currently deployed).
    """
    step = _Step(state.model_copy(deep=True), now)
    if event.idempotency_key in step.state.seen_event_keys:
        return step.result()  # a duplicate event has no second effect
    _remember_event_key(step.state, event.idempotency_key)

    for journey in _active_journeys(step.state):
        plan = plans[journey.version]
        stage = plan.stages[journey.stage]
        for trigger in stage.triggers:
            if trigger.kind == "event" and trigger.event == event.type:
                _fire(step, journey, plan, trigger.actions, trigger.goto)
                break

    for playbook in sorted(deployed):
        plan = plans[deployed[playbook]]
        if plan.enrol_event == event.type and playbook not in step.state.journeys:
            _enrol(step, plan)
    return step.result()


def apply_due_timers(state: CustomerState, plans: Mapping[str, Plan], now: datetime) -> StepResult:
    """Fire every timer due at or before `now`, earliest first."""
    step = _Step(state.model_copy(deep=True), now)
    while (due := _earliest_due_timer(step.state, now)) is not None:
        journey, timer = due
        journey.timers.remove(timer)
        step.transitions += 1
        if step.transitions > MAX_TRANSITIONS_PER_STEP:
            _end(step, journey, reason=RUNAWAY_REASON)
            continue
        plan = plans[journey.version]
        trigger = plan.stages[journey.stage].triggers[timer.trigger_index]
        # The timer's own due time is when it fired, even if the worker was late to run it.
        step.now = timer.due_at
        _fire(step, journey, plan, trigger.actions, trigger.goto)
    step.now = now
    return step.result()


def next_due_at(state: CustomerState) -> datetime | None:
    """The earliest timer of any active journey, or None when nothing is scheduled."""
    dues = [t.due_at for j in _active_journeys(state) for t in j.timers]
    return min(dues) if dues else None


def record_delivery_outcome(
    state: CustomerState, idempotency_key: str, delivered: bool, error: str | None = None
) -> CustomerState:
    """Mark a message in the timeline delivered or failed, as the shell learned it."""
    updated = state.model_copy(deep=True)
    for entry in reversed(updated.timeline):
        if entry.idempotency_key == idempotency_key:
            entry.status = "delivered" if delivered else "failed"
            entry.error = error
            break
    return updated


def _active_journeys(state: CustomerState) -> list[JourneyState]:
    return [
        state.journeys[name]
        for name in sorted(state.journeys)
        if state.journeys[name].status == "active"
    ]


def _earliest_due_timer(state: CustomerState, now: datetime) -> tuple[JourneyState, Timer] | None:
    best: tuple[JourneyState, Timer] | None = None
    for journey in _active_journeys(state):
        for timer in journey.timers:
            if timer.due_at <= now and (best is None or timer.due_at < best[1].due_at):
                best = (journey, timer)
    return best


def _remember_event_key(state: CustomerState, key: str) -> None:
    state.seen_event_keys.append(key)
    if len(state.seen_event_keys) > SEEN_EVENT_KEYS_LIMIT:
        del state.seen_event_keys[: len(state.seen_event_keys) - SEEN_EVENT_KEYS_LIMIT]


def _enrol(step: _Step, plan: Plan) -> None:
    count = step.state.enrolment_counts.get(plan.name, 0) + 1
    step.state.enrolment_counts[plan.name] = count
    journey = JourneyState(
        journey_id=f"{plan.name}#{count}",
        playbook=plan.name,
        version=plan.version,
        stage=plan.entry_stage,
        enrolled_at=step.now,
        entered_stage_at=step.now,
    )
    step.state.journeys[plan.name] = journey
    step.record(
        TimelineEntry(at=step.now, kind="enrolled", playbook=plan.name, stage=plan.entry_stage)
    )
    _enter_stage(step, journey, plan, plan.entry_stage)


def _fire(
    step: _Step,
    journey: JourneyState,
    plan: Plan,
    actions: tuple[ActionStep, ...],
    goto: str | None,
) -> None:
    _run_actions(step, journey, plan, actions)
    if goto is not None and journey.status == "active":
        _enter_stage(step, journey, plan, goto)


def _enter_stage(step: _Step, journey: JourneyState, plan: Plan, stage_name: str) -> None:
    step.transitions += 1
    if step.transitions > MAX_TRANSITIONS_PER_STEP:
        _end(step, journey, reason=RUNAWAY_REASON)
        return
    stage = plan.stages[stage_name]
    journey.stage = stage_name
    journey.entered_stage_at = step.now
    journey.timers = [
        Timer(
            due_at=step.now + timedelta(seconds=trigger.after_seconds or 0),
            stage=stage_name,
            trigger_index=index,
        )
        for index, trigger in enumerate(stage.triggers)
        if trigger.kind == "after"
    ]
    step.record(
        TimelineEntry(at=step.now, kind="stage_entered", playbook=plan.name, stage=stage_name)
    )
    _run_actions(step, journey, plan, stage.on_enter)
    if stage.end and journey.status == "active":
        _end(step, journey)


def _run_actions(
    step: _Step, journey: JourneyState, plan: Plan, actions: tuple[ActionStep, ...]
) -> None:
    for action in actions:
        if journey.status != "active":
            return
        if isinstance(action, SendStep):
            _send(step, journey, action)
        else:
            _end(step, journey)


def _send(step: _Step, journey: JourneyState, action: SendStep) -> None:
    journey.seq += 1
    key = f"{step.state.customer_id}/{journey.journey_id}/{journey.seq}"
    step.deliveries.append(
        Delivery(
            idempotency_key=key,
            customer_id=step.state.customer_id,
            playbook=journey.playbook,
            journey_id=journey.journey_id,
            stage=journey.stage,
            channel=action.channel,
            text=action.text,
            scheduled_at=step.now,
        )
    )
    step.record(
        TimelineEntry(
            at=step.now,
            kind="message",
            playbook=journey.playbook,
            stage=journey.stage,
            channel=action.channel,
            text=action.text,
            idempotency_key=key,
            status="pending",
        )
    )


def _end(step: _Step, journey: JourneyState, reason: str | None = None) -> None:
    journey.status = "ended"
    journey.ended_at = step.now
    journey.timers = []
    step.record(
        TimelineEntry(
            at=step.now,
            kind="journey_ended",
            playbook=journey.playbook,
            stage=journey.stage,
            error=reason,
        )
    )
