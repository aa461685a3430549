"""The guard and template context is declared once (sopflow.language.context) and built by
the core (sopflow.core.context): these tests tie the two, so a name that the compiler
accepts but the core never builds (a guard silently false) cannot ship."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sopflow.core.actions import names_read_by
from sopflow.core.context import build_context, countdown_view, guard_context
from sopflow.core.journey import apply_event
from sopflow.core.state import (
    CustomerEvent,
    CustomerState,
    GroupInfo,
    JourneyState,
    Member,
    OrderRecord,
    Profile,
)
from sopflow.core.step import Catalog
from sopflow.language import compile_playbook
from sopflow.language.context import (
    CONTEXT,
    LazyMap,
    Name,
    context_of,
    leaf_paths,
    reference_table,
)
from sopflow.language.guard_cost import prune
from sopflow.language.guards import analyse_guard, evaluate_guard, evaluate_guard_outcome
from sopflow.language.subjects import Audience
from sopflow.language.templates import TemplateError, names_read, render_template
from tests.conftest import REPO

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "int": int,
    "double": float,
    "bool": bool,
    "timestamp": datetime,
    "list(string)": list,
    "map": dict,
    "map(int)": dict,
    "map(double)": dict,
    "map(string)": dict,
}


SUBJECTS = {Audience.CUSTOMER: "c1", Audience.GROUP: "group/wr1", Audience.STAFF: "staff/li_lei"}


def full_context(audience: Audience = Audience.CUSTOMER) -> dict[str, Any]:
    """A context built by the core from a subject of the audience with every field set."""
    subject, profile, journey, event, now, tz, group = subject_parts(audience)
    return build_context(subject, profile, journey, event, now, tz, group=group, **EXTRA)


def lazy_context(audience: Audience = Audience.CUSTOMER) -> LazyMap:
    """The same as guards get it (`guard_context`: no countdown, values read on demand)."""
    subject, profile, journey, event, now, tz, group = subject_parts(audience)
    return guard_context(
        subject, profile, journey, event, now, tz, period_seconds=86400 * 90, group=group
    )


EXTRA: dict[str, Any] = {
    "extra": {"countdown": countdown_view("3 days", NOW + timedelta(days=3))},
    "period_seconds": 86400 * 90,
}


def subject_parts(
    audience: Audience,
) -> tuple[str, Profile, JourneyState, CustomerEvent, datetime, str, GroupInfo]:
    profile = Profile(
        timezone="Asia/Shanghai",
        added_at=NOW - timedelta(days=10),
        last_interaction_at=NOW - timedelta(days=2),
        tags=["skin:dry"],
        attributes={"city": "Hangzhou"},
        scores={"intent": 2.0},
        order_count=2,
        total_spent=300.0,
        first_order_at=NOW - timedelta(days=9),
        last_order_at=NOW - timedelta(days=3),
        recent_orders=[OrderRecord(at=NOW - timedelta(days=3), amount=100.0)],
        average_interval_days=6.0,
        predicted_next_purchase_at=NOW + timedelta(days=3),
        tier="vip",
        lifecycle="growth",
        groups=["wr1"],
    )
    group = GroupInfo(
        owner="li_lei",
        name="会员群",
        members={"wm_1": Member(joined_at=NOW), "li_lei": Member(joined_at=NOW, customer=False)},
        last_joined_at=NOW,
    )
    journey = JourneyState(
        journey_id="p#1",
        playbook="p",
        version="v",
        stage="s",
        enrolled_at=NOW - timedelta(days=5),
        entered_stage_at=NOW - timedelta(days=1),
        attributes={"step": 1},
        counters={"s": 1},
        variant="a",
    )
    event = CustomerEvent(
        customer_id="c1",
        type="order.paid",
        occurred_at=NOW,
        data={"amount": 100},
        idempotency_key="k",
    )
    return SUBJECTS[audience], profile, journey, event, NOW, "Asia/Shanghai", group


def audience_of_path(path: str) -> Audience:
    """The audience whose context holds a name (the subject roots are one audience's)."""
    root = next(r for r in CONTEXT if r.name == path.split(".")[0])
    return Audience.CUSTOMER if Audience.CUSTOMER in root.audiences else next(iter(root.audiences))


def value_at(context: dict[str, Any], path: str) -> Any:
    value: Any = context
    for part in path.split("."):
        value = value[part]
    return value


@pytest.mark.parametrize("audience", list(Audience))
def test_the_core_builds_exactly_the_declared_names(audience: Audience) -> None:
    context = full_context(audience)
    assert "countdown" in context

    def check(names: tuple[Name, ...], built: dict[str, Any], where: str) -> None:
        assert set(built) == {n.name for n in names}, where
        for name in names:
            if name.fields:
                check(name.fields, built[name.name], f"{where}.{name.name}")

    check(context_of(audience), context, f"context of a {audience.value}")


@pytest.mark.parametrize("path,name", leaf_paths(), ids=[p for p, _ in leaf_paths()])
def test_every_declared_name_has_its_declared_type(path: str, name: Name) -> None:
    context = full_context(audience_of_path(path))
    assert isinstance(value_at(context, path), TYPES[name.type]), path


@pytest.mark.parametrize(
    "path", [p for p, n in leaf_paths() if n.in_guards and p.split(".")[0] != "countdown"]
)
def test_every_guard_name_evaluates_on_a_real_context(path: str) -> None:
    # A value CEL cannot convert (a zone-aware datetime did once) makes every guard that
    # reads it silently false: each name must compare equal to itself.
    assert evaluate_guard(f"{path} == {path}", full_context(audience_of_path(path))), path


@pytest.mark.parametrize("audience", list(Audience))
def test_the_guards_context_read_on_demand_holds_the_same_values(audience: Audience) -> None:
    eager = full_context(audience)
    del eager["countdown"]  # read in templates only
    lazy = lazy_context(audience)
    assert list(lazy) == list(eager)
    # Field by field, each computed when first read and the same object when read again.
    for root, view in eager.items():
        if isinstance(view, dict):
            assert {name: lazy[root][name] for name in view} == view, root
            assert all(lazy[root][name] is lazy[root][name] for name in view)
        else:
            assert lazy[root] == view, root
    assert lazy_context(audience).plain() == eager


@pytest.mark.parametrize(
    "guard",
    [
        "customer.tier == 'vip' && journey.stage == 's'",
        "size(customer) == 13 && customer.orders.count == 2",  # a whole view, read at once
        "journey.days_in_stage == 1 && journeys == {}",
        "has(customer.attributes.city) && event.data.amount == 100",
        "customer.attributes.missing == 1",  # an error, the same either way
    ],
)
def test_a_guard_reads_the_same_from_a_context_built_on_demand(guard: str) -> None:
    expected = evaluate_guard_outcome(guard, full_context())
    assert evaluate_guard_outcome(guard, lazy_context()) == expected
    pruned = prune(lazy_context(), analyse_guard(guard).cost.paths)
    assert not any(isinstance(v, LazyMap) for v in pruned.values())


@pytest.mark.parametrize("path", [p for p, n in leaf_paths() if n.in_templates])
def test_every_template_name_renders_on_a_real_context(path: str) -> None:
    context = full_context(audience_of_path(path))
    assert render_template("{{ " + path + " }}", context) != ""


def test_the_language_reference_lists_every_name() -> None:
    assert reference_table() in (REPO / "docs" / "language.md").read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- when guards read

TASK_THEN_GUARD = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: reads}
enrol: {event: contact.added}
stages:
  first:
    on_enter:
      - task: {id: call, title: "Call", assignee: "staff:li", due: 1d, on_complete: {goto: second}}
  second:
    on_enter: [{send: {channel: log, text: "in second"}}]
