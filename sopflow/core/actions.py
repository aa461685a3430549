"""Actions and transitions: what a journey does when it enters a stage or a trigger fires."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Literal

from sopflow.core import profile as profile_rules
from sopflow.core.clock import quiet_until, shift, window, zone
from sopflow.core.context import build_context, guard_context
from sopflow.core.experiments import HOLDOUT, assign
from sopflow.core.state import (
    TAG_MAX_CHARS,
    Delivery,
    JourneyState,
    ScheduledSend,
    TaskState,
    delivery,
)
from sopflow.core.step import MAX_TRANSITIONS_PER_STEP, Step
from sopflow.language.channels import (
    CUSTOMER_CHANNELS,
    ENROLMENT_CHANNEL,
    TAG_ADD,
    TAG_REMOVE,
    TASK_CHANNEL,
    WECOM_TAG_CHANNEL,
)
from sopflow.language.context import LazyMap
from sopflow.language.guards import analyse_guard
from sopflow.language.plan import (
    EVERYWHERE,
    ActionStep,
    Branch,
    EndStep,
    EnrolMemberStep,
    EnrolStep,
    GotoStep,
    Plan,
    ScoreStep,
    SendStep,
    SetStep,
    TagStep,
    TaskStep,
)
from sopflow.language.subjects import Audience, bare_id
from sopflow.language.templates import TemplateError, names_read, render_template
from sopflow.language.windows import next_open_any

SEND_TIME_ROUNDS = 64
# The frequency caps' spans (made once: the caps look at every recent send of each send).
SEVEN_DAYS = timedelta(days=7)
EIGHT_DAYS = timedelta(days=8)
RUNAWAY_REASON = (
    f"stopped after {MAX_TRANSITIONS_PER_STEP} transitions without a wait (a zero-delay cycle)"
)


def context_for(
    step: Step,
    journey: JourneyState | None,
    plan: Plan | None,
    extra: dict[str, Any] | None = None,
    roots: frozenset[str] | None = None,
) -> dict[str, Any]:
    """`roots`: only these names of the context (None: all)."""
    rules = step.profile_rules
    tiers = rules.tiers if rules else None
    return build_context(
        step.customer_id,
        step.state.profile,
        journey,
        step.event,
        step.now,
        step.timezone(plan),
        extra,
        tiers.period_seconds if tiers else None,
        plan.interaction_events if plan else None,
        step.state.group,
        {j.playbook: j.stage for j in step.active_journeys()}
        if roots is None or "journeys" in roots
        else None,
        roots,
    )


def names_read_by(guards: Iterable[str], templates: Iterable[str]) -> frozenset[str] | None:
    """The names of the context these guards and templates can read (a guard sees only
    the data at the paths its analysis found: `evaluate_guard_outcome`); None when that
    cannot be told, and all of the context is needed."""
    names: set[str] = set()
    for source in templates:
        read = names_read(source)
        if read is None:
            return None
        names |= read
    for source in guards:
        try:
            paths = analyse_guard(source).cost.paths
        except Exception:
            return None
        names.update(path[0] for path in paths)
    return frozenset(names)


def guard_context_for(step: Step, journey: JourneyState | None, plan: Plan | None) -> LazyMap:
    """`context_for` with no extra, each value computed when a guard first reads it
    (`guard_context`)."""
    rules = step.profile_rules
    tiers = rules.tiers if rules else None
    return guard_context(
        step.customer_id,
        step.state.profile,
        journey,
        step.event,
        step.now,
        step.timezone(plan),
        tiers.period_seconds if tiers else None,
        plan.interaction_events if plan else None,
        step.state.group,
        lambda: {j.playbook: j.stage for j in step.active_journeys()},
    )


def context_unless_plain(
    step: Step,
    journey: JourneyState,
    plan: Plan,
    sources: tuple[str | None, ...],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`context_for` with only the names the templates of `sources` read: none when each
    is plain text (which renders as itself), most often one or two (building the whole
    context took a tenth of a step). The time zone is looked up either way, so an
    unknown zone fails at the same point."""
    roots: frozenset[str] = frozenset()
    for source in sources:
        if source is None:
            continue
        names = names_read(source)
        if names is None:  # cannot be told: all of it
            return context_for(step, journey, plan, extra)
        roots |= names
    if not roots:
        zone(step.timezone(plan))
        return {}
    return context_for(step, journey, plan, extra, roots)


