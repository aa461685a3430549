"""What is deployed: the plan version of each playbook and of the profile rules, and how
a deploy made against an older deployment is merged onto the current one."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

# How a conflict over the profile rules (TagTaxonomy, Tiers) is named; playbook names
# cannot contain spaces, so it never collides with one.
PROFILE_RULES = "the profile rules"


class Deployment(BaseModel):
    """What is deployed: playbook name -> plan version, and the profile rules' version."""

    playbooks: dict[str, str] = Field(default_factory=dict)
    profile: str | None = None

    def versions(self) -> set[str]:
        return set(self.playbooks.values())


class DeploymentChange(BaseModel):
    """What one deploy asks for: these playbook versions, and (when `sets_profile`) these
    profile rules, `None` clearing them. Playbooks it does not name stay as they are."""

    playbooks: dict[str, str] = Field(default_factory=dict)
    profile: str | None = None
    sets_profile: bool = False


@dataclass(frozen=True)
class Merge:
    deployment: Deployment
    # Playbooks (and PROFILE_RULES) that both this deploy and a concurrent one changed,
    # to different versions: the deploy must be refused.
    conflicts: tuple[str, ...]


def merge(base: Deployment, head: Deployment, change: DeploymentChange) -> Merge:
    """Apply `change`, made by someone who saw `base`, on top of `head` (the current).

    Three-way, per playbook: what the deploy leaves as it was in `base` keeps whatever
    `head` has now (a concurrent deploy's change survives); what it changes wins where
    `head` still has the `base` version, or already the same one; anything else is a
    conflict. With `base == head` this is a plain deploy.
    """
    playbooks = dict(head.playbooks)
    conflicts = []
    for name, mine in change.playbooks.items():
        merged, chosen = _three_way(base.playbooks.get(name), head.playbooks.get(name), mine)
        if not merged:
            conflicts.append(name)
        elif chosen is not None:
            playbooks[name] = chosen
    profile = head.profile
    if change.sets_profile:
        merged, chosen = _three_way(base.profile, head.profile, change.profile)
        if merged:
            profile = chosen
        else:
            conflicts.append(PROFILE_RULES)
    return Merge(Deployment(playbooks=playbooks, profile=profile), tuple(conflicts))


def _three_way(base: str | None, head: str | None, mine: str | None) -> tuple[bool, str | None]:
    """(False, None) on a conflict, else (True, the version to keep)."""
    if head in (base, mine):
        return True, mine  # nobody else changed it, or they changed it to the same
    if mine == base:
        return True, head  # only the concurrent deploy changed it: keep theirs
    return False, None
