"""`sopflow deploy`, `sopflow worker` and `sopflow api` as separate processes against one
Temporal and one database, configured only by environment variables, each with its own data
folder: the shape of a cluster deployment (nothing shared but Temporal and the database)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.conftest import REPO, free_port
from tests.helpers import CONDITION_LIMIT_SECONDS

SOPFLOW = [sys.executable, "-m", "cli"]


# Two processes starting (imports, a Temporal connection), then one delivery, each wait
# bounded by CONDITION_LIMIT_SECONDS.
@pytest.mark.timeout(4 * CONDITION_LIMIT_SECONDS)
def test_worker_and_api_run_apart_against_a_configured_temporal(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    api_port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SOPFLOW_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "SOPFLOW_TEMPORAL_TASK_QUEUE": f"split-{api_port}",
        "SOPFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'database' / 'sopflow.db'}",
        "SOPFLOW_API_PORT": str(api_port),
    }
    (tmp_path / "database").mkdir()
    on_host = lambda host: {**env, "SOPFLOW_HOME": str(tmp_path / host)}  # noqa: E731
    deployed = subprocess.run(
        [*SOPFLOW, "deploy", str(REPO / "playbooks")],
        env=on_host("operator-laptop"),
        capture_output=True,
        text=True,
        check=True,
    )
    assert any(line.startswith("deployed welcome ") for line in deployed.stdout.splitlines())
    key = subprocess.run(
        [*SOPFLOW, "keys", "create", "--role", "ingest", "--name", "bridge"],
        env=on_host("operator-laptop"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    processes = [
        subprocess.Popen(
            [*SOPFLOW, "worker"],
            env=on_host("worker-host"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [*SOPFLOW, "api"],
            env=on_host("api-host"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        base = f"http://127.0.0.1:{api_port}"
        _wait(lambda: _answers(f"{base}/healthz"))
        response = httpx.post(
            f"{base}/v1/events",
            json={"customer_id": "split-1", "type": "contact.added"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 202
        log = tmp_path / "worker-host" / "deliveries.jsonl"
        # The file exists a moment before its first line is written: wait for the line.
        _wait(lambda: log.exists() and log.read_text(encoding="utf-8").endswith("\n"))
        [line] = log.read_text(encoding="utf-8").splitlines()
        assert json.loads(line)["idempotency_key"] == "split-1/welcome#1/1"
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=CONDITION_LIMIT_SECONDS)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.TransportError:
        return False


def _wait(probe, timeout: float = CONDITION_LIMIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.1)
