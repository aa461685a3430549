"""Compile sopflow documents: YAML -> validated models -> checks -> immutable, hashed plans."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sopflow.language import models
from sopflow.language.attributes import customer_writes, journey_writes, reads_in_text, unwritten
from sopflow.language.checks import BundleContext, check_playbook, deadline_event_key
from sopflow.language.diagnostics import Diagnostic, PlaybookError
from sopflow.language.durations import parse_duration
from sopflow.language.guards import check_guard
from sopflow.language.loader import SourceDocument, load_file, load_text
from sopflow.language.plan import (
    HASHED_WHEN_SET,
    ActionStep,
    AtPlan,
    Branch,
    ContactPolicyPlan,
    CountdownPlan,
    EndStep,
    EnrolMemberStep,
    EnrolPlan,
    EnrolStep,
    ExitPlan,
    GoalPlan,
    GotoStep,
    MigrationPlan,
    Plan,
    ProfilePlan,
    ScoreStep,
    SendStep,
    SetStep,
    StagePlan,
    TagGroupPlan,
    TagRulePlan,
    TagStep,
    TaskStep,
    TierLevelPlan,
    TierRulePlan,
    TiersPlan,
    TriggerPlan,
    WeComPolicyPlan,
    WindowPlan,
)
from sopflow.language.salvage import Salvaged
from sopflow.language.subjects import Audience
from sopflow.language.templates import check_template
from sopflow.language.windows import parse_window


@dataclass
class Bundle:
    """Everything compiled from a set of files: plans, profile rules and all diagnostics."""

    plans: dict[str, Plan] = field(default_factory=dict)
    profile: ProfilePlan | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, SourceDocument] = field(default_factory=dict)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def raise_on_errors(self) -> None:
        if self.errors:
            raise PlaybookError(self.errors)


def compile_bundle(
    documents: Iterable[SourceDocument],
    problems: list[Diagnostic],
    salvaged: Iterable[Salvaged] = (),
) -> Bundle:
    """Compile documents that refer to each other (playbooks, taxonomy, tiers, content).

    `salvaged`: what is left of documents that failed their schema check (the loader's);
    never compiled, they are context for the others' checks, and their own semantic
    checks run when only unknown keys were pruned."""
    documents = list(documents)
    salvaged = list(salvaged)
    bundle = Bundle(diagnostics=list(problems))
    context = _context(documents, bundle, salvaged)
    for source in documents:
        if not isinstance(source.model, models.Playbook):
            continue
        name = source.model.metadata.name
        if name in bundle.sources:
            bundle.diagnostics.append(
                source.at(
                    "error",
                    f"playbook '{name}' is defined twice (also in {bundle.sources[name].file})",
                    ("metadata", "name"),
                )
            )
            continue
        bundle.sources[name] = source
        found = check_playbook(source, context)
        bundle.diagnostics.extend(found)
        if not any(d.severity == "error" for d in found):
            bundle.plans[name] = build_plan(source.model, context)
    for saved in salvaged:
        if isinstance(saved.model, models.Playbook) and saved.only_unknown_keys:
            own = SourceDocument(saved.model, saved.file, saved.positions)
            bundle.diagnostics.extend(check_playbook(own, context))
    bundle.profile = _profile_plan(context, documents, bundle)
    bundle.diagnostics.sort(key=lambda d: (d.file, d.line, d.column))
    return bundle


def compile_paths(paths: Iterable[Path]) -> Bundle:
    """Compile files together; a folder contributes every *.yaml below it except scenarios."""
    documents: list[SourceDocument] = []
    problems: list[Diagnostic] = []
    salvaged: list[Salvaged] = []
    for path in yaml_files(paths):
        found, errors = load_file(path, salvaged)
        documents += found
        problems += errors
    return compile_bundle(documents, problems, salvaged)


def yaml_files(paths: Iterable[Path]) -> list[Path]:
    """YAML files named or found below `paths`, each once, scenario folders left out."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += [
                p
                for p in sorted(path.rglob("*"))
                if p.suffix in (".yaml", ".yml") and "scenarios" not in p.relative_to(path).parts
            ]
        else:
            files.append(path)
    unique: dict[Path, Path] = {}
    for file in files:
        unique.setdefault(file.resolve(), file)
    return list(unique.values())


