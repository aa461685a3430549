"""What is deployed: the plan version of each playbook and of the profile rules."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Deployment(BaseModel):
    """What is deployed: playbook name -> plan version, and the profile rules' version."""

    playbooks: dict[str, str] = Field(default_factory=dict)
    profile: str | None = None

    def versions(self) -> set[str]:
        return set(self.playbooks.values())
