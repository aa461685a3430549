"""Channel adapters against real files and a real local HTTP server."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from sopflow.core.state import Delivery
from sopflow.errors import SopflowError
from sopflow.language.channels import CHANNELS, ChannelSpec
from sopflow.settings import Settings
from tests.helpers import WebhookReceiver
from worker.channels.base import PermanentDeliveryError
from worker.channels.log import LogChannel
from worker.channels.webhook import WebhookChannel, sign
from worker.main import build_channels

DELIVERY = Delivery(
    idempotency_key="c1/welcome#1/1",
    customer_id="c1",
    playbook="welcome",
    journey_id="welcome#1",
    stage="icebreak",
    channel="webhook",
    text="你好",
    scheduled_at=datetime(2026, 11, 23, 9, tzinfo=UTC),
)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    yield server
    server.close()


async def test_log_channel_appends_one_json_line_per_delivery(tmp_path: Path) -> None:
    channel = LogChannel(tmp_path / "sub" / "deliveries.jsonl")
    await channel.deliver(DELIVERY)
    await channel.deliver(DELIVERY.model_copy(update={"channel": "wecom.private"}))
    lines = [json.loads(x) for x in (tmp_path / "sub/deliveries.jsonl").read_text().splitlines()]
    assert [(x["channel"], x["text"], x["idempotency_key"]) for x in lines] == [
        ("webhook", "你好", "c1/welcome#1/1"),
        ("wecom.private", "你好", "c1/welcome#1/1"),
    ]


async def test_webhook_posts_signed_json_with_the_idempotency_key(
    receiver: WebhookReceiver,
) -> None:
    channel = WebhookChannel(receiver.url, "s3cret", timeout_seconds=5)
    assert await channel.deliver(DELIVERY) == "HTTP 200"
    await channel.close()
    [request] = receiver.received
    assert request.headers["Idempotency-Key"] == "c1/welcome#1/1"
    assert request.json()["text"] == "你好"
    expected = sign("s3cret", request.headers["X-Sopflow-Timestamp"], request.body)
    assert request.headers["X-Sopflow-Signature"] == expected
    assert sign("other", request.headers["X-Sopflow-Timestamp"], request.body) != expected


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
async def test_webhook_4xx_is_permanent(receiver: WebhookReceiver, status: int) -> None:
    receiver.default_status = status
    channel = WebhookChannel(receiver.url, None, timeout_seconds=5)
    with pytest.raises(PermanentDeliveryError, match=f"webhook refused with HTTP {status}"):
        await channel.deliver(DELIVERY)
    await channel.close()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_webhook_redirect_is_a_permanent_failure_with_a_clear_reason(
    receiver: WebhookReceiver, status: int
) -> None:
    # Retrying a redirect for a day changes nothing, and a signed delivery goes only where
    # it was configured to go.
    receiver.default_status = status
    receiver.headers = {"Location": "https://crm.example.com/new-hook"}
    channel = WebhookChannel(receiver.url, None, timeout_seconds=5)
    with pytest.raises(PermanentDeliveryError) as refused:
        await channel.deliver(DELIVERY)
    await channel.close()
    assert str(refused.value) == (
        f"webhook answered HTTP {status} (a redirect to https://crm.example.com/new-hook): "
        "sopflow does not follow redirects; set SOPFLOW_WEBHOOK_URL to the final address"
    )
    assert len(receiver.received) == 1  # not followed


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_webhook_5xx_and_429_are_retryable(receiver: WebhookReceiver, status: int) -> None:
    receiver.default_status = status
    channel = WebhookChannel(receiver.url, None, timeout_seconds=5)
    with pytest.raises(httpx.HTTPStatusError):
        await channel.deliver(DELIVERY)
    await channel.close()


async def test_unreachable_webhook_is_retryable() -> None:
    from tests.conftest import free_port

    channel = WebhookChannel(f"http://127.0.0.1:{free_port()}/hook", None, timeout_seconds=2)
    with pytest.raises(httpx.ConnectError):
        await channel.deliver(DELIVERY)
    await channel.close()


async def test_webhook_without_url_says_which_setting_to_set() -> None:
    channel = WebhookChannel(None, None, timeout_seconds=5)
    with pytest.raises(PermanentDeliveryError, match="set SOPFLOW_WEBHOOK_URL"):
        await channel.deliver(DELIVERY)
    await channel.close()


def test_every_channel_of_the_registry_has_an_adapter(settings: Settings) -> None:
    assert set(build_channels(settings)) == set(CHANNELS)


def test_a_channel_without_an_adapter_stops_the_worker_at_start(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(CHANNELS, "sms", ChannelSpec("sms", "a text message", True, local=False))
    with pytest.raises(SopflowError, match="no adapter for channels: sms"):
        build_channels(settings)