def compile_playbook(
    text: str, *, filename: str = "<playbook>", context: Iterable[SourceDocument] = ()
) -> Plan:
    """Compile one playbook (with optional taxonomy/tiers/content documents), or raise."""
    documents, problems = load_text(text, filename)
    bundle = compile_bundle([*context, *documents], problems)
    bundle.raise_on_errors()
    names = [d.model.metadata.name for d in documents if isinstance(d.model, models.Playbook)]
    if not names:
        raise PlaybookError([Diagnostic("error", "no Playbook document found", filename, 1, 1)])
    return bundle.plans[names[0]]


def compile_playbook_file(path: str | Path) -> Plan:
    """Compile a playbook file with everything beside it (taxonomy, tiers, content, the
    playbooks it may enrol into) as context; only this file's errors stop it."""
    return plans_of_file(compile_paths([Path(path).parent, Path(path)]), Path(path))[0]


def plans_of_file(bundle: Bundle, path: Path) -> list[Plan]:
    """The playbooks defined in one file of a compiled bundle, or its diagnostics as an error."""
    wanted = path.resolve()
    names = [n for n, s in bundle.sources.items() if Path(s.file).resolve() == wanted]
    problems = [d for d in bundle.errors if Path(d.file).resolve() == wanted]
    if problems:
        raise PlaybookError(problems)
    if not names or any(n not in bundle.plans for n in names):
        raise PlaybookError(
            [Diagnostic("error", "no playbook compiled from this file", str(path), 1, 1)]
        )
    return [bundle.plans[n] for n in names]


def _context(
    documents: list[SourceDocument], bundle: Bundle, salvaged: list[Salvaged]
) -> BundleContext:
    playbooks = [d.model for d in documents if isinstance(d.model, models.Playbook)]
    saved = [s.model for s in salvaged if isinstance(s.model, models.Playbook)]
    context = BundleContext(
        playbook_names={p.metadata.name for p in playbooks},
        playbook_audiences={p.metadata.name: p.audience for p in playbooks},
        customer_attributes=customer_writes([*playbooks, *saved]),
        refused_playbooks={
            s.name: f"{s.file}:{s.line}" for s in salvaged if s.kind == "Playbook" and s.name
        },
    )
    every_journey_attribute = set().union(*(journey_writes(p) for p in [*playbooks, *saved]))
    # Refused documents still tell the others what exists (content items, tag groups);
    # a profile is never built from a refused taxonomy or tiers.
    for refused in salvaged:
        match refused.model:
            case models.ContentLibrary():
                for key, text in refused.model.items.items():
                    context.content.setdefault(key, text)
            case models.TagTaxonomy():
                context.taxonomy = context.taxonomy or refused.model
                context.profile_incomplete = True
            case models.Tiers():
                context.profile_incomplete = True
        if refused.kind in ("TagTaxonomy", "Tiers"):
            context.profile_incomplete = True
    for source in documents:
        match source.model:
            case models.TagTaxonomy():
                if context.taxonomy is not None:
                    bundle.diagnostics.append(
                        source.at(
                            "error",
                            "a second TagTaxonomy: keep one taxonomy per deployment",
                            ("kind",),
                        )
                    )
                if context.taxonomy is not None and context.profile_incomplete:
                    context.taxonomy = None  # the valid one wins over a refused one
                context.taxonomy = source.model
                bundle.diagnostics += _check_taxonomy(source, source.model)
            case models.Tiers():
                if context.tiers is not None:
                    bundle.diagnostics.append(
                        source.at(
                            "error", "a second Tiers document: keep one per deployment", ("kind",)
                        )
                    )
                context.tiers = source.model
            case models.ContentLibrary():
                for key, text in source.model.items.items():
                    if key in context.content:
                        bundle.diagnostics.append(
                            source.at(
                                "error",
                                f"content item '{key}' is defined twice",
                                ("items", key),
                                key=True,
                            )
                        )
                    # An item may serve any audience: it is checked again where a
                    # playbook uses it, against that playbook's audience.
                    problems = [check_template(text, audience=a) for a in Audience]
                    if all(problems):
                        bundle.diagnostics.append(
                            source.at("error", str(problems[0]), ("items", key))
                        )
                    context.content[key] = text
                    reads = reads_in_text(text, ("items", key))
                    for read, message in unwritten(
                        reads, context.customer_attributes, every_journey_attribute
                    ):
                        bundle.diagnostics.append(source.at("warning", message, read.path))
    return context


