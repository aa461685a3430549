"""Worker wiring: the customer workflow, its activities and the channel adapters."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from sopflow.plan_store import PlanStore
from sopflow.settings import Settings
from worker.activities import SopflowActivities
from worker.channels.base import ChannelAdapter
from worker.channels.log import LogChannel
from worker.channels.webhook import WebhookChannel
from workflows.customer_workflow import CustomerJourneyWorkflow

# The pure core and the plan models are deterministic; passing them through the sandbox
# avoids re-importing pydantic for every workflow run (and the deadlock detector with it).
PASSTHROUGH_MODULES = (
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "sopflow.language",
    "cel",
    "jinja2",
    "markupsafe",
    "croniter",
    "dateutil",
    "zoneinfo",
    "workflows.actions",
    "workflows.clock",
    "workflows.context",
    "workflows.profile",
    "workflows.step",
    "workflows.triggers",
    "workflows.contracts",
    "workflows.journey",
    "workflows.state",
)


def build_channels(settings: Settings) -> dict[str, ChannelAdapter]:
    log = LogChannel(settings.deliveries_log)
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    webhook = WebhookChannel(settings.webhook_url, secret, settings.webhook_timeout_seconds)
    # Until a WeCom adapter exists, wecom.* deliveries are logged with their channel.
    return {
        "log": log,
        "wecom.private": log,
        "wecom.group": log,
        "wecom.moments": log,
        "webhook": webhook,
        # Staff tasks are recorded beside the messages until the read model holds them.
        "task": LogChannel(settings.home / "tasks.jsonl"),
    }


def build_worker(client: Client, settings: Settings) -> Worker:
    """A worker for the customer workflow on the configured task queue."""
    activities = SopflowActivities(PlanStore(settings.plans_dir), build_channels(settings))
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=[CustomerJourneyWorkflow],
        activities=[activities.deliver_message, activities.load_plans],
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
        ),
    )
