"""What a cached customer's workflow holds beyond its own fields (bench/memory.py measures
the whole): the start input the SDK keeps for the life of the run must not hold a second
copy of what the workflow took from it."""

from __future__ import annotations

import gc
from typing import Any

from sopflow.core.state import CustomerState
from sopflow.language.compiler import compile_playbook
from sopflow.language.plan import Plan, shared_plan
from workflows.contracts import CustomerWorkflowInput
from workflows.customer_workflow import CustomerJourneyWorkflow

PLAYBOOK = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: memory}
enrol: {event: contact.added}
stages:
  waiting:
    triggers:
      - after: 30d
        goto: done
  done: {end: true}
"""


def reachable(root: object) -> set[int]:
    """The ids of every object `root` keeps alive."""
    seen: set[int] = set()
    stack: list[Any] = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        stack.extend(gc.get_referents(obj))
    return seen


def test_the_kept_start_input_holds_no_copy_of_the_carried_state_or_plans() -> None:
    # As after a continue-as-new: the input carries the state and a plan, decoded afresh
    # for this run, while the process already holds that plan.
    plan = compile_playbook(PLAYBOOK)
    shared = shared_plan(plan)
    decoded = Plan.model_validate_json(plan.model_dump_json())
    state = CustomerState(customer_id="c-1")
    start = CustomerWorkflowInput(
        customer_id="c-1", state=state, plans={plan.version: decoded}, inbox=[], outbox=[]
    )
    workflow = CustomerJourneyWorkflow(start)
    assert workflow._plans == {plan.version: shared} and workflow._state is state
    kept = reachable(start)  # what the SDK keeps besides the workflow object
    assert id(decoded) not in kept and id(state) not in kept
    assert start.customer_id == "c-1"  # the rest of the input stays as it came
