"""WeComTagRefresh: after a staff member edited a customer in WeCom, read the customer's
corp tags back and tell the customer's workflow what changed (worker/wecom/tag_refresh.py).
Started by the callback route, one per callback; only retries its one activity."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.tag_refresh_contracts import (
        REFRESH_ATTEMPTS,
        REFRESH_TAGS_ACTIVITY,
        TAG_REFRESH_WORKFLOW_NAME,
        TagRefresh,
    )

REFRESH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=REFRESH_ATTEMPTS,
)


@workflow.defn(name=TAG_REFRESH_WORKFLOW_NAME)
class WeComTagRefreshWorkflow:
    @workflow.run
    async def run(self, request: TagRefresh) -> str:
        result: str = await workflow.execute_activity(
            REFRESH_TAGS_ACTIVITY,
            request,
            result_type=str,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=REFRESH_RETRY,
        )
        return result
