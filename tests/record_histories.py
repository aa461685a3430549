"""Record the workflow histories of the shipped scenarios into tests/histories/.

`make histories` runs this after a deliberate change to workflow code that the replay
test rejects (a non-deterministic change must instead be guarded with workflow.patched).
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from cli.binaries import temporal_test_server
from sopflow.core import simulator
from sopflow.language import compile_paths
from sopflow.language.compiler import plans_of_file
from sopflow.language.plan import Plan, ProfilePlan
from sopflow.settings import Settings
from tests.helpers import describe, plan_store, play, terminate
from worker.main import build_worker
from workflows.contracts import subject_workflow_id

REPO = Path(__file__).resolve().parent.parent
HISTORIES = REPO / "tests" / "histories"
SCENARIOS = sorted((REPO / "playbooks" / "scenarios").glob("*.events.yaml"))
DAYS = 90


def playbook_of(events: Path) -> Path:
    for line in events.read_text(encoding="utf-8").splitlines():
        if line.startswith("# playbook: "):
            return REPO / "playbooks" / line.removeprefix("# playbook: ").strip()
    raise ValueError(f"{events} names no playbook")


def scenario_plans(events: Path) -> tuple[dict[str, Plan], ProfilePlan | None]:
    """The plans a scenario's playbook can enrol a customer in, and the profile rules."""
    bundle = compile_paths([REPO / "playbooks"])
    plans = simulator.reachable_plans(plans_of_file(bundle, playbook_of(events)), bundle.plans)
    return plans, bundle.profile


def scenario_settings(events: Path, home: Path, prefix: str) -> Settings:
    """Settings on a fresh task queue with the scenario's plans deployed (the time-skipping
    server registers no search attributes)."""
    settings = Settings(
        home=home,
        temporal_task_queue=f"{prefix}-{uuid.uuid4().hex}",
        publish_search_attributes=False,
    )
    plans, profile = scenario_plans(events)
    plan_store(settings).deploy_all(list(plans.values()), profile)
    return settings


async def start_time_skipping() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(temporal_test_server()),
    )


async def record(env: WorkflowEnvironment, events: Path, home: Path) -> str:
    settings = scenario_settings(events, home, "record")
    bundle = compile_paths([REPO / "playbooks"])
    root = plans_of_file(bundle, playbook_of(events))[0]
    # The subject of the playbook's audience: a customer, group/<id> or staff/<id>.
    spec = simulator.subject_spec(
        root, simulator.CustomerSpec(id=f"history-{events.name.split('.')[0]}")
    )
    customer = spec.id
    start = await env.get_current_time()
    async with build_worker(env.client, settings):
        scenario = simulator.load_events(events, start)
        await play(env, settings, customer, scenario, start + timedelta(days=DAYS))
        handle = env.client.get_workflow_handle(subject_workflow_id(customer))
        history = await handle.fetch_history()
        view = await describe(env.client, customer)
        members = [str(e.detail["member"]) for e in view.timeline if e.kind == "member_enrolled"]
        await terminate(env.client, customer, *members)
    return history.to_json()


async def main() -> None:
    HISTORIES.mkdir(exist_ok=True)
    async with await start_time_skipping() as env:
        for events in SCENARIOS:
            with tempfile.TemporaryDirectory() as home:
                text = await record(env, events, Path(home))
            target = HISTORIES / f"{events.name.split('.')[0]}.json"
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target.relative_to(REPO)}")


if __name__ == "__main__":
    asyncio.run(main())
