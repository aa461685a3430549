"""One step of the core: the state being changed, the plans at hand, the clock, the output."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sopflow.core.state import (
    ERROR_MAX_CHARS,
    TIMELINE_LIMIT,
    CustomerEvent,
    CustomerState,
    Delivery,
    JourneyState,
    StepResult,
    TimelineKind,
    checkpoint,
    step_result,
    timeline_entry_of,
)
from sopflow.language.guards import evaluate_guard_outcome
from sopflow.language.plan import Plan, ProfilePlan
from sopflow.language.subjects import Audience, audience_of

# A playbook whose stages jump to each other with no wait could loop forever inside one
# step; the compiler rejects such cycles, and this bound keeps the runtime safe anyway.
MAX_TRANSITIONS_PER_STEP = 100
# Distinct failing guards remembered per customer (a playbook has a bounded number).
GUARD_ERRORS_KEPT = 50
DEFAULT_TIMEZONE = "Asia/Shanghai"
# The fields of a timeline entry that `Step.record` fills in.
_RECORD_SETS = frozenset({"at", "kind", "seq", "playbook", "stage"})


@dataclass(frozen=True)
class Catalog:
    """The plans a step may use: every version by hash, what is deployed, the profile rules."""

    plans: Mapping[str, Plan]
    deployed: Mapping[str, str] = field(default_factory=dict)
    profile: ProfilePlan | None = None
    # A customer playbook's tag actions also tag the customer in WeCom (`wecom.tag`
    # deliveries). The shell turns it on behind a patch: histories recorded before it
    # replay without those deliveries.
    wecom_tags: bool = False

    def plan_of(self, journey: JourneyState) -> Plan:
        return self.plans[journey.version]

    def deployed_plan(self, playbook: str) -> Plan | None:
        version = self.deployed.get(playbook)
        return self.plans.get(version) if version else None


class Step:
    """Mutable scratchpad for one step; callers only ever see the returned copy."""

    def __init__(
        self,
        state: CustomerState,
        catalog: Catalog,
        now: datetime,
        timeline_limit: int = TIMELINE_LIMIT,
        undo: bool = True,
        deliveries: bool = True,
    ) -> None:
        self.state = state
        # False: the effects are not built (the caller reads only the state and its
        # timeline, as the simulator does); the state changes as with them.
        self.keeps_deliveries = deliveries
        # False: no checkpoint before each event and timer; a failure raises UndoNeeded
        # instead of being quarantined (for a caller that can redo the whole run with
        # undo, as the simulator does: a checkpoint was up to a sixth of its time, and
        # the core is deterministic, so the redo gives the same timeline).
        self.undo = undo
        self.timeline_limit = timeline_limit
        self.catalog = catalog
        self.now = now
        self.event: CustomerEvent | None = None
        self.deliveries: list[Delivery] = []
        self.transitions = 0
        # Whose state this is: a customer, a group chat or a staff member (the subject
        # never changes within a step; asked at every guard, timer and tier check).
        self.audience: Audience = audience_of(state.customer_id)
        # The taxonomy and tiers: the customers' alone (a group's tags are free).
        self.profile_rules: ProfilePlan | None = (
            catalog.profile if self.audience == Audience.CUSTOMER else None
        )

    @property
    def customer_id(self) -> str:
        return self.state.customer_id

    def timezone(self, plan: Plan | None = None) -> str:
        """The customer's own time zone, else the playbook's."""
        default = plan.timezone if plan else DEFAULT_TIMEZONE
        return self.state.profile.timezone or default

    def record(
        self, kind: TimelineKind, journey: JourneyState | None = None, **fields: Any
    ) -> None:
        state = self.state
        seq = state.timeline_seq = state.timeline_seq + 1
        if not fields.keys().isdisjoint(_RECORD_SETS):
            raise TypeError(f"record sets {sorted(_RECORD_SETS)} itself")
        # The caller's keyword dict is this call's own: filled in, not copied again.
        fields["at"] = self.now
        fields["kind"] = kind
        fields["seq"] = seq
        fields["playbook"] = journey.playbook if journey else None
        fields["stage"] = journey.stage if journey else None
        entry = timeline_entry_of(fields)
        timeline = state.timeline
        timeline.append(entry)
        if len(timeline) > self.timeline_limit:
            del timeline[: len(timeline) - self.timeline_limit]

    def guard(
        self, source: str, context: Mapping[str, Any], journey: JourneyState | None = None
    ) -> bool:
        """Evaluate a guard; one that cannot be evaluated is false, counted, and recorded
        in the timeline when its error is new (not at every step it keeps failing)."""
        outcome = evaluate_guard_outcome(source, context)
        errors = self.state.guard_errors
        if outcome.error is None:
            errors.pop(source, None)
            return outcome.value
        self.state.guard_failures += 1
        if errors.get(source) != outcome.error:
            errors[source] = outcome.error
            while len(errors) > GUARD_ERRORS_KEPT:
                del errors[next(iter(errors))]
            self.record(
                "guard_failed", journey, error=outcome.error, detail={"guard": source[:200]}
            )
        return False

    def active_journeys(self) -> list[JourneyState]:
        return active_journeys(self.state)

    def save(self) -> Saved | None:
        """What `restore` needs to undo everything done after this point (None without
        undo: see `restore`)."""
        if not self.undo:
            return None
        return Saved(checkpoint(self.state), len(self.deliveries), self.transitions, self.now)

    def restore(self, saved: Saved | None, error: Exception) -> None:
        """Go back to `saved` after `error`; without undo, raise UndoNeeded."""
        if saved is None:
            raise UndoNeeded from error
        self.state = saved.state
        del self.deliveries[saved.deliveries :]
        self.transitions = saved.transitions
        self.now = saved.now

    def quarantine(
        self, journey: JourneyState | None, error: BaseException, detail: dict[str, Any]
    ) -> None:
        """Record an input the core could not process (after `restore`): counted, kept in
        the timeline with its error, skipped."""
        self.state.quarantined += 1
        self.record("quarantined", journey, error=describe_error(error), detail=detail)

    def result(self) -> StepResult:
        return step_result(self.state, self.deliveries)


class UndoNeeded(Exception):
    """A step without undo failed midway: its state is half-applied and must be dropped;
    running the same inputs again with undo quarantines what failed."""


class Saved(NamedTuple):  # a tuple: one is made before every event and timer
    state: CustomerState
    deliveries: int
    transitions: int
    now: datetime


def describe_error(error: BaseException) -> str:
    """`Type: message`, cut to ERROR_MAX_CHARS (a message can quote a whole input)."""
    try:
        text = f"{type(error).__name__}: {error}"
    except Exception:  # an exception whose message itself fails
        text = type(error).__name__
    if len(text) > ERROR_MAX_CHARS:
        text = text[: ERROR_MAX_CHARS - 1] + "…"
    return text


def active_journeys(state: CustomerState) -> list[JourneyState]:
    """Active journeys in a fixed order (by playbook name): determinism across runs."""
    journeys = state.journeys
    if len(journeys) == 1:  # most customers: no sort (asked several times per step)
        [only] = journeys.values()
        return [only] if only.status == "active" else []
    return [journeys[name] for name in sorted(journeys) if journeys[name].status == "active"]
