"""The YAML surface of a Playbook, as pydantic models (the JSON Schema comes from here).

Actions and triggers are written with their kind as their first key
(`- send: {...}`, `- event: message.received`), the way operators read them aloud.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from sopflow.language.durations import parse_duration

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$"


class StrictModel(BaseModel):
    """Unknown keys are mistakes: an operator's typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Channel(StrEnum):
    """Where a message goes. `wecom.*` go through the log adapter until a WeCom adapter exists."""

    LOG = "log"
    WEBHOOK = "webhook"
    WECOM_PRIVATE = "wecom.private"
    WECOM_GROUP = "wecom.group"
    WECOM_MOMENTS = "wecom.moments"


class SendSpec(StrictModel):
    channel: Channel = Field(description="Touchpoint: log, webhook, wecom.private, ...")
    text: str = Field(min_length=1, description="The message text sent to the customer.")


class SendAction(StrictModel):
    send: SendSpec


class EndAction(StrictModel):
    end: Literal[True] = Field(description="End the journey here.")


def _first_key(value: Any) -> str | None:
    """Route a `- kind: ...` item to its model by its first key."""
    if isinstance(value, dict) and value:
        return str(next(iter(value)))
    if isinstance(value, BaseModel):
        return next(iter(type(value).model_fields))
    return None


Action = Annotated[
    Annotated[SendAction, Tag("send")] | Annotated[EndAction, Tag("end")],
    Discriminator(_first_key),
]


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


class TriggerBase(StrictModel):
    actions: list[Action] = Field(default_factory=list, description="Run when the trigger fires.")
    goto: str | None = Field(default=None, description="The stage to move to afterwards.")


class EventTrigger(TriggerBase):
    event: str = Field(pattern=EVENT_TYPE_PATTERN, description="Event type, e.g. message.received")


class AfterTrigger(TriggerBase):
    after: str = Field(description="Time spent in the stage: 15m, 3h, 3d, 2w or ISO 8601.")

    _valid_after = field_validator("after")(_check_duration)


Trigger = Annotated[
    Annotated[EventTrigger, Tag("event")] | Annotated[AfterTrigger, Tag("after")],
    Discriminator(_first_key),
]


class Stage(StrictModel):
    description: str | None = None
    on_enter: list[Action] = Field(default_factory=list, description="Run on entering the stage.")
    triggers: list[Trigger] = Field(default_factory=list)
    end: bool = Field(default=False, description="Entering this stage ends the journey.")


class Metadata(StrictModel):
    name: str = Field(pattern=NAME_PATTERN, description="Stable identifier, snake_case.")
    title: str | None = None


class Enrolment(StrictModel):
    event: str = Field(pattern=EVENT_TYPE_PATTERN, description="The event that starts a journey.")


class Playbook(StrictModel):
    """A customer journey: who enters it, and the stages they move through."""

    api_version: Literal["sopflow/v1"] = Field(alias="apiVersion")
    kind: Literal["Playbook"]
    metadata: Metadata
    enrol: Enrolment
    stages: Annotated[dict[str, Stage], Field(min_length=1)] = Field(
        description="Stages in order; the first one is where a journey starts."
    )

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
