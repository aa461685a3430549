"""Activities of the WeCom sender workflow: create a mass-send task once, follow it up,
and tell each customer's workflow what became of its message."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from sopflow.core.sender import Outcome, OutcomeStatus, limit_window
from sopflow.settings import Settings
from sopflow.store.ledger import Ledger
from sopflow.store.mass_sends import MassSendRow, MassSends
from sopflow.wecom import api
from sopflow.wecom.errors import WeComError, WeComRateLimited
from worker.wecom.client import WeComClient
from workflows.contracts import customer_workflow_id
from workflows.sender_contracts import (
    CANCEL_TASK_ACTIVITY,
    CREATE_MASS_SEND_ACTIVITY,
    DELIVERY_OUTCOME_SIGNAL,
    FETCH_SEND_RESULTS_ACTIVITY,
    REMIND_ACTIVITY,
    REPORT_OUTCOMES_ACTIVITY,
    CreateMassSendInput,
    CreateMassSendResult,
    DeliveryOutcomeSignal,
    OutcomeReport,
    SendResults,
    TaskRef,
)

# A task created but not recorded (the worker died in between) is found among the
# sender's tasks created since the first attempt (less this much for clock skew) and not
# recorded for another batch.
RECONCILE_MARGIN = timedelta(seconds=10)
RESULT_OF_STATUS: dict[int, tuple[OutcomeStatus, str | None]] = {
    api.SendStatus.UNSENT: ("awaiting_confirmation", None),
    api.SendStatus.SENT: ("sent", None),
    api.SendStatus.FAILED_NOT_A_CONTACT: ("failed", "no longer a contact of the staff member"),
    api.SendStatus.FAILED_LIMIT_REACHED: (
        "failed",
        "WeCom's per-customer limit on mass messages was reached",
    ),
}


def as_activity_error(error: WeComError) -> ApplicationError:
    """Retryable WeCom errors retry under the activity's policy (a rate limit after its
    back-off); anything else is permanent for this attempt and every other."""
    if isinstance(error, WeComRateLimited):
        return ApplicationError(
            str(error),
            type="WeComRateLimited",
            next_retry_delay=timedelta(seconds=error.backoff_seconds),
        )
    if error.retryable:
        return ApplicationError(str(error), type="WeComRetry")
    return ApplicationError(str(error), type="WeComPermanentError", non_retryable=True)


class WeComSenderActivities:
    def __init__(
        self,
        client: WeComClient,
        mass_sends: MassSends,
        ledger: Ledger,
        temporal: Client,
        settings: Settings,
    ) -> None:
        self.client = client
        self.mass_sends = mass_sends
        self.ledger = ledger
        self.temporal = temporal
        self.settings = settings

    @activity.defn(name=CREATE_MASS_SEND_ACTIVITY)
    async def create_mass_send(self, request: CreateMassSendInput) -> CreateMassSendResult:
        """Create the batch's task exactly once: the batch's row is written before WeCom is
        called, so a retry either finds the recorded task, or finds the task WeCom created
        for an attempt that died before recording it, or creates it."""
        now = datetime.now(UTC)
        row = await asyncio.to_thread(
            self.mass_sends.begin, request.batch_id, request.sender, request.text, now
        )
        if row.msgid is not None:
            refused = await asyncio.to_thread(self.mass_sends.refused, request.batch_id)
            return CreateMassSendResult(msgid=row.msgid, refused=refused)
        try:
            found = await self._created_earlier(row, now)
            refused = await self._over_limit(request.customers, now)
            targets = [c for c in request.customers if c not in refused]
            msgid = ""
            if found is not None:
                msgid = found
            elif targets:
                answer = await self.client.add_msg_template(
                    api.AddMsgTemplateRequest(
                        chat_type="single",
                        external_userid=targets,
                        sender=request.sender,
                        text=api.Text(content=request.text),
                    )
                )
                msgid = answer.msgid
                for customer in answer.fail_list:
                    refused[customer] = f"WeCom could not target this customer for {request.sender}"
        except WeComError as e:
            if e.retryable:
                raise as_activity_error(e) from e
            refused = dict.fromkeys(request.customers, f"WeCom refused the task: {e}")
            msgid = ""
        targets = [c for c in request.customers if c not in refused]
        await asyncio.to_thread(
            self.mass_sends.record_task, request.batch_id, msgid, targets, refused, now
        )
        return CreateMassSendResult(msgid=msgid, refused=refused)

    async def _created_earlier(self, row: MassSendRow, now: datetime) -> str | None:
        """The msgid of a task an earlier attempt created for this batch, if any."""
        if activity.info().attempt == 1 and row.started_at == now:
            return None  # the first attempt ever: nothing can have been created
        tasks = await self.client.groupmsg_list(
            row.sender,
            int((row.started_at - RECONCILE_MARGIN).timestamp()),
            int((now + RECONCILE_MARGIN).timestamp()),
        )
        candidates = [t.msgid for t in tasks if t.text is not None and t.text.content == row.text]
        known = await asyncio.to_thread(self.mass_sends.known_msgids, candidates)
        unknown = [msgid for msgid in candidates if msgid not in known]
        return unknown[0] if unknown else None

    async def _over_limit(self, customers: list[str], now: datetime) -> dict[str, str]:
        """Customers who have had the corp's allowance of mass messages this period."""
        local = now.astimezone(ZoneInfo(self.settings.reporting_timezone))
        window = limit_window(self.settings.wecom_customer_limit, local)
        if window is None:
            return {}
        since, allowed = window
        counts = await asyncio.to_thread(self.mass_sends.counts_since, customers, since)
        rule = self.settings.wecom_customer_limit.replace("_", " ")
        return {
            c: f"the corp's mass-message limit ({allowed} per {rule}) is reached"
            for c in customers
            if counts.get(c, 0) >= allowed
        }

    @activity.defn(name=FETCH_SEND_RESULTS_ACTIVITY)
    async def fetch_send_results(self, task: TaskRef) -> SendResults:
        try:
            page = await self.client.get_groupmsg_task(task.msgid)
            results = await self.client.all_groupmsg_send_results(task.msgid, task.sender)
        except WeComError as e:
            raise as_activity_error(e) from e
        confirmed = any(
            t.userid == task.sender and t.status == api.TaskStatus.SENT for t in page.task_list
        )
        statuses: dict[str, OutcomeStatus] = {}
        details: dict[str, str] = {}
        for result in results:
            if result.external_userid is None:
                continue
            status, detail = RESULT_OF_STATUS.get(result.status, ("awaiting_confirmation", None))
            statuses[result.external_userid] = status
            if detail:
                details[result.external_userid] = detail
        final = defaultdict(list)
        for customer, status in statuses.items():
            if status != "awaiting_confirmation":
                final[status].append(customer)
        for status, customers in final.items():
            await asyncio.to_thread(self.mass_sends.set_status, task.batch_id, customers, status)
        return SendResults(confirmed=confirmed, statuses=statuses, details=details)

    @activity.defn(name=REMIND_ACTIVITY)
    async def remind(self, task: TaskRef) -> None:
        try:
            await self.client.remind_groupmsg_send(task.msgid)
        except WeComError as e:
            raise as_activity_error(e) from e

    @activity.defn(name=CANCEL_TASK_ACTIVITY)
    async def cancel_task(self, task: TaskRef) -> None:
        try:
            await self.client.cancel_groupmsg_send(task.msgid)
        except WeComError as e:
            raise as_activity_error(e) from e

    @activity.defn(name=REPORT_OUTCOMES_ACTIVITY)
    async def report_outcomes(self, report: OutcomeReport) -> None:
        """Record each outcome in the delivery ledger and signal each customer's workflow
        (one signal per customer). Repeating a report is harmless: states only move on."""
        by_customer: dict[str, list[Outcome]] = defaultdict(list)
        for outcome in report.outcomes:
            by_customer[outcome.customer_id].append(outcome)
            await asyncio.to_thread(
                self.ledger.set_delivery_status,
                outcome.idempotency_key,
                outcome.status,
                outcome.detail,
            )
        for customer_id, outcomes in by_customer.items():
            handle = self.temporal.get_workflow_handle(customer_workflow_id(customer_id))
            try:
                await handle.signal(
                    DELIVERY_OUTCOME_SIGNAL, DeliveryOutcomeSignal(outcomes=outcomes)
                )
            except RPCError as e:
                if e.status != RPCStatusCode.NOT_FOUND:
                    raise  # retried; a customer whose workflow is gone needs no news
            activity.heartbeat()
