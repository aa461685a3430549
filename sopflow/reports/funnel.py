"""Funnel metrics from timeline entries: the same code for the ledger and the simulator."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field

FUNNEL_KINDS = ("enrolled", "stage_entered", "journey_ended", "goal_reached", "message")


@dataclass(frozen=True)
class LedgerRow:
    """What the funnel needs of one journey-ledger entry."""

    customer_id: str
    seq: int
    at: datetime
    kind: str
    playbook: str | None
    stage: str | None
    channel: str | None = None


class StageCount(BaseModel):
    stage: str
    entered: int = Field(description="Customers who entered the stage at least once.")
    median_seconds_in_stage: float | None = Field(
        description="Median time from entering to leaving, over visits that left."
    )


class Transition(BaseModel):
    source: str
    target: str
    customers: int
    rate: float = Field(description="customers / customers who entered `source`")


class Funnel(BaseModel):
    playbook: str
    enrolled: int
    goal_reached: int
    goal_conversion_rate: float = Field(description="goal_reached / enrolled")
    stages: list[StageCount]
    transitions: list[Transition]
    messages_by_channel: dict[str, int]


def funnel(playbook: str, stage_order: list[str], rows: Iterable[LedgerRow]) -> Funnel:
    """The funnel of one playbook from its ledger rows (any order; sorted here)."""
    by_customer: dict[str, list[LedgerRow]] = defaultdict(list)
    for row in rows:
        if row.playbook == playbook:
            by_customer[row.customer_id].append(row)
    entered: dict[str, set[str]] = defaultdict(set)
    moved: dict[tuple[str, str], set[str]] = defaultdict(set)
    durations: dict[str, list[float]] = defaultdict(list)
    enrolled, goals = set(), set()
    channels: dict[str, int] = defaultdict(int)
    for customer, entries in by_customer.items():
        entries.sort(key=lambda r: r.seq)
        current: LedgerRow | None = None
        for row in entries:
            if row.kind == "enrolled":
                enrolled.add(customer)
                current = None  # a new journey: no transition from the last one's stage
            elif row.kind == "goal_reached":
                goals.add(customer)
            elif row.kind == "message" and row.channel:
                channels[row.channel] += 1
            elif row.kind in ("stage_entered", "journey_ended") and current is not None:
                if row.kind == "stage_entered" or row.stage == current.stage:
                    durations[str(current.stage)].append((row.at - current.at).total_seconds())
                if row.kind == "stage_entered":
                    moved[(str(current.stage), str(row.stage))].add(customer)
            if row.kind == "stage_entered":
                entered[str(row.stage)].add(customer)
                current = row
            elif row.kind == "journey_ended":
                current = None
    order = stage_order + sorted(set(entered) - set(stage_order))
    stages = [
        StageCount(
            stage=s,
            entered=len(entered[s]),
            median_seconds_in_stage=statistics.median(durations[s]) if durations[s] else None,
        )
        for s in order
    ]
    transitions = [
        Transition(
            source=a,
            target=b,
            customers=len(who),
            rate=round(len(who) / len(entered[a]), 4) if entered[a] else 0.0,
        )
        for (a, b), who in sorted(
            moved.items(), key=lambda item: (order.index(item[0][0]), order.index(item[0][1]))
        )
    ]
    return Funnel(
        playbook=playbook,
        enrolled=len(enrolled),
        goal_reached=len(goals),
        goal_conversion_rate=round(len(goals) / len(enrolled), 4) if enrolled else 0.0,
        stages=stages,
        transitions=transitions,
        messages_by_channel=dict(sorted(channels.items())),
    )
