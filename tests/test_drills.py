"""Fault drills with exact counts. `make test` runs them small; `make drills` at full size
(SOPFLOW_DRILL_CUSTOMERS=1000)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from temporalio.testing import WorkflowEnvironment

from sopflow.plan_store import PlanStore
from sopflow.readmodel.database import Database
from sopflow.readmodel.tables import DeliveryRecord
from sopflow.settings import Settings
from tests.conftest import REPO
from tests.helpers import WebhookReceiver, send_event, terminate

CUSTOMERS = int(os.environ.get("SOPFLOW_DRILL_CUSTOMERS", "30"))
MESSAGES_EACH = 3

BURST = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: burst}
enrol: {event: contact.added}
stages:
  notify:
    on_enter:
      - send: {channel: webhook, text: "one"}
      - send: {channel: webhook, text: "two"}
      - send: {channel: webhook, text: "three"}
    end: true
"""


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "sopflow", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_until(probe, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, "drill did not converge in time"
        time.sleep(0.1)


@pytest.mark.timeout(900)
async def test_kill_9_the_worker_mid_burst_and_every_delivery_arrives_once(
    dev_env: WorkflowEnvironment, tmp_path: Path, make_plan
) -> None:
    receiver = WebhookReceiver()
    queue = f"drill-{tmp_path.name[-8:]}"
    settings = Settings(
        home=tmp_path / "home",
        temporal_task_queue=queue,
        publish_search_attributes=False,
        webhook_url=receiver.url,
    )
    PlanStore(settings.plans_dir).deploy(make_plan(BURST))
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SOPFLOW_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "SOPFLOW_TEMPORAL_TASK_QUEUE": queue,
        "SOPFLOW_HOME": str(settings.home),
        "SOPFLOW_WEBHOOK_URL": receiver.url,
        "SOPFLOW_PUBLISH_SEARCH_ATTRIBUTES": "false",
    }
    expected = CUSTOMERS * MESSAGES_EACH
    customers = [f"{queue}-{i}" for i in range(CUSTOMERS)]
    worker = start_worker(env)
    try:
        for customer in customers:
            await send_event(dev_env.client, settings, customer, "contact.added", "add")
        # Let part of the burst through, then kill the worker without warning.
        wait_until(lambda: len(receiver.received) >= min(expected // 3, 20), timeout=120)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        killed_at = len(receiver.received)
        worker = start_worker(env)
        keys = lambda: {r.headers["Idempotency-Key"] for r in receiver.received}  # noqa: E731
        wait_until(lambda: len(keys()) >= expected, timeout=600)
        time.sleep(2)  # anything still to come would be a duplicate
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        await terminate(dev_env.client, *customers)
        receiver.close()
    posts = [r.headers["Idempotency-Key"] for r in receiver.received]
    assert set(posts) == {
        f"{c}/burst#1/{n}" for c in customers for n in range(1, MESSAGES_EACH + 1)
    }
    database = Database.from_settings(settings)
    with database.session() as session:
        recorded = session.scalar(select(func.count()).select_from(DeliveryRecord))
    database.dispose()
    assert recorded == expected  # the ledger holds each effect once
    # A POST the remote answered just before the kill, whose ledger write never happened,
    # is sent again with the same Idempotency-Key: receivers drop it. Only those repeat.
    repeats = len(posts) - len(set(posts))
    assert repeats <= 8, f"{repeats} repeated POSTs (killed at {killed_at} of {expected})"
    assert 0 < killed_at < expected  # the kill really fell mid-burst
