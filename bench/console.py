"""Console pages against the JSON API behind them, with 10,000 customers in the read model.

The read model is seeded through the ledger's own write functions (`Ledger.record_timeline`
and `Ledger.record_delivery`, as the worker calls them) with timelines the simulator
produces for the shipped scenarios, each customer stopped at a different day, so that
customers stand in every stage. One more customer lives in Temporal (dev server, worker,
API) for the customer page, which reads the workflow's live view.

Run: `.venv/bin/python -m bench.console [--customers 10000] [--requests 40]`
Target (issue 16): the overview and a customer page render in under 300 ms each.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bench import report
from bench.harness import dev_server
from sopflow.core import simulator
from sopflow.core.state import Delivery, TimelineEntry
from sopflow.language import compile_paths
from sopflow.settings import Settings
from sopflow.store.ledger import Ledger
from tests.console_stack import Stack, running_stack, sign_in
from tests.helpers import eventually
from tests.record_histories import SCENARIOS, scenario_plans

REPO = Path(__file__).resolve().parent.parent
TARGET_MS = 300.0
# Customers stop at one of these many days into their scenario: every stage gets people.
SPREAD_DAYS = 45
LIVE = "bench-live"


def _timelines(now: datetime) -> list[list[TimelineEntry]]:
    """Each scenario simulated up to each day of the spread, ending now."""
    found = []
    for events_file in SCENARIOS:
        plans, profile = scenario_plans(events_file)
        for days in range(1, SPREAD_DAYS + 1):
            start = now - timedelta(days=days)
            events = simulator.load_events(events_file, start)
            found.append(simulator.simulate(plans, profile, events, start, days))
    return found


def seed(ledger: Ledger, customers: int, now: datetime) -> int:
    """Write `customers` customers' timelines and deliveries; returns the rows written."""
    timelines = _timelines(now)
    rows = 0
    for index in range(customers):
        customer = f"bench-{index:05d}"
        timeline = timelines[index % len(timelines)]
        entries = [
            e.model_copy(
                update={
                    "idempotency_key": (
                        f"{customer}/{e.idempotency_key}" if e.idempotency_key else None
                    )
                }
            )
            for e in timeline
        ]
        rows += ledger.record_timeline(customer, entries)
        for entry in entries:
            if entry.kind in ("message", "task_created") and entry.idempotency_key:
                ledger.record_delivery(
                    Delivery(
                        idempotency_key=entry.idempotency_key,
                        kind="task" if entry.kind == "task_created" else "message",
                        customer_id=customer,
                        playbook=entry.playbook or "-",
                        journey_id=f"{customer}/{entry.playbook}",
                        stage=entry.stage or "-",
                        channel=entry.channel or "task",
                        text=entry.text or "",
                        scheduled_at=entry.at,
                        assignee=str(entry.detail.get("assignee") or "") or None,
                        due_at=entry.at + timedelta(days=1),
                    ),
                    None,
                )
    return rows


async def timed(http: httpx.AsyncClient, path: str, requests: int, **kwargs: object) -> list[float]:
    """Milliseconds per request, after one warm-up request."""
    response = await http.get(path, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, (path, response.status_code, response.text[:300])
    times = []
    for _ in range(requests):
        began = time.perf_counter()
        response = await http.get(path, **kwargs)  # type: ignore[arg-type]
        times.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, path
    return times


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(len(values) * 0.95) - 1)]


async def measure(stack: Stack, requests: int) -> list[list[object]]:
    auth = {"Authorization": f"Bearer {stack.operator_key}"}
    async with httpx.AsyncClient(base_url=stack.base, timeout=60) as browser:
        await sign_in(browser, stack.operator_key)
        pairs = [
            ("overview", "/console/", "/v1/overview"),
            ("customer page", f"/console/customers/{LIVE}", f"/v1/customers/{LIVE}"),
        ]
        rows = []
        for name, page, api in pairs:
            html = await timed(browser, page, requests)
            json = await timed(browser, api, requests, headers=auth)
            median_html, median_json = statistics.median(html), statistics.median(json)
            rows.append(
                [name, f"`{page}`", f"{median_html:.1f}", f"{p95(html):.1f}", f"`{api}`",
                 f"{median_json:.1f}", f"{median_html / median_json:.2f}",
                 report.verdict(p95(html) < TARGET_MS)]
            )  # fmt: skip
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    bundle = compile_paths([REPO / "playbooks"])
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        async with dev_server(home, sqlite=False) as env:
            settings = Settings(
                home=home / "sopflow",
                temporal_task_queue=f"bench-{uuid.uuid4().hex}",
                temporal_address=env.client.service_client.config.target_host,
            )
            plans = list(bundle.plans.values())
            async with running_stack(env, settings, plans, bundle.profile) as stack:
                began = time.perf_counter()
                now = datetime.now(UTC)
                rows = await asyncio.to_thread(seed, Ledger(stack.database), args.customers, now)
                seeded = time.perf_counter() - began
                print(
                    f"seeded {args.customers:,} customers ({rows:,} ledger rows) in {seeded:.0f} s"
                )
                for kind, data in (
                    ("contact.added", {"channel_code": "snack_store_qr"}),
                    ("order.paid", {"amount": 59}),
                ):
                    await stack.http.post(
                        "/v1/events", json={"customer_id": LIVE, "type": kind, "data": data}
                    )

                async def settled() -> bool:
                    response = await stack.http.get(f"/v1/customers/{LIVE}")
                    return response.status_code == 200 and len(response.json()["timeline"]) > 4

                await eventually(settled, timeout=60)
                table_rows = await measure(stack, args.requests)
    headers = ["page", "HTML", "median ms", "p95 ms", "JSON API behind it", "median ms",
               "HTML / JSON", f"p95 < {TARGET_MS:.0f} ms"]  # fmt: skip
    body = report.table(headers, table_rows, right_from=2)
    print(body)
    print(f"Repeat: {report.command()}")
    if args.no_record:
        return
    notes = f"""
{args.customers:,} customers in the read model ({rows:,} journey-ledger rows, written through
`Ledger.record_timeline` and `Ledger.record_delivery` from simulated timelines of the shipped
scenarios, each customer stopped between day 1 and day {SPREAD_DAYS}), every shipped playbook
deployed, one customer live in Temporal for the customer page. {args.requests} sequential
requests per URL through the real API server after one warm-up; the HTML is the signed-in
console, the JSON the API call that serves the same data with an operator key.

{body}

The overview's numbers are four aggregate queries over the journey ledger and the delivery
ledger; the customer page adds the workflow's live view (the same Temporal query as
`GET /v1/customers/{{id}}`), the customer's tasks and delivery times, and the template.
"""
    report.record("console", "Console pages against their JSON API (issue 16)", notes)


if __name__ == "__main__":
    asyncio.run(main())
