"""The pure core before and after a change, in the same run: each shipped scenario
simulated by this tree and by an earlier commit, alternately, in processes of their own.

On a shared machine absolute times wander; the ratio of two trees measured side by side
does not. Each side runs `--customers` customers x 90 days per scenario, `--rounds`
times, alternating; the best CPU time (time.process_time) of each side counts.

Run: `.venv/bin/python -m bench.core_before_after --base c6fd76f [--customers 200]`
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import tempfile
from pathlib import Path

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
from tests.record_histories import SCENARIOS, scenario_plans
customers = int(sys.argv[1])
out = {}
for path in SCENARIOS:
    plans, profile = scenario_plans(path)
    start = datetime(2026, 11, 23, 1, tzinfo=UTC)
    events = simulator.load_events(path, start)
    simulator.simulate(plans, profile, events, start, 90)  # warm caches
    began = time.process_time()
    for index in range(customers):
        spec = simulator.CustomerSpec(id=f"bench-{index}")
        simulator.simulate(plans, profile, events, start, 90, spec)
    out[path.name.split(".")[0]] = (time.process_time() - began) / customers * 10_000
print(repr(out))
"""


def run_tree(tree: Path, customers: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(customers)],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = ast.literal_eval(done.stdout.strip().splitlines()[-1])
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
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    best: dict[str, dict[str, float]] = {"base": {}, "this": {}}
    with tempfile.TemporaryDirectory() as name:
        base = Path(name)
        export(args.base, base)
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
run. "Before" is commit {args.base[:7]}, exported with `git archive`.

{body}
"""
    report.record("core-before-after", "The pure core before and after, same run", notes)


if __name__ == "__main__":
    main()
