"""Walk a Playbook's nested actions and transitions, each with its key path."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sopflow.language import models
from sopflow.language.diagnostics import KeyPath


@dataclass(frozen=True)
class Transition:
    source: str
    target: str
    path: KeyPath
    immediate: bool  # taken with no wait at all (an on_enter goto, an `after: 0s`)
    label: str


def walk_actions(playbook: models.Playbook) -> Iterator[tuple[str, KeyPath, models.Action]]:
    """Every action of every stage, nested ones (task on_complete) included."""
    for stage_name, stage in playbook.stages.items():
        yield from stage_actions(stage_name, stage)


def stage_actions(
    stage_name: str, stage: models.Stage
) -> Iterator[tuple[str, KeyPath, models.Action]]:
    """Every action of one stage, with its key path from the document root."""
    base: KeyPath = ("stages", stage_name)
    yield from _actions(stage_name, (*base, "on_enter"), stage.on_enter)
    for index, trigger in enumerate(stage.triggers):
        path: KeyPath = (*base, "triggers", index)
        yield from _actions(stage_name, (*path, "actions"), trigger.actions)
        if isinstance(trigger, models.WaitTrigger) and trigger.on_timeout:
            yield from _actions(
                stage_name, (*path, "on_timeout", "actions"), trigger.on_timeout.actions
            )


def _actions(
    stage: str, path: KeyPath, actions: list[models.Action]
) -> Iterator[tuple[str, KeyPath, models.Action]]:
    for index, action in enumerate(actions):
        here: KeyPath = (*path, index)
        yield stage, here, action
        if isinstance(action, models.TaskAction) and action.task.on_complete:
            nested = (*here, "task", "on_complete", "actions")
            yield from _actions(stage, nested, action.task.on_complete.actions)


def trigger_label(trigger: models.Trigger) -> str:
    """How a transition reads on the graph: 'event message.received [guard]', 'after 3d'."""
    match trigger:
        case models.EventTrigger():
            return f"{trigger.event}" + (f" [{trigger.when}]" if trigger.when else "")
        case models.AfterTrigger():
            return f"after {trigger.after}"
        case models.AtTrigger():
            sign = "" if trigger.at.offset.startswith("-") else "+"
            return f"at {trigger.at.attribute}{sign}{trigger.at.offset}"
        case models.DayTrigger():
            return f"day {trigger.day} at {trigger.time}"
        case models.EveryTrigger():
            return f"every {trigger.every}"
        case models.CronTrigger():
            return f"cron {trigger.cron}"
        case models.InactivityTrigger():
            return f"inactive {trigger.inactive_for}"
        case models.ConditionTrigger():
            return f"when {trigger.condition}"
        case models.CountdownTrigger():
            return "countdown deadline"
        case models.WaitTrigger():
            return f"{trigger.wait_for}" + (f" [{trigger.when}]" if trigger.when else "")
    return "?"


def walk_transitions(playbook: models.Playbook) -> Iterator[Transition]:
    """Every way a customer moves between stages."""
    from sopflow.language.durations import parse_duration

    for stage_name, stage in playbook.stages.items():
        base: KeyPath = ("stages", stage_name)
        for stage_of, path, action in stage_actions(stage_name, stage):
            immediate = path[2] == "on_enter" and len(path) == 4
            if isinstance(action, models.GotoAction):
                yield Transition(stage_of, action.goto, (*path, "goto"), immediate, "goto")
            if isinstance(action, models.TaskAction) and action.task.on_complete:
                target = action.task.on_complete.goto
                if target:
                    label = f"task {action.task.id} done"
                    path_goto = (*path, "task", "on_complete", "goto")
                    yield Transition(stage_of, target, path_goto, False, label)
        for index, trigger in enumerate(stage.triggers):
            path = (*base, "triggers", index)
            if trigger.goto:
                zero = isinstance(trigger, models.AfterTrigger) and not parse_duration(
                    trigger.after
                )
                yield Transition(
                    stage_name, trigger.goto, (*path, "goto"), zero, trigger_label(trigger)
                )
            if isinstance(trigger, models.WaitTrigger) and trigger.on_timeout:
                target = trigger.on_timeout.goto
                if target:
                    label = f"no {trigger.wait_for} in {trigger.timeout}"
                    yield Transition(
                        stage_name, target, (*path, "on_timeout", "goto"), False, label
                    )
