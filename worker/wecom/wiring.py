"""The worker's WeCom parts, when WeCom is configured: the adapters of the wecom.*
channels, the sender workflow (one per staff member) with its activities, and the staff
task notices (worker/wecom/notify.py) and the tag refresh after a staff member's edit
(worker/wecom/tag_refresh.py).

Without SOPFLOW_WECOM_CORP_ID and SOPFLOW_WECOM_SECRET the wecom.* channels are logged
with their channel (the development default) and no sender workflow runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio.client import Client

from sopflow.core.sender import SenderPolicy
from sopflow.language.channels import WECOM_TAG_CHANNEL, Channel
from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.ledger import Ledger
from sopflow.store.mass_sends import MassSends
from sopflow.store.moments import Moments
from sopflow.store.plans import PlanStore
from sopflow.store.wecom_tags import CorpTags
from worker.channels.base import ChannelAdapter
from worker.channels.wecom import WeComGroupChannel, WeComMomentsChannel, WeComPrivateChannel
from worker.channels.wecom_tag import WeComTagChannel
from worker.wecom.client import WeComClient
from worker.wecom.notify import StaffNoticeActivities
from worker.wecom.sender_activities import WeComSenderActivities
from worker.wecom.tag_refresh import TagRefreshActivities
from workflows.notice_workflow import StaffTaskNoticeWorkflow
from workflows.sender_workflow import WeComSenderWorkflow
from workflows.tag_refresh_workflow import WeComTagRefreshWorkflow


def wecom_configured(settings: Settings) -> bool:
    return bool(settings.wecom_corp_id and settings.wecom_secret)


def sender_policy(settings: Settings) -> SenderPolicy:
    return SenderPolicy(
        batch_window_seconds=settings.wecom_batch_window_seconds,
        poll_seconds=settings.wecom_poll_seconds,
        remind_after_seconds=settings.wecom_remind_after_seconds,
        expire_after_seconds=settings.wecom_expire_after_seconds,
    )


def wecom_channels(
    settings: Settings, client: WeComClient, temporal: Client, database: Database
) -> dict[str, ChannelAdapter]:
    queue, policy = settings.temporal_task_queue, sender_policy(settings)
    return {
        Channel.WECOM_PRIVATE: WeComPrivateChannel(client, temporal, queue, policy),
        Channel.WECOM_GROUP: WeComGroupChannel(client, temporal, queue, policy),
        Channel.WECOM_MOMENTS: WeComMomentsChannel(temporal, queue, policy),
        WECOM_TAG_CHANNEL: WeComTagChannel(client, CorpTags(database)),
    }


def sender_parts(
    settings: Settings, client: WeComClient, database: Database, temporal: Client
) -> tuple[list[type], list[Callable[..., Any]]]:
    """The sender workflow and its activities, for the worker to register."""
    sends = WeComSenderActivities(
        client, MassSends(database), Ledger(database), temporal, settings, Moments(database)
    )
    notices = StaffNoticeActivities(client, Ledger(database))
    refresh = TagRefreshActivities(client, CorpTags(database), temporal, PlanStore(database))
    activities: list[Callable[..., Any]] = [
        sends.create_mass_send,
        sends.fetch_send_results,
        sends.remind,
        sends.cancel_task,
        sends.report_outcomes,
        notices.notify_staff,
        refresh.refresh_tags,
    ]
    return [WeComSenderWorkflow, StaffTaskNoticeWorkflow, WeComTagRefreshWorkflow], activities
