"""The YAML surface of sopflow documents, as pydantic models (the JSON Schemas come from here).

Actions and triggers are written with their kind as their first key
(`- send: {...}`, `- event: message.received`), the way operators read them aloud.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import croniter
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    field_validator,
)

from sopflow.language.channels import Channel
from sopflow.language.diagnostics import did_you_mean
from sopflow.language.durations import parse_duration
from sopflow.language.subjects import Audience
from sopflow.language.windows import parse_clock, parse_window

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$"
# `group:value`; the value may be a template ("skin_type:{{ event.data.skin }}").
TAG_PATTERN = r"^[a-z][a-z0-9_]*:\S.*$"
API_VERSION = "sopflow/v1"


class StrictModel(BaseModel):
    """Unknown keys are mistakes: an operator's typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


def _check_durations(values: list[str]) -> list[str]:
    for value in values:
        parse_duration(value)
    return values


def _check_clock(value: str | None) -> str | None:
    if value is not None:
        parse_clock(value)
    return value


def _check_window(value: str | None) -> str | None:
    if value is not None:
        parse_window(value)
    return value


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        hint = did_you_mean(value, available_timezones())
        raise ValueError(f"unknown time zone '{value}'{hint}") from None
    return value


def _check_cron(value: str) -> str:
    if not croniter.is_valid(value):
        raise ValueError(
            f"'{value}' is not a cron expression: write five fields, minute hour day month "
            "weekday, e.g. '0 10 1 1,4,7,10 *'"
        )
    return value


def _one_or_more_texts(value: Any, what: str) -> str | list[str]:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return [str(item) for item in value]
    raise ValueError(f"{what}, or a non-empty list of them")


def _window_items(value: Any) -> str | list[str]:
    """A send's window: one or a list of ranges and named windows (names checked later)."""
    return _one_or_more_texts(
        value, "a send window is a range ('weekdays 11:30-13:00') or a named window"
    )


def _window_ranges(value: Any) -> str | list[str]:
    """A named window: one range or a list of ranges, each checked here."""
    texts = _one_or_more_texts(value, "a named window is a range ('weekdays 11:30-13:00')")
    for text in [texts] if isinstance(texts, str) else texts:
        parse_window(text)
    return texts


# A window as written: one text or a list (the JSON Schema shows both for editors).
WindowList = Annotated[
    str | list[str], PlainValidator(_window_items, json_schema_input_type=str | list[str])
]
WindowRanges = Annotated[
    str | list[str], PlainValidator(_window_ranges, json_schema_input_type=str | list[str])
]
Duration = Annotated[str, Field(description="15m, 3h, 3d, 2w, 1d12h or ISO 8601 (P3D).")]
Guard = Annotated[str, Field(description="A CEL expression over customer, journey, event, now.")]
Template = Annotated[str, Field(description="Jinja2 text over customer, journey, event, now.")]


def _first_key(value: Any) -> str | None:
    """Route a `- kind: ...` item to its model by its first key."""
    if isinstance(value, dict) and value:
        return str(next(iter(value)))
    if isinstance(value, BaseModel):
        return next(iter(type(value).model_fields))
    return None


# ----------------------------------------------------------------------------- actions


class SendSpec(StrictModel):
    channel: Channel = Field(description="Touchpoint: log, webhook, wecom.private, ...")
    text: Template | None = Field(default=None, description="The message (a template).")
    content: str | None = Field(default=None, description="A content library item instead of text.")
    transactional: bool = Field(
        default=False,
        description="A service message (order, delivery): never capped, not counted.",
    )
    window: WindowList | None = Field(
        default=None,
        description="When it may be sent: a named window of the playbook or "
        "'weekdays 11:30-13:00', 'weekends 10:00-20:00', 'mon,fri 18:00-20:00'; "
        "or a list of them: the next range to open wins.",
    )
    urgent: bool = Field(
        default=False,
        description="Exempt from the quiet hours (the last hour of a countdown); "
        "the contact caps still apply.",
    )
    welcome: bool = Field(
        default=False,
        description="WeCom's welcome message (wecom.private, in the entry stage of a "
        "playbook enrolled by contact.added): sent at once with the add callback's "
        "welcome code, outside any window or quiet hours, exactly once.",
    )
    welcome_fallback: Literal["send", "skip"] = Field(
        default="send",
        description="When there is no welcome code or WeCom refuses it (older than 20 "
        "seconds): send it as an ordinary message, or skip it.",
    )
    visible_to: list[Annotated[str, Field(pattern=TAG_PATTERN)]] | None = Field(
        default=None,
        description="wecom.moments only: the customers who see the post, by their tags "
        "(`group:value`, WeCom's corp tags); none: every customer of the staff member.",
    )


