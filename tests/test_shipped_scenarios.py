"""Every shipped playbook is proven by a scenario: its simulated timeline equals the
reviewed golden file, and the durable runtime (time-skipping Temporal) produces the same.

Regenerate goldens with `make golden` after a deliberate change, and review the diff.
"""

import re
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from cli.main import app
from sopflow.core import simulator
from sopflow.language import compile_paths
from sopflow.language.compiler import plans_of_file
from sopflow.settings import Settings
from tests.conftest import REPO
from tests.docs import documentation
from tests.helpers import describe, plan_store, play, terminate
from tests.test_simulator_matches_runtime import comparable, enrolled_members
from worker.main import build_worker

SCENARIOS = sorted((REPO / "playbooks" / "scenarios").glob("*.events.yaml"))
START = "2026-11-23T09:00:00+08:00"
DAYS = 90


def playbook_of(events: Path) -> Path:
    match = re.search(r"^# playbook: (\S+)$", events.read_text(encoding="utf-8"), flags=re.M)
    assert match, f"{events} must name its playbook in a '# playbook: FILE' line"
    return REPO / "playbooks" / match.group(1)


def test_every_shipped_playbook_has_a_scenario() -> None:
    covered = {playbook_of(s).name for s in SCENARIOS}
    shipped = {
        p.name
        for p in (REPO / "playbooks").glob("*.yaml")
        if "kind: Playbook" in p.read_text(encoding="utf-8") and p.name != "welcome.yaml"
    }
    assert shipped == {
        "auto_high_ticket.yaml",
        "one_to_one_five_stage.yaml",
        "snacks_high_frequency.yaml",
        "koc_nurturing.yaml",
        # WeCom's welcome message and a mass-send task (the README's "Try it", issue 14).
        "wecom_welcome.yaml",
        # Groups and staff members are audiences of their own (issue 15).
        "snacks_group_calendar.yaml",
        "auto_consultant_moments.yaml",
        "auto_owner_group.yaml",
        "koc_group.yaml",
        # A split with a holdout, enrolled by an audience (issue 17).
        "snacks_member_day.yaml",
    }
    assert covered >= shipped


@pytest.mark.parametrize("events", SCENARIOS, ids=lambda p: p.name.split(".")[0])
def test_scenario_timeline_matches_its_golden_file(events: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            str(playbook_of(events)),
            "--events",
            str(events),
            "--start",
            START,
            "--days",
            str(DAYS),
        ],
    )
    assert result.exit_code == 0, result.output
    golden = events.with_name(events.name.replace(".events.yaml", ".timeline.txt"))
    assert result.output == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("events", SCENARIOS, ids=lambda p: p.name.split(".")[0])
async def test_scenario_runs_the_same_on_temporal(
    events: Path, time_skipping_env: WorkflowEnvironment, settings: Settings
) -> None:
    bundle = compile_paths([REPO / "playbooks"])
    plans = simulator.reachable_plans(plans_of_file(bundle, playbook_of(events)), bundle.plans)
    plan_store(settings).deploy_all(list(plans.values()), bundle.profile)
    root = plans_of_file(bundle, playbook_of(events))[0]
    spec = simulator.subject_spec(
        root, simulator.CustomerSpec(id=f"scenario-{events.name.split('.')[0]}")
    )
    customer = spec.id

    env = time_skipping_env
    start = await env.get_current_time()
    scenario = simulator.load_events(events, start)
    expected = simulator.simulate(plans, bundle.profile, scenario, start, DAYS, spec)
    client = env.client
    async with build_worker(client, settings):
        await play(env, settings, customer, scenario, start + timedelta(days=DAYS))
        actual = (await describe(client, customer)).timeline
        await terminate(client, customer, *enrolled_members(expected))
    assert comparable(actual) == comparable(expected)


README_SECTION = re.compile(
    r"`sopflow graph (?P<graph>[^`]+)`\n\n```mermaid\n(?P<mermaid>.*?)```\n\n"
    r"`sopflow simulate (?P<simulate>[^`]+)`\n\n```text\n(?P<table>.*?)```",
    flags=re.S,
)
README_SECTIONS = list(README_SECTION.finditer(documentation()))


def test_readme_has_a_section_for_every_scenario() -> None:
    documented = {m["simulate"].split("scenarios/")[1].split(".")[0] for m in README_SECTIONS}
    assert documented == {s.name.split(".")[0] for s in SCENARIOS}


@pytest.mark.parametrize("section", README_SECTIONS, ids=lambda m: m["graph"].split()[0])
def test_readme_playbook_section_shows_the_real_graph_and_first_30_days(
    section: re.Match[str], monkeypatch
) -> None:
    monkeypatch.chdir(REPO)
    runner = CliRunner()
    graph = runner.invoke(app, ["graph", *section["graph"].split()])
    assert graph.exit_code == 0, graph.output
    assert graph.output == section["mermaid"]
    simulated = runner.invoke(app, ["simulate", *section["simulate"].split()])
    assert simulated.exit_code == 0, simulated.output
    assert simulated.output == section["table"]
    assert "--days 30" in section["simulate"]


async def test_a_customer_year_stays_under_the_continue_as_new_suggestion(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    from bench.history import SUGGESTED_CONTINUE_AS_NEW, one_year

    heaviest = REPO / "playbooks/scenarios/snacks_high_frequency.events.yaml"
    events, runs = await one_year(time_skipping_env, heaviest)
    assert events > 50
    assert max(len(run) for run in runs) < SUGGESTED_CONTINUE_AS_NEW
