"""The client side of enrolment batches: start one, read its progress, cancel it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from sopflow.errors import SopflowError
from sopflow.settings import Settings
from workflows.client import TemporalUnavailable
from workflows.enrolment_contracts import (
    BATCH_WORKFLOW_NAME,
    PROGRESS_QUERY,
    BatchInput,
    BatchProgress,
    batch_workflow_id,
)


class BatchExists(SopflowError):
    """A batch of that id was started before: a batch id names one batch forever."""


def new_batch_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S-") + uuid.uuid4().hex[:8]


async def start_batch(
    client: Client,
    settings: Settings,
    audience: str,
    playbook: str,
    batch_id: str | None = None,
    rate_per_second: float | None = None,
) -> BatchProgress:
    """Start enrolling the audience in the playbook; the caller checked both exist."""
    batch_id = batch_id or new_batch_id()
    progress = BatchProgress(batch_id=batch_id, audience=audience, playbook=playbook)
    start = BatchInput(
        progress=progress,
        rate_per_second=rate_per_second or settings.enrolment_rate_per_second,
        page_size=settings.enrolment_page_size,
    )
    try:
        await client.start_workflow(
            BATCH_WORKFLOW_NAME,
            start,
            id=batch_workflow_id(batch_id),
            task_queue=settings.temporal_task_queue,
            # A batch id is used once: running "the same batch" again is a no-op.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError as e:
        raise BatchExists(f"batch '{batch_id}' was started before") from e
    except RPCError as e:
        raise TemporalUnavailable(f"Temporal did not start the batch: {e}") from e
    return progress


async def batch_progress(client: Client, batch_id: str) -> BatchProgress | None:
    """Where the batch stands (its result once it ended), or None when there is none."""
    handle = client.get_workflow_handle(batch_workflow_id(batch_id), result_type=BatchProgress)
    try:
        description = await handle.describe()
        if description.status == WorkflowExecutionStatus.RUNNING:
            progress: BatchProgress = await handle.query(PROGRESS_QUERY, result_type=BatchProgress)
            return progress
        if description.status in (
            WorkflowExecutionStatus.COMPLETED,
            WorkflowExecutionStatus.CONTINUED_AS_NEW,
        ):
            result: BatchProgress = await handle.result()
            return result
        # Terminated or timed out: the last progress the workflow answered is gone.
        return BatchProgress(
            batch_id=batch_id,
            audience="?",
            playbook="?",
            status="failed",
            error=f"the batch workflow ended: {description.status}",
        )
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return None
        raise TemporalUnavailable(f"cannot read the batch: {e}") from e


async def cancel_batch(client: Client, batch_id: str) -> bool:
    """Ask the batch to stop after the chunks in flight; False when there is none."""
    handle = client.get_workflow_handle(batch_workflow_id(batch_id))
    try:
        await handle.cancel()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return False
        raise TemporalUnavailable(f"cannot cancel the batch: {e}") from e
    return True
