"""Worker wiring: the customer workflow, its activities and the channel adapters."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from temporalio.client import Client
from temporalio.worker import PollerBehaviorAutoscaling, Worker

from sopflow.errors import SopflowError
from sopflow.language.channels import CHANNELS, TASK_CHANNEL, Channel
from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.ledger import Ledger
from sopflow.store.plans import PlanStore
from worker.activities import SopflowActivities
from worker.channels.base import ChannelAdapter
from worker.channels.log import LogChannel
from worker.channels.webhook import WebhookChannel
from workflows.contracts import (
    DELIVER_ACTIVITY,
    DELIVER_BATCH_ACTIVITY,
    LOAD_PLANS_ACTIVITY,
    RECORD_TIMELINE_ACTIVITY,
)
from workflows.customer_workflow import CustomerJourneyWorkflow
from workflows.sandbox import workflow_runner

# Pollers scale with the backlog: with the default fixed pollers a burst of new customers
# waits on a handful of polls (measured: about twice the first-task throughput).
POLLER = PollerBehaviorAutoscaling()


def build_channels(settings: Settings) -> dict[str, ChannelAdapter]:
    """An adapter for every channel of the registry; a channel without one is a bug that
    must stop the worker at start, not fail deliveries one by one."""
    log = LogChannel(settings.deliveries_log)
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    adapters: dict[str, ChannelAdapter] = {
        Channel.LOG: log,
        Channel.WEBHOOK: WebhookChannel(
            settings.webhook_url, secret, settings.webhook_timeout_seconds
        ),
        # Until a WeCom adapter exists, wecom.* deliveries are logged with their channel.
        Channel.WECOM_PRIVATE: log,
        Channel.WECOM_GROUP: log,
        Channel.WECOM_MOMENTS: log,
        # Staff tasks reach their inbox through the ledger (the tasks table); this file is
        # the log a developer tails.
        TASK_CHANNEL: LogChannel(settings.home / "tasks.jsonl"),
    }
    missing = sorted(set(CHANNELS) - set(adapters))
    if missing:
        raise SopflowError(f"no adapter for channels: {', '.join(missing)}")
    return {str(name): adapter for name, adapter in adapters.items()}


def build_activities(settings: Settings, database: Database | None = None) -> SopflowActivities:
    """The activities with their adapters; the read model's schema is upgraded here, so a
    new worker version brings its tables."""
    database = database or Database.from_settings(settings)
    # Plans come from the read model: workers on other hosts need nothing shared but it
    # and Temporal.
    return SopflowActivities(PlanStore(database), build_channels(settings), Ledger(database))


def build_worker(
    client: Client,
    settings: Settings,
    activities: SopflowActivities | None = None,
    replace: Mapping[str, Callable[..., Any]] | None = None,
) -> Worker:
    """A worker for the customer workflow on the configured task queue.

    `replace` swaps activities by their registered name (fault drills in tests).
    """
    activities = activities or build_activities(settings)
    registered: dict[str, Callable[..., Any]] = {
        DELIVER_ACTIVITY: activities.deliver_message,
        DELIVER_BATCH_ACTIVITY: activities.deliver_messages,
        LOAD_PLANS_ACTIVITY: activities.load_plans,
        RECORD_TIMELINE_ACTIVITY: activities.record_timeline,
        **(replace or {}),
    }
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=[CustomerJourneyWorkflow],
        activities=list(registered.values()),
        workflow_runner=workflow_runner(settings.workflow_sandbox),
        workflow_task_poller_behavior=POLLER,
        activity_task_poller_behavior=POLLER,
    )
