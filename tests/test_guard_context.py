"""The guard and template context is declared once (sopflow.language.context) and built by
the core (sopflow.core.context): these tests tie the two, so a name that the compiler
accepts but the core never builds (a guard silently false) cannot ship."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sopflow.core.context import build_context, countdown_view
from sopflow.core.state import (
    CustomerEvent,
    GroupInfo,
    JourneyState,
    Member,
    OrderRecord,
    Profile,
)
from sopflow.language.context import CONTEXT, Name, context_of, leaf_paths, reference_table
from sopflow.language.guards import evaluate_guard
from sopflow.language.subjects import Audience
from sopflow.language.templates import render_template
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
    extra = {"countdown": countdown_view("3 days", NOW + timedelta(days=3))}
    return build_context(
        SUBJECTS[audience],
        profile,
        journey,
        event,
        NOW,
        "Asia/Shanghai",
        extra,
        period_seconds=86400 * 90,
        group=group,
    )


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


@pytest.mark.parametrize("path", [p for p, n in leaf_paths() if n.in_templates])
def test_every_template_name_renders_on_a_real_context(path: str) -> None:
    context = full_context(audience_of_path(path))
    assert render_template("{{ " + path + " }}", context) != ""


def test_the_language_reference_lists_every_name() -> None:
    assert reference_table() in (REPO / "docs" / "language.md").read_text(encoding="utf-8")