class SendAction(StrictModel):
    send: SendSpec


class TaskOnComplete(StrictModel):
    actions: list[Action] = Field(default_factory=list)
    goto: str | None = None


class TaskSpec(StrictModel):
    id: str = Field(pattern=NAME_PATTERN, description="Name of the task within the playbook.")
    title: Template
    assignee: str = Field(
        default="owner",
        description="'owner' (the customer's attribute owner), 'staff:<id>' or 'pool:<a>,<b>'.",
    )
    script: Template | None = Field(default=None, description="What staff should say or do.")
    due: Duration = "1d"
    escalate_to: str | None = Field(
        default=None, description="Who gets an escalation task when it is overdue ('staff:lead')."
    )
    on_complete: TaskOnComplete | None = Field(
        default=None, description="When staff complete it: actions and a stage to go to."
    )

    _valid_due = field_validator("due")(_check_duration)


class TaskAction(StrictModel):
    task: TaskSpec


class TagChange(StrictModel):
    add: list[Annotated[str, Field(pattern=TAG_PATTERN)]] = Field(default_factory=list)
    remove: list[Annotated[str, Field(pattern=TAG_PATTERN)]] = Field(default_factory=list)


class TagAction(StrictModel):
    tag: TagChange


class SetAction(StrictModel):
    set: dict[str, Any] = Field(description="Customer attributes; string values are templates.")


class SetJourneyAction(StrictModel):
    set_journey: dict[str, Any] = Field(description="Attributes of this journey only.")


class ScoreAction(StrictModel):
    score: dict[str, float] = Field(description="Add to named scores, e.g. {intent: 10}.")


class GotoAction(StrictModel):
    goto: str


class EnrolAction(StrictModel):
    enrol: str = Field(pattern=NAME_PATTERN, description="Enrol in another playbook.")


class EndAction(StrictModel):
    end: Literal[True] | str = Field(description="End the journey (true, or a reason).")


class EnrolMemberAction(StrictModel):
    enrol_member: str = Field(
        pattern=NAME_PATTERN,
        description="Group playbooks, on group.member_joined: enrol the member who joined "
        "in a customer playbook (their own journey, their own caps).",
    )


Action = Annotated[
    Annotated[SendAction, Tag("send")]
    | Annotated[TaskAction, Tag("task")]
    | Annotated[TagAction, Tag("tag")]
    | Annotated[SetAction, Tag("set")]
    | Annotated[SetJourneyAction, Tag("set_journey")]
    | Annotated[ScoreAction, Tag("score")]
    | Annotated[GotoAction, Tag("goto")]
    | Annotated[EnrolAction, Tag("enrol")]
    | Annotated[EndAction, Tag("end")]
    | Annotated[EnrolMemberAction, Tag("enrol_member")],
    Discriminator(_first_key),
]

# ----------------------------------------------------------------------------- triggers


class TriggerBase(StrictModel):
    actions: list[Action] = Field(default_factory=list, description="Run when the trigger fires.")
    goto: str | None = Field(default=None, description="The stage to move to afterwards.")


class EventTrigger(TriggerBase):
    event: str = Field(pattern=EVENT_TYPE_PATTERN, description="Event type, e.g. message.received")
    when: Guard | None = None


class AfterTrigger(TriggerBase):
    after: Duration = Field(description="Time spent in the stage.")

    _valid_after = field_validator("after")(_check_duration)


