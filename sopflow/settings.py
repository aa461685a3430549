"""One settings object, read from SOPFLOW_* environment variables (or a .env file)."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
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

    # The read model: a SQLite file under `home` unless a database URL is given
    # (postgresql://user@host/db for PostgreSQL).
    database_url: str | None = None
    # How often an API checks the database for a new deployment (a one-row version
    # check): a deploy made elsewhere reaches the events it accepts within this long.
    deployment_check_seconds: float = 1.0

    # Events dated further ahead than this are refused (a wrong clock or time zone).
    max_event_skew_seconds: int = 300
    max_batch_events: int = 1000
    # Months of acquisition reports (new fans, cost per fan) are cut in this zone.
    reporting_timezone: str = "Asia/Shanghai"
    max_request_bytes: int = 2_000_000
    # Browsers may call the API only from these origins; none by default.
    cors_origins: list[str] = []

    api_host: str = "127.0.0.1"
    api_port: int = 8000

    # Webhook endpoints come from settings, never from playbook YAML: a playbook is shared
    # content, an endpoint and its secret are deployment configuration.
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_timeout_seconds: float = 10.0

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