def _check_taxonomy(source: SourceDocument, taxonomy: models.TagTaxonomy) -> list[Diagnostic]:
    found, seen = [], set()
    for category, groups in taxonomy.categories.items():
        for group, spec in groups.items():
            path = ("categories", category, group)
            if group in seen:
                found.append(
                    source.at("error", f"tag group '{group}' appears twice", path, key=True)
                )
            seen.add(group)
            if spec.rules and spec.source != models.TagSource.EVENT:
                found.append(
                    source.at(
                        "error",
                        f"tag group '{group}' has rules, so its source must be event",
                        (*path, "source"),
                    )
                )
            for index, rule in enumerate(spec.rules):
                problem = check_template(rule.tag)
                if rule.when and not problem:
                    problem = check_guard(rule.when, with_event=True)
                if problem:
                    found.append(source.at("error", problem, (*path, "rules", index)))
    return found


# ----------------------------------------------------------------------------- build


def _seconds(duration: str | None) -> int | None:
    return None if duration is None else int(parse_duration(duration).total_seconds())


def _range(text: str) -> WindowPlan:
    window = parse_window(text)
    return WindowPlan(
        days=tuple(sorted(window.days)),
        start=window.start.strftime("%H:%M"),
        end=window.end.strftime("%H:%M"),
    )


def _send_window(
    written: str | list[str] | None, named: dict[str, str | list[str]]
) -> WindowPlan | tuple[WindowPlan, ...] | None:
    """A send's window as the plan holds it: one range as before, several as a tuple.

    Names resolve to the playbook's windows (a named window may itself be a list)."""
    if written is None:
        return None
    ranges: list[WindowPlan] = []
    for item in [written] if isinstance(written, str) else written:
        resolved = named.get(item, item)
        for text in [resolved] if isinstance(resolved, str) else resolved:
            plan = _range(text)
            if plan not in ranges:
                ranges.append(plan)
    return ranges[0] if len(ranges) == 1 else tuple(ranges)


def _steps(
    actions: list[models.Action], playbook: models.Playbook, context: BundleContext
) -> tuple[ActionStep, ...]:
    content = {**context.content, **playbook.content}
    steps: list[ActionStep] = []
    for action in actions:
        match action:
            case models.SendAction(send=send):
                text = send.text if send.text is not None else content[send.content or ""]
                steps.append(
                    SendStep(
                        channel=send.channel.value,
                        text=text,
                        content=send.content,
                        window=_send_window(send.window, playbook.windows),
                        transactional=send.transactional,
                        urgent=send.urgent,
                        welcome=send.welcome,
                        welcome_fallback=send.welcome_fallback,
                        visible_to=tuple(send.visible_to) if send.visible_to is not None else None,
                    )
                )
            case models.TaskAction(task=task):
                on_complete = None
                if task.on_complete:
                    on_complete = Branch(
                        actions=_steps(task.on_complete.actions, playbook, context),
                        goto=task.on_complete.goto,
                    )
                steps.append(
                    TaskStep(
                        id=task.id,
                        title=task.title,
                        assignee=task.assignee,
                        script=task.script,
                        due_seconds=_seconds(task.due) or 0,
                        escalate_to=task.escalate_to,
                        on_complete=on_complete,
                    )
                )
            case models.TagAction(tag=change):
                steps.append(TagStep(add=tuple(change.add), remove=tuple(change.remove)))
            case models.SetAction(set=values):
                steps.append(SetStep(scope="customer", values=values))
            case models.SetJourneyAction(set_journey=values):
                steps.append(SetStep(scope="journey", values=values))
            case models.ScoreAction(score=deltas):
                steps.append(ScoreStep(deltas=deltas))
            case models.GotoAction(goto=stage):
                steps.append(GotoStep(stage=stage))
            case models.EnrolAction(enrol=target):
                steps.append(EnrolStep(playbook=target))
            case models.EndAction(end=reason):
                steps.append(EndStep(reason=reason if isinstance(reason, str) else None))
            case models.EnrolMemberAction(enrol_member=target):
                steps.append(EnrolMemberStep(playbook=target))
    return tuple(steps)


