"""EnrolmentBatchWorkflow: enrol every customer of an audience in a playbook, durably.

It reads the audience a page at a time (an activity over the read model), signals each
member's workflow through an activity (an `enrolment.requested` event keyed
`enrol/<batch>/<customer>`), keeps to a rate, and continues as new every few pages: a
worker that dies mid-batch leaves a history from which the next worker resumes at the
page and chunk it stopped at, and whatever it repeats is dropped by the durable keys and
by the customer's own enrolment rules.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.enrolment_contracts import (
        AUDIENCE_PAGE_ACTIVITY,
        BATCH_WORKFLOW_NAME,
        ENROL_CUSTOMERS_ACTIVITY,
        PROGRESS_QUERY,
        SIGNAL_CHUNK,
        AudiencePage,
        AudiencePageInput,
        BatchInput,
        BatchProgress,
        EnrolCustomersInput,
        EnrolCustomersResult,
    )

# Reads and signals retry until the database and Temporal answer (they are idempotent).
RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))
PAGE_TIMEOUT = timedelta(minutes=5)
CHUNK_TIMEOUT = timedelta(minutes=5)
HEARTBEAT = timedelta(seconds=30)
# Chunks signalled at once (each its own activity, 50 signals in flight in each).
CHUNKS_IN_FLIGHT = 4


@workflow.defn(name=BATCH_WORKFLOW_NAME)
class EnrolmentBatchWorkflow:
    @workflow.init
    def __init__(self, input: BatchInput) -> None:
        self._progress = input.progress

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> BatchProgress:
        return self._progress

    @workflow.run
    async def run(self, input: BatchInput) -> BatchProgress:
        progress = self._progress
        progress.started_at = progress.started_at or workflow.now()
        after = input.after
        try:
            for _ in range(input.pages_per_run):
                page: AudiencePage = await workflow.execute_activity(
                    AUDIENCE_PAGE_ACTIVITY,
                    AudiencePageInput(
                        audience=progress.audience,
                        playbook=progress.playbook,
                        after=after,
                        limit=input.page_size,
                    ),
                    result_type=AudiencePage,
                    start_to_close_timeout=PAGE_TIMEOUT,
                    retry_policy=RETRY,
                )
                if page.error is not None:
                    return self._finish("failed", page.error)
                progress.pages += 1
                progress.scanned += page.scanned
                progress.matched += len(page.customer_ids) + page.already_enrolled
                progress.skipped += page.already_enrolled
                progress.unevaluated += page.unevaluated
                chunks = [
                    page.customer_ids[start : start + SIGNAL_CHUNK]
                    for start in range(0, len(page.customer_ids), SIGNAL_CHUNK)
                ]
                for first in range(0, len(chunks), CHUNKS_IN_FLIGHT):
                    await self._enrol(input, chunks[first : first + CHUNKS_IN_FLIGHT])
                if page.next_after is None:
                    return self._finish("completed")
                after = page.next_after
        except asyncio.CancelledError:
            # Cancelled (DELETE, `sopflow enrol --cancel`): what was sent stays sent.
            return self._finish("cancelled")
        workflow.continue_as_new(input.model_copy(update={"progress": progress, "after": after}))

    async def _enrol(self, input: BatchInput, chunks: list[list[str]]) -> None:
        """Signal a few chunks at once, then wait as long as the rate asks for that many
        signals."""
        began = workflow.now()
        results: list[EnrolCustomersResult] = await asyncio.gather(
            *(
                workflow.execute_activity(
                    ENROL_CUSTOMERS_ACTIVITY,
                    EnrolCustomersInput(
                        batch_id=self._progress.batch_id,
                        playbook=self._progress.playbook,
                        customer_ids=chunk,
                    ),
                    result_type=EnrolCustomersResult,
                    start_to_close_timeout=CHUNK_TIMEOUT,
                    heartbeat_timeout=HEARTBEAT,
                    retry_policy=RETRY,
                )
                for chunk in chunks
            )
        )
        for result in results:
            self._progress.done += result.done
            self._progress.skipped += result.skipped
            self._progress.failed += result.failed
        signals = sum(len(chunk) for chunk in chunks)
        due = timedelta(seconds=signals / input.rate_per_second)
        left = began + due - workflow.now()
        if left > timedelta(0):
            await workflow.sleep(left)

    def _finish(self, status: str, error: str | None = None) -> BatchProgress:
        progress = self._progress
        progress.status = status  # type: ignore[assignment]
        progress.error = error
        progress.finished_at = workflow.now()
        return progress
