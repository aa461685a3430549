"""The pure core before and after a change, in the same run: each shipped scenario
simulated by this tree and by an earlier commit, alternately, in processes of their own.

On a shared machine absolute times wander; the ratio of two trees measured side by side
does not. Each side runs `--customers` customers x 90 days per scenario, `--rounds`
times, alternating; the best CPU time (time.process_time) of each side counts. First,
both trees must give the same bytes for `--digest-customers` customers per scenario (the
simulator's timelines, and every step as the workflow drives the core): a faster core
that changed its output is refused before anything is measured.

Run: `.venv/bin/python -m bench.core_before_after --base c6fd76f [--customers 200]`
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import report

REPO = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 10.0  # 10,000 customers x 90 days (issue 7)

# Run inside each tree (its own sopflow and tests.record_histories): CPU seconds per
# 10,000 customers, per scenario.
PROBE = """
import sys, time
sys.path.insert(0, ".")
from datetime import UTC, datetime
from sopflow.core import simulator
from sopflow.language import compile_paths
from sopflow.language.compiler import plans_of_file
from tests.record_histories import REPO, SCENARIOS, playbook_of, scenario_plans
customers = int(sys.argv[1])
bundle = compile_paths([REPO / "playbooks"])
out = {}
for path in SCENARIOS:
    plans, profile = scenario_plans(path)
    root = plans_of_file(bundle, playbook_of(path))[0]
    start = datetime(2026, 11, 23, 1, tzinfo=UTC)
    events = simulator.load_events(path, start)
    simulator.simulate(plans, profile, events, start, 90, simulator.subject_spec(root))
    began = time.process_time()
    for index in range(customers):
        # The playbook's own subject: a customer, group/bench-N or staff/bench-N.
        spec = simulator.subject_spec(root, simulator.CustomerSpec(id=f"bench-{index}"))
        simulator.simulate(plans, profile, events, start, 90, spec)
    out[path.name.split(".")[0]] = (time.process_time() - began) / customers * 10_000
print(repr(out))
"""

# Run inside each tree: a digest per scenario of what the core gives `customers`
# customers, both ways it is driven: the simulator's timelines, and (as the workflow
# drives it) every step's state and deliveries, its next due time, with and without
# handing the state over. Two trees that digest alike gave the same bytes.
DIGEST = """
import hashlib, sys
sys.path.insert(0, ".")
from datetime import UTC, datetime, timedelta
from sopflow.core import simulator
from sopflow.core.journey import apply_due_timers, apply_event, next_due_at
from sopflow.core.state import CustomerEvent, CustomerState
from sopflow.core.step import Catalog
from sopflow.language import compile_paths
from sopflow.language.compiler import plans_of_file
from tests.record_histories import REPO, SCENARIOS, playbook_of, scenario_plans
customers = int(sys.argv[1])
bundle = compile_paths([REPO / "playbooks"])
out = {}
for path in SCENARIOS:
    plans, profile = scenario_plans(path)
    root = plans_of_file(bundle, playbook_of(path))[0]
    start = datetime(2026, 11, 23, 1, tzinfo=UTC)
    end = start + timedelta(days=90)
    events = simulator.load_events(path, start)
    catalog = Catalog(
        plans={p.version: p for p in plans.values()},
        deployed={p.name: p.version for p in plans.values()},
        profile=profile,
        wecom_tags=True,
    )
    digest = hashlib.sha256()
    for index in range(customers):
        spec = simulator.subject_spec(root, simulator.CustomerSpec(id=f"bench-{index}"))
        for entry in simulator.simulate(plans, profile, events, start, 90, spec):
            digest.update(entry.model_dump_json().encode())
        state = CustomerState(customer_id=spec.id)
        for number, event in enumerate(e for e in events if e.at <= end):
            accepted = CustomerEvent(
                customer_id=spec.id, type=event.type, occurred_at=event.at, data=event.data,
                idempotency_key=event.key or f"sim-{number}",
            )
            due = next_due_at(state, catalog)
            if due is not None and due < event.at:
                result = apply_due_timers(state, catalog, due, owned=number % 2 == 0)
                digest.update(result.model_dump_json().encode())
                state = result.state
            result = apply_event(state, accepted, catalog, event.at, owned=number % 2 == 1)
            digest.update(result.model_dump_json().encode())
            state = result.state
            digest.update(repr(next_due_at(state, catalog)).encode())
        digest.update(apply_due_timers(state, catalog, end).model_dump_json().encode())
    out[path.name.split(".")[0]] = digest.hexdigest()
print(repr(out))
"""


def run_tree(tree: Path, customers: int, probe: str = PROBE) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", probe, str(customers)],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    return result


def export(commit: str, folder: Path) -> None:
    """The base commit's files (no worktree: nothing of the repository changes)."""
    archive = subprocess.run(
        ["git", "archive", commit], cwd=REPO, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="the commit to compare with")
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--digest-customers",
        type=int,
        default=20,
        help="customers whose output must be the same bytes in both trees (0: no check)",
    )
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    best: dict[str, dict[str, float]] = {"base": {}, "this": {}}
    with tempfile.TemporaryDirectory() as name:
        base = Path(name)
        export(args.base, base)
        if args.digest_customers:
            digests = run_tree(base, args.digest_customers, DIGEST)
            ours = run_tree(REPO, args.digest_customers, DIGEST)
            differ = sorted(k for k in digests | ours if digests.get(k) != ours.get(k))
            if differ:
                sys.exit(f"not the same output as {args.base} (nothing measured): {differ}")
            print(f"Same output as {args.base}: {len(ours)} scenarios x "
                  f"{args.digest_customers} customers, every step.")  # fmt: skip
        for _ in range(args.rounds):
            for side, tree in (("base", base), ("this", REPO)):
                for scenario, seconds in run_tree(tree, args.customers).items():
                    best[side][scenario] = min(best[side].get(scenario, seconds), seconds)
    rows = []
    for scenario in sorted(best["this"]):
        before, after = best["base"].get(scenario), best["this"][scenario]
        rows.append(
            [scenario, f"{before:.1f} s" if before else "-", f"{after:.1f} s",
             f"{before / after:.2f}" if before else "-",
             report.verdict(after <= TARGET_SECONDS)]
        )  # fmt: skip
    headers = ["scenario", f"before ({args.base[:7]})", "after (this tree)", "speed-up",
               f"target <= {TARGET_SECONDS:.0f} s"]  # fmt: skip
    body = report.table(headers, rows)
    print(body)
    print(f"Repeat: {report.command()}")
    if args.no_record:
        return
    notes = f"""
CPU seconds (time.process_time, one core) for 10,000 customers x 90 days of each shipped
scenario on the pure core, extrapolated from {args.customers} customers; the best of
{args.rounds} alternating rounds of each tree, each in a process of its own, in the same
run. "Before" is commit {args.base[:7]}, exported with `git archive`. Both trees gave the
same bytes first ({args.digest_customers} customers per scenario: the simulator's timelines,
and every step's state, deliveries and next due time as the workflow drives the core).
Each scenario runs its playbook's own subject (a group playbook a group), in both trees.

{body}
"""
    report.record("core-before-after", "The pure core before and after, same run", notes)


if __name__ == "__main__":
    main()
