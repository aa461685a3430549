"""Uplift per experiment arm: the interval method against published values, a known
effect found inside its interval, an A/A comparison found not significant, the verdict
held back below the minimum per arm, and the outcomes read from the read model."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from sopflow.reports.uplift import (
    MIN_CUSTOMERS_PER_ARM,
    CustomerOutcome,
    newcombe,
    uplift,
    wilson,
)
from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.inserts import insert_ignoring_duplicates
from sopflow.store.tables import JourneyEvent, PaidOrder
from sopflow.store.uplift import outcomes
from tests.conftest import T0


def test_the_intervals_match_newcombes_published_examples() -> None:
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion" (81/263)
    # and "Interval estimation for the difference between independent proportions",
    # example (a): 56/70 - 48/80, method 10.
    low, high = wilson(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    interval = newcombe(48, 80, 56, 70)
    assert (round(interval.low, 4), round(interval.high, 4)) == (0.0524, 0.3339)


def draws(arm: str, rate: float, n: int, rng: random.Random) -> list[CustomerOutcome]:
    return [
        CustomerOutcome(f"{arm}-{i}", arm, converted := rng.random() < rate, 99.0 * converted)
        for i in range(n)
    ]


def test_a_known_effect_lies_in_its_interval_and_is_significant() -> None:
    rng = random.Random(17)
    rows = draws("a", 0.10, 2000, rng) + draws("b", 0.20, 2000, rng)
    report = uplift("p", rows, ["a", "b"])
    [comparison] = report.comparisons
    assert (comparison.arm, comparison.baseline) == ("b", "a")
    assert comparison.conversion.low < 0.10 < comparison.conversion.high
    assert comparison.significant
    assert comparison.verdict.startswith("b converts better than a: +")
    # Revenue follows conversion here: 99 per conversion, ten points more, 9.9 more each.
    revenue = comparison.revenue_per_customer
    assert revenue.low < 9.9 < revenue.high


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_an_a_a_comparison_is_not_significant(seed: int) -> None:
    rng = random.Random(seed)
    rows = draws("a", 0.10, 2000, rng) + draws("b", 0.10, 2000, rng)
    [comparison] = uplift("p", rows, ["a", "b"]).comparisons
    assert comparison.conversion.low < 0 < comparison.conversion.high
    assert not comparison.significant
    assert comparison.verdict.startswith("no significant difference between b and a")


def test_below_the_minimum_per_arm_there_is_no_verdict_and_the_holdout_is_the_baseline() -> None:
    rng = random.Random(5)
    rows = (
        draws("a", 0.5, 300, rng)
        + draws("holdout", 0.0, MIN_CUSTOMERS_PER_ARM - 1, rng)
        + [CustomerOutcome("old", "", False, 0.0)]
    )
    report = uplift("p", rows, ["a", "holdout"])
    assert report.baseline == "holdout" and report.outside == 1
    [comparison] = report.comparisons
    assert not comparison.significant
    assert comparison.verdict.startswith("not enough data yet: a has 300 customers")


def test_outcomes_come_from_the_ledger_and_the_orders_after_enrolment(tmp_path: object) -> None:
    database = Database.from_settings(Settings(home=tmp_path))  # type: ignore[arg-type]

    def entry(customer: str, seq: int, kind: str, days: int, **detail: object) -> dict:
        return {
            "customer_id": customer,
            "seq": seq,
            "at": T0 + timedelta(days=days),
            "kind": kind,
            "playbook": "member_day",
            "stage": "invited",
            "detail": detail,
        }

    rows = [
        entry("c1", 1, "enrolled", 0, variant="coupon"),
        entry("c1", 2, "goal_reached", 1),
        entry("c1", 3, "enrolled", 5, variant="coupon"),  # re-entry: one customer
        entry("c2", 1, "enrolled", 0, variant="holdout"),
        entry("c3", 1, "enrolled", 0),  # enrolled before the experiment
    ]
    orders = [
        {
            "customer_id": "c1",
            "idempotency_key": "o1",
            "amount": 99.0,
            "paid_at": T0 + timedelta(days=1),
        },
        {
            "customer_id": "c1",
            "idempotency_key": "o0",
            "amount": 50.0,
            "paid_at": T0 - timedelta(days=1),
        },
        {
            "customer_id": "c2",
            "idempotency_key": "o1",
            "amount": 20.0,
            "paid_at": T0 + timedelta(days=2),
        },
    ]
    with database.session() as session, session.begin():
        insert_ignoring_duplicates(session, JourneyEvent.__table__, rows)
        insert_ignoring_duplicates(session, PaidOrder.__table__, orders)
    assert outcomes(database, "member_day") == [
        CustomerOutcome("c1", "coupon", True, 99.0),
        CustomerOutcome("c2", "holdout", False, 20.0),
        CustomerOutcome("c3", "", False, 0.0),
    ]
    report = uplift("member_day", outcomes(database, "member_day"), ["coupon", "holdout"])
    assert [(a.arm, a.customers, a.conversions, a.revenue) for a in report.arms] == [
        ("coupon", 1, 1, 99.0),
        ("holdout", 1, 0, 20.0),
    ]
    assert report.outside == 1