class AtSpec(StrictModel):
    attribute: str = Field(
        description="A date or time of the customer: added_at, last_order_at, "
        "predicted_next_purchase_at, last_interaction_at, or an attribute (birthday)."
    )
    offset: str = Field(default="0s", description="Before (-3d) or after (2h) that time.")
    time: str | None = Field(default=None, description="Local time of day, e.g. 10:00.")
    yearly: bool = Field(default=False, description="Every year on that date (birthdays).")

    @field_validator("offset")
    @classmethod
    def _valid_offset(cls, value: str) -> str:
        parse_duration(value.removeprefix("-").removeprefix("+"))
        return value

    _valid_time = field_validator("time")(_check_clock)


class AtTrigger(TriggerBase):
    at: AtSpec


class DayTrigger(TriggerBase):
    day: int = Field(ge=0, description="Days since the customer was added (day 0 = that day).")
    time: str = Field(default="10:00", description="Local time of day.")

    _valid_time = field_validator("time")(_check_clock)


class EveryTrigger(TriggerBase):
    every: Duration = Field(description="Repeat every N (1d, 2w) from entering the stage.")

    _valid_every = field_validator("every")(_check_duration)


class CronTrigger(TriggerBase):
    cron: str = Field(description="Five-field cron in the customer's time zone.")

    _valid_cron = field_validator("cron")(_check_cron)


class InactivityTrigger(TriggerBase):
    inactive_for: Duration = Field(description="No interaction from the customer for this long.")

    _valid_inactive = field_validator("inactive_for")(_check_duration)


class ConditionTrigger(TriggerBase):
    condition: Guard = Field(description="Fires when it becomes true (a tag, tier, attribute).")


class DeadlineBranch(StrictModel):
    actions: list[Action] = Field(default_factory=list)
    goto: str | None = None


class CountdownSpec(StrictModel):
    deadline: str | None = Field(
        default=None,
        description="Where the deadline is: an attribute (campaign_ends_at) or the data of "
        "the event that enrolled the customer (event.data.ends_at).",
    )
    deadline_after: Duration | None = Field(
        default=None, description="Or a deadline this long after entering the stage."
    )
    offsets: list[str] = Field(min_length=1, description="Before the deadline: [7d, 3d, 1h].")
    on_missing: DeadlineBranch | None = Field(
        default=None,
        description="Taken on entering the stage when the deadline is missing or unreadable.",
    )
    on_past: DeadlineBranch | None = Field(
        default=None, description="Taken on entering the stage when the deadline has passed."
    )

    _valid_offsets = field_validator("offsets")(_check_durations)


class CountdownTrigger(TriggerBase):
    countdown: CountdownSpec = Field(
        description="`actions` run at each offset before the deadline; `goto` at the deadline."
    )


class TimeoutBranch(StrictModel):
    actions: list[Action] = Field(default_factory=list)
    goto: str | None = None


class WaitTrigger(TriggerBase):
    wait_for: str = Field(pattern=EVENT_TYPE_PATTERN, description="The event awaited.")
    when: Guard | None = None
    timeout: Duration | None = Field(default=None, description="Give up waiting after this long.")
    on_timeout: TimeoutBranch | None = None


Trigger = Annotated[
    Annotated[EventTrigger, Tag("event")]
    | Annotated[AfterTrigger, Tag("after")]
    | Annotated[AtTrigger, Tag("at")]
    | Annotated[DayTrigger, Tag("day")]
    | Annotated[EveryTrigger, Tag("every")]
    | Annotated[CronTrigger, Tag("cron")]
    | Annotated[InactivityTrigger, Tag("inactive_for")]
    | Annotated[ConditionTrigger, Tag("condition")]
    | Annotated[CountdownTrigger, Tag("countdown")]
    | Annotated[WaitTrigger, Tag("wait_for")],
    Discriminator(_first_key),
]

# ----------------------------------------------------------------------------- playbook


