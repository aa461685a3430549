"""100 customers through the high-ticket playbook: the funnel endpoint against the simulator.

Customer i follows the shipped car scenario (playbooks/scenarios/auto_high_ticket.events.yaml)
up to a point that depends on i, so the funnel has a real shape: some never reply, some
stop after the test drive, some pay a deposit, a few become KOCs. The events are dated as
if the scenario started 100 days ago; sopflow honours late events in order, so each
customer's journey unfolds at once. Then the funnel from GET /v1/metrics/funnel must equal
the funnel the simulator predicts for the same events. (On a read model that already
holds other customers of the playbook, the measured counts include them.)

With `make dev` running: `.venv/bin/python -m scripts.funnel_scenario`
(SOPFLOW_API, SOPFLOW_KEY default to 127.0.0.1:8000 and .sopflow/dev-operator.key).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from sopflow.core import simulator
from sopflow.core.state import TimelineEntry
from sopflow.language import compile_paths
from sopflow.reports.funnel import Funnel, LedgerRow, funnel

REPO = Path(__file__).resolve().parent.parent
SCENARIO = REPO / "playbooks/scenarios/auto_high_ticket.events.yaml"
PLAYBOOK = "auto_high_ticket"
CUSTOMERS = 100
DAYS_AGO = 100


def customer_events(start: datetime, run: str) -> dict[str, list[simulator.ScenarioEvent]]:
    """Customer id -> the first k events of the scenario, k depending on the customer."""
    scenario = simulator.load_events(SCENARIO, start)
    return {f"{run}-{i:03d}": scenario[: 1 + (i * 7) % len(scenario)] for i in range(CUSTOMERS)}


def predicted_funnel(
    start: datetime, end: datetime, customers: dict[str, list[simulator.ScenarioEvent]]
) -> Funnel:
    bundle = compile_paths([REPO / "playbooks"])
    plans = simulator.reachable_plans([bundle.plans[PLAYBOOK]], bundle.plans)
    rows: list[LedgerRow] = []
    days = (end - start) / timedelta(days=1)
    for customer, events in customers.items():
        timeline = simulator.simulate(
            plans, bundle.profile, events, start, days, simulator.CustomerSpec(id=customer)
        )
        rows += [_row(customer, e) for e in timeline]
    return funnel(PLAYBOOK, list(bundle.plans[PLAYBOOK].stages), rows)


def _row(customer: str, entry: TimelineEntry) -> LedgerRow:
    return LedgerRow(
        customer, entry.seq, entry.at, entry.kind, entry.playbook, entry.stage, entry.channel
    )


def as_json(customers: dict[str, list[simulator.ScenarioEvent]]) -> list[dict[str, Any]]:
    return [
        {
            "customer_id": customer,
            "type": e.type,
            "occurred_at": e.at.isoformat(),
            "data": e.data,
            "idempotency_key": f"{customer}/{index}",
        }
        for customer, events in customers.items()
        for index, e in enumerate(events)
    ]


async def run(http: httpx.AsyncClient, timeout: float = 120.0) -> tuple[Funnel, Funnel, list[str]]:
    """Send the events, wait until the ledger has caught up; (measured, predicted, ids)."""
    run_id = f"fun{uuid.uuid4().hex[:5]}"
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=DAYS_AGO)
    customers = customer_events(start, run_id)
    events = as_json(customers)
    for offset in range(0, len(events), 1000):
        response = await http.post(
            "/v1/events:batch", json={"events": events[offset : offset + 1000]}
        )
        response.raise_for_status()
    predicted = predicted_funnel(start, now, customers)
    deadline = time.monotonic() + timeout
    while True:
        measured = Funnel.model_validate((await http.get(f"/v1/metrics/funnel/{PLAYBOOK}")).json())
        if _comparable(measured) == _comparable(predicted) or time.monotonic() > deadline:
            return measured, predicted, list(customers)
        await asyncio.sleep(1)


def _comparable(f: Funnel) -> dict[str, Any]:
    return {
        "enrolled": f.enrolled,
        "goal_reached": f.goal_reached,
        "stages": {s.stage: s.entered for s in f.stages},
        "transitions": {(t.source, t.target): t.customers for t in f.transitions},
    }


async def main() -> None:
    base = os.environ.get("SOPFLOW_API", "http://127.0.0.1:8000")
    key = os.environ.get("SOPFLOW_KEY") or (REPO / ".sopflow/dev-operator.key").read_text().strip()
    async with httpx.AsyncClient(
        base_url=base, timeout=60, headers={"Authorization": f"Bearer {key}"}
    ) as http:
        measured, predicted, _ = await run(http)
    print(f"{'stage':<20}{'measured':>10}{'predicted':>11}")
    for ours, theirs in zip(measured.stages, predicted.stages, strict=False):
        print(f"{ours.stage:<20}{ours.entered:>10}{theirs.entered:>11}")
    print(f"{'goal (deposit)':<20}{measured.goal_reached:>10}{predicted.goal_reached:>11}")
    same = _comparable(measured) == _comparable(predicted)
    print("funnel equals the simulator's prediction" if same else "funnels differ")


if __name__ == "__main__":
    asyncio.run(main())
