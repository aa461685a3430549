"""Run the pure core on a virtual clock: weeks of a journey in milliseconds."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from sopflow.core.journey import apply_due_timers, apply_event
from sopflow.core.state import CustomerState, Profile, TimelineEntry, customer_event
from sopflow.core.step import Catalog, UndoNeeded
from sopflow.errors import SopflowError
from sopflow.language.durations import parse_duration
from sopflow.language.plan import EnrolStep, Plan, ProfilePlan
from sopflow.language.subjects import (
    GROUP_PREFIX,
    STAFF_PREFIX,
    Audience,
    audience_of,
    group_subject,
    staff_subject,
)

SIMULATION_TIMELINE_LIMIT = 1_000_000


@dataclass
class ScenarioEvent:
    at: datetime
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    key: str | None = None


@dataclass
class CustomerSpec:
    id: str = "sim-customer"
    timezone: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)


def _load_structured(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise SopflowError(f"{path}: cannot read: {e}") from e


def parse_events(items: Any, start: datetime, source: str = "events") -> list[ScenarioEvent]:
    """A list of {at | after, type, data}: `at` an ISO time, `after` a duration from start."""
    if not isinstance(items, list):
        raise SopflowError(f"{source}: expected a list of events")
    events = []
    for index, item in enumerate(items):
        where = f"{source}[{index}]"
        if not isinstance(item, dict) or "type" not in item:
            raise SopflowError(f"{where}: each event needs a type (and at or after)")
        if "at" in item:
            at = item["at"]
            moment = at if isinstance(at, datetime) else _iso(str(at), where)
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        else:
            try:
                moment = start + parse_duration(str(item.get("after", "0s")))
            except ValueError as e:
                raise SopflowError(f"{where}: {e}") from e
        events.append(
            ScenarioEvent(
                moment, str(item["type"]), dict(item.get("data") or {}), item.get("idempotency_key")
            )
        )
    return sorted(events, key=lambda e: e.at)


def _iso(text: str, where: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError as e:
        raise SopflowError(f"{where}: '{text}' is not an ISO 8601 time") from e


def load_events(path: Path, start: datetime) -> list[ScenarioEvent]:
    return parse_events(_load_structured(path), start, str(path))


def load_customer(path: Path) -> CustomerSpec:
    data = _load_structured(path)
    if not isinstance(data, dict):
        raise SopflowError(f"{path}: expected a mapping with id, timezone, attributes, tags")
    return CustomerSpec(
        id=str(data.get("id", "sim-customer")),
        timezone=data.get("timezone"),
        attributes=dict(data.get("attributes") or {}),
        tags=list(data.get("tags") or []),
    )


# The simulated subject of each audience, when the scenario names none.
DEFAULT_SUBJECTS = {
    Audience.CUSTOMER: "sim-customer",
    Audience.GROUP: group_subject("sim-group"),
    Audience.STAFF: staff_subject("sim-staff"),
}


def subject_spec(plan: Plan, spec: CustomerSpec | None = None) -> CustomerSpec:
    """The subject a playbook's simulation runs: a customer, a group chat or a staff
    member, as the playbook's audience says. An id given without its audience's prefix
    (`sim-group` for a group playbook) gets it."""
    audience = Audience(plan.audience)
    spec = spec or CustomerSpec(id=DEFAULT_SUBJECTS[audience])
    prefix = {Audience.GROUP: GROUP_PREFIX, Audience.STAFF: STAFF_PREFIX}.get(audience, "")
    if audience_of(spec.id) != audience:
        if audience == Audience.CUSTOMER:
            raise SopflowError(
                f"'{spec.id}' names a {audience_of(spec.id).value}, but "
                f"'{plan.name}' is a customer playbook"
            )
        spec.id = f"{prefix}{spec.id}"
    return spec


def reachable_plans(roots: list[Plan], plans: dict[str, Plan]) -> dict[str, Plan]:
    """The playbooks and every playbook they can enrol a subject in (a group's members
    are other subjects: the customer playbooks of `enrol_member` are not simulated)."""
    chosen = {plan.name: plan for plan in roots}
    frontier = list(roots)
    while frontier:
        current = frontier.pop()
        for step in current.all_steps():
            if (
                isinstance(step, EnrolStep)
                and step.playbook in plans
                and step.playbook not in chosen
            ):
                chosen[step.playbook] = plans[step.playbook]
                frontier.append(plans[step.playbook])
    return chosen


def simulate(
    plans: dict[str, Plan],
    profile: ProfilePlan | None,
    events: list[ScenarioEvent],
    start: datetime,
    days: int,
    customer: CustomerSpec | None = None,
) -> list[TimelineEntry]:
    """The customer's timeline from `start` to `start + days`, given these events."""
    customer = customer or CustomerSpec()
    catalog = Catalog(
        plans={p.version: p for p in plans.values()},
        deployed={p.name: p.version for p in plans.values()},
        profile=profile,
        wecom_tags=True,  # as a customer's workflow started now runs it
    )
    end = start + timedelta(days=days)
    try:
        # Without a checkpoint before each event and timer: the core is deterministic,
        # so if anything fails, running the customer again with them gives the timeline
        # the workflow would (the failure quarantined, the rest as it was).
        return _run(catalog, customer, events, end, undo=False)
    except UndoNeeded:
        return _run(catalog, customer, events, end, undo=True)


