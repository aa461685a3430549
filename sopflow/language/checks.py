"""Semantic checks of a Playbook: references, guards, templates, cycles, reachability."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from sopflow.language import models
from sopflow.language.attributes import journey_writes, playbook_reads, unwritten
from sopflow.language.channels import CHANNELS, Channel, channels_for
from sopflow.language.diagnostics import Diagnostic, KeyPath, did_you_mean
from sopflow.language.durations import parse_duration
from sopflow.language.events import CATALOGUE
from sopflow.language.guards import check_guard
from sopflow.language.loader import SourceDocument
from sopflow.language.subjects import Audience
from sopflow.language.templates import check_template
from sopflow.language.walk import EVERY_STAGE, walk_actions, walk_transitions, walk_triggers
from sopflow.language.windows import Window, parse_window, week_minutes


@dataclass
class BundleContext:
    """What a playbook may refer to beyond itself: taxonomy, tiers, content, playbooks."""

    taxonomy: models.TagTaxonomy | None = None
    tiers: models.Tiers | None = None
    content: dict[str, str] = field(default_factory=dict)
    playbook_names: set[str] | None = None  # None: unknown, enrol targets are not checked
    # Customer attributes some document writes (set actions, event_attributes).
    customer_attributes: set[str] = field(default_factory=set)
    # Playbooks defined in documents that failed their schema check: name -> file:line.
    refused_playbooks: dict[str, str] = field(default_factory=dict)
    # A taxonomy or tiers document was refused: the bundle gets no profile.
    profile_incomplete: bool = False
    playbook_audiences: dict[str, Audience] = field(default_factory=dict)

    def tag_groups(self) -> dict[str, models.TagGroup]:
        if self.taxonomy is None:
            return {}
        return {
            g: spec for groups in self.taxonomy.categories.values() for g, spec in groups.items()
        }


def check_playbook(source: SourceDocument, context: BundleContext) -> list[Diagnostic]:
    playbook = source.model
    assert isinstance(playbook, models.Playbook)
    found: list[Diagnostic] = []
    found += _check_transitions(source, playbook)
    found += _check_actions(source, playbook, context)
    found += _check_triggers(source, playbook)
    found += _check_guards(source, playbook)
    found += _check_policy(source, playbook)
    found += _check_shape(source, playbook)
    found += _check_attribute_reads(source, playbook, context)
    found += _check_audience(source, playbook)
    return found


def _check_attribute_reads(
    source: SourceDocument, playbook: models.Playbook, context: BundleContext
) -> Iterator[Diagnostic]:
    reads = playbook_reads(playbook)
    journey = journey_writes(playbook)
    for read, message in unwritten(reads, context.customer_attributes, journey):
        yield source.at("warning", message, read.path)


def _check_transitions(source: SourceDocument, playbook: models.Playbook) -> list[Diagnostic]:
    stages = list(playbook.stages)
    found = []
    reported: set[KeyPath] = set()  # a playbook-wide trigger's goto is walked once per stage
    for transition in walk_transitions(playbook):
        if transition.target not in playbook.stages and transition.path not in reported:
            reported.add(transition.path)
            hint = did_you_mean(transition.target, stages)
            found.append(
                source.at("error", f"unknown stage '{transition.target}'{hint}", transition.path)
            )
    for index, migration in enumerate(playbook.migrations):
        for old, new in migration.stages.items():
            if new not in playbook.stages:
                path: KeyPath = ("migrations", index, "stages", old)
                hint = did_you_mean(new, stages)
                found.append(source.at("error", f"unknown stage '{new}'{hint}", path))
    cycle = _zero_delay_cycle(playbook)
    if cycle:
        loop = " -> ".join([*cycle, cycle[0]])
        found.append(
            source.at(
                "error",
                f"zero-delay cycle {loop}: a customer would loop without waiting; "
                "add a wait (an `after`, an event) on the way",
                ("stages", cycle[0]),
                key=True,
            )
        )
    return found


def _zero_delay_cycle(playbook: models.Playbook) -> list[str] | None:
    edges: dict[str, list[str]] = {}
    for t in walk_transitions(playbook):
        if t.immediate and t.target in playbook.stages:
            edges.setdefault(t.source, []).append(t.target)
    visiting: list[str] = []
    done: set[str] = set()

    def visit(stage: str) -> list[str] | None:
        if stage in visiting:
            return visiting[visiting.index(stage) :]
        if stage in done:
            return None
        visiting.append(stage)
        for target in edges.get(stage, []):
            cycle = visit(target)
            if cycle:
                return cycle
        visiting.pop()
        done.add(stage)
        return None

    for stage in playbook.stages:
        cycle = visit(stage)
        if cycle:
            return cycle
    return None


def _check_actions(
    source: SourceDocument, playbook: models.Playbook, context: BundleContext
) -> Iterator[Diagnostic]:
    content = {**context.content, **playbook.content}
    audience = playbook.audience
    # The taxonomy is the customers'; a group's or a staff member's tags are free.
    groups = context.tag_groups() if audience == Audience.CUSTOMER else {}
    for key, text in playbook.content.items():
        problem = check_template(text, audience=audience)
        if problem:
            yield source.at("error", problem, ("content", key))
    for _, path, action in walk_actions(playbook):
        match action:
            case models.SendAction(send=send):
                yield from _check_send(source, playbook, path, send, content)
                for index, tag in enumerate(send.visible_to or []):
                    # The customers' tags: checked against the taxonomy when there is one.
                    problem = _check_tag(tag, context.tag_groups())
                    if problem:
                        yield source.at("error", problem, (*path, "send", "visible_to", index))
            case models.TaskAction(task=task):
                for key in ("title", "script"):
                    text = getattr(task, key)
                    problem = check_template(text, audience=audience) if text else None
                    if problem:
                        yield source.at("error", problem, (*path, "task", key))
                if not _valid_assignee(task.assignee):
                    yield source.at(
                        "error",
                        f"unknown assignee rule '{task.assignee}': write "
                        "owner, staff:<id> or pool:<id>,<id>",
                        (*path, "task", "assignee"),
                    )
            case models.TagAction(tag=change):
                for key in ("add", "remove"):
                    for index, tag in enumerate(getattr(change, key)):
                        problem = _check_tag(tag, groups)
                        if problem:
                            yield source.at("error", problem, (*path, "tag", key, index))
            case models.SetAction(set=values) | models.SetJourneyAction(set_journey=values):
                scope = "set" if isinstance(action, models.SetAction) else "set_journey"
                for key, value in values.items():
                    problem = (
                        check_template(value, audience=audience) if isinstance(value, str) else None
                    )
                    if problem:
                        yield source.at("error", problem, (*path, scope, key))
            case models.EnrolAction(enrol=target):
                yield from _check_target(source, path, "enrol", target, audience, context)
            case models.EnrolMemberAction(enrol_member=target):
                yield from _check_enrol_member(source, playbook, path, target, context)


def _check_target(
    source: SourceDocument,
    path: KeyPath,
    key: str,
    target: str,
    wanted: Audience,
    context: BundleContext,
) -> Iterator[Diagnostic]:
    """An enrolment's playbook exists and runs for the audience it enrols."""
    names = context.playbook_names
    if names is not None and target not in names and target in context.refused_playbooks:
        yield source.at(
            "error",
            f"playbook '{target}' (defined at {context.refused_playbooks[target]}) "
            "does not validate: fix its errors first",
            (*path, key),
        )
        return
    if names is not None and target not in names:
        yield source.at(
            "error", f"unknown playbook '{target}'{did_you_mean(target, names)}", (*path, key)
        )
        return
    found = context.playbook_audiences.get(target)
    if found is not None and found != wanted:
        yield source.at(
            "error",
            f"playbook '{target}' has audience {found.value}: {key} needs a playbook with "
            f"audience {wanted.value}",
            (*path, key),
        )


