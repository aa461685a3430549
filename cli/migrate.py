"""`sopflow migrate`: move in-flight journeys from an older plan version, when asked.

The customers are found through Temporal's visibility (the SopflowVersions and
SopflowStages search attributes); each customer's workflow gets a `migrate` signal and
applies it between two steps. Visibility is eventually consistent: a customer enrolled a
second before the command may be missed, and running it again is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client

from sopflow.core.deployment import Deployment
from sopflow.core.state import MigrationOrder
from sopflow.errors import SopflowError
from sopflow.language.plan import MigrationPlan, Plan
from sopflow.store.plans import PlanStore
from workflows.contracts import MIGRATE_SIGNAL, MigrationSignal


@dataclass(frozen=True)
class MigrationStep:
    stage: str
    target: str
    customers: int


def stage_map(old: Plan, new: Plan, migration: MigrationPlan) -> dict[str, str]:
    """Every stage of the old version -> its stage in the new one, or an error naming gaps."""
    unknown = sorted(set(migration.stages) - set(old.stages))
    if unknown:
        raise SopflowError(
            f"the migration maps stages that version {old.version} does not "
            f"have: {', '.join(unknown)}"
        )
    mapping = {stage: migration.stages.get(stage, stage) for stage in old.stages}
    stranded = sorted(s for s, target in mapping.items() if target not in new.stages)
    if stranded:
        raise SopflowError(
            f"stages of {old.version} with no place in {new.version}: {', '.join(stranded)}; "
            "map them under migrations[].stages"
        )
    return mapping


def find_migration(new: Plan, from_version: str) -> MigrationPlan:
    for migration in new.migrations:
        if migration.from_version == from_version:
            return migration
    raise SopflowError(
        f"playbook '{new.name}' declares no migration from {from_version}: add "
        f"`migrations: [{{from: {from_version}, stages: {{old_stage: new_stage}}}}]`"
    )


async def plan_steps(client: Client, old: Plan, mapping: dict[str, str]) -> list[MigrationStep]:
    """How many in-flight customers each stage of the old version would move."""
    steps = []
    for stage, target in mapping.items():
        query = (
            f"SopflowVersions = '{old.name}@{old.version}' AND SopflowStages = '{old.name}:{stage}'"
        )
        count = await client.count_workflows(query)
        steps.append(MigrationStep(stage, target, count.count))
    return steps


async def migrate(
    client: Client, store: PlanStore, new: Plan, from_version: str, *, dry_run: bool
) -> tuple[list[MigrationStep], int]:
    """Count (and unless dry_run, signal) the customers on `from_version`."""
    old = store.load(from_version)
    if old is None:
        raise SopflowError(f"no plan version {from_version} in the plan store")
    if old.name != new.name:
        raise SopflowError(f"version {from_version} belongs to '{old.name}', not '{new.name}'")
    mapping = stage_map(old, new, find_migration(new, from_version))
    steps = await plan_steps(client, old, mapping)
    if dry_run:
        return steps, 0
    store.save(new)  # workers load the new version by its hash
    signal = MigrationSignal(
        order=MigrationOrder(
            playbook=new.name, from_version=from_version, to_version=new.version, stages=mapping
        ),
        deployment=Deployment(playbooks={new.name: new.version}),
    )
    signalled = 0
    async for execution in client.list_workflows(
        f"SopflowVersions = '{old.name}@{old.version}' AND ExecutionStatus = 'Running'"
    ):
        await client.get_workflow_handle(execution.id).signal(MIGRATE_SIGNAL, signal)
        signalled += 1
    return steps, signalled