def _run(
    catalog: Catalog,
    customer: CustomerSpec,
    events: list[ScenarioEvent],
    end: datetime,
    *,
    undo: bool,
) -> list[TimelineEntry]:
    state = CustomerState(
        customer_id=customer.id,
        profile=Profile(
            timezone=customer.timezone, attributes=customer.attributes, tags=sorted(customer.tags)
        ),
    )
    for index, event in enumerate(e for e in events if e.at <= end):
        key = event.key or f"sim-{index}"
        accepted = customer_event(customer.id, event.type, event.at, event.data, key)
        state = apply_event(
            state,
            accepted,
            catalog,
            event.at,
            timeline_limit=SIMULATION_TIMELINE_LIMIT,
            owned=True,
            undo=undo,
            deliveries=False,  # the timeline says what was sent
        ).state
    state = apply_due_timers(
        state,
        catalog,
        end,
        timeline_limit=SIMULATION_TIMELINE_LIMIT,
        owned=True,
        undo=undo,
        deliveries=False,
    ).state
    return state.timeline


def default_events(plan: Plan, start: datetime) -> list[ScenarioEvent]:
    if plan.enrol.event is None:
        raise SopflowError(f"playbook '{plan.name}' enrols no one by event: give --events")
    return [ScenarioEvent(start, plan.enrol.event, {}, "sim-enrol")]


def timeline_json(entries: list[TimelineEntry]) -> list[dict[str, Any]]:
    rows = []
    for entry in entries:
        row = entry.model_dump(mode="json", exclude_none=True, exclude={"status"})
        # One offset for machines: UTC, whatever zone the event or the timer came in.
        row["at"] = entry.at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        # Profile changes (tiers, event-driven tags) belong to no playbook: null, not absent.
        row.setdefault("playbook", None)
        row.setdefault("stage", None)
        if not row.get("detail"):
            row.pop("detail", None)
        rows.append(row)
    return rows


