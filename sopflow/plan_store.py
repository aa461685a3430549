"""Compiled plans on disk, addressed by version, and the deployment map (name -> version).

Plans never change once written, so readers can cache them forever; only the small
deployment map changes, and it is replaced atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from sopflow.language.plan import Plan


class PlanStore:
    """A folder of `<version>.json` plans plus `deployments.json`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._deployments_file = folder / "deployments.json"
        self._cached: tuple[float, dict[str, str]] | None = None

    def save(self, plan: Plan) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{plan.version}.json"
        if not target.exists():
            _write_atomically(target, plan.model_dump_json(indent=2))

    def load(self, version: str) -> Plan | None:
        if not version.isalnum():  # versions are hex digests; refuse path tricks
            return None
        path = self.folder / f"{version}.json"
        if not path.exists():
            return None
        return Plan.model_validate_json(path.read_text(encoding="utf-8"))

    def deploy(self, plan: Plan) -> None:
        """Make `plan` the version new journeys of its playbook start on."""
        self.save(plan)
        deployments = dict(self.deployed())
        deployments[plan.name] = plan.version
        _write_atomically(self._deployments_file, json.dumps(deployments, indent=2, sort_keys=True))
        self._cached = None

    def deployed(self) -> dict[str, str]:
        """The current deployment map; re-read only when the file changed."""
        try:
            mtime = self._deployments_file.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        if self._cached is None or self._cached[0] != mtime:
            data = json.loads(self._deployments_file.read_text(encoding="utf-8"))
            self._cached = (mtime, {str(k): str(v) for k, v in data.items()})
        return dict(self._cached[1])


def _write_atomically(target: Path, text: str) -> None:
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(temp, target)
