"""Typed edges of the staff notification workflow: a staff task told to its assignee as a
WeCom app message."""

from __future__ import annotations

from pydantic import BaseModel

from sopflow.core.state import Delivery

NOTICE_WORKFLOW_NAME = "StaffTaskNotice"
NOTIFY_STAFF_ACTIVITY = "wecom_notify_staff"
# WeCom unreachable or rate-limited: this many attempts, then the notice is recorded
# failed (the task is in the inbox whatever happens here).
NOTICE_ATTEMPTS = 5


def notice_workflow_id(task_id: str) -> str:
    """One notice per task: a task delivered again starts nothing new."""
    return f"task-notice/{task_id}"


class StaffNotice(BaseModel):
    task: Delivery  # the task's delivery: its key is the task id
    url: str  # the console page of the assignee's tasks
