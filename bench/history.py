"""History per customer: Temporal events per customer event, and per customer-year.

Each shipped scenario is extended to a year (its events, plus a message every week), run
on the time-skipping server with the real worker for the subject of its playbook's
audience (a customer, or the group of a group playbook), and its history counted across
every run of the continue-as-new chain, in all and by kind (workflow tasks, timers,
markers...). The baseline, measured in the same run, is a trivial workflow that only
counts the same number of signals: the raw cost of getting an event into Temporal.
Run: `.venv/bin/python -m bench.history` (`--only NAME` runs the scenarios whose name
holds NAME and prints without recording).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import textwrap
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench import report
from bench.harness import CountSignals
from sopflow.core import simulator
from sopflow.language import compile_paths
from sopflow.language.compiler import plans_of_file
from tests.helpers import describe, play, terminate
from tests.record_histories import (
    SCENARIOS,
    playbook_of,
    scenario_settings,
    start_time_skipping,
)
from worker.main import build_worker
from workflows.contracts import subject_workflow_id

REPO = Path(__file__).resolve().parent.parent
DAYS = 365
SUGGESTED_CONTINUE_AS_NEW = 4096  # Temporal's default suggestion (events)
TARGET_PER_EVENT = 10
NOTES = """
Each shipped scenario extended to one year (its events plus a message every week), on the
time-skipping server with the real worker, for the subject of the playbook's audience (a
customer, or the group a group playbook runs for); history counted over the whole
continue-as-new chain. The baseline is a trivial workflow counting the same number of
signals, one a day, in the same run. "Per step" divides by the events and the timers'
wake-ups together (the steps of docs/scaling.md's formula).

{body}

Where the events go, per customer event (a workflow task is 3 events: scheduled, started,
completed; markers are local activities, a ledger write with the step's local messages
or either alone, plan loading, and the patch markers of a run's start):

{detail}

- Bounded by continue-as-new: runs stay below Temporal's suggestion ({suggested} events);
  sopflow continues as new at 2,000 (the "runs" column).
- Target "<= {target} history events per customer event": met by {met} of {total}.{limits}
- What an event costs: its signal and a workflow task (4 events), and its ledger write, a
  marker that also carries the step's local messages (one local activity for both). A
  signal that leaves the next due time as it was keeps the pending timer; one that moves
  it (an `inactive_for` countdown that each message restarts) replaces it, a cancel and a
  start. A timer costs its start and firing plus a workflow task (5 events) before any
  work, event or not. Remote channels (webhook) keep ordinary activities: 3 events and a
  workflow task more per message. Each run begins with one patch marker and one
  TemporalChangeVersion upsert per workflow patch.
"""
# A timer wakes the workflow for its start, its firing and a workflow task: 5 events.
TIMER_WAKE_UP = 5


async def chain_events(client: Client, workflow_id: str, first_run: str) -> list[list[int]]:
    """The event types of every run of a continue-as-new chain, first run to last."""
    runs, run = [], first_run
    while run:
        history = await client.get_workflow_handle(workflow_id, run_id=run).fetch_history()
        runs.append([e.event_type for e in history.events])
        last = history.events[-1]
        continued = last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
        run = (
            last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            if continued
            else ""
        )
    return runs


# Where a history's events go, by what caused them (`breakdown`).
KINDS = {
    "workflow tasks": ("WORKFLOW_TASK_",),
    "signals": ("WORKFLOW_EXECUTION_SIGNALED",),
    "timers": ("TIMER_",),
    "markers": ("MARKER_RECORDED",),
    "activities": ("ACTIVITY_TASK_",),
    "search attributes": ("UPSERT_WORKFLOW_SEARCH_ATTRIBUTES",),
}


def breakdown(runs: list[list[int]]) -> Counter[str]:
    """Events per kind (KINDS; "other" for the rest) and per type, over the whole chain."""
    counts: Counter[str] = Counter()
    for types in runs:
        for event_type in types:
            name = EventType.Name(event_type).removeprefix("EVENT_TYPE_")
            counts[name] += 1
            kind = next((k for k, p in KINDS.items() if name.startswith(p)), "other")
            counts[kind] += 1
    return counts


async def one_year(env: WorkflowEnvironment, events_file: Path) -> tuple[int, list[list[int]]]:
    with tempfile.TemporaryDirectory() as home:
        settings = scenario_settings(events_file, Path(home), "bench")
        # The subject of the playbook's audience: a customer, group/<id> or staff/<id>.
        root = plans_of_file(compile_paths([REPO / "playbooks"]), playbook_of(events_file))[0]
        name = f"bench-{events_file.name.split('.')[0]}-{uuid.uuid4().hex[:6]}"
        customer = simulator.subject_spec(root, simulator.CustomerSpec(id=name)).id
        start = await env.get_current_time()
        scenario = simulator.load_events(events_file, start)
        weekly = [
            simulator.ScenarioEvent(
                start + timedelta(weeks=w, hours=5), "message.received", {"text": "在吗"}
            )
            for w in range(1, 53)
        ]
        everything = sorted(scenario + weekly, key=lambda e: e.at)
        async with build_worker(env.client, settings):
            await play(env, settings, customer, everything, start + timedelta(days=DAYS))
            handle = env.client.get_workflow_handle(subject_workflow_id(customer))
            first_run = (await handle.describe()).raw_description.workflow_execution_info
            runs = await chain_events(
                env.client, handle.id, first_run.first_run_id or first_run.execution.run_id
            )
            # A group enrols its members: their workflows end with the subject's.
            view = await describe(env.client, customer)
            members = [
                str(e.detail["member"]) for e in view.timeline if e.kind == "member_enrolled"
            ]
            await terminate(env.client, customer, *members)
        return len(everything), runs


async def baseline(env: WorkflowEnvironment, signals: int) -> int:
    queue = f"bench-raw-{uuid.uuid4().hex}"
    async with Worker(env.client, task_queue=queue, workflows=[CountSignals]):
        handle = await env.client.start_workflow(
            CountSignals.run, signals, id=f"raw-{uuid.uuid4().hex}", task_queue=queue
        )
        for _ in range(signals):
            await env.sleep(timedelta(days=1))  # spread out, as customer events are
            await handle.signal(CountSignals.bump)
        await handle.result()
        return len((await handle.fetch_history()).events)


def limit(name: str, count: int, runs: list[list[int]]) -> str:
    """What keeps a scenario over the target, measured: its timer wake-ups without an event."""
    counts = breakdown(runs)
    total = sum(len(r) for r in runs)
    if total / count <= TARGET_PER_EVENT:
        return ""
    fired = counts["TIMER_FIRED"]
    text = (
        f"Not met by {name}: {fired} timer wake-ups in the year for {count} events (its"
        f" playbook acts on a schedule, not on events); at {TIMER_WAKE_UP} events each before"
        f" any work, they alone are {TIMER_WAKE_UP * fired / count:.1f} events per event,"
        f" and each sends, so also writes the ledger ({counts['MARKER_RECORDED']} markers)."
    )
    return "\n" + textwrap.fill(text, width=88, initial_indent="  ", subsequent_indent="  ")


async def main(record: bool, only: str | None) -> None:
    rows = []
    async with await start_time_skipping() as env:
        for events_file in SCENARIOS:
            name = events_file.name.split(".")[0]
            if only and only not in name:
                continue
            count, runs = await one_year(env, events_file)
            raw = await baseline(env, count)
            rows.append((name, count, runs, raw))
    headers = ["scenario", "customer events", "history events", "per event", "raw per event",
               "ratio", "per step", "runs", "longest run", "target <= 10"]  # fmt: skip
    table = []
    for name, count, runs, raw in rows:
        total = sum(len(r) for r in runs)
        per = total / count
        # A step is an event or a timer's wake-up: what the sizing formula counts.
        steps = count + breakdown(runs)["TIMER_FIRED"]
        table.append([name, count, total, f"{per:.1f}", f"{raw / count:.1f}",
                      f"{per / (raw / count):.2f}", f"{total / steps:.1f}", len(runs),
                      max(len(r) for r in runs),
                      report.verdict(per <= TARGET_PER_EVENT)])  # fmt: skip
    body = report.table(headers, table)
    # Per customer event, by kind; the timer events by type (started/fired/cancelled).
    kinds = [*KINDS, "other"]
    split = []
    for name, count, runs, _ in rows:
        counts = breakdown(runs)
        timers = "/".join(
            str(counts[t]) for t in ("TIMER_STARTED", "TIMER_FIRED", "TIMER_CANCELED")
        )
        split.append([name, *(f"{counts[k] / count:.2f}" for k in kinds), timers])
    detail = report.table(["scenario", *kinds, "timers started/fired/cancelled"], split)
    print(body)
    print()
    print(detail)
    print(f"Repeat: {report.command()}")
    if not record or only:
        return
    met = sum(1 for row in table if "**met**" in str(row[-1]))
    notes = NOTES.format(
        body=body,
        detail=detail,
        met=met,
        total=len(table),
        target=TARGET_PER_EVENT,
        suggested=f"{SUGGESTED_CONTINUE_AS_NEW:,}",
        limits="".join(limit(name, count, runs) for name, count, runs, _ in rows),
    )
    report.record(
        "history", "History per customer event and per customer-year (benchmark 5)", notes
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--only", help="the scenarios whose name holds this (print only)")
    arguments = parser.parse_args()
    asyncio.run(main(record=not arguments.no_record, only=arguments.only))
