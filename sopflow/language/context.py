"""The names guards and templates read, each declared once: its type, meaning and a sample.

Everything else derives from this one declaration: the names the compiler accepts (with
"did you mean"), the typed sample context that type-checks guards, the reference table in
docs/language.md, and the test that ties them to the values the core builds
(`sopflow.core.context`): every declared name evaluates on a real context, and the core
builds no name that is not declared here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sopflow.language.subjects import Audience

# Zone-aware like the runtime context, so the type check meets the same conversions.
SAMPLE_TIME = datetime(2026, 1, 1, tzinfo=ZoneInfo("Asia/Shanghai"))


@dataclass(frozen=True)
class Name:
    """One name of the context. A `map` with `fields` is fixed; `open` maps hold the
    operator's own keys (attributes, event data) whose types are not declared."""

    name: str
    type: str
    meaning: str
    sample: Any = None
    fields: tuple[Name, ...] = ()
    open: bool = False
    # Where the name exists: guards, templates, or both.
    in_guards: bool = True
    in_templates: bool = True
    # For a root: the audiences whose playbooks read it (the subject's own root).
    audiences: frozenset[Audience] = frozenset(Audience)


ORDERS = Name(
    "orders",
    "map",
    "the customer's purchases",
    fields=(
        Name("count", "int", "orders paid, ever", 1),
        Name("total_spent", "double", "amount paid, ever (refunds deducted)", 1.0),
        Name("first_at", "timestamp", "first order", SAMPLE_TIME),
        Name("last_at", "timestamp", "latest order", SAMPLE_TIME),
        Name("average_interval_days", "double", "mean days between orders (0 before two)", 1.0),
        Name("predicted_next_at", "timestamp", "last order + the average interval", SAMPLE_TIME),
        Name("period_count", "int", "orders in the tiers' period", 1),
        Name("period_spent", "double", "amount paid in the tiers' period", 1.0),
    ),
)
CUSTOMER = Name(
    "customer",
    "map",
    "what sopflow knows of the customer",
    fields=(
        Name("id", "string", "the customer's id", "c"),
        Name("tags", "list(string)", "tags as `group:value`", ["group:value"]),
        Name("tier", "string", "value tier ('' when none)", "ordinary"),
        Name("lifecycle", "string", "lifecycle stage ('' when none)", "introduction"),
        Name("attributes", "map", "attributes set by events and `set` actions", open=True),
        Name("scores", "map(double)", "scores changed by `score` actions", {"intent": 1.0}),
        ORDERS,
        Name(
            "timezone", "string", "the customer's time zone, else the playbook's", "Asia/Shanghai"
        ),
        Name("added_at", "timestamp", "when `contact.added` first came", SAMPLE_TIME),
        Name("last_interaction_at", "timestamp", "the latest interaction event", SAMPLE_TIME),
        Name("days_since_added", "int", "whole days since added_at (0 before)", 1),
        Name("days_inactive", "int", "whole days since the last interaction", 1),
        Name(
            "groups",
            "list(string)",
            "chat ids of the groups the customer is in (`group.joined`, `group.left`)",
            ["wr_chat"],
        ),
    ),
    audiences=frozenset({Audience.CUSTOMER}),
)
GROUP = Name(
    "group",
    "map",
    "the group chat (group playbooks only)",
    fields=(
        Name("id", "string", "the chat id", "wr_chat"),
        Name("name", "string", "the group's name ('' when unknown)", "会员群"),
        Name("owner", "string", "its owner, who sends its messages ('' when unknown)", "li_lei"),
        Name("tags", "list(string)", "group tags as `group:value`", ["group:value"]),
        Name("attributes", "map", "attributes set by events and `set` actions", open=True),
        Name("timezone", "string", "the group's time zone, else the playbook's", "Asia/Shanghai"),
        Name("member_count", "int", "members now, customers and staff", 1),
        Name("customer_count", "int", "members now who are customers", 1),
        Name("members", "list(string)", "the members' ids", ["wm_member"]),
        Name("created_at", "timestamp", "when `group.created` came", SAMPLE_TIME),
        Name("days_since_created", "int", "whole days since created_at (0 before)", 1),
        Name("last_joined_at", "timestamp", "the latest member's joining", SAMPLE_TIME),
    ),
    audiences=frozenset({Audience.GROUP}),
)
STAFF = Name(
    "staff",
    "map",
    "the staff member (staff playbooks only)",
    fields=(
        Name("id", "string", "the staff member's WeCom userid", "li_lei"),
        Name("tags", "list(string)", "tags as `group:value`", ["group:value"]),
        Name("attributes", "map", "attributes set by events and `set` actions", open=True),
        Name(
            "timezone",
            "string",
            "the staff member's time zone, else the playbook's",
            "Asia/Shanghai",
        ),
    ),
    audiences=frozenset({Audience.STAFF}),
)
JOURNEY = Name(
    "journey",
    "map",
    "the journey being run (absent in enrolment guards)",
    fields=(
        Name("playbook", "string", "the playbook's name", "p"),
        Name("stage", "string", "the current stage", "s"),
        Name("entered_at", "timestamp", "when the current stage was entered", SAMPLE_TIME),
        Name("enrolled_at", "timestamp", "when the journey started", SAMPLE_TIME),
        Name("attributes", "map", "values set by `set_journey`", open=True),
        Name("counters", "map(int)", "visits per stage", {"s": 1}),
        Name("days_in_stage", "int", "whole days in the current stage", 1),
        Name(
            "last_interaction_at",
            "timestamp",
            "the latest interaction as this playbook counts it (`interaction_events`)",
            SAMPLE_TIME,
        ),
        Name(
            "days_inactive",
            "int",
            "whole days since that interaction, or since the journey started if later",
            1,
        ),
        Name(
            "variant",
            "string",
            "the subject's arm of the playbook's experiment: a variant's name, `holdout`, "
            "or '' when the playbook has no experiment",
            "a",
        ),
    ),
)
JOURNEYS = Name(
    "journeys",
    "map(string)",
    "the current stage of each active journey of the subject, by playbook "
    "(`journeys.welcome == 'icebreak'`, `'welcome' in journeys`)",
    {"p": "s"},
)
EVENT = Name(
    "event",
    "map",
    "the event being handled (only in event triggers, exits, goals and tag rules)",
    fields=(
        Name("type", "string", "the event's type", "t"),
        Name("data", "map", "the event's data", open=True),
        Name("occurred_at", "timestamp", "when it happened", SAMPLE_TIME),
    ),
)
COUNTDOWN = Name(
    "countdown",
    "map",
    "inside a countdown's actions",
    fields=(
        Name("remaining", "string", "time left, in words ('3 days')", "3 days"),
        Name("deadline", "timestamp", "the deadline", SAMPLE_TIME),
    ),
    in_guards=False,
)
NOW = Name("now", "timestamp", "the moment of the step (local time in templates)", SAMPLE_TIME)