class Stage(StrictModel):
    description: str | None = None
    on_enter: list[Action] = Field(default_factory=list, description="Run on entering the stage.")
    triggers: list[Trigger] = Field(default_factory=list)
    end: bool = Field(default=False, description="Entering this stage ends the journey.")


class Quadrant(StrEnum):
    LOW_PRICE_HIGH_FREQUENCY = "low_price_high_frequency"
    HIGH_PRICE_HIGH_FREQUENCY = "high_price_high_frequency"
    HIGH_PRICE_LOW_FREQUENCY = "high_price_low_frequency"
    LOW_PRICE_LOW_FREQUENCY = "low_price_low_frequency"


class Metadata(StrictModel):
    name: str = Field(pattern=NAME_PATTERN, description="Stable identifier, snake_case.")
    title: str | None = None
    description: str | None = None
    industry: str | None = None
    quadrant: Quadrant | None = Field(default=None, description="Price and purchase frequency.")


class ReentryPolicy(StrEnum):
    NEVER = "never"
    COOLDOWN = "cooldown"
    ALWAYS = "always"


class Enrolment(StrictModel):
    event: str | None = Field(
        default=None,
        pattern=EVENT_TYPE_PATTERN,
        description="The event that starts a journey (none: only by an enrol action).",
    )
    when: Guard | None = None
    reentry: ReentryPolicy = ReentryPolicy.NEVER
    cooldown: Duration | None = Field(default=None, description="With reentry: cooldown.")


class ExitRule(StrictModel):
    event: str | None = Field(default=None, pattern=EVENT_TYPE_PATTERN)
    when: Guard | None = None


class Goal(StrictModel):
    event: str = Field(pattern=EVENT_TYPE_PATTERN, description="The conversion event.")
    when: Guard | None = None
    exit: bool = Field(default=False, description="End the journey when the goal is reached.")


class ContactPolicy(StrictModel):
    quiet_hours: str | None = Field(
        default=None, description="Local hours with no message, e.g. '21:00-09:00'."
    )
    max_per_day: int | None = Field(default=None, ge=0)
    max_per_week: int | None = Field(default=None, ge=0)

    _valid_quiet = field_validator("quiet_hours")(_check_window)


class WeComPolicy(StrictModel):
    """How the playbook's WeCom mass sends (wecom.private, wecom.group) are followed up
    while they wait for the staff member to confirm them in the WeCom client."""

    remind_after: Duration | None = Field(
        default=None,
        description="Remind the staff member of an unconfirmed task after this long, e.g. "
        "4h (default: the SOPFLOW_WECOM_REMIND_AFTER_SECONDS setting). WeCom allows 3 "
        "reminders a task in 24 hours.",
    )
    cancel_on_leave: bool = Field(
        default=True,
        description="When the journey leaves the stage (or ends) before the staff member "
        "confirmed, cancel the customer's wecom.private send: dropped while it waits for "
        "its task; in a task, the task is cancelled once every customer still waiting in it "
        "was cancelled.",
    )


class Migration(StrictModel):
    """How journeys of an older version move to this one: a stage map, old -> new."""

    from_version: str = Field(
        alias="from",
        pattern=r"^[0-9a-f]{16}$",
        description="The plan version (hash) journeys move from.",
    )
    stages: dict[str, str] = Field(
        default_factory=dict, description="Old stage -> new stage; unlisted keep their name."
    )


