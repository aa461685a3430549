"""StaffTaskNotice: one staff task told to its assignee as a WeCom app message, durably
and apart from the task itself (a task is in the inbox before and whatever its notice
does). The activity records the outcome; this shell only retries it a bounded number of
times."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.notice_contracts import (
        NOTICE_ATTEMPTS,
        NOTICE_WORKFLOW_NAME,
        NOTIFY_STAFF_ACTIVITY,
        StaffNotice,
    )

NOTICE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=NOTICE_ATTEMPTS,
)


@workflow.defn(name=NOTICE_WORKFLOW_NAME)
class StaffTaskNoticeWorkflow:
    @workflow.run
    async def run(self, notice: StaffNotice) -> str:
        result: str = await workflow.execute_activity(
            NOTIFY_STAFF_ACTIVITY,
            notice,
            result_type=str,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=NOTICE_RETRY,
        )
        return result
