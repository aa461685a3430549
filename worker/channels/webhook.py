"""The webhook channel: a signed JSON POST carrying the delivery's idempotency key."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx

from sopflow.core.state import Delivery
from worker.channels.base import PermanentDeliveryError

SIGNATURE_HEADER = "X-Sopflow-Signature"
TIMESTAMP_HEADER = "X-Sopflow-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Statuses worth retrying: the receiver may accept the same request later.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` HMAC of `<timestamp>.<body>`; receivers recompute it to verify."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


class WebhookChannel:
    def __init__(self, url: str | None, secret: str | None, timeout_seconds: float) -> None:
        self.url = url
        self.secret = secret
        self._client = httpx.AsyncClient(timeout=timeout_seconds)

    async def deliver(self, delivery: Delivery) -> str | None:
        if not self.url:
            raise PermanentDeliveryError(
                "no webhook URL configured: set SOPFLOW_WEBHOOK_URL for the worker"
            )
        body = json.dumps(delivery.model_dump(mode="json"), ensure_ascii=False).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: delivery.idempotency_key,
            TIMESTAMP_HEADER: timestamp,
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, timestamp, body)
        response = await self._client.post(self.url, content=body, headers=headers)
        status = response.status_code
        if 300 <= status < 400:
            # Redirects are not followed: a signed delivery goes only where it was configured
            # to go, and retrying a redirect for a day would change nothing.
            location = response.headers.get("location")
            raise PermanentDeliveryError(
                f"webhook answered HTTP {status} (a redirect"
                + (f" to {location}" if location else "")
                + "): sopflow does not follow redirects; set SOPFLOW_WEBHOOK_URL to the "
                "final address"
            )
        if 400 <= status < 500 and status not in RETRYABLE_STATUSES:
            raise PermanentDeliveryError(f"webhook refused with HTTP {status}")
        # 5xx and the retryable 4xx raise here; the activity's retry policy backs off.
        response.raise_for_status()
        return f"HTTP {status}"

    async def close(self) -> None:
        await self._client.aclose()
