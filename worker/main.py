"""Worker wiring: the subjects' workflow, its activities and the channel adapters (and,
with WeCom configured, the sender workflow of each staff member)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from temporalio.client import Client
from temporalio.worker import PollerBehaviorAutoscaling, Worker

from sopflow.errors import SopflowError
from sopflow.language.channels import (
    CHANNELS,
    ENROLMENT_CHANNEL,
    TASK_CHANNEL,
    WECOM_TAG_CHANNEL,
    Channel,
)
from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.ledger import Ledger
from sopflow.store.plans import PlanStore
from worker.activities import SopflowActivities
from worker.channels.base import ChannelAdapter
from worker.channels.enrolment import EnrolmentChannel
from worker.channels.log import LogChannel
from worker.channels.webhook import WebhookChannel
from worker.enrolment_activities import EnrolmentActivities
from worker.wecom.client import WeComClient
from worker.wecom.notify import NotifyingTaskChannel
from worker.wecom.wiring import sender_parts, wecom_channels, wecom_configured
from workflows.contracts import (
    DELIVER_ACTIVITY,
    DELIVER_BATCH_ACTIVITY,
    LOAD_PLANS_ACTIVITY,
    RECORD_TIMELINE_ACTIVITY,
)
from workflows.customer_workflow import CustomerJourneyWorkflow
from workflows.enrolment_contracts import AUDIENCE_PAGE_ACTIVITY, ENROL_CUSTOMERS_ACTIVITY
from workflows.enrolment_workflow import EnrolmentBatchWorkflow
from workflows.sandbox import workflow_runner

# Pollers scale with the backlog: with the default fixed pollers a burst of new customers
# waits on a handful of polls (measured: about twice the first-task throughput).
POLLER = PollerBehaviorAutoscaling()


def build_channels(
    settings: Settings,
    temporal: Client | None = None,
    wecom: WeComClient | None = None,
    plans: PlanStore | None = None,
) -> dict[str, ChannelAdapter]:
    """An adapter for every channel of the registry; a channel without one is a bug that
    must stop the worker at start, not fail deliveries one by one. With a Temporal client
    a group's `enrol_member` reaches the member's workflow (else it is logged); with a
    WeCom client the wecom.* channels reach WeCom (else they are logged)."""
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
        # Without WeCom, tags stay on sopflow's profiles; this file says what WeCom would
        # have been asked.
        WECOM_TAG_CHANNEL: LogChannel(settings.home / "wecom-tags.jsonl"),
        ENROLMENT_CHANNEL: (
            EnrolmentChannel(temporal, settings, plans.deployment)
            if temporal is not None and plans is not None
            else log
        ),
    }
    if wecom is not None and temporal is not None and plans is not None:
        adapters.update(wecom_channels(settings, wecom, temporal, plans.database))
        if settings.wecom_notify_tasks:
            adapters[TASK_CHANNEL] = NotifyingTaskChannel(
                adapters[TASK_CHANNEL], temporal, settings
            )
    missing = sorted(set(CHANNELS) - set(adapters))
    if missing:
        raise SopflowError(f"no adapter for channels: {', '.join(missing)}")
    return {str(name): adapter for name, adapter in adapters.items()}


def build_activities(
    settings: Settings,
    database: Database | None = None,
    temporal: Client | None = None,
    wecom: WeComClient | None = None,
) -> SopflowActivities:
    """The activities with their adapters; the read model's schema is upgraded here, so a
    new worker version brings its tables."""
    database = database or Database.from_settings(settings)
    # Plans come from the read model: workers on other hosts need nothing shared but it
    # and Temporal.
    plans = PlanStore(database)
    return SopflowActivities(
        plans, build_channels(settings, temporal, wecom, plans), Ledger(database)
    )


def build_worker(
    client: Client,
    settings: Settings,
    activities: SopflowActivities | None = None,
    replace: Mapping[str, Callable[..., Any]] | None = None,
    wecom: WeComClient | None = None,
) -> Worker:
    """A worker for the subjects' workflow on the configured task queue, and the sender
    workflow when WeCom is configured (or a client is handed in).

    `replace` swaps activities by their registered name (fault drills in tests).
    """
    if wecom is None and wecom_configured(settings):
        wecom = WeComClient.from_settings(settings)
    database = Database.from_settings(settings) if activities is None or wecom else None
    activities = activities or build_activities(settings, database, client, wecom)
    enrolment = EnrolmentActivities(activities.plan_store, client, settings)
    workflows: list[type] = [CustomerJourneyWorkflow, EnrolmentBatchWorkflow]
    extra: list[Callable[..., Any]] = []
    if wecom is not None and database is not None:
        sender_workflows, extra = sender_parts(settings, wecom, database, client)
        workflows += sender_workflows
    registered: dict[str, Callable[..., Any]] = {
        DELIVER_ACTIVITY: activities.deliver_message,
        DELIVER_BATCH_ACTIVITY: activities.deliver_messages,
        LOAD_PLANS_ACTIVITY: activities.load_plans,
        RECORD_TIMELINE_ACTIVITY: activities.record_timeline,
        AUDIENCE_PAGE_ACTIVITY: enrolment.audience_page,
        ENROL_CUSTOMERS_ACTIVITY: enrolment.enrol_customers,
        **(replace or {}),
    }
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=workflows,
        activities=[*registered.values(), *extra],
        workflow_runner=workflow_runner(settings.workflow_sandbox),
        max_concurrent_workflow_tasks=settings.worker_workflow_tasks,
        workflow_task_poller_behavior=POLLER,
        activity_task_poller_behavior=POLLER,
    )
