"""The simulator runs a customer without checkpoints, and again with them when anything
fails: the timeline is the one a run with a checkpoint before every input gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from sopflow.core import actions, simulator
from sopflow.core.journey import apply_due_timers, apply_event
from sopflow.core.state import CustomerEvent, CustomerState, customer_event
from sopflow.core.step import Catalog, UndoNeeded
from sopflow.language import compile_paths, compile_playbook
from sopflow.language.compiler import plans_of_file
from sopflow.language.plan import Plan
from tests.record_histories import REPO, SCENARIOS, playbook_of, scenario_plans

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)

PLAYBOOK = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: steps}
enrol: {event: contact.added}
stages:
  first:
    triggers:
      - event: message.received
        actions:
          - tag: {add: ["intent:hot"]}
          - send: {channel: log, text: "boom"}
        goto: second
      - after: 1h
        actions: [{send: {channel: log, text: "boom"}}]
      - after: 2h
        actions: [{send: {channel: log, text: "two hours"}}]
  second:
    on_enter:
      - send: {channel: log, text: "in second"}
    end: true
"""


@pytest.fixture
def plan() -> Plan:
    return compile_playbook(PLAYBOOK, filename="steps.yaml")


@pytest.fixture
def failing_send(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fault in the core: a send whose text is "boom" raises midway through a step."""
    real = actions.send

    def send(step: Any, journey: Any, plan: Any, action: Any, extra: Any = None) -> None:
        if action.text == "boom":
            raise RuntimeError("boom")
        real(step, journey, plan, action, extra)

    monkeypatch.setattr(actions, "send", send)


def events() -> list[simulator.ScenarioEvent]:
    return simulator.parse_events(
        [
            {"after": "0s", "type": "contact.added"},
            {"after": "3h", "type": "message.received"},
        ],
        T0,
    )


def rows(plan: Plan) -> list[dict[str, Any]]:
    timeline = simulator.simulate({plan.name: plan}, None, events(), T0, 1)
    return simulator.timeline_json(timeline)


def with_checkpoints(plan: Plan) -> list[dict[str, Any]]:
    """The same run, a checkpoint before every input (as the workflow runs the core)."""
    catalog = Catalog(
        plans={plan.version: plan}, deployed={plan.name: plan.version}, wecom_tags=True
    )
    return simulator.timeline_json(
        simulator._run(catalog, simulator.CustomerSpec(), events(), T0.replace(day=24), undo=True)
    )


@pytest.mark.usefixtures("failing_send")
def test_a_failure_in_a_run_without_checkpoints_is_quarantined_as_with_them(plan: Plan) -> None:
    found = rows(plan)
    assert found == with_checkpoints(plan)
    quarantined = [row for row in found if row["kind"] == "quarantined"]
    # The timer and the event that failed, each skipped with the state kept as before it.
    assert [row["detail"]["input"] for row in quarantined] == ["timer", "event"]
    assert not any(row["kind"] == "tag_added" for row in found)
    assert any(row.get("text") == "two hours" for row in found)


@pytest.mark.usefixtures("failing_send")
def test_a_step_without_undo_raises_instead_of_quarantining(plan: Plan) -> None:
    catalog = Catalog(plans={plan.version: plan}, deployed={plan.name: plan.version})
    state = apply_event(
        CustomerState(customer_id="c1"),
        CustomerEvent(customer_id="c1", type="contact.added", occurred_at=T0, idempotency_key="a"),
        catalog,
        T0,
    ).state
    message = CustomerEvent(
        customer_id="c1", type="message.received", occurred_at=T0, idempotency_key="b"
    )
    with pytest.raises(UndoNeeded):
        apply_event(state, message, catalog, T0, undo=False)


def test_a_run_without_failures_gives_the_timeline_of_one_with_checkpoints(plan: Plan) -> None:
    assert rows(plan) == with_checkpoints(plan)
    assert any(row.get("text") == "in second" for row in rows(plan))


def test_an_event_made_without_validation_is_the_validated_one() -> None:
    at = datetime(2026, 11, 23, 9, tzinfo=timezone(timedelta(hours=8)))
    made = customer_event("c1", "order.paid", at, {"amount": 5, "items": [1]}, "k")
    validated = CustomerEvent(
        customer_id="c1",
        type="order.paid",
        occurred_at=at,
        data={"amount": 5, "items": [1]},
        idempotency_key="k",
    )
    assert (made, made.model_fields_set, repr(made)) == (
        validated,
        validated.model_fields_set,
        repr(validated),
    )
    # What validation refuses is still refused.
    with pytest.raises(ValidationError):
        customer_event("c1", "order.paid", at.replace(tzinfo=None), {}, "k")
    with pytest.raises(ValidationError):
        customer_event("c1", "order.paid", at, {1: "one"}, "k")  # type: ignore[dict-item]


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name.split(".")[0])
def test_a_step_that_builds_no_deliveries_changes_the_state_as_one_that_does(path: Path) -> None:
    plans, profile = scenario_plans(path)
    catalog = Catalog(
        plans={p.version: p for p in plans.values()},
        deployed={p.name: p.version for p in plans.values()},
        profile=profile,
        wecom_tags=True,
    )
    root = plans_of_file(compile_paths([REPO / "playbooks"]), playbook_of(path))[0]
    subject = simulator.subject_spec(root, simulator.CustomerSpec(id="c1")).id
    events = simulator.load_events(path, T0)
    states = {True: CustomerState(customer_id=subject), False: CustomerState(customer_id=subject)}
    built_any = False
    for index, scenario_event in enumerate(events):
        accepted = customer_event(
            subject, scenario_event.type, scenario_event.at, scenario_event.data, f"k{index}"
        )
        for built in (True, False):
            result = apply_event(
                states[built], accepted, catalog, scenario_event.at, deliveries=built
            )
            built_any |= bool(result.deliveries)
            assert built or not result.deliveries
            states[built] = result.state
        assert states[True].model_dump_json() == states[False].model_dump_json()
    ends = {
        built: apply_due_timers(states[built], catalog, T0 + timedelta(days=90), deliveries=built)
        for built in (True, False)
    }
    assert not ends[False].deliveries
    assert built_any or ends[True].deliveries
    assert ends[True].state.model_dump_json() == ends[False].state.model_dump_json()
