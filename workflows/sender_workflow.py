"""WeComSenderWorkflow: one staff member's mass sends, batched and followed up durably.

Deliveries that a staff member must confirm in WeCom are queued here (signal-with-start
from the channel adapters): customers' `wecom.private` messages, the `wecom.group`
messages of the groups the staff member owns, and the `wecom.moments` posts of their own
moments. Sends of the same text (and kind) collect for a short window and become ONE
WeCom task that the staff member confirms once (`add_msg_template`, chat_type single or
group; `add_moment_task` for a post); the workflow then polls WeCom for each subject's
result, reminds the staff member, expires tasks nobody confirmed, and reports every
outcome to the subject's own workflow. What to do is
decided by the pure `sopflow.core.sender`; this shell waits, calls activities and carries
the state across continue-as-new. It ends when nothing is queued or open: the next send
starts a new run.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from sopflow.core import sender
    from sopflow.core.sender import Batch, OpenTask, Outcome, QueuedSend, SenderState
    from workflows.sender_contracts import (
        CANCEL_SEND_SIGNAL,
        CANCEL_TASK_ACTIVITY,
        CREATE_MASS_SEND_ACTIVITY,
        DESCRIBE_SENDER_QUERY,
        ENQUEUE_SIGNAL,
        FETCH_SEND_RESULTS_ACTIVITY,
        REMIND_ACTIVITY,
        REPORT_OUTCOMES_ACTIVITY,
        SENDER_WORKFLOW_NAME,
        CreateMassSendInput,
        CreateMassSendResult,
        OutcomeReport,
        SenderWorkflowInput,
        SendResults,
        TaskRef,
    )

# WeCom unreachable or rate-limited: retry with backoff for a day (the activities raise
# a permanent refusal as non-retryable). Polls and reminders are retried at the next
# poll instead of holding the loop.
WECOM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=["WeComPermanentError"],
)
WECOM_TIMEOUT = timedelta(seconds=60)
WECOM_SCHEDULE_TO_CLOSE = timedelta(hours=24)
ONE_TRY = RetryPolicy(maximum_attempts=1)
# Far below Temporal's suggestion (4,096 events): a busy sender starts a fresh history.
CONTINUE_AS_NEW_AFTER_EVENTS = 2000


@workflow.defn(name=SENDER_WORKFLOW_NAME)
class WeComSenderWorkflow:
    @workflow.init
    def __init__(self, input: SenderWorkflowInput) -> None:
        self._state = input.state or SenderState(sender=input.sender)
        self._policy = input.policy
        self._inbox: list[QueuedSend] = list(input.inbox)
        self._cancels: list[str] = list(input.cancels)

    @workflow.signal(name=ENQUEUE_SIGNAL)
    def enqueue(self, send: QueuedSend) -> None:
        self._inbox.append(send)

    @workflow.signal(name=CANCEL_SEND_SIGNAL)
    def cancel(self, idempotency_key: str) -> None:
        self._cancels.append(idempotency_key)

    @workflow.query(name=DESCRIBE_SENDER_QUERY)
    def describe(self) -> SenderState:
        return self._state

    @workflow.run
    async def run(self, input: SenderWorkflowInput) -> None:
        while True:
            await self._wait_for_work()
            outcomes = await self._step()
            if outcomes:
                await workflow.execute_activity(
                    REPORT_OUTCOMES_ACTIVITY,
                    OutcomeReport(outcomes=outcomes),
                    start_to_close_timeout=WECOM_TIMEOUT,
                    retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
                )
            idle = not (self._inbox or self._cancels or self._state.batches or self._state.tasks)
            if idle or workflow.info().get_current_history_length() > (
                CONTINUE_AS_NEW_AFTER_EVENTS
            ):
                break
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._inbox or self._cancels or self._state.batches or self._state.tasks:
            workflow.continue_as_new(
                SenderWorkflowInput(
                    sender=self._state.sender,
                    policy=self._policy,
                    state=self._state,
                    inbox=self._inbox,
                    cancels=self._cancels,
                )
            )

    async def _wait_for_work(self) -> None:
        if self._inbox or self._cancels:
            return
        due = sender.next_due_at(self._state, self._policy)
        if due is None:
            await workflow.wait_condition(lambda: bool(self._inbox or self._cancels))
            return
        delay = due - workflow.now()
        if delay > timedelta(0):
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: bool(self._inbox or self._cancels), timeout=delay
                )

    async def _step(self) -> list[Outcome]:
        now = workflow.now()
        outcomes: list[Outcome] = []
        while self._inbox:
            sender.enqueue(self._state, self._inbox.pop(0), now, self._policy)
        while self._cancels:
            cancelled, tasks = sender.cancel(self._state, self._cancels.pop(0))
            outcomes += cancelled
            for task in tasks:
                await self._cancel_task(task)
                detail = "every customer left the stage before the staff member confirmed"
                outcomes += sender.end_task(task, "cancelled", detail, self._state)
        for batch in sender.due_batches(self._state, self._policy, now):
            result = await self._create(batch)
            outcomes += sender.close_batch(
                self._state, batch, result.msgid, result.refused, self._policy, now
            )
        for task in list(self._state.tasks.values()):
            outcomes += await self._follow_up(task)
        return outcomes

    async def _create(self, batch: Batch) -> CreateMassSendResult:
        customers = list(dict.fromkeys(s.customer_id for s in batch.sends))
        try:
            result: CreateMassSendResult = await workflow.execute_activity(
                CREATE_MASS_SEND_ACTIVITY,
                CreateMassSendInput(
                    batch_id=batch.batch_id,
                    sender=self._state.sender,
                    text=batch.text,
                    customers=customers,
                    chat_type=batch.chat_type,
                    visible_to=batch.visible_to,
                ),
                result_type=CreateMassSendResult,
                start_to_close_timeout=WECOM_TIMEOUT,
                schedule_to_close_timeout=WECOM_SCHEDULE_TO_CLOSE,
                retry_policy=WECOM_RETRY,
            )
        except ActivityError as e:
            cause = e.cause
            detail = cause.message if isinstance(cause, FailureError) else str(e)
            reason = f"WeCom refused the task: {detail}"
            return CreateMassSendResult(refused=dict.fromkeys(customers, reason))
        return result

    async def _follow_up(self, task: OpenTask) -> list[Outcome]:
        now = workflow.now()
        outcomes: list[Outcome] = []
        ref = self._ref(task)
        expiring = sender.expired(task, self._policy, now)
        results = SendResults(confirmed=False)
        if task.next_poll_at <= now or expiring:
            task.next_poll_at = now + timedelta(seconds=self._policy.poll_seconds)
            # WeCom unreachable: no results this time, poll again at the next period.
            with contextlib.suppress(ActivityError):
                results = await workflow.execute_activity(
                    FETCH_SEND_RESULTS_ACTIVITY,
                    ref,
                    result_type=SendResults,
                    start_to_close_timeout=WECOM_TIMEOUT,
                    retry_policy=ONE_TRY,
                )
            outcomes += sender.resolve_task(task, results.statuses, results.details, self._state)
        if expiring and task.awaiting:
            hours = self._policy.expire_after_seconds // 3600
            if results.confirmed:
                # Confirmed, yet WeCom never reported these customers sent.
                detail = f"WeCom reported no delivery within {hours} hours of the task"
                return outcomes + sender.end_task(task, "failed", detail, self._state)
            await self._cancel_task(task)
            detail = f"not confirmed by the staff member within {hours} hours"
            return outcomes + sender.end_task(task, "expired", detail, self._state)
        reminder = sender.next_reminder_at(task, self._policy)
        if task.awaiting and not results.confirmed and reminder is not None and reminder <= now:
            task.reminded_at.append(now)  # one attempt per period, answered or not
            with contextlib.suppress(ActivityError):
                await workflow.execute_activity(
                    REMIND_ACTIVITY,
                    ref,
                    start_to_close_timeout=WECOM_TIMEOUT,
                    retry_policy=ONE_TRY,
                )
        return outcomes

    def _ref(self, task: OpenTask) -> TaskRef:
        return TaskRef(
            msgid=task.msgid,
            sender=self._state.sender,
            batch_id=task.batch_id,
            chat_type=task.chat_type,
        )

    async def _cancel_task(self, task: OpenTask) -> None:
        ref = self._ref(task)
        with contextlib.suppress(ActivityError):
            await workflow.execute_activity(
                CANCEL_TASK_ACTIVITY,
                ref,
                start_to_close_timeout=WECOM_TIMEOUT,
                schedule_to_close_timeout=timedelta(hours=1),
                retry_policy=WECOM_RETRY,
            )
