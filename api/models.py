"""Request and response models of the API, kept apart from the workflow's own models."""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from sopflow.language.models import EVENT_TYPE_PATTERN

CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
# Deployment numbers are PostgreSQL integers.
MAX_DEPLOYMENT = 2**31 - 1


def deployment_etag(deployment: int) -> str:
    """A deployment's ETag: its number, quoted."""
    return f'"{deployment}"'


# 1 to 200 characters, none of them a control character.
IDEMPOTENCY_KEY_PATTERN = r"^[^\x00-\x1f\x7f]{1,200}$"


class EventIn(BaseModel):
    """A customer event sent by an API client (the WeCom bridge, the shop, the CRM)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "wx_42",
                    "type": "contact.added",
                    "occurred_at": "2026-11-23T09:30:00+08:00",
                    "data": {"channel_code": "store_qr_01"},
                    "idempotency_key": "wecom-callback-8f2a",
                }
            ]
        },
    )

    customer_id: str = Field(pattern=CUSTOMER_ID_PATTERN, description="Your id for the customer.")
    type: str = Field(
        pattern=EVENT_TYPE_PATTERN,
        max_length=100,
        description="Event type, e.g. contact.added, message.received.",
    )
    occurred_at: AwareDatetime | None = Field(
        default=None, description="When it happened, with a time zone; default: now."
    )
    data: dict[str, Any] = Field(default_factory=dict, description="Event attributes.")
    idempotency_key: str | None = Field(
        default=None,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Repeat an event with the same key and it has no second effect, however "
        "late; a key reused for a different event is refused (409). At most 200 printable "
        "characters. Default: a new key, so a retried request without one counts twice.",
    )


class EventAccepted(BaseModel):
    customer_id: str
    idempotency_key: str
    workflow_id: str
    duplicate: bool = Field(
        default=False,
        description="True when this key was accepted before for the same event: nothing "
        "was sent again.",
    )


class ErrorDetail(BaseModel):
    field: str | None = Field(default=None, description="The refused field, e.g. events.3.type.")
    message: str
    limit: str | None = Field(
        default=None, description="The limit it broke, with the setting that sets it, if any."
    )
    nearest: str | None = Field(default=None, description="The nearest valid value or name.")


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    """The one error shape of every endpoint."""

    error: ErrorBody
