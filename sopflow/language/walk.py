"""Walk a Playbook's nested actions and transitions, each with its key path."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sopflow.language import models
from sopflow.language.diagnostics import KeyPath
from sopflow.language.durations import parse_duration


@dataclass(frozen=True)
class Transition:
    source: str
    target: str
    path: KeyPath
    immediate: bool  # taken with no wait at all (an on_enter goto, an `after: 0s`)


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


def walk_transitions(playbook: models.Playbook) -> Iterator[Transition]:
    """Every way a customer moves between stages."""
    for stage_name, stage in playbook.stages.items():
        base: KeyPath = ("stages", stage_name)
        for stage_of, path, action in stage_actions(stage_name, stage):
            immediate = path[2] == "on_enter" and len(path) == 4
            if isinstance(action, models.GotoAction):
                yield Transition(stage_of, action.goto, (*path, "goto"), immediate)
            if isinstance(action, models.TaskAction) and action.task.on_complete:
                target = action.task.on_complete.goto
                if target:
                    yield Transition(
                        stage_of, target, (*path, "task", "on_complete", "goto"), False
                    )
        for index, trigger in enumerate(stage.triggers):
            path = (*base, "triggers", index)
            if trigger.goto:
                zero = isinstance(trigger, models.AfterTrigger) and not parse_duration(
                    trigger.after
                )
                yield Transition(stage_name, trigger.goto, (*path, "goto"), zero)
            if isinstance(trigger, models.WaitTrigger) and trigger.on_timeout:
                target = trigger.on_timeout.goto
                if target:
                    yield Transition(stage_name, target, (*path, "on_timeout", "goto"), False)