MEMBER_JOINED = "group.member_joined"


def _check_enrol_member(
    source: SourceDocument,
    playbook: models.Playbook,
    path: KeyPath,
    target: str,
    context: BundleContext,
) -> Iterator[Diagnostic]:
    here = (*path, "enrol_member")
    if playbook.audience != Audience.GROUP:
        yield source.at(
            "error",
            "enrol_member is for playbooks with audience group (it enrols the member who "
            "joined the group); use enrol here",
            here,
        )
        return
    trigger = None
    if len(path) == 6 and path[2] == "triggers" and path[4] == "actions":
        trigger = playbook.stages[str(path[1])].triggers[int(path[3])]
    if not (
        isinstance(trigger, models.EventTrigger | models.WaitTrigger)
        and _event_of(trigger) == MEMBER_JOINED
    ):
        yield source.at(
            "error",
            f"enrol_member needs the member at hand: use it in the actions of a trigger on "
            f"{MEMBER_JOINED}",
            here,
        )
        return
    yield from _check_target(source, path, "enrol_member", target, Audience.CUSTOMER, context)


def _event_of(trigger: models.EventTrigger | models.WaitTrigger) -> str:
    return trigger.event if isinstance(trigger, models.EventTrigger) else trigger.wait_for


def _check_send(
    source: SourceDocument,
    playbook: models.Playbook,
    path: KeyPath,
    send: models.SendSpec,
    content: dict[str, str],
) -> Iterator[Diagnostic]:
    here = (*path, "send")
    audience = playbook.audience
    if audience not in CHANNELS[send.channel].audiences:
        yield source.at("error", _wrong_channel(send.channel, audience), (*here, "channel"))
    if send.visible_to is not None and send.channel != "wecom.moments":
        yield source.at(
            "error",
            f"visible_to is for wecom.moments posts (WeCom shows a post to customers by "
            f"tag); a {send.channel} message has its own recipients",
            (*here, "visible_to"),
        )
    if "{" in "".join(send.visible_to or []):
        yield source.at(
            "error",
            "visible_to tags are written out, not templates: WeCom needs them when the "
            "post is created",
            (*here, "visible_to"),
        )
    if (send.text is None) == (send.content is None):
        yield source.at("error", "a send needs exactly one of text or content", here)
    if send.content is not None and send.content not in content:
        hint = did_you_mean(send.content, content)
        yield source.at("error", f"unknown template '{send.content}'{hint}", (*here, "content"))
    elif send.content is not None:
        problem = check_template(content[send.content], audience=audience)
        if problem:
            yield source.at("error", f"content '{send.content}': {problem}", (*here, "content"))
    if send.text is not None:
        problem = check_template(send.text, audience=audience)
        if problem:
            yield source.at("error", problem, (*here, "text"))
    if send.welcome:
        yield from _check_welcome(source, playbook, path, send)
    ranges: list[Window] = []
    written = [send.window] if isinstance(send.window, str) else send.window or []
    for index, item in enumerate(written):
        where: KeyPath = (*here, "window")
        if isinstance(send.window, list):
            where = (*where, index)
        if item in playbook.windows:
            named = playbook.windows[item]
            ranges += [parse_window(t) for t in ([named] if isinstance(named, str) else named)]
            continue
        try:
            ranges.append(parse_window(item))
        except ValueError as e:
            hint = did_you_mean(item, playbook.windows)
            message = f"unknown window '{item}'{hint}" if hint else str(e)
            yield source.at("error", message, where)
    yield from _check_quiet_hours(source, playbook, here, send, ranges, len(ranges) == len(written))


