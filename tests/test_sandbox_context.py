"""The sandboxed instance answers serialization-context questions without an exec
(workflows/sandbox_context.py), and its answers are the SDK's own."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.converter import ActivitySerializationContext, WorkflowSerializationContext
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox._runner import _Instance

from tests.test_sandbox_memory import sandboxed
from workflows.customer_workflow import CustomerJourneyWorkflow
from workflows.sandbox_context import DirectContextInstance


@activity.defn(name="context_echo")
async def echo(text: str) -> str:
    return text.upper()


@workflow.defn(name="ContextProbe")
class ContextProbe:
    """A signal in, a local activity out and its result in: each payload asks for a context."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    @workflow.signal
    def said(self, text: str) -> None:
        self.texts.append(text)

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: bool(self.texts))
        return await workflow.execute_local_activity(
            echo, self.texts[0], start_to_close_timeout=timedelta(seconds=30)
        )


async def test_the_worker_runner_creates_instances_that_answer_without_an_exec(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    instance = sandboxed(CustomerJourneyWorkflow)
    assert isinstance(instance, DirectContextInstance)
    execs: list[str] = []
    original = _Instance._run_code

    def counting(self: _Instance, code: str, **extra: Any) -> None:
        execs.append(code)
        original(self, code, **extra)

    monkeypatch.setattr(_Instance, "_run_code", counting)
    context = instance.get_serialization_context(None)
    assert isinstance(context, WorkflowSerializationContext)
    assert execs == []
    # the SDK's own way: an exec in the sandbox, for the same answer
    assert _Instance.get_serialization_context(instance, None) == context
    assert len(execs) == 1


async def test_every_context_of_a_run_is_the_sdks_own(
    time_skipping_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers: list[tuple[Any, Any]] = []
    direct = DirectContextInstance.get_serialization_context

    def both(self: DirectContextInstance, command_info: Any) -> Any:
        mine = direct(self, command_info)
        answers.append((mine, _Instance.get_serialization_context(self, command_info)))
        return mine

    monkeypatch.setattr(DirectContextInstance, "get_serialization_context", both)
    from workflows.sandbox import workflow_runner

    client = time_skipping_env.client
    queue = f"context-{uuid.uuid4().hex}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[ContextProbe],
        activities=[echo],
        workflow_runner=workflow_runner(True),
    ):
        handle = await client.start_workflow(
            ContextProbe.run, id=queue, task_queue=queue, start_signal="said",
            start_signal_args=["hello"],
        )  # fmt: skip
        assert await handle.result() == "HELLO"
    assert answers and all(mine == sdk for mine, sdk in answers)
    kinds = {type(mine) for mine, _ in answers}
    # the local activity's payloads get the activity's context, the rest the workflow's
    assert {ActivitySerializationContext, WorkflowSerializationContext} <= kinds
    local = [mine for mine, _ in answers if isinstance(mine, ActivitySerializationContext)]
    assert all(c.is_local and c.activity_type == "context_echo" for c in local)
