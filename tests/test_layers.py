"""The layers hold by themselves: `make lint` (import-linter) refuses an import that goes up a
layer or pulls Temporal or I/O into the pure core."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("sopflow", "workflows", "worker", "api", "cli")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_copy(tmp_path: Path, add: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the project's contracts on a copy of the tree with lines added to some modules."""
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    for module, line in add.items():
        path = tmp_path / module
        path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tree_as_committed_keeps_every_contract(tmp_path: Path) -> None:
    result = lint_copy(tmp_path, {})
    assert result.returncode == 0, result.stdout
    assert "Contracts: 3 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    "module,line,contract",
    [
        ("sopflow/core/step.py", "import temporalio", "The pure layers import neither"),
        ("sopflow/language/plan.py", "import sopflow.core.state", "Layers"),
        ("api/app.py", "import worker.main", "Layers"),
        ("workflows/contracts.py", "import sopflow.store.ledger", "Layers"),
        ("sopflow/store/ledger.py", "import api.app", "The foundation (sopflow) imports nothing"),
    ],
)
def test_an_import_that_breaks_a_layer_fails_lint(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    result = lint_copy(tmp_path, {module: line})
    assert result.returncode != 0
    broken = [row for row in result.stdout.splitlines() if row.endswith("BROKEN")]
    assert any(row.startswith(contract) for row in broken), result.stdout
