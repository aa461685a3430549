"""The sizing formula of docs/scaling.md (bench/sizing.py), on figures given here."""

import pytest

from bench.sizing import PARTS, RUNS, Brand, Costs, Measured, fit, size


def measured(run_index: int, per_step: float, per_delivery: float) -> Measured:
    run = RUNS[run_index]
    customers = 100
    steps, deliveries = customers * run.steps_each, customers * run.deliveries_each
    cpu = {part: steps * per_step + deliveries * per_delivery for part in PARTS}
    return Measured(run, customers, 10.0, cpu, 8.0, 2.0)


def test_the_fit_recovers_the_costs_per_step_and_per_delivery() -> None:
    costs = fit(measured(0, 0.010, 0.004), measured(1, 0.010, 0.004))
    assert costs.per_step == pytest.approx(dict.fromkeys(PARTS, 0.010))
    assert costs.per_delivery == pytest.approx(dict.fromkeys(PARTS, 0.004))
    mixed = measured(2, 0.010, 0.004)
    assert costs.cpu(mixed.steps, mixed.deliveries) == pytest.approx(mixed.cpu)


def test_a_brand_is_sized_from_its_peak_rates() -> None:
    costs = Costs(
        per_step={"worker": 0.01, "API": 0.005, "Temporal server": 0.01, "PostgreSQL": 0.0},
        per_delivery={"worker": 0.005, "API": 0.0, "Temporal server": 0.0, "PostgreSQL": 0.0},
    )
    # 864,000 customers x 3 steps a day = 30 steps/s on average, 90 at the peak.
    sized = size(Brand(864_000, 2.0, 1.0, 0.5, 3.0, 10.0, 2.0), costs)
    assert sized.steps_per_second == pytest.approx(90)
    # (90 x 10 ms + 45 x 5 ms) / 0.6 = 1.875 cores: two workers.
    assert sized.cores["worker"] == pytest.approx(1.875)
    assert sized.workers == 2
    # The API works per event (60/s at the peak), not per timer step.
    assert sized.cores["API"] == pytest.approx(60 * 0.005 / 0.6)
    assert sized.history_per_second == pytest.approx(900)
    assert sized.shards == 4  # 4 x 900 / 1,000 = 3.6, to a power of two
    assert sized.rows_per_second == pytest.approx(180)
    assert size(Brand(100), costs).workers == 2  # never fewer than two