CONTEXT: tuple[Name, ...] = (CUSTOMER, GROUP, STAFF, JOURNEY, JOURNEYS, EVENT, COUNTDOWN, NOW)

# Derived views, for the checks.
ROOTS: dict[str, frozenset[str]] = {
    root.name: frozenset(f.name for f in root.fields) for root in CONTEXT if root.fields
}
ORDERS_FIELDS = frozenset(f.name for f in ORDERS.fields)
# The names of every audience together; a playbook reads those of its own audience.
GUARD_ROOTS = frozenset(root.name for root in CONTEXT if root.in_guards)
TEMPLATE_ROOTS = frozenset(root.name for root in CONTEXT if root.in_templates)
SUBJECT_ROOT = {Audience.CUSTOMER: "customer", Audience.GROUP: "group", Audience.STAFF: "staff"}


def context_of(audience: Audience) -> tuple[Name, ...]:
    """The roots a playbook of this audience reads."""
    return tuple(root for root in CONTEXT if audience in root.audiences)


def guard_roots(audience: Audience) -> frozenset[str]:
    return frozenset(root.name for root in context_of(audience) if root.in_guards)


def template_roots(audience: Audience) -> frozenset[str]:
    return frozenset(root.name for root in context_of(audience) if root.in_templates)


def _sample(name: Name, open_value: dict[str, Any]) -> Any:
    if name.open:
        return dict(open_value)
    if name.fields:
        return {f.name: _sample(f, open_value) for f in name.fields}
    return name.sample


def sample_context(
    open_keys: set[str], value: Any, audience: Audience = Audience.CUSTOMER
) -> dict[str, Any]:
    """A context with every name of the audience set to a sample of its type, and the
    given keys of the open maps (attributes, event data) set to `value`."""
    open_value = dict.fromkeys(open_keys, value)
    return {root.name: _sample(root, open_value) for root in context_of(audience) if root.in_guards}


def leaf_paths(names: tuple[Name, ...] = CONTEXT, prefix: str = "") -> list[tuple[str, Name]]:
    """Every declared name as a dotted path (`customer.orders.count`), depth first."""
    paths: list[tuple[str, Name]] = []
    for name in names:
        path = f"{prefix}{name.name}"
        paths.append((path, name))
        if name.fields:
            paths += leaf_paths(name.fields, f"{path}.")
    return paths


def reference_table() -> str:
    """The Markdown table of every name, for docs/language.md (a test keeps it current)."""
    rows = ["| name | type | meaning | in |", "|---|---|---|---|"]
    for path, name in leaf_paths():
        where = (
            "guards, templates"
            if name.in_guards and name.in_templates
            else ("guards" if name.in_guards else "templates")
        )
        rows.append(f"| `{path}` | {name.type} | {name.meaning} | {where} |")
    return "\n".join(rows) + "\n"


class LazyMap(Mapping[str, Any]):
    """A map of the context whose values are computed when first read, each by its own
    function of `args` (kept: read again, a value is the same object): a guard reads a
    field or two of a context whose whole build cost more than the guard. Its keys are
    those of `fields`, in their order. `plain()` gives the dict a whole build gives;
    `prune` hands a guard that, never a LazyMap."""

    __slots__ = ("_args", "_fields", "_values")

    def __init__(self, fields: Mapping[str, Callable[..., Any]], *args: Any) -> None:
        self._fields = fields
        self._args = args
        self._values: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        values = self._values
        if name in values:
            return values[name]
        value = values[name] = self._fields[name](*self._args)
        return value

    def __contains__(self, name: object) -> bool:
        return name in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def plain(self) -> dict[str, Any]:
        """Every value, computed now, as a dict (nested LazyMaps too)."""
        return {name: plain(self[name]) for name in self._fields}


def plain(value: Any) -> Any:
    """`value`, or the dict a LazyMap stands for."""
    return value.plain() if isinstance(value, LazyMap) else value
