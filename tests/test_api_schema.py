"""schemathesis against the running API's own OpenAPI schema: no input makes it fail 5xx."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import DevProcess

# schemathesis is CPU-bound: about a minute on an idle machine; the run's own limit below
# bounds a failure on a busy one.
SCHEMATHESIS_LIMIT_SECONDS = 900


@pytest.mark.timeout(SCHEMATHESIS_LIMIT_SECONDS + 300)
def test_no_generated_request_makes_the_api_fail(tmp_path: Path) -> None:
    dev = DevProcess(tmp_path)
    dev.start()
    try:
        key = (tmp_path / ".sopflow" / "dev-operator.key").read_text().strip()
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "st"),
                "run",
                f"http://127.0.0.1:{dev.api_port}/openapi.json",
                "--header",
                f"Authorization: Bearer {key}",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "15",
                "--generation-deterministic",
            ],
            capture_output=True,
            text=True,
            timeout=SCHEMATHESIS_LIMIT_SECONDS,
        )
    finally:
        code, _ = dev.stop()
    assert result.returncode == 0, result.stdout[-4000:]
    assert "Tested: 18" in result.stdout or "Tested:" in result.stdout
    assert code == 0
