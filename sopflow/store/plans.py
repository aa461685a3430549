"""Compiled plans on disk, addressed by version, and the current deployment.

Plans never change once written, so readers can cache them forever; only the small
deployment file changes, and it is replaced atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from sopflow.core.deployment import Deployment
from sopflow.language.plan import Plan, ProfilePlan


class PlanStore:
    """A folder of `<version>.json` plans, `profile-<version>.json`, and `deployment.json`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._deployment_file = folder / "deployment.json"
        self._cached: tuple[int, Deployment] | None = None

    def save(self, plan: Plan | ProfilePlan) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        prefix = "profile-" if isinstance(plan, ProfilePlan) else ""
        target = self.folder / f"{prefix}{plan.version}.json"
        if not target.exists():
            _write_atomically(target, plan.model_dump_json(indent=2))

    def load(self, version: str) -> Plan | None:
        text = self._read(version, "")
        return Plan.model_validate_json(text) if text else None

    def load_profile(self, version: str) -> ProfilePlan | None:
        text = self._read(version, "profile-")
        return ProfilePlan.model_validate_json(text) if text else None

    def _read(self, version: str, prefix: str) -> str | None:
        if not version.isalnum():  # versions are hex digests; refuse path tricks
            return None
        path = self.folder / f"{prefix}{version}.json"
        return path.read_text(encoding="utf-8") if path.exists() else None

    def versions_of(self, name: str) -> list[Plan]:
        """Every stored version of a playbook (a folder scan: versions are few)."""
        found = []
        for path in sorted(self.folder.glob("*.json")):
            if path.name.startswith(("profile-", "deployment", ".")):
                continue
            plan = Plan.model_validate_json(path.read_text(encoding="utf-8"))
            if plan.name == name:
                found.append(plan)
        return found

    def deploy(self, plan: Plan) -> None:
        """Make `plan` the version new journeys of its playbook start on."""
        self.deploy_all([plan], profile=None, keep_profile=True)

    def deploy_all(
        self, plans: list[Plan], profile: ProfilePlan | None, keep_profile: bool = False
    ) -> Deployment:
        """Deploy several plans (and the profile rules) in one atomic change."""
        for plan in plans:
            self.save(plan)
        current = self.deployment()
        playbooks = {**current.playbooks, **{p.name: p.version for p in plans}}
        if profile is not None:
            self.save(profile)
        profile_version = (
            current.profile if keep_profile else (profile.version if profile else None)
        )
        deployment = Deployment(playbooks=playbooks, profile=profile_version)
        _write_atomically(self._deployment_file, deployment.model_dump_json(indent=2))
        self._cached = None
        return deployment

    def deployment(self) -> Deployment:
        """The current deployment; re-read only when the file changed."""
        try:
            mtime = self._deployment_file.stat().st_mtime_ns
        except FileNotFoundError:
            return Deployment()
        if self._cached is None or self._cached[0] != mtime:
            text = self._deployment_file.read_text(encoding="utf-8")
            self._cached = (mtime, Deployment.model_validate(json.loads(text)))
        return self._cached[1]

    def deployed(self) -> dict[str, str]:
        return dict(self.deployment().playbooks)


def _write_atomically(target: Path, text: str) -> None:
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(temp, target)
