"""Activities of the WeCom sender workflow: create a mass-send task once, follow it up,
and tell each subject's workflow what became of its message.

Three kinds of task: `single` (customers), `group` (the owner's group chats, chat_type
group: WeCom's answers name chat ids, the workflow's subjects are `group/<chat_id>`) and
`moment` (a post on the sender's moments: `add_moment_task`, whose job gives a moment
that the sender publishes)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from sopflow.core.sender import Outcome, OutcomeStatus, limit_window
from sopflow.core.state import Delivery
from sopflow.language.channels import TASK_CHANNEL
from sopflow.language.subjects import bare_id, group_subject, staff_subject
from sopflow.settings import Settings
from sopflow.store.ledger import Ledger
from sopflow.store.mass_sends import MassSendRow, MassSends
from sopflow.store.moments import STATE_OF_OUTCOME, Moments
from sopflow.wecom import api
from sopflow.wecom.errors import WeComError, WeComRateLimited
from worker.wecom.client import WeComClient
from workflows.contracts import subject_workflow_id
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


class UnknownTags(Exception):
    """A moment's visibility names tags the corp's tag library does not have."""


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


# A moment not published by its deadline gives its staff member this task.
MOMENT_REMINDER_DUE = timedelta(hours=4)


class WeComSenderActivities:
    def __init__(
        self,
        client: WeComClient,
        mass_sends: MassSends,
        ledger: Ledger,
        temporal: Client,
        settings: Settings,
        moments: Moments | None = None,
    ) -> None:
        self.client = client
        self.mass_sends = mass_sends
        self.ledger = ledger
        self.temporal = temporal
        self.settings = settings
        self.moments = moments or Moments(ledger.database)

    @activity.defn(name=CREATE_MASS_SEND_ACTIVITY)
    async def create_mass_send(self, request: CreateMassSendInput) -> CreateMassSendResult:
        """Create the batch's task exactly once: the batch's row is written before WeCom is
        called, so a retry either finds the recorded task, or finds the task WeCom created
        for an attempt that died before recording it, or creates it."""
        now = datetime.now(UTC)
        row = await asyncio.to_thread(
            self.mass_sends.begin,
            request.batch_id,
            request.sender,
            request.text,
            now,
            request.chat_type,
        )
        if row.msgid is not None:
            refused = await asyncio.to_thread(self.mass_sends.refused, request.batch_id)
            return CreateMassSendResult(msgid=row.msgid, refused=refused)
        if request.chat_type == "moment":
            return await self._create_moment(request, now)
        try:
            found = await self._created_earlier(row, now, request.chat_type)
            single = request.chat_type == "single"
            # The corp's per-customer limit is on customers, not on group chats.
            refused = await self._over_limit(request.customers, now) if single else {}
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
                    if single
                    else api.AddMsgTemplateRequest(
                        chat_type="group",
                        chat_id_list=[bare_id(t) for t in targets],
                        sender=request.sender,
                        text=api.Text(content=request.text),
                    )
                )
                msgid = answer.msgid
                for target in answer.fail_list:
                    subject = target if single else group_subject(target)
                    refused[subject] = (
                        f"WeCom could not target this customer for {request.sender}"
                        if single
                        else f"WeCom could not target this group for {request.sender} "
                        "(not its owner, or dismissed)"
                    )
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

    async def _created_earlier(
        self, row: MassSendRow, now: datetime, chat_type: Literal["single", "group"]
    ) -> str | None:
        """The msgid of a task an earlier attempt created for this batch, if any."""
        if activity.info().attempt == 1 and row.started_at == now:
            return None  # the first attempt ever: nothing can have been created
        tasks = await self.client.groupmsg_list(
            row.sender,
            int((row.started_at - RECONCILE_MARGIN).timestamp()),
            int((now + RECONCILE_MARGIN).timestamp()),
            chat_type,
        )
        candidates = [t.msgid for t in tasks if t.text is not None and t.text.content == row.text]
        known = await asyncio.to_thread(self.mass_sends.known_msgids, candidates)
        unknown = [msgid for msgid in candidates if msgid not in known]
        return unknown[0] if unknown else None

    async def _create_moment(
        self, request: CreateMassSendInput, now: datetime
    ) -> CreateMassSendResult:
        """A post on the sender's moments, seen by customers with the tags asked (WeCom's
        corp tags, found by group and tag name). WeCom lists no jobs, so a worker that dies
        between WeCom's answer and the row below makes a retry post it a second time."""
        subject = staff_subject(request.sender)
        msgid, reason = "", None
        try:
            tag_ids = await self._tag_ids(request.visible_to)
            answer = await self.client.add_moment_task(
                api.AddMomentTaskRequest(
                    text=api.Text(content=request.text),
                    visible_range=api.VisibleRange(
                        sender_list=api.SenderList(user_list=[request.sender]),
                        external_contact_list=(
                            api.ExternalContactList(tag_list=tag_ids) if tag_ids else None
                        ),
                    ),
                )
            )
            msgid = answer.jobid
        except WeComError as e:
            if e.retryable:
                raise as_activity_error(e) from e
            reason = f"WeCom refused the post: {e}"
        except UnknownTags as e:
            reason = str(e)
        refused = {subject: reason} if reason else {}
        targets = [] if reason else [subject]
        await asyncio.to_thread(
            self.moments.record,
            request.batch_id,
            request.sender,
            request.text,
            request.visible_to,
            msgid,
            reason,
            now,
        )
        await asyncio.to_thread(
            self.mass_sends.record_task, request.batch_id, msgid, targets, refused, now
        )
        return CreateMassSendResult(msgid=msgid, refused=refused)

    async def _tag_ids(self, tags: list[str] | None) -> list[str]:
        """WeCom's ids of `group:value` tags (tag group name, tag name); none: all."""
        if not tags:
            return []
        library = await self.client.get_corp_tag_list()
        ids = {
            f"{group.group_name}:{tag.name}": tag.id
            for group in library.tag_group
            for tag in group.tag
        }
        missing = [t for t in tags if t not in ids]
        if missing:
            raise UnknownTags(
                f"moments visibility: {', '.join(missing)} not in the corp tag library "
                "(a tag group named as the part before ':', a tag as the part after)"
            )
        return [ids[t] for t in tags]

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
        if task.chat_type == "moment":
            return await self._moment_results(task)
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
            # A group's result names its chat; the workflow's subject is group/<chat_id>.
            if task.chat_type == "group" and result.chat_id is not None:
                subject = group_subject(result.chat_id)
            elif task.chat_type == "single" and result.external_userid is not None:
                subject = result.external_userid
            else:
                continue
            status, detail = RESULT_OF_STATUS.get(result.status, ("awaiting_confirmation", None))
            if task.chat_type == "group" and result.status == api.SendStatus.FAILED_NOT_A_CONTACT:
                detail = "the group was dismissed, or the sender no longer owns it"
            statuses[subject] = status
            if detail:
                details[subject] = detail
        final = defaultdict(list)
        for customer, status in statuses.items():
            if status != "awaiting_confirmation":
                final[status].append(customer)
        for status, customers in final.items():
            await asyncio.to_thread(self.mass_sends.set_status, task.batch_id, customers, status)
        return SendResults(confirmed=confirmed, statuses=statuses, details=details)

    async def _moment_results(self, task: TaskRef) -> SendResults:
        """A post's job gives its moment (or why it failed); the moment whether the sender
        published it. Published is `sent`; not yet, awaiting."""
        subject = staff_subject(task.sender)
        post = await asyncio.to_thread(self.moments.get, task.batch_id)
        moment_id = post.moment_id if post else None
        try:
            if moment_id is None:
                job = await self.client.get_moment_task_result(task.msgid)
                if job.status != api.MomentTaskStatus.DONE or job.result is None:
                    return SendResults(confirmed=False)
                if job.result.errcode != 0 or not job.result.moment_id:
                    why = f"WeCom could not create the post: {job.result.errmsg}"
                    await asyncio.to_thread(self.moments.set_state, task.batch_id, "failed", why)
                    return SendResults(
                        confirmed=False, statuses={subject: "failed"}, details={subject: why}
                    )
                moment_id = job.result.moment_id
                invalid = job.result.invalid_external_contact_list
                note = (
                    f"WeCom ignored tag ids {', '.join(invalid.tag_list)}"
                    if invalid and invalid.tag_list
                    else None
                )
                await asyncio.to_thread(self.moments.set_moment_id, task.batch_id, moment_id, note)
            publishers = await self.client.moment_publishers(moment_id)
        except WeComError as e:
            raise as_activity_error(e) from e
        if not publishers.get(task.sender):
            return SendResults(confirmed=False)
        now = datetime.now(UTC)
        await asyncio.to_thread(self.moments.set_state, task.batch_id, "published", None, now)
        return SendResults(confirmed=True, statuses={subject: "sent"})

    @activity.defn(name=REMIND_ACTIVITY)
    async def remind(self, task: TaskRef) -> None:
        if task.chat_type == "moment":
            await self._remind_to_publish(task)
            return
        try:
            await self.client.remind_groupmsg_send(task.msgid)
        except WeComError as e:
            raise as_activity_error(e) from e

    async def _remind_to_publish(self, task: TaskRef) -> None:
        """A post not published by its deadline: a task in the staff member's inbox (WeCom
        has no reminder for moments), once per post."""
        now = datetime.now(UTC)
        post = await asyncio.to_thread(self.moments.get, task.batch_id)
        excerpt = post.text[:40] if post is not None else task.batch_id
        reminder = Delivery(
            idempotency_key=f"{task.batch_id}/publish-reminder",
            kind="task",
            customer_id=staff_subject(task.sender),
            playbook="wecom.moments",
            journey_id=task.batch_id,
            stage="publish",
            channel=TASK_CHANNEL,
            text=f"发表企业朋友圈（已过截止时间）：{excerpt}",
            scheduled_at=now,
            assignee=task.sender,
            script="在企业微信「客户朋友圈」中发表企业分配的朋友圈。",
            due_at=now + MOMENT_REMINDER_DUE,
        )
        await asyncio.to_thread(self.ledger.record_delivery, reminder, "moment not published")
        await asyncio.to_thread(
            self.moments.set_state,
            task.batch_id,
            "overdue",
            "not published by its deadline: a reminder task was created",
            now,
        )

    @activity.defn(name=CANCEL_TASK_ACTIVITY)
    async def cancel_task(self, task: TaskRef) -> None:
        try:
            if task.chat_type == "moment":
                post = await asyncio.to_thread(self.moments.get, task.batch_id)
                if post is not None and post.moment_id:
                    await self.client.cancel_moment_task(post.moment_id)
                return
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
            if outcome.batch_id and outcome.customer_id.startswith("staff/"):
                # A moments post's state (a final one is never left).
                await asyncio.to_thread(
                    self.moments.set_state,
                    outcome.batch_id,
                    STATE_OF_OUTCOME[outcome.status],
                    outcome.detail if outcome.status != "awaiting_confirmation" else None,
                    datetime.now(UTC),
                )
        for customer_id, outcomes in by_customer.items():
            handle = self.temporal.get_workflow_handle(subject_workflow_id(customer_id))
            try:
                await handle.signal(
                    DELIVERY_OUTCOME_SIGNAL, DeliveryOutcomeSignal(outcomes=outcomes)
                )
            except RPCError as e:
                if e.status != RPCStatusCode.NOT_FOUND:
                    raise  # retried; a customer whose workflow is gone needs no news
            activity.heartbeat()