def describe_entry(entry: TimelineEntry) -> str:
    detail = entry.detail
    match entry.kind:
        case "message" | "suppressed" | "deferred" | "held_out":
            text = f"{entry.channel}: {entry.text}"
            if entry.kind == "deferred":
                text += f" (until {detail.get('until')})"
            if entry.kind == "suppressed":
                text += f" ({entry.error})"
            return text
        case "task_created":
            return f"{detail.get('assignee')}: {entry.text} (due {detail.get('due_at')})"
        case "tag_added" | "tag_removed" | "tag_rejected":
            return str(detail.get("tag"))
        case "journey_ended":
            return str(detail.get("reason", ""))
        case "send_failed":
            return str(entry.error)
        case "guard_failed":
            return f"{detail.get('guard')}: {entry.error}"
        case "member_joined":
            return f"{detail.get('member')} ({detail.get('member_type')})"
        case "member_left":
            return str(detail.get("member"))
        case "member_enrolled":
            return f"{detail.get('member')} -> {detail.get('playbook')}"
    return ", ".join(f"{k}={v}" for k, v in detail.items() if k != "version")


def timeline_table(entries: list[TimelineEntry], start: datetime, tz_name: str) -> str:
    """One line an entry: day number, local time, playbook, stage, kind, what happened."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(tz_name)
    start_day = start.astimezone(tz).date()
    header = ("day", f"time ({tz_name})", "playbook", "stage", "kind", "detail")
    rows = [header]
    for entry in entries:
        local = entry.at.astimezone(tz)
        rows.append(
            (
                str((local.date() - start_day).days),
                local.strftime("%Y-%m-%d %a %H:%M"),
                entry.playbook or "-",
                entry.stage or "-",
                entry.kind,
                describe_entry(entry),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for row in rows:
        cells = [row[0].rjust(widths[0])] + [row[i].ljust(widths[i]) for i in range(1, 5)]
        lines.append("  ".join([*cells, row[5]]).rstrip())
    return "\n".join(lines) + "\n"


@dataclass
class ArmCount:
    """What the simulated customers of one arm of a playbook's experiment did."""

    playbook: str
    arm: str  # a variant, `holdout`, or '' (no experiment)
    customers: int = 0
    goal_reached: int = 0
    messages: int = 0
    held_out: int = 0


def simulate_many(
    plans: dict[str, Plan],
    profile: ProfilePlan | None,
    events: list[ScenarioEvent],
    start: datetime,
    days: int,
    customer: CustomerSpec,
    count: int,
) -> list[ArmCount]:
    """Run `count` customers (`<id>-1`, `<id>-2`, ...) through the same scenario and
    count, per playbook and arm, who enrolled, reached the goal, and what was sent or
    held out. The arms come from each customer's id, as in the durable runtime."""
    counts: dict[tuple[str, str], ArmCount] = {}
    for number in range(1, count + 1):
        one = CustomerSpec(
            id=f"{customer.id}-{number}",
            timezone=customer.timezone,
            attributes=dict(customer.attributes),
            tags=list(customer.tags),
        )
        arms: dict[str, str] = {}
        for entry in simulate(plans, profile, events, start, days, one):
            if entry.playbook is None:
                continue
            if entry.kind == "enrolled":
                arms[entry.playbook] = str(entry.detail.get("variant", ""))
            arm = arms.get(entry.playbook, "")
            row = counts.setdefault(
                (entry.playbook, arm), ArmCount(playbook=entry.playbook, arm=arm)
            )
            match entry.kind:
                case "enrolled":
                    row.customers += 1
                case "goal_reached":
                    row.goal_reached += 1
                case "message":
                    row.messages += 1
                case "held_out":
                    row.held_out += 1
    return [counts[key] for key in sorted(counts)]


def arm_table(counts: list[ArmCount]) -> str:
    """One line per playbook and arm: customers (and their share of the playbook's),
    goals reached, messages sent, sends held out."""
    totals: dict[str, int] = {}
    for row in counts:
        totals[row.playbook] = totals.get(row.playbook, 0) + row.customers
    header = ("playbook", "arm", "customers", "share", "goal reached", "messages", "held out")
    rows = [header]
    for row in counts:
        share = row.customers / totals[row.playbook] if totals[row.playbook] else 0.0
        rows.append(
            (
                row.playbook,
                row.arm or "-",
                str(row.customers),
                f"{share:.1%}",
                str(row.goal_reached),
                str(row.messages),
                str(row.held_out),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"
