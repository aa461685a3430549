"""Plans, deployments and their history, in the read model.

Plans are immutable and addressed by version (a content hash), so readers cache them
forever. Deployments are numbered rows that are only ever inserted: deployment N+1 is
written by inserting id N+1 in the transaction that read N, so of two deploys that read
the same N only one can commit (the primary key refuses the other). The other is then
merged onto the new current deployment when it changed other playbooks, or refused with
`DeploymentConflict` when both changed the same one; it is never lost.

The current deployment is what every event carries, so it is cached per database and
process: a deploy made by this process updates the cache at once; one made elsewhere is
seen at the first read after `check_seconds`, by a one-row version check.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError

from sopflow.core.deployment import Deployment, DeploymentChange, merge
from sopflow.errors import SopflowError
from sopflow.language.plan import Plan, ProfilePlan
from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.tables import StoredDeployment, StoredPlan

PLAYBOOK, PROFILE = "playbook", "profile"
# Two deploys racing for the same number retry on top of each other; this many attempts
# cover far more concurrent deployers than a brand has operators.
MAX_ATTEMPTS = 50
PLANS = cast(Table, StoredPlan.__table__)
DEPLOYMENTS = cast(Table, StoredDeployment.__table__)


class DeploymentConflict(SopflowError):
    """A deploy based on an older deployment changed what a newer one changed too."""

    def __init__(self, message: str, *, base: int, current: int, conflicts: tuple[str, ...]):
        super().__init__(message)
        self.base, self.current, self.conflicts = base, current, conflicts


@dataclass(frozen=True)
class DeploymentRecord:
    """One entry of the history: deployment `id`, who made it, when, and what it did."""

    id: int
    based_on: int | None
    deployed_at: datetime
    deployed_by: str
    source: str
    # True when a concurrent deploy came between `based_on` and this one.
    merged: bool
    deployment: Deployment
    # The playbook versions the deploy carried, and the playbooks whose version it changed.
    deployed: dict[str, str]
    changed: tuple[str, ...]
    profile_changed: bool


@dataclass(frozen=True)
class _Head:
    id: int
    deployment: Deployment
    checked_at: float


# The current deployment per database URL, shared by every PlanStore of the process.
_HEADS: dict[str, _Head] = {}
_HEADS_LOCK = threading.Lock()


class PlanStore:
    """Plans by version and the numbered deployments, in the read model's database."""

    def __init__(self, database: Database, *, check_seconds: float = 1.0) -> None:
        self.database = database
        self.check_seconds = check_seconds
        self._plans: dict[tuple[str, str], Plan | ProfilePlan] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> PlanStore:
        """A store on the configured read model (whose schema is upgraded first)."""
        return cls(
            Database.from_settings(settings), check_seconds=settings.deployment_check_seconds
        )

    # Plans ---------------------------------------------------------------------------

    def save(self, plan: Plan | ProfilePlan) -> None:
        """Store a plan (or profile rules) under its version; a stored version is kept."""
        with self.database.engine.begin() as connection:
            _insert_plans(connection, [plan])

    def load(self, version: str) -> Plan | None:
        found = self._load(PLAYBOOK, version)
        return found if isinstance(found, Plan) else None

    def load_profile(self, version: str) -> ProfilePlan | None:
        found = self._load(PROFILE, version)
        return found if isinstance(found, ProfilePlan) else None

    def _load(self, kind: str, version: str) -> Plan | ProfilePlan | None:
        cached = self._plans.get((kind, version))
        if cached is not None:
            return cached
        query = select(PLANS.c.body).where(PLANS.c.kind == kind, PLANS.c.version == version)
        with self.database.engine.connect() as connection:
            body = connection.scalar(query)
        if body is None:
            return None
        plan = (
            Plan.model_validate_json(body)
            if kind == PLAYBOOK
            else ProfilePlan.model_validate_json(body)
        )
        self._plans[(kind, version)] = plan  # immutable: never stale
        return plan

    def stored_at(self, versions: list[str]) -> dict[str, datetime]:
        """When each playbook version was first stored (deployed)."""
        if not versions:
            return {}
        query = select(PLANS.c.version, PLANS.c.stored_at).where(
            PLANS.c.kind == PLAYBOOK, PLANS.c.version.in_(versions)
        )
        with self.database.engine.connect() as connection:
            return {row[0]: row[1] for row in connection.execute(query)}

    def versions_of(self, name: str) -> list[Plan]:
        """Every stored version of a playbook, oldest first."""
        query = (
            select(PLANS.c.body)
            .where(PLANS.c.kind == PLAYBOOK, PLANS.c.name == name)
            .order_by(PLANS.c.stored_at, PLANS.c.version)
        )
        with self.database.engine.connect() as connection:
            return [Plan.model_validate_json(body) for body in connection.scalars(query)]

    def every_plan(self) -> Iterator[Plan | ProfilePlan]:
        """Every stored plan and profile, oldest first (for `sopflow plans export`)."""
        query = select(PLANS.c.kind, PLANS.c.body).order_by(PLANS.c.stored_at, PLANS.c.version)
        with self.database.engine.connect() as connection:
            rows = connection.execute(query).all()
        for kind, body in rows:
            yield (
                Plan.model_validate_json(body)
                if kind == PLAYBOOK
                else ProfilePlan.model_validate_json(body)
            )

    # Deploying -----------------------------------------------------------------------

    def deploy(self, plan: Plan, *, by: str = "unnamed", source: str = "code") -> DeploymentRecord:
        """Make `plan` the version new journeys of its playbook start on."""
        return self.deploy_all([plan], None, keep_profile=True, by=by, source=source)

    def deploy_all(
        self,
        plans: list[Plan],
        profile: ProfilePlan | None,
        keep_profile: bool = False,
        *,
        base: int | None = None,
        by: str = "unnamed",
        source: str = "code",
    ) -> DeploymentRecord:
        """Deploy several plans and the profile rules (unless `keep_profile`) at once.

        `base` is the deployment the deployer saw (0: none yet); without it, the one
        current when this reads it, in the same transaction as the write. A deploy whose
        base is no longer current is merged onto the current deployment, or refused with
        DeploymentConflict when a deploy since its base changed one of the same playbooks
        (or the profile rules) to another version.
        """
        change = DeploymentChange(
            playbooks={p.name: p.version for p in plans},
            profile=None if keep_profile or profile is None else profile.version,
            sets_profile=not keep_profile,
        )
        stored: list[Plan | ProfilePlan] = [*plans, *([profile] if profile else [])]
        for attempt in range(MAX_ATTEMPTS):
            try:
                with self.database.engine.begin() as connection:
                    _insert_plans(connection, stored)
                    latest = _latest(connection)
                    # Without a base, the deploy is based on what this transaction read;
                    # a retry after a race keeps that base, so it merges or conflicts.
                    base = latest if base is None else base
                    record = _write_deployment(connection, change, base, latest, by, source)
            except (IntegrityError, OperationalError) as error:
                if not _raced(error):
                    raise
                # Another deploy took this number first: merge again onto the new one.
                time.sleep(random.uniform(0.001, 0.01) * (attempt + 1))
                continue
            self._remember(record.id, record.deployment)
            return record
        raise SopflowError(
            f"could not deploy after {MAX_ATTEMPTS} attempts: deploys keep racing; try again"
        )

    # Reading deployments -----------------------------------------------------------

    def deployment(self) -> Deployment:
        """The current deployment, from the cache when it was checked within
        `check_seconds`, else after a version check (and a read only when it changed)."""
        head = _HEADS.get(self.database.url)
        now = time.monotonic()
        if head is not None and now - head.checked_at < self.check_seconds:
            return head.deployment
        with self.database.engine.connect() as connection:
            latest = _latest(connection)
            if head is not None and head.id == latest:
                deployment = head.deployment
            else:
                record = _read(connection, latest)
                deployment = record.deployment if record else Deployment()
        self._remember(latest, deployment, now)
        return deployment

    async def current_deployment(self) -> Deployment:
        """`deployment()` for async code: the check, when due, runs in a thread."""
        head = _HEADS.get(self.database.url)
        if head is not None and time.monotonic() - head.checked_at < self.check_seconds:
            return head.deployment
        return await asyncio.to_thread(self.deployment)

    def deployed(self) -> dict[str, str]:
        return dict(self.deployment().playbooks)

    def current(self) -> DeploymentRecord | None:
        """The current deployment's record, read now (None before the first deploy)."""
        with self.database.engine.connect() as connection:
            latest = connection.scalar(select(func.max(DEPLOYMENTS.c.id)))
            return _read(connection, latest) if latest else None

    def history(self, limit: int = 50, before: int | None = None) -> list[DeploymentRecord]:
        """Deployments, newest first; `before` pages back from an id."""
        query = select(DEPLOYMENTS).order_by(DEPLOYMENTS.c.id.desc()).limit(limit)
        if before is not None:
            query = query.where(DEPLOYMENTS.c.id < before)
        with self.database.engine.connect() as connection:
            return [_record(row._mapping) for row in connection.execute(query)]

    def _remember(self, head_id: int, deployment: Deployment, at: float | None = None) -> None:
        checked_at = time.monotonic() if at is None else at
        with _HEADS_LOCK:
            known = _HEADS.get(self.database.url)
            if known is None or known.id <= head_id:  # never go back to an older one
                _HEADS[self.database.url] = _Head(head_id, deployment, checked_at)


