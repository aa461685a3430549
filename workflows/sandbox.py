"""The rules for Temporal's determinism sandbox: which packages pass through it whole, and
how the workflow modules it imports again for every customer share their compiled code."""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import CodeType, ModuleType

from temporalio.worker import UnsandboxedWorkflowRunner, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

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
# The package of the durable shell's workflow modules. The sandbox executes a workflow's
# module again for every customer it caches (that is its isolation: module-level state is
# never shared), but the module's compiled code is the same every time: it is compiled
# (or read from its .pyc) once per process and shared (`SharedCodeFinder`). Code objects
# are immutable and hold no state; each customer's copy still gets its own module, class
# and functions.
WORKFLOW_PACKAGE = "workflows"


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
    SharedCodeFinder.install()
    return SandboxedWorkflowRunner(restrictions=sandbox_restrictions())


class SharedCodeFinder(importlib.abc.MetaPathFinder):
    """Finds the modules of WORKFLOW_PACKAGE as Python's path finder does, with a loader
    that compiles each source file once per process. Without it every customer the
    sandbox caches held its own copy of the workflow module's code objects (about 55 KiB
    of the customer workflow's, bench/memory.py) and paid to compile or unmarshal them."""

    @classmethod
    def install(cls) -> None:
        if not any(isinstance(finder, cls) for finder in sys.meta_path):
            sys.meta_path.insert(0, cls())

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(WORKFLOW_PACKAGE + "."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and type(spec.loader) is importlib.machinery.SourceFileLoader:
            spec.loader = SharedCodeLoader(fullname, spec.loader.path)
        return spec


class SharedCodeLoader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname: str) -> CodeType:
        return _compiled(fullname, self.path)


@functools.cache
def _compiled(fullname: str, path: str) -> CodeType:
    code = importlib.machinery.SourceFileLoader(fullname, path).get_code(fullname)
    assert code is not None  # a source file always has code
    return code