def _trigger(
    trigger: models.Trigger, playbook: models.Playbook, context: BundleContext
) -> TriggerPlan:
    common: dict[str, Any] = {
        "actions": _steps(trigger.actions, playbook, context),
        "goto": trigger.goto,
    }
    match trigger:
        case models.EventTrigger():
            return TriggerPlan(kind="event", event=trigger.event, when=trigger.when, **common)
        case models.AfterTrigger():
            return TriggerPlan(kind="after", after_seconds=_seconds(trigger.after), **common)
        case models.AtTrigger(at=at):
            sign = -1 if at.offset.startswith("-") else 1
            offset = sign * (_seconds(at.offset.lstrip("+-")) or 0)
            return TriggerPlan(
                kind="at",
                at=AtPlan(
                    attribute=at.attribute, offset_seconds=offset, time=at.time, yearly=at.yearly
                ),
                **common,
            )
        case models.DayTrigger():
            return TriggerPlan(kind="day", day=trigger.day, time=trigger.time, **common)
        case models.EveryTrigger():
            return TriggerPlan(kind="every", every_seconds=_seconds(trigger.every), **common)
        case models.CronTrigger():
            return TriggerPlan(kind="cron", cron=trigger.cron, **common)
        case models.InactivityTrigger():
            return TriggerPlan(
                kind="inactivity", inactive_seconds=_seconds(trigger.inactive_for), **common
            )
        case models.ConditionTrigger():
            return TriggerPlan(kind="condition", condition=trigger.condition, **common)
        case models.CountdownTrigger(countdown=countdown):
            offsets = sorted((_seconds(o) or 0 for o in countdown.offsets), reverse=True)
            event_key = deadline_event_key(countdown.deadline)
            plan = CountdownPlan(
                deadline_attribute=countdown.deadline if event_key is None else None,
                deadline_after_seconds=_seconds(countdown.deadline_after),
                offsets_seconds=tuple(offsets),
                deadline_event_key=event_key,
                on_missing=_branch(countdown.on_missing, playbook, context),
                on_past=_branch(countdown.on_past, playbook, context),
            )
            return TriggerPlan(kind="countdown", countdown=plan, **common)
        case models.WaitTrigger():
            return TriggerPlan(
                kind="wait",
                event=trigger.wait_for,
                when=trigger.when,
                timeout_seconds=_seconds(trigger.timeout),
                on_timeout=_branch(trigger.on_timeout, playbook, context),
                **common,
            )
    raise AssertionError(f"unhandled trigger {trigger!r}")


def _branch(
    branch: models.TimeoutBranch | models.DeadlineBranch | None,
    playbook: models.Playbook,
    context: BundleContext,
) -> Branch | None:
    if branch is None:
        return None
    return Branch(actions=_steps(branch.actions, playbook, context), goto=branch.goto)


def build_plan(playbook: models.Playbook, context: BundleContext) -> Plan:
    """The immutable plan of a checked playbook, versioned by its content hash."""
    stages = {
        name: StagePlan(
            description=stage.description,
            on_enter=_steps(stage.on_enter, playbook, context),
            triggers=tuple(_trigger(t, playbook, context) for t in stage.triggers),
            end=stage.end,
        )
        for name, stage in playbook.stages.items()
    }
    policy = playbook.contact_policy
    goal = playbook.goal
    unversioned = Plan(
        name=playbook.metadata.name,
        title=playbook.metadata.title,
        version="",
        audience=playbook.audience.value,
        timezone=playbook.timezone,
        entry_stage=next(iter(playbook.stages)),
        enrol=EnrolPlan(
            event=playbook.enrol.event,
            when=playbook.enrol.when,
            reentry=playbook.enrol.reentry.value,
            cooldown_seconds=_seconds(playbook.enrol.cooldown),
        ),
        exit=tuple(ExitPlan(event=r.event, when=r.when) for r in playbook.exit),
        goal=GoalPlan(event=goal.event, when=goal.when, exit=goal.exit) if goal else None,
        contact_policy=ContactPolicyPlan(
            quiet_hours=_range(policy.quiet_hours) if policy.quiet_hours else None,
            max_per_day=policy.max_per_day,
            max_per_week=policy.max_per_week,
        ),
        stages=stages,
        migrations=tuple(
            MigrationPlan(from_version=m.from_version, stages=m.stages) for m in playbook.migrations
        ),
        triggers=tuple(_trigger(t, playbook, context) for t in playbook.triggers),
        interaction_events=(
            None if playbook.interaction_events is None else tuple(playbook.interaction_events)
        ),
        wecom=WeComPolicyPlan(
            remind_after_seconds=_seconds(playbook.wecom.remind_after),
            cancel_on_leave=playbook.wecom.cancel_on_leave,
        ),
    )
    return unversioned.model_copy(update={"version": content_hash(unversioned)})


