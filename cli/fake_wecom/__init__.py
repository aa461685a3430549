"""A fake WeCom server for tests and `make dev`: WeCom's HTTP contract with in-memory state.

`python -m cli.fake_wecom --port 8900` serves WeCom's API under `/cgi-bin` (point
SOPFLOW_WECOM_API_BASE at `http://127.0.0.1:8900/cgi-bin`) and test hooks under `/_fake`
(listed at `/_fake/docs`). Tests use `create_app` with httpx's ASGI transport, or
`FakeWeCom` and `CallbackGenerator` directly.
"""

from cli.fake_wecom.app import create_app
from cli.fake_wecom.callbacks import CallbackGenerator, SignedCallback
from cli.fake_wecom.state import (
    DEV_AGENT_ID,
    DEV_APP_SECRET,
    DEV_CALLBACK_AES_KEY,
    DEV_CALLBACK_TOKEN,
    DEV_CORP_ID,
    DEV_SECRET,
    FakeClock,
    FakeConfig,
    FakeWeCom,
)

__all__ = [
    "DEV_AGENT_ID",
    "DEV_APP_SECRET",
    "DEV_CALLBACK_AES_KEY",
    "DEV_CALLBACK_TOKEN",
    "DEV_CORP_ID",
    "DEV_SECRET",
    "CallbackGenerator",
    "FakeClock",
    "FakeConfig",
    "FakeWeCom",
    "SignedCallback",
    "create_app",
]
