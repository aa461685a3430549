"""The WeCom adapter's I/O: the async API client (the protocol itself is in sopflow.wecom)."""

from sopflow.wecom.errors import (
    WeComError,
    WeComNotConfigured,
    WeComProtocolError,
    WeComRateLimited,
    WeComUnavailable,
)
from worker.wecom.client import AccessTokenCache, TokenBucket, WeComClient

__all__ = [
    "AccessTokenCache",
    "TokenBucket",
    "WeComClient",
    "WeComError",
    "WeComNotConfigured",
    "WeComProtocolError",
    "WeComRateLimited",
    "WeComUnavailable",
]
