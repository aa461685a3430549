"""What the pages show, computed from what the API routes return (pure functions)."""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from sopflow.core.deliveries import UNDELIVERED
from sopflow.core.state import TimelineEntry
from sopflow.language.graph import transitions
from sopflow.language.plan import Plan
from sopflow.reports.funnel import Funnel

# --------------------------------------------------------------------------- graph


def _label(text: str) -> str:
    # Mermaid ends a label at a newline, reads ';' as a statement break and '"' as the end
    # of a quoted name; '#' starts an entity code. The rendered SVG escapes the rest
    # (securityLevel strict).
    return (
        text.replace("\n", " ")
        .replace(";", ",")
        .replace('"', "'")
        .replace("#", "＃")
        .replace("{", "(")
        .replace("}", ")")
    )


def live_graph(plan: Plan, now: dict[str, int], funnel: Funnel | None) -> str:
    """A Mermaid stateDiagram-v2 of the plan with customers per stage now on each stage and
    the share of the source stage's customers that took each way (from the funnel)."""
    rates = {(t.source, t.target): t for t in (funnel.transitions if funnel else [])}
    lines = ["stateDiagram-v2"]
    for name in plan.stages:
        lines.append(f'    state "{name} · {now.get(name, 0)} now" as {name}')
    lines.append(f"    [*] --> {plan.entry_stage}")
    labelled: set[tuple[str, str]] = set()
    for source, target, label in transitions(plan):
        text = _label(label)
        rate = rates.get((source, target))
        if rate is not None and (source, target) not in labelled:
            # The funnel counts a pair of stages once, whichever trigger moved them.
            text += f" · {rate.rate * 100:.0f}% ({rate.customers})"
            labelled.add((source, target))
        lines.append(f"    {source} --> {target} : {text}")
    for name, stage in plan.stages.items():
        if stage.end or any(a.kind == "end" for a in stage.on_enter):
            lines.append(f"    {name} --> [*]")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- versions


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "add", "remove", "hunk", "same"
    text: str


def plan_text(plan: Plan) -> str:
    """A plan as YAML, for reading and diffing (the version is the file's name)."""
    data = plan.model_dump(mode="json", exclude={"version"})
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=100)


def plan_diff(old: Plan, new: Plan) -> list[DiffLine]:
    lines = difflib.unified_diff(
        plan_text(old).splitlines(),
        plan_text(new).splitlines(),
        fromfile=old.version[:12],
        tofile=new.version[:12],
        lineterm="",
        n=3,
    )
    result = []
    for line in lines:
        if line.startswith(("---", "+++")):
            continue
        kind = {"+": "add", "-": "remove", "@": "hunk"}.get(line[:1], "same")
        result.append(DiffLine(kind, line))
    return result


# --------------------------------------------------------------------------- timelines


def _when(moment: str | datetime | None, zone: str, reference: datetime) -> str:
    if moment is None:
        return "later"
    at = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    local = at.astimezone(ZoneInfo(zone))
    if local.date() == reference.astimezone(ZoneInfo(zone)).date():
        return local.strftime("%H:%M")
    return local.strftime("%Y-%m-%d %H:%M")


DEFERRAL_REASONS = {
    "send window": "outside the send window",
    "quiet hours": "inside quiet hours",
}


# A message's state in the words of the timeline's "why" column (sopflow.core.deliveries).
DELIVERY_STATES = {
    "pending": "pending delivery",
    "delivered": "delivered",
    "awaiting_confirmation": "awaiting {sender}'s confirmation in WeCom{cancel}",
    "sent": "sent: confirmed in WeCom and delivered",
    "failed": "failed: {error}",
    "cancelled": "cancelled: {error}",
    "expired": "expired: {error}",
}


def explain(entry: TimelineEntry, zone: str) -> str:
    """Why an action did (or did not) happen, in the words an operator asks it."""
    detail = entry.detail
    match entry.kind:
        case "deferred":
            reason = str(detail.get("reason", ""))
            why = DEFERRAL_REASONS.get(reason, reason)
            return f"deferred until {_when(detail.get('until'), zone, entry.at)}: {why}"
        case "suppressed":
            return f"suppressed: {entry.error or 'a contact cap was reached'}"
        case "send_failed":
            return f"failed: {entry.error}"
        case "guard_failed":
            return f"condition counted as false: {entry.error}"
        case "message" | "task_created":
            return DELIVERY_STATES.get(entry.status or "", "").format(
                error=entry.error or "no reason given",
                sender=detail.get("sender", "the staff member"),
                cancel=" (cancel asked: the journey left the stage)"
                if detail.get("cancel_requested")
                else "",
            )
        case "journey_ended":
            return f"ended: {detail.get('reason', '')}"
        case "tag_rejected":
            return f"tag {detail.get('tag')} rejected: not a value of its group"
        case "migrated":
            if detail.get("applied") is False:
                return f"not migrated: {entry.error}"
            return f"migrated {detail.get('from_stage')} → {detail.get('to_stage')}"
    return ""


