"""Typed edges of the tag refresh: a staff member's edit of a customer in WeCom
(`edit_external_contact`, which carries no tags) read back with `externalcontact/get`."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

TAG_REFRESH_WORKFLOW_NAME = "WeComTagRefresh"
REFRESH_TAGS_ACTIVITY = "wecom_refresh_tags"
# WeCom unreachable or rate-limited: this many attempts, then the edit's tags are left
# as they were (logged); the next edit refreshes them again.
REFRESH_ATTEMPTS = 10


def tag_refresh_workflow_id(callback_key: str) -> str:
    """One refresh per callback: a repeated delivery starts nothing new."""
    return f"wecom-tag-refresh/{callback_key}"


class TagRefresh(BaseModel):
    customer_id: str
    staff_user_id: str
    occurred_at: datetime  # the callback's
    callback_key: str  # the events' keys derive from it
