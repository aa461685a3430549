"""What the determinism sandbox holds for each cached workflow (bench/memory.py measures it):
of the project's own modules only the workflow's module is imported again per workflow,
and its copies share their compiled code (workflows/code_cache.py)."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import temporalio.converter
import temporalio.workflow
from temporalio.api.common.v1 import Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.worker import WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox._runner import _fake_info, _Instance

from workflows.customer_workflow import CustomerJourneyWorkflow
from workflows.enrolment_workflow import EnrolmentBatchWorkflow
from workflows.notice_workflow import StaffTaskNoticeWorkflow
from workflows.sandbox import workflow_runner
from workflows.sender_workflow import WeComSenderWorkflow
from workflows.tag_refresh_workflow import WeComTagRefreshWorkflow

WORKFLOWS = [
    CustomerJourneyWorkflow,
    EnrolmentBatchWorkflow,
    WeComSenderWorkflow,
    StaffTaskNoticeWorkflow,
    WeComTagRefreshWorkflow,
]
PROJECT = ("sopflow", "workflows", "worker", "api", "cli")


def sandboxed(cls: type) -> _Instance:
    """A sandboxed instance of the workflow class, as the worker creates one per customer
    it caches (the details are temporalio's own, as when a worker validates a workflow)."""
    defn = temporalio.workflow._Definition.must_from_class(cls)
    default = temporalio.converter.DataConverter.default
    instance = workflow_runner(True).create_instance(
        WorkflowInstanceDetails(
            payload_converter_factory=default._new_payload_converter,
            failure_converter_class=default.failure_converter_class,
            interceptor_classes=[],
            defn=defn,
            info=_fake_info,
            randomness_seed=-1,
            extern_functions={},
            disable_eager_activity_execution=False,
            worker_level_failure_exception_types=[],
            patch_activation_callback=None,
            last_completion_result=Payloads(),
            last_failure=Failure(),
        )
    )
    assert isinstance(instance, _Instance)
    return instance


def reimported(instance: _Instance) -> set[str]:
    """The project's modules that this sandbox imported again instead of passing through."""
    modules: dict[str, Any] = instance.importer.new_modules
    return {
        name
        for name, module in modules.items()
        if name.split(".")[0] in PROJECT and sys.modules.get(name) is not module
    }


@pytest.mark.parametrize("cls", WORKFLOWS, ids=lambda cls: cls.__name__)
async def test_only_the_workflow_module_is_imported_again_per_workflow(cls: type) -> None:
    # Every other module of the project a workflow module imports passes through (imported
    # under `workflow.unsafe.imports_passed_through()` or by WORKFLOW_PACKAGE's neighbours
    # in PURE_PACKAGES): one more here would be held by every cached customer.
    assert reimported(sandboxed(cls)) == {cls.__module__, "workflows"}


async def test_the_copies_of_a_workflow_module_share_its_code() -> None:
    first, second = sandboxed(CustomerJourneyWorkflow), sandboxed(CustomerJourneyWorkflow)
    one = first.globals_and_locals["__temporal_workflow_class"]
    other = second.globals_and_locals["__temporal_workflow_class"]
    # Isolated: each customer has its own module, class and functions...
    assert one is not other and one is not CustomerJourneyWorkflow
    assert sys.modules[one.__module__] is not first.importer.new_modules[one.__module__]
    # ...and one compiled code for them all.
    for name in ("run", "__init__", "_step", "_carry_over"):
        assert getattr(one, name).__code__ is getattr(other, name).__code__
