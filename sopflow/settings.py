"""One settings object, read from SOPFLOW_* environment variables (or a .env file)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where sopflow keeps its files and how it reaches Temporal and the outside world."""

    model_config = SettingsConfigDict(env_prefix="SOPFLOW_", env_file=".env", extra="ignore")

    home: Path = Path(".sopflow")
    playbooks_dir: Path = Path("playbooks")

    # Temporal: the embedded dev server by default; a cluster by setting these.
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "sopflow"
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_ca: Path | None = None
    temporal_api_key: SecretStr | None = None
    temporal_ui_port: int = 8233
    # The time-skipping test server cannot register search attributes; everything else can.
    publish_search_attributes: bool = True
    # The customer workflow runs in Temporal's determinism sandbox unless this is false:
    # about a third less worker CPU per event without it (bench/throughput.py).
    workflow_sandbox: bool = True
    # Workflow tasks a worker holds at once. Its activations run one at a time (one
    # Python thread holds the interpreter), so more only queue inside the worker, where
    # Temporal's 10-second workflow task timeout runs: a burst of new customers on a busy
    # worker timed tasks out, and each timeout costs a replay of the whole history
    # (bench/latency.py). Beyond this many they wait on the server, where no timeout runs.
    worker_workflow_tasks: int = Field(default=10, ge=2)

    # The read model: a SQLite file under `home` unless a database URL is given
    # (postgresql://user@host/db for PostgreSQL).
    database_url: str | None = None
    # How often an API checks the database for a new deployment (a one-row version
    # check): a deploy made elsewhere reaches the events it accepts within this long.
    deployment_check_seconds: float = 1.0

    # Events dated further ahead than this are refused (a wrong clock or time zone).
    max_event_skew_seconds: int = 300
    # Events dated before this are refused (a zero date, a wrong epoch).
    earliest_event_time: AwareDatetime = datetime(2000, 1, 1, tzinfo=UTC)
    max_batch_events: int = 1000
    # Bulk enrolment (`sopflow enrol --audience`): at most this many customers signalled
    # per second by one batch, customers read per page of the audience.
    enrolment_rate_per_second: float = 200.0
    enrolment_page_size: int = 1000
    # Months of acquisition reports (new fans, cost per fan) are cut in this zone.
    reporting_timezone: str = "Asia/Shanghai"
    max_request_bytes: int = 2_000_000
    # Browsers may call the API only from these origins; none by default.
    cors_origins: list[str] = []

    # Signs the console's session cookies; every API replica needs the same one. Unset: a
    # random secret kept in <home>/console-secret.
    console_secret: SecretStr | None = None

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # The API's description (/docs, /redoc, /openapi.json) answers without a key: it holds
    # no data, only the routes; false removes it (a deployment that shows no surface).
    api_docs: bool = True

    # Webhook endpoints come from settings, never from playbook YAML: a playbook is shared
    # content, an endpoint and its secret are deployment configuration.
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_timeout_seconds: float = 10.0

    # WeCom (企业微信), settings only like the webhook's: a playbook never holds a secret.
    # `wecom_secret` is the customer-contact secret, or the secret of a self-built app the
    # admin listed among the apps that may call the customer-contact API (docs/wecom.md).
    wecom_corp_id: str | None = None
    wecom_secret: SecretStr | None = None
    # App messages to staff (message/send) need an app's agent id; its secret defaults to
    # wecom_secret (the same self-built app can do both).
    wecom_agent_id: int | None = None
    wecom_app_secret: SecretStr | None = None
    # The callback URL's Token and EncodingAESKey (43 characters), from the admin console.
    wecom_callback_token: SecretStr | None = None
    wecom_callback_aes_key: SecretStr | None = None
    # A signed callback older (or further ahead) than this is refused as a replay; WeCom
    # retries within seconds, so a delivery this late is not WeCom's.
    wecom_callback_max_age_seconds: int = 300
    # Another server (the fake in cli/fake_wecom) for tests and `make dev`.
    wecom_api_base: str = "https://qyapi.weixin.qq.com/cgi-bin"
    # Requests per second per corp from one process, across all APIs. WeCom allows 10,000 a
    # minute and 150,000 an hour per API per corp (doc 90454): 20/s keeps any one API under
    # the hourly cap with room for other processes.
    wecom_requests_per_second: float = 20.0
    # Mass sends (add_msg_template): customers who get the same text from the same staff
    # member within this window share one task, confirmed once (docs/wecom.md).
    wecom_batch_window_seconds: int = 60
    # How often sopflow asks WeCom what became of an unconfirmed task; when it reminds the
    # staff member (at most 3 times a day, WeCom's limit); when it gives up and cancels.
    wecom_poll_seconds: int = 300
    wecom_remind_after_seconds: int | None = 4 * 3600
    wecom_expire_after_seconds: int = 72 * 3600
    # The corp admin's per-customer limit on mass messages, enforced before WeCom refuses:
    # days_in_month (as many a month as the month has days), week (7 a natural week),
    # day (1 a day) or none. Counted in `reporting_timezone`.
    wecom_customer_limit: Literal["days_in_month", "week", "day", "none"] = "days_in_month"
    # Tell each new staff task to its assignee as a WeCom app message (needs
    # wecom_agent_id), with a link to the console at console_base_url.
    wecom_notify_tasks: bool = False
    # Where staff reach the console (links in notices); default http://api_host:api_port.
    console_base_url: str | None = None

    def environment(self) -> dict[str, str]:
        """These settings as SOPFLOW_* variables, for a child process (the worker of
        `sopflow dev`) to read the same ones; unset settings are left out."""
        variables = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                text = value.get_secret_value()
            elif isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, list | dict):
                text = json.dumps(value)
            elif isinstance(value, datetime):
                text = value.isoformat()
            else:
                text = str(value)
            variables[f"SOPFLOW_{name.upper()}"] = text
        return variables

    @property
    def plans_dir(self) -> Path:
        """Where plans lived before they moved into the database; `sopflow dev` imports
        a folder it finds there once (`sopflow plans import` does it for any folder)."""
        return self.home / "plans"

    @property
    def deliveries_log(self) -> Path:
        return self.home / "deliveries.jsonl"

    @property
    def temporal_db(self) -> Path:
        return self.home / "temporal.db"

    @property
    def dev_server_address(self) -> tuple[str, int]:
        host, _, port = self.temporal_address.rpartition(":")
        return host or "127.0.0.1", int(port)
