"""Compile playbooks with their taxonomy, tiers and content, and deploy them together."""

from __future__ import annotations

from pathlib import Path

from sopflow.language import compile_paths
from sopflow.language.diagnostics import Diagnostic, PlaybookError
from sopflow.settings import Settings
from sopflow.store.plans import PlanStore


def deploy_paths(
    paths: list[Path], settings: Settings, told: list[Diagnostic] | None = None
) -> list[tuple[str, str, str]]:
    """Compile everything under `paths` and deploy it all, or nothing when one has an error.

    Returns (file, playbook, version) for each deployed playbook; `told` receives the
    warnings and notes (files skipped as not sopflow documents) for the operator.
    """
    bundle = compile_paths(paths)
    if told is not None:
        told += [d for d in bundle.diagnostics if d.severity != "error"]
    bundle.raise_on_errors()
    if not bundle.plans:
        where = str(paths[0]) if paths else "."
        raise PlaybookError([Diagnostic("error", "no playbook (*.yaml) found", where, 1, 1)])
    store = PlanStore(settings.plans_dir)
    store.deploy_all(list(bundle.plans.values()), bundle.profile)
    return [
        (bundle.sources[name].file, name, plan.version)
        for name, plan in sorted(bundle.plans.items())
    ]


def deploy_folder(folder: Path, settings: Settings) -> list[tuple[str, str, str]]:
    return deploy_paths([folder], settings)
