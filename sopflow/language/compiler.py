"""compile_playbook(): YAML text -> validated Playbook -> immutable, content-hashed Plan."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from sopflow.language import models
from sopflow.language.diagnostics import Diagnostic, KeyPath, PlaybookError, did_you_mean
from sopflow.language.durations import parse_duration
from sopflow.language.plan import ActionStep, EndStep, Plan, SendStep, StagePlan, TriggerPlan
from sopflow.language.yaml_positions import PositionIndex, load_yaml_with_positions


def compile_playbook_file(path: str | Path) -> Plan:
    """Read and compile one playbook file; errors name this file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PlaybookError([Diagnostic("error", f"cannot read: {e}", str(file), 1, 1)]) from e
    return compile_playbook(text, filename=str(file))


def compile_playbook(text: str, *, filename: str = "<playbook>") -> Plan:
    """Compile playbook YAML into a Plan, or raise PlaybookError with every diagnostic."""
    try:
        data, positions = load_yaml_with_positions(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = getattr(e, "problem", None) or str(e)
        raise PlaybookError(
            [Diagnostic("error", f"invalid YAML: {problem}", filename, line, column)]
        ) from e
    if not isinstance(data, dict):
        raise PlaybookError(
            [
                Diagnostic(
                    "error",
                    "expected a mapping with apiVersion, kind, metadata, enrol and stages",
                    filename,
                    1,
                    1,
                )
            ]
        )
    try:
        playbook = models.Playbook.model_validate(data)
    except ValidationError as e:
        raise PlaybookError(_validation_diagnostics(e, positions, filename)) from e
    diagnostics = _check_references(playbook, positions, filename)
    if diagnostics:
        raise PlaybookError(diagnostics)
    return _build_plan(playbook)


def _validation_diagnostics(
    error: ValidationError, positions: PositionIndex, filename: str
) -> list[Diagnostic]:
    found = []
    for item in error.errors():
        loc: KeyPath = tuple(item["loc"])
        path = positions.existing_path(loc)
        kind = item["type"]
        if kind == "extra_forbidden":
            key = str(loc[-1])
            line, column = positions.locate(loc, key=True)
            message = f"unknown key '{key}'{did_you_mean(key, _ALL_KEYS)}"
        elif kind == "union_tag_invalid":
            tag = str(item.get("ctx", {}).get("tag", "?"))
            expected = item.get("ctx", {}).get("expected_tags", "")
            line, column = positions.locate((*loc, tag), key=True)
            message = f"unknown kind '{tag}', expected one of {expected}"
            message += did_you_mean(tag, [t.strip(" '") for t in str(expected).split(",")])
        else:
            line, column = positions.locate(loc)
            message = _describe(item, loc)
        found.append(Diagnostic("error", message, filename, line, column, path))
    return found


def _describe(item: Any, loc: KeyPath) -> str:
    kind = item["type"]
    field = loc[-1] if loc else "document"
    if kind == "missing":
        return f"missing required key '{field}'"
    if kind == "string_pattern_mismatch":
        return f"'{item['input']}' is not a valid {field}: expected {item['ctx']['pattern']}"
    if kind == "enum":
        return f"'{item['input']}' is not a valid {field}: expected {item['ctx']['expected']}"
    message = str(item["msg"])
    # pydantic prefixes errors raised in our validators; the operator needs only our text.
    return message.removeprefix("Value error, ")


def _model_keys() -> frozenset[str]:
    keys: set[str] = set()
    for value in vars(models).values():
        if isinstance(value, type) and issubclass(value, BaseModel):
            for name, info in value.model_fields.items():
                keys.add(info.alias or name)
    return frozenset(keys)


_ALL_KEYS = _model_keys()


def _check_references(
    playbook: models.Playbook, positions: PositionIndex, filename: str
) -> list[Diagnostic]:
    stage_names = list(playbook.stages)
    found = []
    for stage_name, stage in playbook.stages.items():
        for index, trigger in enumerate(stage.triggers):
            if trigger.goto is not None and trigger.goto not in playbook.stages:
                path: KeyPath = ("stages", stage_name, "triggers", index, "goto")
                line, column = positions.locate(path)
                message = f"unknown stage '{trigger.goto}'{did_you_mean(trigger.goto, stage_names)}"
                found.append(Diagnostic("error", message, filename, line, column, path))
    return found


def _build_steps(actions: list[models.Action]) -> tuple[ActionStep, ...]:
    steps: list[ActionStep] = []
    for action in actions:
        if isinstance(action, models.SendAction):
            steps.append(SendStep(channel=action.send.channel.value, text=action.send.text))
        else:
            steps.append(EndStep())
    return tuple(steps)


def _build_trigger(trigger: models.EventTrigger | models.AfterTrigger) -> TriggerPlan:
    actions = _build_steps(trigger.actions)
    if isinstance(trigger, models.EventTrigger):
        return TriggerPlan(kind="event", event=trigger.event, actions=actions, goto=trigger.goto)
    seconds = int(parse_duration(trigger.after).total_seconds())
    return TriggerPlan(kind="after", after_seconds=seconds, actions=actions, goto=trigger.goto)


def _build_plan(playbook: models.Playbook) -> Plan:
    stages = {
        name: StagePlan(
            on_enter=_build_steps(stage.on_enter),
            triggers=tuple(_build_trigger(t) for t in stage.triggers),
            end=stage.end,
        )
        for name, stage in playbook.stages.items()
    }
    unversioned = Plan(
        name=playbook.metadata.name,
        title=playbook.metadata.title,
        version="",
        entry_stage=next(iter(playbook.stages)),
        enrol_event=playbook.enrol.event,
        stages=stages,
    )
    return unversioned.model_copy(update={"version": plan_hash(unversioned)})


def plan_hash(plan: Plan) -> str:
    """Hash of the behaviour-bearing content of a plan (its own version field excluded)."""
    canonical = json.dumps(
        plan.model_dump(mode="json", exclude={"version"}),
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