class Playbook(StrictModel):
    """A journey: who enters it, and the stages they move through."""

    api_version: Literal["sopflow/v1"] = Field(alias="apiVersion")
    kind: Literal["Playbook"]
    metadata: Metadata
    audience: Audience = Field(
        default=Audience.CUSTOMER,
        description="Who runs through it: customer (1:1, the default), group (a customer "
        "group chat: one message for all its members) or staff (a staff member: moments "
        "posts and tasks).",
    )
    timezone: str = Field(default="Asia/Shanghai", description="Default customer time zone.")
    enrol: Enrolment
    exit: list[ExitRule] = Field(default_factory=list, description="End from any stage.")
    goal: Goal | None = None
    contact_policy: ContactPolicy = Field(default_factory=ContactPolicy)
    wecom: WeComPolicy = Field(
        default_factory=WeComPolicy,
        description="Reminders and cancellation of the playbook's WeCom mass sends.",
    )
    triggers: list[Trigger] = Field(
        default_factory=list,
        description="Active in every stage but end stages, after the stage's own triggers: "
        "as if written at the end of each stage's list.",
    )
    windows: dict[str, WindowRanges] = Field(
        default_factory=dict,
        description="Named send windows: a range, or a list of ranges (the next to open wins).",
    )
    content: dict[str, Template] = Field(default_factory=dict, description="Local content items.")
    event_attributes: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(
        default_factory=list,
        description="Customer attributes that events bring in `data.attributes` (a form, the "
        "CRM): listed, `validate` knows they are written.",
    )
    interaction_events: list[Annotated[str, Field(pattern=EVENT_TYPE_PATTERN)]] | None = Field(
        default=None,
        description="The events that count as the customer interacting, for `inactive_for` "
        "and `journey.days_inactive` (default: every event the catalogue marks as "
        "interaction, i.e. all but staff actions and system notices).",
    )
    migrations: list[Migration] = Field(
        default_factory=list, description="Explicit moves of in-flight journeys (sopflow migrate)."
    )
    stages: Annotated[dict[str, Stage], Field(min_length=1)] = Field(
        description="Stages in order; the first one is where a journey starts."
    )

    _valid_timezone = field_validator("timezone")(_check_timezone)


# ----------------------------------------------------------------------------- taxonomy


class TagSource(StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"
    EVENT = "event"


class TagRule(StrictModel):
    event: str = Field(pattern=EVENT_TYPE_PATTERN)
    when: Guard | None = None
    tag: Template = Field(description="The tag value, e.g. '{{ event.data.skin_type }}'.")


class TagGroup(StrictModel):
    description: str | None = None
    multi: bool = Field(default=False, description="Several values at once (else one replaces).")
    source: TagSource = TagSource.MANUAL
    tags: list[str] = Field(default_factory=list, description="Allowed values (empty: any).")
    rules: list[TagRule] = Field(default_factory=list)


class TagTaxonomy(StrictModel):
    """Category -> group -> tag. Tags are written `group:value`."""

    api_version: Literal["sopflow/v1"] = Field(alias="apiVersion")
    kind: Literal["TagTaxonomy"]
    metadata: Metadata
    categories: dict[str, dict[str, TagGroup]]


# ----------------------------------------------------------------------------- tiers


class TierRule(StrictModel):
    min_orders: int | None = Field(default=None, ge=0, description="Orders within the period.")
    min_spent: float | None = Field(default=None, ge=0, description="Spent within the period.")
    ordered_within: Duration | None = None
    active_within: Duration | None = None
    inactive_for: Duration | None = None
    min_lifetime_orders: int | None = Field(default=None, ge=0)


class TierLevel(StrictModel):
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    when: TierRule | None = Field(default=None, description="None: the default (last) level.")


class Tiers(StrictModel):
    """Value tiers (RFM) and lifecycle stages: the first matching level wins."""

    api_version: Literal["sopflow/v1"] = Field(alias="apiVersion")
    kind: Literal["Tiers"]
    metadata: Metadata
    period: Duration = Field(default="90d", description="The RFM window.")
    value: list[TierLevel] = Field(min_length=1)
    lifecycle: list[TierLevel] = Field(min_length=1)


class ContentLibrary(StrictModel):
    """Messages written once, used by every playbook (each customer on their own day N)."""

    api_version: Literal["sopflow/v1"] = Field(alias="apiVersion")
    kind: Literal["ContentLibrary"]
    metadata: Metadata
    items: dict[str, Template]


Document = Playbook | TagTaxonomy | Tiers | ContentLibrary
DOCUMENT_KINDS: dict[str, type[BaseModel]] = {
    "Playbook": Playbook,
    "TagTaxonomy": TagTaxonomy,
    "Tiers": Tiers,
    "ContentLibrary": ContentLibrary,
}

TaskOnComplete.model_rebuild()
