"""Compile playbooks with their taxonomy, tiers and content, and deploy them together; the
folder format of `sopflow plans export` and `import`."""

from __future__ import annotations

import getpass
import json
import socket
from pathlib import Path

from sopflow.core.deployment import Deployment
from sopflow.errors import SopflowError
from sopflow.language import compile_paths
from sopflow.language.diagnostics import Diagnostic, PlaybookError
from sopflow.language.plan import Plan, ProfilePlan
from sopflow.store.plans import DeploymentRecord, PlanStore
from sopflow.store.segments import save_segments

DEPLOYMENT_FILE = "deployment.json"


def deployer() -> str:
    """Who deploys from this shell: `user@host`, as the history shows it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def deploy_paths(
    paths: list[Path],
    store: PlanStore,
    *,
    by: str | None = None,
    source: str = "cli",
    told: list[Diagnostic] | None = None,
    base: int | None = None,
) -> tuple[DeploymentRecord, list[tuple[str, str, str]]]:
    """Compile everything under `paths` and deploy it all, or nothing when one has an error.

    The deploy is based on the deployment its own transaction reads. Returns the new
    deployment and (file, playbook, version) for each deployed playbook; `told` receives
    the warnings and notes (files skipped as not sopflow documents) for the operator.
    Paths with no TagTaxonomy or Tiers keep the deployed profile rules (never cleared by
    a deploy that does not carry them); `base` names the deployment the caller started
    from, so deploys made since are merged rather than replaced (or refused).
    """
    bundle = compile_paths(paths)
    if told is not None:
        told += [d for d in bundle.diagnostics if d.severity != "error"]
    bundle.raise_on_errors()
    if not bundle.plans:
        where = str(paths[0]) if paths else "."
        raise PlaybookError([Diagnostic("error", "no playbook (*.yaml) found", where, 1, 1)])
    record = store.deploy_all(
        list(bundle.plans.values()),
        bundle.profile,
        bundle.profile is None,
        base=base,
        by=by or deployer(),
        source=source,
    )
    # Audiences are named segments, not versions: saved by name, the newest wins.
    save_segments(store.database, list(bundle.segments.values()), by or deployer())
    return record, [
        (bundle.sources[name].file, name, plan.version)
        for name, plan in sorted(bundle.plans.items())
    ]


def export_folder(store: PlanStore, folder: Path) -> int:
    """Write every stored plan (`<version>.json`, `profile-<version>.json`) and the current
    deployment (`deployment.json`) to `folder`: the layout of the old folder store.
    Returns how many plans were written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for plan in store.every_plan():
        prefix = "profile-" if isinstance(plan, ProfilePlan) else ""
        (folder / f"{prefix}{plan.version}.json").write_text(
            plan.model_dump_json(indent=2), encoding="utf-8"
        )
        written += 1
    current = store.current()
    deployment = current.deployment if current else Deployment()
    (folder / DEPLOYMENT_FILE).write_text(deployment.model_dump_json(indent=2), encoding="utf-8")
    return written


def import_folder(
    store: PlanStore, folder: Path, *, by: str | None = None, source: str = "import"
) -> tuple[int, DeploymentRecord | None]:
    """Store every plan of an exported folder (or of the old `.sopflow/plans/`), then
    deploy its `deployment.json` when it has one, on top of the current deployment.
    Returns how many plans were read and the new deployment."""
    if not folder.is_dir():
        raise SopflowError(f"{folder}: not a folder")
    plans: dict[str, Plan] = {}
    profiles: dict[str, ProfilePlan] = {}
    for path in sorted(folder.glob("*.json")):
        if path.name == DEPLOYMENT_FILE or path.name.startswith("."):
            continue
        try:
            text = path.read_text(encoding="utf-8")
            if path.name.startswith("profile-"):
                profile = ProfilePlan.model_validate_json(text)
                profiles[profile.version] = profile
            else:
                plan = Plan.model_validate_json(text)
                plans[plan.version] = plan
        except ValueError as e:
            raise SopflowError(f"{path}: not a sopflow plan ({_first_line(e)})") from e
    stored: list[Plan | ProfilePlan] = [*plans.values(), *profiles.values()]
    for plan_or_profile in stored:
        store.save(plan_or_profile)
    deployment_file = folder / DEPLOYMENT_FILE
    if not deployment_file.exists():
        return len(plans) + len(profiles), None
    try:
        wanted = Deployment.model_validate(json.loads(deployment_file.read_text("utf-8")))
    except ValueError as e:
        raise SopflowError(f"{deployment_file}: not a deployment ({_first_line(e)})") from e
    wrong = [
        f"{n} -> {v}" for n, v in wanted.playbooks.items() if v in plans and plans[v].name != n
    ]
    if wrong:
        raise SopflowError(f"{deployment_file} names plans of other playbooks: {', '.join(wrong)}")
    wanted_versions = [*wanted.playbooks.values(), *([wanted.profile] if wanted.profile else [])]
    missing = [v for v in wanted_versions if v not in plans and v not in profiles]
    if missing:
        raise SopflowError(
            f"{deployment_file} deploys versions the folder does not hold: {', '.join(missing)}"
        )
    record = store.deploy_all(
        [plans[v] for v in wanted.playbooks.values()],
        profiles[wanted.profile] if wanted.profile else None,
        by=by or deployer(),
        source=source,
    )
    return len(plans) + len(profiles), record


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0]
