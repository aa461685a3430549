"""The determinism sandbox without an exec per payload for its serialization context.

For every payload of every activation (the signal's events in, the local activity's
arguments out, its result in) temporalio asks the workflow instance which serialization
context applies, and the sandboxed instance answers by exec-ing a code string inside the
sandbox with its import restrictions applied: py-spy put that at about a quarter of a
worker's CPU on the one-event-per-request path (bench/latency.py, as deployed). The
answer is a plain function of the workflow's info and its pending commands
(`_WorkflowInstanceImpl.get_serialization_context`: dataclasses of temporalio's, a module
that passes through the sandbox), so it is asked of the sandboxed instance directly. The
workflow's own code still runs only inside the sandbox.

This reaches into temporalio's sandbox runner (`_Instance`, its `globals_and_locals`); if
a temporalio release changes that shape, the instance answers the SDK's own way again
(tests/test_sandbox_context.py checks both the shortcut and that its answers equal the
SDK's).
"""

from __future__ import annotations

from typing import Any

from temporalio.converter import SerializationContext
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox._runner import _Instance

# The name temporalio's runner gives the instance it creates inside the sandbox.
IN_SANDBOX = "__temporal_in_sandbox"


class DirectContextInstance(_Instance):
    """A sandboxed workflow instance that answers context questions without an exec."""

    def get_serialization_context(self, command_info: Any) -> SerializationContext | None:
        inner = self.globals_and_locals.get(IN_SANDBOX)
        if inner is None or not hasattr(inner, "get_serialization_context"):
            return super().get_serialization_context(command_info)
        return inner.get_serialization_context(command_info)  # type: ignore[no-any-return]

    def get_external_store_context(self, command_info: Any) -> Any:
        inner = self.globals_and_locals.get(IN_SANDBOX)
        if inner is None or not hasattr(inner, "get_external_store_context"):
            return super().get_external_store_context(command_info)
        return inner.get_external_store_context(command_info)


class DirectContextSandboxedRunner(SandboxedWorkflowRunner):
    """temporalio's sandboxed runner, creating DirectContextInstance instances."""

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return DirectContextInstance(det, self.runner_class, self.restrictions)