def _profile_plan(
    context: BundleContext, documents: list[SourceDocument], bundle: Bundle
) -> ProfilePlan | None:
    if context.taxonomy is None and context.tiers is None:
        return None
    if context.profile_incomplete:
        return None  # a taxonomy or tiers document was refused: no half a profile
    if any(
        d.severity == "error"
        for d in bundle.diagnostics
        if d.file
        in {s.file for s in documents if isinstance(s.model, models.TagTaxonomy | models.Tiers)}
    ):
        return None
    groups: dict[str, TagGroupPlan] = {}
    rules: list[TagRulePlan] = []
    if context.taxonomy is not None:
        for category, category_groups in context.taxonomy.categories.items():
            for name, spec in category_groups.items():
                groups[name] = TagGroupPlan(
                    category=category,
                    multi=spec.multi,
                    source=spec.source.value,
                    values=tuple(spec.tags),
                )
                rules += [
                    TagRulePlan(group=name, event=r.event, when=r.when, tag=r.tag)
                    for r in spec.rules
                ]
    tiers = None
    if context.tiers is not None:
        tiers = TiersPlan(
            period_seconds=_seconds(context.tiers.period) or 0,
            value=tuple(_level(level) for level in context.tiers.value),
            lifecycle=tuple(_level(level) for level in context.tiers.lifecycle),
        )
    unversioned = ProfilePlan(version="", groups=groups, tag_rules=tuple(rules), tiers=tiers)
    return unversioned.model_copy(update={"version": content_hash(unversioned)})


def _level(level: models.TierLevel) -> TierLevelPlan:
    rule = level.when
    if rule is None:
        return TierLevelPlan(name=level.name)
    return TierLevelPlan(
        name=level.name,
        rule=TierRulePlan(
            min_orders=rule.min_orders,
            min_spent=rule.min_spent,
            ordered_within_seconds=_seconds(rule.ordered_within),
            active_within_seconds=_seconds(rule.active_within),
            inactive_for_seconds=_seconds(rule.inactive_for),
            min_lifetime_orders=rule.min_lifetime_orders,
        ),
    )


def content_hash(plan: Plan | ProfilePlan) -> str:
    """Hash of the behaviour-bearing content of a plan (its own version field excluded).

    Fields added to plans after they were first versioned (marked `HASHED_WHEN_SET`) count
    only when they differ from their default: a playbook that uses no new feature keeps
    its version across upgrades, so nothing looks redeployed and no journey is orphaned.
    """
    dumped = plan.model_dump(mode="json", exclude={"version"})
    canonical = json.dumps(
        _without_unset_new_fields(plan, dumped),
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _without_unset_new_fields(value: Any, dumped: Any) -> Any:
    """`dumped` (the JSON dump of `value`) without the new fields that hold their default."""
    if isinstance(value, BaseModel) and isinstance(dumped, dict):
        kept = {}
        for name, info in type(value).model_fields.items():
            if name not in dumped:
                continue
            current = getattr(value, name)
            if HASHED_WHEN_SET in info.metadata and current == info.get_default(
                call_default_factory=True
            ):
                continue
            kept[name] = _without_unset_new_fields(current, dumped[name])
        return kept
    if isinstance(value, tuple | list) and isinstance(dumped, list):
        return [_without_unset_new_fields(v, d) for v, d in zip(value, dumped, strict=True)]
    if isinstance(value, dict) and isinstance(dumped, dict):
        return {k: _without_unset_new_fields(value[k], dumped[k]) for k in dumped}
    return dumped