def describe(entry: TimelineEntry) -> str:
    """What happened (the reason is apart, in `explain`)."""
    detail = entry.detail
    match entry.kind:
        case "message" | "suppressed" | "deferred":
            return f"{entry.channel}: {entry.text}"
        case "send_failed":
            return str(entry.channel or "")
        case "task_created":
            return f"{detail.get('assignee')}: {entry.text} (due {detail.get('due_at', '-')})"
        case "task_completed" | "task_postponed" | "task_escalated":
            return str(entry.text or detail.get("task_id", ""))
        case "tag_added" | "tag_removed" | "tag_rejected":
            return str(detail.get("tag"))
        case "enrolled":
            return f"version {str(detail.get('version', ''))[:12]}"
        case "journey_ended" | "migrated":
            return ""
        case "goal_reached":
            return str(detail.get("event", ""))
    return ", ".join(f"{k}={v}" for k, v in detail.items() if k != "version")


@dataclass(frozen=True)
class TimelineRow:
    seq: int
    at: datetime
    day: int | None
    playbook: str | None
    stage: str | None
    kind: str
    what: str
    why: str
    flagged: bool  # deferred, suppressed or failed: the rows that answer "why not"


FLAGGED_KINDS = frozenset({"deferred", "suppressed", "send_failed"})


def timeline_rows(
    entries: list[TimelineEntry], zone: str, start: datetime | None = None
) -> list[TimelineRow]:
    start_day = start.astimezone(ZoneInfo(zone)).date() if start else None
    rows = []
    for entry in entries:
        day = (
            (entry.at.astimezone(ZoneInfo(zone)).date() - start_day).days
            if start_day is not None
            else None
        )
        why = explain(entry, zone)
        rows.append(
            TimelineRow(
                seq=entry.seq,
                at=entry.at,
                day=day,
                playbook=entry.playbook,
                stage=entry.stage,
                kind=entry.kind,
                what=describe(entry),
                why=why,
                flagged=entry.kind in FLAGGED_KINDS or entry.status in UNDELIVERED,
            )
        )
    return rows


# Day-by-day chart of a simulation: what the customer received and what staff had to do.
CHART_SERIES = {
    "messages": ("message",),
    "deferred": ("deferred",),
    "suppressed": ("suppressed", "send_failed"),
    "tasks": ("task_created",),
    "stage changes": ("stage_entered",),
}


def daily_series(
    entries: list[TimelineEntry], start: datetime, days: int, zone: str
) -> dict[str, Any]:
    """{"days": [0..days], "series": {name: [count per day]}} for the uPlot chart."""
    tz = ZoneInfo(zone)
    first = start.astimezone(tz).date()
    counts: dict[str, Counter[int]] = {name: Counter() for name in CHART_SERIES}
    for entry in entries:
        day = (entry.at.astimezone(tz).date() - first).days
        for name, kinds in CHART_SERIES.items():
            if entry.kind in kinds:
                counts[name][day] += 1
    span = list(range(days + 1))
    return {
        "days": span,
        "series": {name: [counts[name][d] for d in span] for name in CHART_SERIES},
    }


DEFAULT_EVENTS = "- {after: 0s, type: %s}\n"


def parse_events_text(text: str) -> list[dict[str, Any]]:
    """The events editor's YAML list; a ValueError says what is wrong and where."""
    if not text.strip():
        return []
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ValueError(f"events: {where}{getattr(e, 'problem', None) or e}") from e
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise ValueError("events: a YAML list of {after | at, type, data}")
    return data


def recent_months(now: datetime, zone: str, count: int) -> list[str]:
    """The last `count` months as YYYY-MM, oldest first, this month last."""
    local = now.astimezone(ZoneInfo(zone))
    year, month = local.year, local.month
    months = []
    for _ in range(count):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return months[::-1]
