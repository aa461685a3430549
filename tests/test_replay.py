"""Interpreter evolution: the committed histories of the shipped scenarios must replay
against today's workflow code. A failure here means a change would break journeys in
flight: guard it with workflow.patched, or (for a deliberate break) `make histories`."""

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.conftest import REPO
from workflows.customer_workflow import CustomerJourneyWorkflow
from workflows.sandbox import workflow_runner

HISTORIES_DIR = REPO / "tests" / "histories"
# Today's recordings, plus those of earlier workflow code kept in sub-folders named after
# the change that followed them: journeys recorded then must still replay (patches).
HISTORIES = sorted(HISTORIES_DIR.glob("**/*.json"))


def test_every_scenario_has_a_recorded_history() -> None:
    scenarios = {p.name.split(".")[0] for p in (REPO / "playbooks/scenarios").glob("*.events.yaml")}
    assert {p.stem for p in HISTORIES_DIR.glob("*.json")} == scenarios
    assert len(HISTORIES) > len(scenarios), "the older recordings are replayed too"


@pytest.mark.parametrize(
    "path", HISTORIES, ids=lambda p: str(p.relative_to(HISTORIES_DIR).with_suffix(""))
)
async def test_recorded_history_replays_deterministically(path: Path) -> None:
    replayer = Replayer(
        workflows=[CustomerJourneyWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(sandboxed=True),
    )
    history = WorkflowHistory.from_json(f"customer/history-{path.stem}", path.read_text())
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