def run_branch(
    step: Step,
    journey: JourneyState,
    plan: Plan,
    actions: tuple[ActionStep, ...],
    goto: str | None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Run actions, then move to `goto` unless an action already moved or ended the journey."""
    visit = (journey.stage, journey.entered_stage_at, journey.counters.get(journey.stage))
    run_actions(step, journey, plan, actions, extra)
    moved = visit != (journey.stage, journey.entered_stage_at, journey.counters.get(journey.stage))
    if goto is not None and journey.status == "active" and not moved:
        enter_stage(step, journey, plan, goto)


def run_actions(
    step: Step,
    journey: JourneyState,
    plan: Plan,
    actions: tuple[ActionStep, ...],
    extra: dict[str, Any] | None = None,
) -> None:
    for action in actions:
        if journey.status != "active":
            return
        match action:
            case SendStep():
                send(step, journey, plan, action, extra)
            case TaskStep():
                create_task(step, journey, plan, action)
            case TagStep():
                change_tags(step, journey, action)
            case SetStep():
                set_values(step, journey, plan, action, extra)
            case ScoreStep():
                for name, delta in sorted(action.deltas.items()):
                    scores = step.state.profile.scores
                    scores[name] = scores.get(name, 0.0) + delta
                    step.record("score_changed", journey, detail={name: scores[name]})
            case GotoStep():
                enter_stage(step, journey, plan, action.stage)
                return  # the rest belonged to the stage the customer just left
            case EnrolStep():
                target = step.catalog.deployed_plan(action.playbook)
                # Another audience's playbook cannot run on this subject (the compiler
                # refuses it; a redeploy could still change a target's audience).
                if target is not None and target.audience == step.audience:
                    try_enrol(step, target)
            case EndStep():
                end_journey(step, journey, action.reason or "ended by the playbook")
            case EnrolMemberStep():
                enrol_member(step, journey, action)


def enter_stage(step: Step, journey: JourneyState, plan: Plan, stage_name: str) -> None:
    step.transitions += 1
    if step.transitions > MAX_TRANSITIONS_PER_STEP:
        end_journey(step, journey, RUNAWAY_REASON)
        return
    stage = plan.stages[stage_name]
    journey.stage = stage_name
    journey.entered_stage_at = step.now
    # The stage's triggers start afresh; playbook-wide ones belong to the journey.
    journey.fired = {k: v for k, v in journey.fired.items() if k.startswith(EVERYWHERE)}
    journey.conditions = {k: v for k, v in journey.conditions.items() if k.startswith(EVERYWHERE)}
    journey.counters[stage_name] = journey.counters.get(stage_name, 0) + 1
    step.record("stage_entered", journey)
    run_actions(step, journey, plan, stage.on_enter)
    if stage.end and journey.status == "active":
        end_journey(step, journey, "reached an end stage")


def end_journey(step: Step, journey: JourneyState, reason: str) -> None:
    journey.status = "ended"
    journey.ended_at = step.now
    journey.end_reason = reason
    journey.scheduled = []  # a deferred message of a finished journey is no longer wanted
    step.record(
        "journey_ended",
        journey,
        error=reason if "zero-delay" in reason else None,
        detail={"reason": reason},
    )


def try_enrol(step: Step, plan: Plan) -> bool:
    """Enrol if the re-entry policy and the guard allow; True when a journey started."""
    existing = step.state.journeys.get(plan.name)
    if existing is not None:
        if existing.status == "active" or plan.enrol.reentry == "never":
            return False
        if plan.enrol.reentry == "cooldown":
            ended = existing.ended_at or existing.enrolled_at
            if (step.now - ended).total_seconds() < (plan.enrol.cooldown_seconds or 0):
                return False
    if plan.audience != step.audience:
        return False
    if plan.enrol.when and not step.guard(plan.enrol.when, guard_context_for(step, None, plan)):
        return False
    count = step.state.enrolment_counts.get(plan.name, 0) + 1
    step.state.enrolment_counts[plan.name] = count
    data = step.event.data if step.event is not None else {}
    journey = JourneyState(
        journey_id=f"{plan.name}#{count}",
        playbook=plan.name,
        version=plan.version,
        stage=plan.entry_stage,
        enrolled_at=step.now,
        entered_stage_at=step.now,
        enrolment_data={k: data[k] for k in sorted(plan.enrolment_data_keys()) if k in data},
        variant=assign(plan.experiment, step.customer_id) if plan.experiment else None,
    )
    step.state.journeys[plan.name] = journey
    detail: dict[str, Any] = {"version": plan.version}
    if journey.variant is not None:
        detail["variant"] = journey.variant
    step.record("enrolled", journey, detail=detail)
    enter_stage(step, journey, plan, plan.entry_stage)
    return True


# ----------------------------------------------------------------------------- messages


def send(
    step: Step,
    journey: JourneyState,
    plan: Plan,
    action: SendStep,
    extra: dict[str, Any] | None = None,
) -> None:
    try:
        text = render_template(
            action.text, context_unless_plain(step, journey, plan, (action.text,), extra)
        )
    except TemplateError as e:
        step.record("send_failed", journey, channel=action.channel, error=f"template: {e}")
        return
    if journey.variant == HOLDOUT and action.channel in CUSTOMER_CHANNELS:
        # Held out of the experiment: tracked like everyone, sent nothing. The timeline
        # keeps what would have gone out, for the comparison.
        step.record("held_out", journey, channel=action.channel, text=text)
        return
    if action.welcome:
        code = welcome_code(step)
        if code is not None:
            # The customer just added the staff member: WeCom takes the welcome now or
            # never (20 seconds), whatever the window or the quiet hours say.
            deliver_message(step, journey, plan, action.channel, text, welcome=(code, action))
            return
        if action.welcome_fallback == "skip":
            step.record(
                "send_failed",
                journey,
                channel=action.channel,
                text=text,
                error="welcome skipped: no welcome code (the customer was not just added "
                "through WeCom's callback)",
            )
            return
    at = send_time(step, plan, action, step.now)
    if at > step.now:
        journey.scheduled.append(
            ScheduledSend(
                due_at=at,
                stage=journey.stage,
                channel=action.channel,
                text=text,
                transactional=action.transactional,
                visible_to=list(action.visible_to) if action.visible_to is not None else None,
            )
        )
        reason = "send window" if action.windows else "quiet hours"
        step.record(
            "deferred",
            journey,
            channel=action.channel,
            text=text,
            detail={"until": at.isoformat(), "reason": reason},
        )
        return
    visible_to = list(action.visible_to) if action.visible_to is not None else None
    deliver_message(
        step, journey, plan, action.channel, text, action.transactional, visible_to=visible_to
    )


def send_time(step: Step, plan: Plan, action: SendStep, moment: datetime) -> datetime:
    """The first moment at or after `moment` inside the send window (the next of its
    ranges to open) and, unless the send is urgent, outside quiet hours."""
    tz = zone(step.timezone(plan))
    quiet = plan.contact_policy.quiet_hours if action.channel in CUSTOMER_CHANNELS else None
    if action.urgent:
        quiet = None
    ranges = tuple(window(w) for w in action.windows)
    # A window and quiet hours settle within a few rounds: each round moves to the next
    # opening or the end of the quiet hours. The compiler refuses a window that never
    # opens outside the quiet hours, so the bound only guards a plan made by hand.
    for _ in range(SEND_TIME_ROUNDS):
        settled = moment
        if ranges:
            moment = next_open_any(ranges, moment, tz)
        if quiet is not None:
            moment = quiet_until(moment, window(quiet), tz)
        if moment == settled:
            break
    return moment


def deliver_message(
    step: Step,
    journey: JourneyState,
    plan: Plan,
    channel: str,
    text: str,
    transactional: bool = False,
    welcome: tuple[str, SendStep] | None = None,
    visible_to: list[str] | None = None,
) -> None:
    """Deliver now unless a frequency cap (counted across all journeys) forbids it.

    A transactional message (an order confirmation) is never capped and does not count.
    `welcome` carries the welcome code and the send that asked for it.
    """
    if channel in CUSTOMER_CHANNELS and not transactional:
        reason = cap_reached(step, plan)
        if reason:
            step.record("suppressed", journey, channel=channel, text=text, error=reason)
            return
        now = step.now
        step.state.sent_at = [t for t in step.state.sent_at if now - t < EIGHT_DAYS] + [now]
    key = next_key(step, journey)
    if step.keeps_deliveries:
        step.deliveries.append(
            journey_delivery(
                step,
                journey,
                key,
                channel,
                text,
                sender=sender_of(step),
                welcome_code=welcome[0] if welcome else None,
                welcome_fallback=welcome[1].welcome_fallback if welcome else "send",
                visible_to=visible_to,
                remind_after_seconds=plan.wecom.remind_after_seconds,
            )
        )
    step.record(
        "message", journey, channel=channel, text=text, idempotency_key=key, status="pending"
    )


def welcome_code(step: Step) -> str | None:
    """The welcome code of the contact.added being handled, if WeCom gave one."""
    event = step.event
    if event is None or event.type != "contact.added":
        return None
    code = event.data.get("welcome_code")
    return code if isinstance(code, str) and code else None


def cap_reached(step: Step, plan: Plan) -> str | None:
    policy = plan.contact_policy
    tz = zone(step.timezone(plan))
    today = step.now.astimezone(tz).date()
    sent = step.state.sent_at
    if policy.max_per_day is not None:
        same_day = sum(1 for t in sent if t.astimezone(tz).date() == today)
        if same_day >= policy.max_per_day:
            return f"daily cap of {policy.max_per_day} messages reached"
    if policy.max_per_week is not None:
        now = step.now
        week = sum(1 for t in sent if now - t < SEVEN_DAYS)
        if week >= policy.max_per_week:
            return f"weekly cap of {policy.max_per_week} messages reached"
    return None


# ----------------------------------------------------------------------------- staff tasks


def sender_of(step: Step) -> str | None:
    """The staff member a message goes out from (WeCom sends only through a task they
    confirm): a customer's owner (the staff member who added them), a group's owner, a
    staff member themself."""
    match step.audience:
        case Audience.GROUP:
            return step.state.group.owner if step.state.group else None
        case Audience.STAFF:
            return bare_id(step.customer_id)
    owner = step.state.profile.attributes.get("owner")
    return owner if isinstance(owner, str) and owner else None


def resolve_assignee(rule: str, step: Step) -> str:
    if rule == "owner":
        if step.audience != Audience.CUSTOMER:
            # A group's owner; a staff member's own tasks.
            return sender_of(step) or "unassigned"
        return str(step.state.profile.attributes.get("owner", "unassigned"))
    kind, _, rest = rule.partition(":")
    if kind == "pool":
        pool = [p.strip() for p in rest.split(",") if p.strip()]
        # The same customer always lands with the same member of the pool.
        return pool[zlib.crc32(step.customer_id.encode()) % len(pool)]
    return rest


def create_task(step: Step, journey: JourneyState, plan: Plan, action: TaskStep) -> None:
    context = context_unless_plain(step, journey, plan, (action.title, action.script))
    try:
        title = render_template(action.title, context)
        script = render_template(action.script, context) if action.script else None
    except TemplateError as e:
        step.record("send_failed", journey, channel=TASK_CHANNEL, error=f"template: {e}")
        return
    task_id = next_key(step, journey)
    assignee = resolve_assignee(action.assignee, step)
    due_at = shift(step.now, action.due_seconds)
    journey.tasks[task_id] = TaskState(
        task_id=task_id,
        name=action.id,
        title=title,
        assignee=assignee,
        stage=journey.stage,
        created_at=step.now,
        due_at=due_at,
        escalate_to=action.escalate_to,
        on_complete=action.on_complete,
    )
    if step.keeps_deliveries:
        step.deliveries.append(
            task_delivery(step, journey, task_id, title, assignee, script, due_at)
        )
    step.record(
        "task_created",
        journey,
        channel=TASK_CHANNEL,
        text=title,
        idempotency_key=task_id,
        status="pending",
        detail={
            "task": action.id,
            "assignee": assignee,
            "due_at": due_at.isoformat(),
            "script": script,
        },
    )


def next_key(step: Step, journey: JourneyState) -> str:
    """The idempotency key of the journey's next effect: customer/journey#n/step."""
    journey.seq += 1
    return f"{step.customer_id}/{journey.journey_id}/{journey.seq}"


def journey_delivery(
    step: Step, journey: JourneyState, key: str, channel: str, text: str, **fields: Any
) -> Delivery:
    """A delivery of this journey's current stage, due now; `fields` add what its kind
    needs (a task's assignee, a message's sender, an enrolment's target)."""
    return delivery(
        idempotency_key=key,
        customer_id=step.customer_id,
        playbook=journey.playbook,
        journey_id=journey.journey_id,
        stage=journey.stage,
        channel=channel,
        text=text,
        scheduled_at=step.now,
        **fields,
    )


def task_delivery(
    step: Step,
    journey: JourneyState,
    key: str,
    title: str,
    assignee: str,
    script: str | None = None,
    due_at: datetime | None = None,
) -> Delivery:
    return journey_delivery(
        step,
        journey,
        key,
        TASK_CHANNEL,
        title,
        kind="task",
        assignee=assignee,
        script=script,
        due_at=due_at,
    )


def escalate_task(step: Step, journey: JourneyState, task: TaskState) -> None:
    task.status = "escalated"
    detail: dict[str, Any] = {"task": task.name, "task_id": task.task_id}
    if task.escalate_to:
        lead = resolve_assignee(task.escalate_to, step)
        title = f"Overdue: {task.title} (assigned to {task.assignee})"
        key = next_key(step, journey)
        if step.keeps_deliveries:
            step.deliveries.append(task_delivery(step, journey, key, title, lead))
        detail["escalated_to"] = lead
    step.record("task_escalated", journey, channel=TASK_CHANNEL, text=task.title, detail=detail)


def complete_task(step: Step, journey: JourneyState, plan: Plan, task: TaskState) -> None:
    task.status = "completed"
    step.record(
        "task_completed",
        journey,
        channel=TASK_CHANNEL,
        text=task.title,
        detail={"task": task.name, "task_id": task.task_id},
    )
    branch: Branch | None = task.on_complete
    # Completion moves the customer only from the stage that asked for the task.
    if branch is not None and journey.status == "active" and journey.stage == task.stage:
        run_branch(step, journey, plan, branch.actions, branch.goto)


# ----------------------------------------------------------------------------- members

MEMBER_JOINED = "group.member_joined"


def enrol_member(step: Step, journey: JourneyState, action: EnrolMemberStep) -> None:
    """Ask the member who just joined the group to be enrolled in a customer playbook: an
    event for the member's own workflow, whose journey, guards and caps are theirs. A
    staff member who joins is no customer and is not enrolled."""
    event = step.event
    member = event.data.get("member") if event is not None else None
    if event is None or event.type != MEMBER_JOINED or not isinstance(member, str) or not member:
        step.record(
            "send_failed",
            journey,
            channel=ENROLMENT_CHANNEL,
            error=f"enrol_member {action.playbook}: no member at hand (data.member of "
            f"{MEMBER_JOINED})",
        )
        return
    if event.data.get("member_type") == "staff":
        return
    key = next_key(step, journey)
    if step.keeps_deliveries:
        step.deliveries.append(
            journey_delivery(
                step,
                journey,
                key,
                ENROLMENT_CHANNEL,
                action.playbook,
                kind="enrolment",
                target=member,
            )
        )
    step.record(
        "member_enrolled",
        journey,
        channel=ENROLMENT_CHANNEL,
        text=action.playbook,
        idempotency_key=key,
        status="pending",
        detail={"member": member, "playbook": action.playbook},
    )


# ----------------------------------------------------------------------------- profile edits


def change_tags(step: Step, journey: JourneyState | None, action: TagStep) -> None:
    profile = step.state.profile
    # A customer playbook's action tags the customer in WeCom too; tags that events taught
    # (staff tagged in WeCom, taxonomy rules) are never sent back.
    mark = step.catalog.wecom_tags and step.audience == Audience.CUSTOMER
    for written in action.remove:
        tag = resolve_tag(step, journey, written)
        if tag and profile_rules.remove_tag(profile, tag):
            _tag_changed(step, journey, "tag_removed", tag, mark)
    for written in action.add:
        tag = resolve_tag(step, journey, written)
        if tag is None or tag in profile.tags:
            continue
        refusal = profile_rules.tag_refusal(profile, tag)
        if refusal is not None:
            step.record("tag_rejected", journey, detail={"tag": shown_tag(tag), "reason": refusal})
            continue
        for removed in profile_rules.apply_tag(profile, tag, step.profile_rules):
            _tag_changed(step, journey, "tag_removed", removed, mark)
        _tag_changed(step, journey, "tag_added", tag, mark)


def _tag_changed(
    step: Step,
    journey: JourneyState | None,
    kind: Literal["tag_added", "tag_removed"],
    tag: str,
    mark: bool,
) -> None:
    """Record a tag change; with `mark`, a `wecom.tag` delivery for the customer's owner,
    whose outcome (marked, or why not) becomes the entry's status."""
    if not mark or journey is None:
        step.record(kind, journey, detail={"tag": tag})
        return
    # Keyed by the timeline entry it belongs to (the seq `record` gives it next), not by
    # the journey's effect counter: the keys of the journey's messages and tasks stay
    # what they were before tags reached WeCom.
    key = f"{step.customer_id}/{journey.journey_id}/tag/{step.state.timeline_seq + 1}"
    text = (TAG_ADD if kind == "tag_added" else TAG_REMOVE) + tag
    if step.keeps_deliveries:
        step.deliveries.append(
            journey_delivery(
                step,
                journey,
                key,
                WECOM_TAG_CHANNEL,
                text,
                kind="tag",
                sender=sender_of(step),
            )
        )
    step.record(
        kind,
        journey,
        channel=WECOM_TAG_CHANNEL,
        idempotency_key=key,
        status="pending",
        detail={"tag": tag},
    )


def resolve_tag(step: Step, journey: JourneyState | None, written: str) -> str | None:
    """Render a templated tag and check it against the taxonomy; None (recorded) if invalid."""
    group, _, value = written.partition(":")
    if "{" in value:
        plan = step.catalog.plan_of(journey) if journey else None
        try:
            # Only the names the template reads (None: it cannot be told, all of them).
            context = context_for(step, journey, plan, roots=names_read(value))
            value = render_template(value, context).strip()
        except TemplateError:
            value = ""
    tag = f"{group}:{value}"
    rules = step.profile_rules
    spec = rules.groups.get(group) if rules else None
    if (
        not value
        or (rules and rules.groups and spec is None)
        or (spec is not None and spec.values and value not in spec.values)
    ):
        step.record("tag_rejected", journey, detail={"tag": shown_tag(tag)})
        return None
    return tag


def shown_tag(tag: str) -> str:
    """A tag as the timeline keeps it: a refused tag of thousands of characters is cut."""
    return tag if len(tag) <= TAG_MAX_CHARS else tag[:TAG_MAX_CHARS] + "…"


def set_values(
    step: Step, journey: JourneyState, plan: Plan, action: SetStep, extra: dict[str, Any] | None
) -> None:
    target = step.state.profile.attributes if action.scope == "customer" else journey.attributes
    # Built before the first value is set: every template reads the data as it was.
    templates = tuple(v for v in action.values.values() if isinstance(v, str))
    context = context_unless_plain(step, journey, plan, templates, extra)
    for key, value in action.values.items():
        if isinstance(value, str):
            try:
                value = render_template(value, context)
            except TemplateError as e:
                step.record("send_failed", journey, error=f"template for {key}: {e}")
                continue
        refused = profile_rules.set_attributes(target, {key: value})
        if refused:
            [(name, reason)] = refused
            step.record(
                "attribute_rejected",
                journey,
                detail={"scope": action.scope, "attribute": name, "reason": reason},
            )
            continue
        step.record("attribute_set", journey, detail={"scope": action.scope, key: value})