def _check_welcome(
    source: SourceDocument, playbook: models.Playbook, path: KeyPath, send: models.SendSpec
) -> Iterator[Diagnostic]:
    """WeCom sends a welcome only on wecom.private, with the code of a contact.added."""
    here = (*path, "send", "welcome")
    if send.channel != Channel.WECOM_PRIVATE:
        yield source.at(
            "error", f"welcome is a wecom.private message, not {send.channel.value}", here
        )
        return
    entry = next(iter(playbook.stages), None)
    if playbook.enrol.event != "contact.added" or tuple(path[:3]) != ("stages", entry, "on_enter"):
        yield source.at(
            "warning",
            "a welcome goes out only on entering the first stage of a playbook enrolled by "
            "contact.added (the welcome code comes with it); elsewhere it is an ordinary "
            "send, or skipped with welcome_fallback: skip",
            here,
        )


def _check_quiet_hours(
    source: SourceDocument,
    playbook: models.Playbook,
    here: KeyPath,
    send: models.SendSpec,
    ranges: list[Window],
    complete: bool,
) -> Iterator[Diagnostic]:
    """An urgent send that can land at night; a window that never opens outside quiet hours."""
    quiet_text = playbook.contact_policy.quiet_hours
    reaches_customer = CHANNELS[send.channel].reaches_customer
    if send.urgent and (quiet_text is None or not reaches_customer):
        why = (
            f"channel {send.channel.value} has no quiet hours"
            if not reaches_customer
            else "the playbook has no quiet_hours"
        )
        yield source.at("warning", f"urgent has no effect: {why}", (*here, "urgent"))
        return
    if quiet_text is None or not reaches_customer or not complete:
        return
    quiet = week_minutes(parse_window(quiet_text))
    open_minutes = frozenset().union(*(week_minutes(r) for r in ranges)) if ranges else None
    if send.urgent:
        at_night = quiet if open_minutes is None else quiet & open_minutes
        if at_night:
            yield source.at(
                "warning",
                f"urgent send can be delivered at night, inside the quiet hours {quiet_text}: "
                "give it a window outside them if that is not meant",
                (*here, "urgent"),
            )
    elif open_minutes is not None and open_minutes <= quiet:
        yield source.at(
            "error",
            f"the send window never opens outside the quiet hours {quiet_text}: "
            "the message could never be sent (mark it urgent, or move the window)",
            (*here, "window"),
        )


