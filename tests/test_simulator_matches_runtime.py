"""One behaviour, two clocks: the simulator and the durable runtime (time-skipping Temporal
server, real worker) produce identical timelines for the same playbooks and events."""

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from sopflow.core import simulator
from sopflow.core.state import TimelineEntry
from sopflow.language.compiler import compile_bundle
from sopflow.language.loader import load_text
from sopflow.settings import Settings
from tests.helpers import describe, plan_store, play, terminate
from tests.test_language_examples import EXAMPLES
from worker.main import build_worker


def comparable(entries: list[TimelineEntry]) -> list[tuple]:
    # How a delivery went is the shell's business (the simulator delivers nothing); what
    # was decided, when, to whom and with what text must be the same.
    delivered_kinds = ("message", "task_created")
    return [
        (
            e.at,
            e.kind,
            e.playbook,
            e.stage,
            e.channel,
            e.text,
            None if e.kind in delivered_kinds else e.error,
            e.detail,
        )
        for e in entries
    ]


def enrolled_members(entries: list[TimelineEntry]) -> list[str]:
    """The customers a group's journey enrolled: their workflows end with the test."""
    return [str(e.detail["member"]) for e in entries if e.kind == "member_enrolled"]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda m: m["name"])
async def test_simulator_and_temporal_agree(
    example, time_skipping_env: WorkflowEnvironment, settings: Settings, tmp_path: Path
) -> None:
    documents, problems = load_text(example["playbook"], "example.yaml")
    bundle = compile_bundle(documents, problems)
    bundle.raise_on_errors()
    plan_store(settings).deploy_all(list(bundle.plans.values()), bundle.profile)
    days = int(example["args"].split("--days")[1].split()[0])
    events_file = tmp_path / "events.yaml"
    events_file.write_text(example["events"], encoding="utf-8")
    # The subject of the first playbook's audience: a customer, a group, a staff member.
    root = next(iter(bundle.plans.values()))
    spec = simulator.subject_spec(root, simulator.CustomerSpec(id=f"agree-{example['name']}"))
    customer = spec.id

    env = time_skipping_env
    start: datetime = await env.get_current_time()
    scenario = simulator.load_events(events_file, start)
    expected = simulator.simulate(bundle.plans, bundle.profile, scenario, start, days, spec)

    client = env.client
    async with build_worker(client, settings):
        await play(env, settings, customer, scenario, start + timedelta(days=days))
        actual = (await describe(client, customer)).timeline
        await terminate(client, customer, *enrolled_members(expected))

    assert comparable(actual) == comparable(expected)
    assert len(expected) >= 3