def _insert_plans(connection: Connection, plans: Iterable[Plan | ProfilePlan]) -> None:
    rows = [
        {
            "kind": PROFILE if isinstance(p, ProfilePlan) else PLAYBOOK,
            "version": p.version,
            "name": p.name if isinstance(p, Plan) else None,
            "body": p.model_dump_json(),
            "stored_at": datetime.now(UTC),
        }
        # In a fixed order, so that two transactions storing the same plans never wait
        # on each other in a cycle (PostgreSQL would fail one with a deadlock).
        for p in sorted(plans, key=lambda p: (isinstance(p, ProfilePlan), p.version))
    ]
    if not rows:
        return
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    connection.execute(insert(PLANS).values(rows).on_conflict_do_nothing())


def _latest(connection: Connection) -> int:
    return connection.scalar(select(func.max(DEPLOYMENTS.c.id))) or 0


def _raced(error: IntegrityError | OperationalError) -> bool:
    """Did this transaction lose a race with another deploy (rather than fail)?"""
    if isinstance(error, IntegrityError):
        return True  # the deployment number was taken
    code = getattr(error.orig, "sqlstate", None)  # psycopg: deadlock, serialization
    message = str(error.orig).lower()
    return code in ("40P01", "40001") or "locked" in message or "busy" in message