# Where each channel's messages belong, said to an operator who put one elsewhere.
WHERE = {
    "wecom.group": "a group message goes in a playbook with `audience: group` (one message "
    "per group, not one per member)",
    "wecom.moments": "a moments post goes in a playbook with `audience: staff` (one post per "
    "staff member, not one per customer)",
    "wecom.private": "a 1:1 message goes in a playbook with `audience: customer`",
}


def _wrong_channel(channel: str, audience: Audience) -> str:
    allowed = ", ".join(channels_for(audience))
    return (
        f"channel {channel} cannot be used by a playbook with audience {audience.value} "
        f"({allowed} can): {WHERE[channel]}"
    )


def _valid_assignee(rule: str) -> bool:
    if rule == "owner":
        return True
    kind, _, rest = rule.partition(":")
    return kind in ("staff", "pool") and bool(rest.strip(", "))


def _check_tag(tag: str, groups: dict[str, models.TagGroup]) -> str | None:
    group, _, value = tag.partition(":")
    if not groups:
        return check_template(value) if "{" in value else None  # no taxonomy: tags are free
    if "{" in value:
        problem = check_template(value)
        if problem:
            return problem
    if group not in groups:
        return f"unknown tag group '{group}' in '{tag}'{did_you_mean(group, groups)}"
    allowed = groups[group].tags
    if allowed and value not in allowed and "{" not in value:
        return f"unknown tag '{tag}'{did_you_mean(tag, [f'{group}:{v}' for v in allowed])}"
    return None


def _check_triggers(source: SourceDocument, playbook: models.Playbook) -> Iterator[Diagnostic]:
    for path, trigger in walk_triggers(playbook):
        if isinstance(trigger, models.CountdownTrigger):
            yield from _check_countdown(source, path, trigger.countdown)
        if isinstance(trigger, models.WaitTrigger) and trigger.timeout is None:
            yield source.at(
                "warning",
                f"waiting for {trigger.wait_for} with no timeout: a customer could wait forever",
                (*path, "wait_for"),
            )


EVENT_DATA_PREFIX = "event.data."
_DATA_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def deadline_event_key(deadline: str | None) -> str | None:
    """`ends_at` for a deadline read from the enrolling event's data (`event.data.ends_at`)."""
    if deadline is None or not deadline.startswith(EVENT_DATA_PREFIX):
        return None
    return deadline.removeprefix(EVENT_DATA_PREFIX)


def _check_countdown(
    source: SourceDocument, path: KeyPath, countdown: models.CountdownSpec
) -> Iterator[Diagnostic]:
    here: KeyPath = (*path, "countdown")
    if (countdown.deadline is None) == (countdown.deadline_after is None):
        yield source.at(
            "error",
            "a countdown needs exactly one of deadline (an attribute or event.data.<key>) "
            "or deadline_after (a duration)",
            here,
        )
        return
    if countdown.deadline is not None:
        name = deadline_event_key(countdown.deadline) or countdown.deadline
        if not _DATA_KEY.match(name):
            yield source.at(
                "error",
                f"'{countdown.deadline}' is not a deadline: write an attribute's name "
                "(campaign_ends_at) or event.data.<key> (the data of the event that "
                "enrolled the customer)",
                (*here, "deadline"),
            )
        missing = [b for b in ("on_missing", "on_past") if getattr(countdown, b) is None]
        if missing:
            yield source.at(
                "warning",
                f"countdown to {countdown.deadline} has no {' and no '.join(missing)}: a "
                f"customer whose deadline is {_deadline_cases(missing)} on entering would "
                "wait here with no deadline to reach",
                (*here, "deadline"),
            )
    else:
        for branch in ("on_missing", "on_past"):
            if getattr(countdown, branch) is not None:
                yield source.at(
                    "warning",
                    f"{branch} is never taken: a deadline_after is always known and ahead",
                    (*here, branch),
                    key=True,
                )
    if countdown.deadline_after is not None:
        available = parse_duration(countdown.deadline_after)
        for index, offset in enumerate(countdown.offsets):
            if parse_duration(offset) > available:
                yield source.at(
                    "error",
                    f"countdown offset {offset} is larger than the time available: the "
                    f"deadline is {countdown.deadline_after} after entering the stage",
                    (*path, "countdown", "offsets", index),
                )