triggers:
  - event: task.completed
    when: "journey.stage == 'first'"
    actions: [{send: {channel: log, text: "completed in first"}}]
"""

CONDITIONS = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: %s}
enrol: {event: contact.added}
stages:
  first:
    triggers:
%s
"""
FIRST = CONDITIONS % (
    "a_first",
    """\
      - condition: "customer.attributes.n == 1"
        actions: [{tag: {add: ["intent:hot"]}}]
      - condition: "'intent:hot' in customer.tags"
        actions: [{send: {channel: log, text: "tagged"}}]""",
)
SECOND = CONDITIONS % (
    "b_second",
    """\
      - condition: "customer.attributes.n == 1"
        actions: [{send: {channel: log, text: "second playbook"}}]""",
)


def steps(plans: list[str], *inputs: tuple[str, dict[str, Any]]) -> list[str]:
    compiled = [compile_playbook(text, filename="p.yaml") for text in plans]
    catalog = Catalog(
        plans={p.version: p for p in compiled}, deployed={p.name: p.version for p in compiled}
    )
    state = CustomerState(customer_id="c1")
    for index, (kind, data) in enumerate(inputs):
        at = NOW + timedelta(minutes=index)
        state = apply_event(
            state,
            CustomerEvent(
                customer_id="c1", type=kind, occurred_at=at, data=data, idempotency_key=str(index)
            ),
            catalog,
            at,
        ).state
    return [str(e.text) for e in state.timeline if e.kind == "message"]


