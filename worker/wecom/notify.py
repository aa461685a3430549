"""Staff tasks told to their assignee as a WeCom app message (`message/send`, a text
card linking to the console's task list), when SOPFLOW_WECOM_NOTIFY_TASKS is on.

The task channel logs the task as always, then starts one `StaffTaskNotice` workflow per
task (keyed by the task id, so a delivery retried starts nothing twice): a notice never
holds back or fails its task. Its activity records the outcome in the delivery ledger
under `<task id>/notice` (kind `notice`, channel `wecom.app`): `sent`, or `failed` with
WeCom's reason once retrying cannot help or the attempts are spent.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from sopflow.core.state import Delivery
from sopflow.errors import SopflowError
from sopflow.settings import Settings
from sopflow.store.ledger import Ledger
from sopflow.wecom import api
from worker.channels.base import ChannelAdapter, Receipt
from worker.wecom.client import WeComClient
from workflows.notice_contracts import (
    NOTICE_ATTEMPTS,
    NOTICE_WORKFLOW_NAME,
    NOTIFY_STAFF_ACTIVITY,
    StaffNotice,
    notice_workflow_id,
)

log = logging.getLogger("sopflow.worker.notify")
NOTICE_CHANNEL = "wecom.app"
TITLE_MAX = 128  # WeCom's text card title
DESCRIPTION_MAX = 512  # and description


def task_url(settings: Settings, delivery: Delivery) -> str:
    """The console page with the assignee's open tasks (a staff key sees its own)."""
    base = settings.console_base_url or f"http://{settings.api_host}:{settings.api_port}"
    assignee = quote(delivery.assignee or "", safe="")
    return f"{base.rstrip('/')}/console/staff?assignee={assignee}"


class NotifyingTaskChannel:
    """The task channel's own adapter, then a notice for the assignee."""

    def __init__(self, inner: ChannelAdapter, temporal: Client, settings: Settings) -> None:
        self.inner = inner
        self.temporal = temporal
        self.settings = settings

    async def deliver(self, delivery: Delivery) -> str | Receipt | None:
        answer = await self.inner.deliver(delivery)
        if delivery.assignee and delivery.assignee != "unassigned":
            await self._start(delivery)
        return answer

    async def _start(self, delivery: Delivery) -> None:
        notice = StaffNotice(task=delivery, url=task_url(self.settings, delivery))
        try:
            await self.temporal.start_workflow(
                NOTICE_WORKFLOW_NAME,
                notice,
                id=notice_workflow_id(delivery.idempotency_key),
                task_queue=self.settings.temporal_task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            pass  # the delivery was retried: its notice exists
        except RPCError as error:
            # The task matters more than its notice: logged, never a failed task.
            log.warning("no notice for task %s: %s", delivery.idempotency_key, error)


class StaffNoticeActivities:
    def __init__(self, client: WeComClient, ledger: Ledger) -> None:
        self.client = client
        self.ledger = ledger

    @activity.defn(name=NOTIFY_STAFF_ACTIVITY)
    async def notify_staff(self, notice: StaffNotice) -> str:
        task = notice.task
        card = api.TextCard(
            title=_cut(f"New task: {task.text}", TITLE_MAX),
            description=_cut(
                f"Customer {task.customer_id} ({task.playbook} / {task.stage})"
                + (f"\n{task.script}" if task.script else ""),
                DESCRIPTION_MAX,
            ),
            url=notice.url,
            btntxt="Open",
        )
        try:
            answer = await self.client.send_textcard_to_staff([task.assignee or ""], card)
        except SopflowError as error:
            last = activity.info().attempt >= NOTICE_ATTEMPTS
            if getattr(error, "retryable", False) and not last:
                raise
            await self._record(task, "failed", str(error))
            return "failed"
        if answer.invaliduser:
            await self._record(task, "failed", f"WeCom does not know '{answer.invaliduser}'")
            return "failed"
        await self._record(task, "sent", f"app message {answer.msgid} to {task.assignee}")
        return "sent"

    async def _record(self, task: Delivery, status: str, detail: str) -> None:
        notice = task.model_copy(
            update={
                "idempotency_key": f"{task.idempotency_key}/notice",
                "kind": "notice",
                "channel": NOTICE_CHANNEL,
            }
        )
        await asyncio.to_thread(self.ledger.record_delivery, notice, detail, status)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
