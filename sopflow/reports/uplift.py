"""Uplift: how each arm of a playbook's experiment converts and earns, and the difference
from a baseline arm with a confidence interval and a plain verdict.

Conversion is a proportion per arm (customers who reached the goal / customers enrolled);
the difference of two proportions gets Newcombe's hybrid score interval (Newcombe 1998,
method 10: each arm's Wilson score interval, combined), which keeps its coverage near
95% for small counts and rates near 0 or 1, where the Wald interval does not. Revenue per
customer (orders paid from the enrolment on) gets Welch's normal interval for the
difference of two means. Below MIN_CUSTOMERS_PER_ARM customers in either arm the verdict
is "not enough data yet", whatever the interval says.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, Field

# The two-sided 95% normal quantile.
Z95 = 1.959963984540054
# An arm with fewer customers gives no verdict: the interval is too wide to act on, and
# the normal approximations behind it are not yet trustworthy.
MIN_CUSTOMERS_PER_ARM = 100


@dataclass(frozen=True)
class CustomerOutcome:
    """One enrolled customer: their arm, whether they reached the goal, what they paid."""

    customer_id: str
    arm: str
    converted: bool
    revenue: float


class ArmFigures(BaseModel):
    arm: str
    customers: int
    conversions: int
    conversion_rate: float
    revenue: float
    revenue_per_customer: float


class Interval(BaseModel):
    difference: float = Field(description="arm minus baseline")
    low: float
    high: float


class Comparison(BaseModel):
    arm: str
    baseline: str
    conversion: Interval = Field(description="Conversion rate difference (a proportion).")
    revenue_per_customer: Interval
    significant: bool = Field(description="The conversion interval excludes 0.")
    verdict: str


class Uplift(BaseModel):
    playbook: str
    method: str
    confidence: float
    min_customers_per_arm: int
    baseline: str | None
    arms: list[ArmFigures]
    comparisons: list[Comparison]
    outside: int = Field(description="Customers enrolled outside the experiment (no arm).")


METHOD = (
    "conversion: difference of proportions with Newcombe's hybrid score interval "
    "(Wilson intervals per arm, Newcombe 1998 method 10); revenue per customer: "
    "Welch's normal interval for a difference of means"
)


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a proportion."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> Interval:
    """The interval of p2 - p1 (arm 2 minus arm 1), Newcombe's method 10."""
    p1 = x1 / n1 if n1 else 0.0
    p2 = x2 / n2 if n2 else 0.0
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    difference = p2 - p1
    low = difference - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = difference + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return Interval(difference=difference, low=low, high=high)


def welch(first: Sequence[float], second: Sequence[float], z: float = Z95) -> Interval:
    """The normal interval of mean(second) - mean(first), each with its own variance."""

    def moments(values: Sequence[float]) -> tuple[float, float]:
        if not values:
            return 0.0, 0.0
        mean = sum(values) / len(values)
        if len(values) < 2:
            return mean, 0.0
        variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
        return mean, variance / len(values)

    m1, s1 = moments(first)
    m2, s2 = moments(second)
    half = z * math.sqrt(s1 + s2)
    return Interval(difference=m2 - m1, low=m2 - m1 - half, high=m2 - m1 + half)


def uplift(
    playbook: str,
    outcomes: Iterable[CustomerOutcome],
    arms: Sequence[str],
    baseline: str | None = None,
) -> Uplift:
    """Figures per arm (in `arms` order) and every other arm against the baseline: the
    one named, else `holdout` when there is one (did the playbook cause anything?), else
    the first arm."""
    by_arm: dict[str, list[CustomerOutcome]] = {arm: [] for arm in arms}
    outside = 0
    for outcome in outcomes:
        if outcome.arm in by_arm:
            by_arm[outcome.arm].append(outcome)
        else:
            outside += 1
    figures = [_figures(arm, by_arm[arm]) for arm in arms]
    if baseline is None and arms:
        baseline = "holdout" if "holdout" in arms else arms[0]
    comparisons = []
    if baseline is not None:
        base = by_arm[baseline]
        for arm in arms:
            if arm != baseline:
                comparisons.append(_compare(arm, by_arm[arm], baseline, base))
    return Uplift(
        playbook=playbook,
        method=METHOD,
        confidence=0.95,
        min_customers_per_arm=MIN_CUSTOMERS_PER_ARM,
        baseline=baseline,
        arms=figures,
        comparisons=comparisons,
        outside=outside,
    )


def _figures(arm: str, outcomes: list[CustomerOutcome]) -> ArmFigures:
    customers = len(outcomes)
    conversions = sum(1 for o in outcomes if o.converted)
    revenue = sum(o.revenue for o in outcomes)
    return ArmFigures(
        arm=arm,
        customers=customers,
        conversions=conversions,
        conversion_rate=conversions / customers if customers else 0.0,
        revenue=revenue,
        revenue_per_customer=revenue / customers if customers else 0.0,
    )


def _compare(
    arm: str, outcomes: list[CustomerOutcome], baseline: str, base: list[CustomerOutcome]
) -> Comparison:
    conversion = newcombe(
        sum(1 for o in base if o.converted),
        len(base),
        sum(1 for o in outcomes if o.converted),
        len(outcomes),
    )
    revenue = welch([o.revenue for o in base], [o.revenue for o in outcomes])
    enough = min(len(outcomes), len(base)) >= MIN_CUSTOMERS_PER_ARM
    significant = enough and (conversion.low > 0 or conversion.high < 0)
    return Comparison(
        arm=arm,
        baseline=baseline,
        conversion=conversion,
        revenue_per_customer=revenue,
        significant=significant,
        verdict=_verdict(arm, len(outcomes), baseline, len(base), conversion, enough),
    )


def _verdict(
    arm: str, n: int, baseline: str, n_base: int, conversion: Interval, enough: bool
) -> str:
    if not enough:
        return (
            f"not enough data yet: {arm} has {n} customers and {baseline} {n_base}; "
            f"at least {MIN_CUSTOMERS_PER_ARM} in each are needed"
        )
    between = (
        f"{conversion.difference * 100:+.1f} percentage points "
        f"(95% interval {conversion.low * 100:+.1f} to {conversion.high * 100:+.1f})"
    )
    if conversion.low > 0:
        return f"{arm} converts better than {baseline}: {between}"
    if conversion.high < 0:
        return f"{arm} converts worse than {baseline}: {between}"
    return f"no significant difference between {arm} and {baseline}: {between}"