def test_a_task_events_guards_read_the_journey_as_the_event_found_it() -> None:
    # Completing the task moves the journey on; the trigger's guard reads the stage before.
    assert steps(
        [TASK_THEN_GUARD], ("contact.added", {}), ("task.completed", {"task": "call"})
    ) == ["in second", "completed in first"]


def test_conditions_after_a_branch_read_the_state_before_it_until_the_next_round() -> None:
    # The first playbook's tag makes its second condition true: that one fires in the next
    # round of conditions, after the other playbook's, as when the context was built whole.
    assert steps([FIRST, SECOND], ("contact.added", {}), ("form", {"attributes": {"n": 1}})) == [
        "second playbook",
        "tagged",
    ]


# ----------------------------------------------------------------------------- what templates read

TEMPLATES = [
    "{{ customer.attributes.city }}, {{ journey.stage }}",
    "{{ now.strftime('%H:%M') }} {{ countdown.remaining }}",
    "{% for t in customer.tags %}{{ t }}{{ loop.index }}{% endfor %}",
    "{% set n = journey.counters.s %}{{ n * 2 }} {{ event.data.amount }}",
    "{% macro m(x) %}{{ x }}{{ journeys }}{% endmacro %}{{ m(customer.tier) }}",
    "{{ customer.orders.period_count }} {{ customer }}",
    "{{ group.name if group is defined else 'none' }}",
    "{{ missing.name }}",  # an error either way
    "{{ 1 + 2 }}",  # reads nothing
]


@pytest.mark.parametrize("template", TEMPLATES)
def test_a_template_renders_the_same_from_only_the_names_it_reads(template: str) -> None:
    subject, profile, journey, event, now, tz, group = subject_parts(Audience.CUSTOMER)
    names = names_read(template)
    assert names is not None
    partial = build_context(
        subject, profile, journey, event, now, tz, group=group, roots=names, **EXTRA
    )
    assert set(partial) <= names
    assert rendered(template, partial) == rendered(template, full_context())


def rendered(template: str, context: dict[str, Any]) -> str:
    try:
        return render_template(template, context)
    except TemplateError as e:
        return f"error: {e}"


def test_a_template_whose_names_cannot_be_told_gets_the_whole_context() -> None:
    assert names_read("{{ customer.") is None  # does not parse
    assert names_read("{{ customer.tier }}" * 1000) is None  # over the limit
    assert names_read("plain text") == frozenset()


def test_a_templated_tag_is_resolved_from_only_the_names_it_reads() -> None:
    tagged = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: tags}
enrol: {event: contact.added}
stages:
  first:
    on_enter:
      - tag: {add: ["city:{{ customer.attributes.city }}", "stage:{{ journey.stage }}"]}
      - tag: {add: ["seen:{{ journeys.tags }}-{{ event.type }}"]}
"""
    plan = compile_playbook(tagged, filename="p.yaml")
    catalog = Catalog(plans={plan.version: plan}, deployed={plan.name: plan.version})
    added = CustomerEvent(
        customer_id="c1",
        type="contact.added",
        occurred_at=NOW,
        data={"attributes": {"city": "hz"}},
        idempotency_key="k",
    )
    state = apply_event(CustomerState(customer_id="c1"), added, catalog, NOW).state
    assert state.profile.tags == ["city:hz", "seen:first-contact.added", "stage:first"]


def test_the_names_guards_and_templates_read_are_all_they_can_see() -> None:
    assert names_read_by(
        ["event.data.amount > 5 && customer.tier == 'vip'"], ["{{ journey.stage }}"]
    ) == frozenset({"event", "customer", "journey"})
    assert names_read_by([], ["{{ customer."]) is None  # cannot be told: all of them
    guard = "customer.tier == 'vip' && journey.stage == 's' && event.data.amount == 100"
    template = "{{ now.year }} {{ customer.orders.count }}"
    names = names_read_by([guard], [template])
    subject, profile, journey, event, now, tz, _group = subject_parts(Audience.CUSTOMER)
    partial = build_context(subject, profile, journey, event, now, tz, roots=names, **EXTRA)
    assert set(partial) == {"customer", "journey", "event", "now"}
    assert evaluate_guard_outcome(guard, partial) == evaluate_guard_outcome(guard, full_context())
    assert evaluate_guard_outcome(guard, partial).value is True
    assert render_template(template, partial) == render_template(template, full_context())
