"""Compile playbooks and make them the deployed versions in the plan store."""

from __future__ import annotations

from pathlib import Path

from sopflow.language import compile_playbook_file
from sopflow.language.diagnostics import Diagnostic, PlaybookError
from sopflow.plan_store import PlanStore
from sopflow.settings import Settings


def playbook_files(paths: list[Path]) -> list[Path]:
    """The YAML playbooks named or found below `paths` (scenario folders excluded)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                p
                for p in sorted(path.rglob("*.y*ml"))
                if p.suffix in (".yaml", ".yml") and "scenarios" not in p.parts
            )
        else:
            found.append(path)
    return found


def deploy_folder(folder: Path, settings: Settings) -> list[tuple[Path, str, str]]:
    """Compile every playbook in `folder` and deploy them all, or none when one is broken."""
    plans, problems = [], []
    for path in playbook_files([folder]):
        try:
            plans.append((path, compile_playbook_file(path)))
        except PlaybookError as e:
            problems.extend(e.diagnostics)
    if problems:
        raise PlaybookError(problems)
    if not plans:
        raise PlaybookError([Diagnostic("error", "no playbook (*.yaml) found", str(folder), 1, 1)])
    store = PlanStore(settings.plans_dir)
    for _, plan in plans:
        store.deploy(plan)
    return [(path, plan.name, plan.version) for path, plan in plans]