def _write_deployment(
    connection: Connection,
    change: DeploymentChange,
    base: int,
    latest: int,
    by: str,
    source: str,
) -> DeploymentRecord:
    head = _read(connection, latest)
    current = head.deployment if head else Deployment()
    if base == latest:
        seen = current
    elif base == 0:
        seen = Deployment()
    else:
        based = _read(connection, base) if base < latest else None
        if based is None:
            raise DeploymentConflict(
                f"deployment {base} does not exist; the current one is {latest}",
                base=base,
                current=latest,
                conflicts=(),
            )
        seen = based.deployment
    merged = merge(seen, current, change)
    if merged.conflicts:
        raise DeploymentConflict(
            f"this deploy is based on deployment {base}, and a deploy since then changed "
            f"{', '.join(merged.conflicts)} too (the current deployment is {latest}): "
            "deploy again on top of the current one",
            base=base,
            current=latest,
            conflicts=merged.conflicts,
        )
    new = merged.deployment
    values: dict[str, Any] = {
        "id": latest + 1,
        "based_on": base,
        "deployed_at": datetime.now(UTC),
        "deployed_by": by[:200],
        "source": source[:20],
        "merged": base != latest,
        "playbooks": new.playbooks,
        "profile": new.profile,
        "deployed": change.playbooks,
        "changed": sorted(n for n, v in new.playbooks.items() if current.playbooks.get(n) != v),
        "profile_changed": new.profile != current.profile,
    }
    connection.execute(DEPLOYMENTS.insert().values(values))
    return _record(values)


def _read(connection: Connection, deployment_id: int) -> DeploymentRecord | None:
    row = connection.execute(select(DEPLOYMENTS).where(DEPLOYMENTS.c.id == deployment_id)).first()
    return _record(row._mapping) if row else None


def _record(row: Any) -> DeploymentRecord:
    return DeploymentRecord(
        id=row["id"],
        based_on=row["based_on"],
        deployed_at=row["deployed_at"],
        deployed_by=row["deployed_by"],
        source=row["source"],
        merged=row["merged"],
        deployment=Deployment(playbooks=row["playbooks"], profile=row["profile"]),
        deployed=dict(row["deployed"]),
        changed=tuple(row["changed"]),
        profile_changed=row["profile_changed"],
    )
