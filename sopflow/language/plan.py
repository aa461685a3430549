"""The compiled, immutable plan of a playbook: what the journey core executes.

A plan is content-addressed: its `version` is a hash of everything that can change
behaviour, so a journey pinned to a version behaves the same for as long as it lives.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SendStep(FrozenModel):
    kind: Literal["send"] = "send"
    channel: str
    text: str


class EndStep(FrozenModel):
    kind: Literal["end"] = "end"


ActionStep = Annotated[SendStep | EndStep, Field(discriminator="kind")]


class TriggerPlan(FrozenModel):
    kind: Literal["event", "after"]
    event: str | None = None
    after_seconds: int | None = None
    actions: tuple[ActionStep, ...] = ()
    goto: str | None = None


class StagePlan(FrozenModel):
    on_enter: tuple[ActionStep, ...] = ()
    triggers: tuple[TriggerPlan, ...] = ()
    end: bool = False


class Plan(FrozenModel):
    name: str
    title: str | None = None
    version: str = Field(description="Content hash: the identity of this behaviour.")
    entry_stage: str
    enrol_event: str
    stages: dict[str, StagePlan]