def _deadline_cases(missing: list[str]) -> str:
    cases = {"on_missing": "missing (or unreadable)", "on_past": "already past"}
    return " or ".join(cases[b] for b in missing)


def _guards(playbook: models.Playbook) -> Iterator[tuple[KeyPath, str, bool]]:
    if playbook.enrol.when:
        yield ("enrol", "when"), playbook.enrol.when, playbook.enrol.event is not None
    for index, rule in enumerate(playbook.exit):
        if rule.when:
            yield ("exit", index, "when"), rule.when, rule.event is not None
    if playbook.goal and playbook.goal.when:
        yield ("goal", "when"), playbook.goal.when, True
    for path, trigger in walk_triggers(playbook):
        if isinstance(trigger, models.EventTrigger | models.WaitTrigger) and trigger.when:
            yield (*path, "when"), trigger.when, True
        if isinstance(trigger, models.ConditionTrigger):
            yield (*path, "condition"), trigger.condition, False


def _check_guards(source: SourceDocument, playbook: models.Playbook) -> Iterator[Diagnostic]:
    for path, guard, with_event in _guards(playbook):
        problem = check_guard(guard, with_event=with_event, audience=playbook.audience)
        if problem:
            yield source.at("error", problem, path)


def _check_policy(source: SourceDocument, playbook: models.Playbook) -> Iterator[Diagnostic]:
    enrol = playbook.enrol
    if enrol.reentry == models.ReentryPolicy.COOLDOWN and enrol.cooldown is None:
        yield source.at("error", "reentry: cooldown needs a cooldown duration", ("enrol",))
    if enrol.cooldown is not None:
        try:
            parse_duration(enrol.cooldown)
        except ValueError as e:
            yield source.at("error", str(e), ("enrol", "cooldown"))
    if playbook.wecom.remind_after is not None:
        try:
            if parse_duration(playbook.wecom.remind_after).total_seconds() <= 0:
                raise ValueError("remind_after must be longer than zero")
        except ValueError as e:
            yield source.at("error", str(e), ("wecom", "remind_after"))
    for index, rule in enumerate(playbook.exit):
        if rule.event is None and rule.when is None:
            yield source.at(
                "error", "an exit rule needs an event, a when, or both", ("exit", index)
            )


def _check_shape(source: SourceDocument, playbook: models.Playbook) -> Iterator[Diagnostic]:
    entry = next(iter(playbook.stages))
    targets: dict[str, set[str]] = {}
    for t in walk_transitions(playbook):
        targets.setdefault(t.source, set()).add(t.target)
    reached, frontier = {entry}, [entry]
    while frontier:
        for target in targets.get(frontier.pop(), set()):
            if target not in reached and target in playbook.stages:
                reached.add(target)
                frontier.append(target)
    ends = {
        stage for stage, _, action in walk_actions(playbook) if isinstance(action, models.EndAction)
    }
    for name, stage in playbook.stages.items():
        if name not in reached:
            yield source.at(
                "warning",
                f"stage '{name}' is unreachable: no transition leads to it",
                ("stages", name),
                key=True,
            )
        way_out = targets.get(name) or playbook.exit or EVERY_STAGE in ends
        if not stage.end and name not in ends and not way_out:
            yield source.at(
                "warning",
                f"stage '{name}' has no way out and is not an end: "
                "customers would stay in it forever",
                ("stages", name),
                key=True,
            )


def _check_audience(source: SourceDocument, playbook: models.Playbook) -> Iterator[Diagnostic]:
    """A playbook that enrols on a standard event of another audience would never start:
    a group's events never reach a customer's journeys, and the other way round."""
    event = playbook.enrol.event
    spec = next((e for e in CATALOGUE if e.type == event), None)
    if spec is not None and playbook.audience not in spec.audiences:
        audiences = " or ".join(sorted(a.value for a in spec.audiences))
        yield source.at(
            "error",
            f"{event} happens to a {audiences}, never to a {playbook.audience.value}: "
            f"a playbook with audience {playbook.audience.value} would enrol no one on it",
            ("enrol", "event"),
        )
