"""A Mermaid stateDiagram-v2 of a plan: stages and transitions labelled with their triggers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from sopflow.language.durations import format_duration
from sopflow.language.plan import ActionStep, GotoStep, Plan, TaskStep, TriggerPlan


def trigger_label(trigger: TriggerPlan) -> str:
    def span(seconds: int | None) -> str:
        return format_duration(timedelta(seconds=abs(seconds or 0)))

    match trigger.kind:
        case "event" | "wait":
            label = str(trigger.event)
            return f"{label} [{trigger.when}]" if trigger.when else label
        case "after":
            return f"after {span(trigger.after_seconds)}"
        case "at":
            at = trigger.at
            assert at is not None
            sign = "-" if at.offset_seconds < 0 else "+"
            offset = f" {sign}{span(at.offset_seconds)}" if at.offset_seconds else ""
            return f"at {at.attribute}{offset}" + (f" {at.time}" if at.time else "")
        case "day":
            return f"day {trigger.day} at {trigger.time}"
        case "every":
            return f"every {span(trigger.every_seconds)}"
        case "cron":
            return f"cron {trigger.cron}"
        case "inactivity":
            return f"inactive {span(trigger.inactive_seconds)}"
        case "condition":
            return f"when {trigger.condition}"
        case "countdown":
            return "countdown deadline"
    return trigger.kind


def _gotos(actions: tuple[ActionStep, ...], label: str) -> Iterator[tuple[str, str]]:
    for action in actions:
        if isinstance(action, GotoStep):
            yield action.stage, label
        if isinstance(action, TaskStep) and action.on_complete and action.on_complete.goto:
            yield action.on_complete.goto, f"task {action.id} done"


def _trigger_moves(trigger: TriggerPlan) -> Iterator[tuple[str, str]]:
    label = trigger_label(trigger)
    yield from _gotos(trigger.actions, label)
    if trigger.goto:
        yield trigger.goto, label
    if trigger.on_timeout and trigger.on_timeout.goto:
        timeout = format_duration(timedelta(seconds=trigger.timeout_seconds or 0))
        yield trigger.on_timeout.goto, f"no {trigger.event} in {timeout}"
    countdown = trigger.countdown
    if countdown is not None:
        for case, branch in (("missing", countdown.on_missing), ("past", countdown.on_past)):
            if branch is not None:
                yield from _gotos(branch.actions, f"deadline {case}")
                if branch.goto:
                    yield branch.goto, f"deadline {case}"


def transitions(plan: Plan) -> Iterator[tuple[str, str, str]]:
    """(from, to, label) for every way between stages; a playbook-wide trigger's from every
    stage that is not an end (labelled "any stage")."""
    for name, stage in plan.stages.items():
        for target, label in _gotos(stage.on_enter, "on enter"):
            yield name, target, label
        for trigger in stage.triggers:
            for target, label in _trigger_moves(trigger):
                yield name, target, label
        if stage.end:
            continue
        for trigger in plan.triggers:
            for target, label in _trigger_moves(trigger):
                yield name, target, f"{label} (any stage)"


def _escape(label: str) -> str:
    # Mermaid ends a label at a newline and reads ';' as a statement break.
    return label.replace("\n", " ").replace(";", ",").replace('"', "'")


def mermaid(plan: Plan) -> str:
    lines = ["stateDiagram-v2"]
    if plan.title:
        lines.append(f"    %% {plan.title} ({plan.name})")
    for name, stage in plan.stages.items():
        if stage.description:
            lines.append(f"    {name} : {_escape(stage.description)}")
    lines.append(f"    [*] --> {plan.entry_stage}")
    for source, target, label in transitions(plan):
        lines.append(f"    {source} --> {target} : {_escape(label)}")
    for name, stage in plan.stages.items():
        ends = stage.end or any(a.kind == "end" for a in stage.on_enter)
        if ends:
            lines.append(f"    {name} --> [*]")
    return "\n".join(lines) + "\n"
