"""The one rule for Temporal's determinism sandbox: which packages pass through it whole."""

from __future__ import annotations

from temporalio.worker import UnsandboxedWorkflowRunner, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxRestrictions

from workflows import code_cache
from workflows.sandbox_context import DirectContextSandboxedRunner

# The sandbox re-imports every module a workflow uses, per cached customer, unless it
# passes through. The pure layers (the playbook language and the journey core) and the
# workflow's typed edges are deterministic by contract (import-linter keeps I/O and
# Temporal out of them), so they pass through whole, by package name: a new module in
# them needs no entry here. The third-party packages are the ones the pure layers use.
PURE_PACKAGES = ("sopflow.language", "sopflow.core", "workflows.contracts")
PURE_DEPENDENCIES = (
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "cel",
    "jinja2",
    "markupsafe",
    "croniter",
    "dateutil",
    "zoneinfo",
)


def sandbox_restrictions() -> SandboxRestrictions:
    return SandboxRestrictions.default.with_passthrough_modules(*PURE_PACKAGES, *PURE_DEPENDENCIES)


def workflow_runner(sandboxed: bool) -> WorkflowRunner:
    """The sandbox (default) re-imports the workflow module per customer and routes every
    payload through it, and refuses non-deterministic calls in the shell. Without it a
    worker spends about a third less CPU per event (bench/throughput.py); determinism
    then rests on the pure core and the replayed histories, which the tests check with
    the sandbox on."""
    if not sandboxed:
        return UnsandboxedWorkflowRunner()
    code_cache.install()  # the modules it re-imports are compiled once (code_cache.py)
    # Its serialization contexts answered without an exec per payload (sandbox_context.py).
    return DirectContextSandboxedRunner(restrictions=sandbox_restrictions())
