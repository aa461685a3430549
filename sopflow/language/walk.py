"""Walk a Playbook's nested actions, triggers and transitions, each with its key path.

Playbook-wide `triggers` are active in every stage that is not an end: they are walked
once where their actions and guards are checked, and once per stage where customers move.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sopflow.language import models
from sopflow.language.diagnostics import KeyPath
from sopflow.language.durations import parse_duration

# The "stage" of a playbook-wide trigger's actions: every stage.
EVERY_STAGE = "*"


@dataclass(frozen=True)
class Transition:
    source: str
    target: str
    path: KeyPath
    immediate: bool  # taken with no wait at all (an on_enter goto, an `after: 0s`)


def walk_triggers(playbook: models.Playbook) -> Iterator[tuple[KeyPath, models.Trigger]]:
    """Every trigger once: each stage's own, then the playbook-wide ones."""
    for stage_name, stage in playbook.stages.items():
        for index, trigger in enumerate(stage.triggers):
            yield ("stages", stage_name, "triggers", index), trigger
    for index, trigger in enumerate(playbook.triggers):
        yield ("triggers", index), trigger


def walk_actions(playbook: models.Playbook) -> Iterator[tuple[str, KeyPath, models.Action]]:
    """Every action of every stage, nested ones (task on_complete) included; the actions
    of playbook-wide triggers once, under the stage name EVERY_STAGE."""
    for stage_name, stage in playbook.stages.items():
        yield from stage_actions(stage_name, stage)
    for index, trigger in enumerate(playbook.triggers):
        yield from _trigger_actions(EVERY_STAGE, ("triggers", index), trigger)


def stage_actions(
    stage_name: str, stage: models.Stage
) -> Iterator[tuple[str, KeyPath, models.Action]]:
    """Every action of one stage, with its key path from the document root."""
    base: KeyPath = ("stages", stage_name)
    yield from _actions(stage_name, (*base, "on_enter"), stage.on_enter)
    for index, trigger in enumerate(stage.triggers):
        yield from _trigger_actions(stage_name, (*base, "triggers", index), trigger)


def _trigger_actions(
    stage: str, path: KeyPath, trigger: models.Trigger
) -> Iterator[tuple[str, KeyPath, models.Action]]:
    yield from _actions(stage, (*path, "actions"), trigger.actions)
    if isinstance(trigger, models.WaitTrigger) and trigger.on_timeout:
        yield from _actions(stage, (*path, "on_timeout", "actions"), trigger.on_timeout.actions)
    if isinstance(trigger, models.CountdownTrigger):
        for branch_name in ("on_missing", "on_past"):
            branch = getattr(trigger.countdown, branch_name)
            if branch is not None:
                branch_path = (*path, "countdown", branch_name, "actions")
                yield from _actions(stage, branch_path, branch.actions)


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
    """Every way a customer moves between stages; a playbook-wide trigger's moves once per
    stage it is active in (each with the trigger's path)."""
    for stage_name, stage in playbook.stages.items():
        base: KeyPath = ("stages", stage_name)
        for _, path, action in stage_actions(stage_name, stage):
            immediate = path[2] == "on_enter" and len(path) == 4
            yield from _action_transitions(stage_name, path, action, immediate)
        for index, trigger in enumerate(stage.triggers):
            yield from _trigger_transitions(stage_name, (*base, "triggers", index), trigger)
        if stage.end:
            continue  # the journey ends on entering: no playbook-wide trigger runs here
        # Playbook-wide triggers are timed from the journey's start, not from entering
        # each stage: none of their moves is immediate on entering a stage.
        for index, trigger in enumerate(playbook.triggers):
            path = ("triggers", index)
            for move in _trigger_transitions(stage_name, path, trigger):
                yield Transition(move.source, move.target, move.path, False)
            for _, action_path, action in _trigger_actions(stage_name, path, trigger):
                yield from _action_transitions(stage_name, action_path, action, False)


def _action_transitions(
    stage: str, path: KeyPath, action: models.Action, immediate: bool
) -> Iterator[Transition]:
    if isinstance(action, models.GotoAction):
        yield Transition(stage, action.goto, (*path, "goto"), immediate)
    if isinstance(action, models.TaskAction) and action.task.on_complete:
        target = action.task.on_complete.goto
        if target:
            yield Transition(stage, target, (*path, "task", "on_complete", "goto"), False)


def _trigger_transitions(
    stage: str, path: KeyPath, trigger: models.Trigger
) -> Iterator[Transition]:
    if trigger.goto:
        zero = isinstance(trigger, models.AfterTrigger) and not parse_duration(trigger.after)
        yield Transition(stage, trigger.goto, (*path, "goto"), zero)
    if isinstance(trigger, models.WaitTrigger) and trigger.on_timeout:
        target = trigger.on_timeout.goto
        if target:
            yield Transition(stage, target, (*path, "on_timeout", "goto"), False)
    if isinstance(trigger, models.CountdownTrigger):
        for branch_name in ("on_missing", "on_past"):
            branch = getattr(trigger.countdown, branch_name)
            if branch is not None and branch.goto:
                # Taken on entering the stage when the deadline is missing or past.
                yield Transition(
                    stage, branch.goto, (*path, "countdown", branch_name, "goto"), True
                )
