"""What an API pays to know the current deployment for each event, on SQLite and PostgreSQL.

Every accepted event carries the deployment current at that moment. The API keeps it in
memory and checks the database for a newer one at most every `deployment_check_seconds`
(1 s by default): one `SELECT max(id)` on the deployments' primary key, and a read of one
row only when it changed.

Run: `.venv/bin/python -m bench.deployment_read [--calls 200000] [--no-record]`
(PostgreSQL at SOPFLOW_BENCH_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test,
in a throwaway schema.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

from bench import report
from sopflow.language import compile_paths
from sopflow.store import plans as plan_module
from sopflow.store.database import Database, upgrade
from sopflow.store.plans import PlanStore

REPO = Path(__file__).resolve().parent.parent
POSTGRES = os.environ.get("SOPFLOW_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def databases() -> Iterator[dict[str, str]]:
    """A SQLite file and a throwaway PostgreSQL schema."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        with tempfile.TemporaryDirectory() as folder:
            yield {
                "SQLite": f"sqlite:///{Path(folder) / 'sopflow.db'}",
                "PostgreSQL": POSTGRES.replace("postgresql://", "postgresql+psycopg://", 1)
                + f"?options=-csearch_path%3D{schema}",
            }
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


def per_call(calls: int, action) -> float:
    """Microseconds per call of `action`."""
    began = time.perf_counter()
    for _ in range(calls):
        action()
    return (time.perf_counter() - began) / calls * 1e6


async def cached(store: PlanStore, calls: int) -> float:
    began = time.perf_counter()
    for _ in range(calls):
        await store.current_deployment()
    return (time.perf_counter() - began) / calls * 1e6


def measure(url: str, calls: int) -> dict[str, float]:
    upgrade(url)
    database = Database(url)
    store = PlanStore(database, check_seconds=3600)
    bundle = compile_paths([REPO / "playbooks"])
    store.deploy_all(list(bundle.plans.values()), bundle.profile)
    store.deployment()
    checking = PlanStore(database, check_seconds=0)  # checks the database at every call

    def reload() -> None:
        plan_module._HEADS.pop(url, None)  # as if another process had deployed
        checking.deployment()

    figures = {
        "cached": asyncio.run(cached(store, calls)),
        "check": per_call(max(calls // 100, 200), checking.deployment),
        "reload": per_call(max(calls // 200, 100), reload),
        "deploy": per_call(
            20, lambda: store.deploy_all(list(bundle.plans.values()), bundle.profile)
        ),
    }
    database.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    with databases() as urls:
        results = {name: measure(url, args.calls) for name, url in urls.items()}
    rows = [
        [
            name,
            f"{f['cached']:.2f}",
            f"{f['check']:.0f}",
            f"{f['reload']:.0f}",
            f"{f['deploy'] / 1000:.1f}",
        ]
        for name, f in results.items()
    ]
    body = report.table(
        [
            "read model",
            "cached, per event (us)",
            "version check (us)",
            "check and reload (us)",
            "a deploy (ms)",
        ],
        rows,
    )
    print(body)
    print(f"Repeat: {report.command()}")
    if args.no_record:
        return
    worst = max(f["check"] for f in results.values())
    notes = f"""
The shipped playbooks deployed ({len(compile_paths([REPO / "playbooks"]).plans)} playbooks and the
profile rules). "Cached" is `await PlanStore.current_deployment()` within the check interval,
what nearly every event pays; "version check" is the one-row query an API makes at most once
per `SOPFLOW_DEPLOYMENT_CHECK_SECONDS` (1 s by default), "check and reload" the same when a
deploy made elsewhere changed the deployment; "a deploy" writes a deployment of every
playbook in one transaction (plans stored once, by version).

{body}

At the default interval the check occupies one of an API's threads (never the event
loop) for at most {worst:.0f} us a second, whatever its load ({worst / 1e4:.2f}% of the time,
mostly waiting on the database). A deploy takes effect at once on the process that made it
and within the interval (plus one check) on every other API; events accepted meanwhile
carry the previous deployment, so their new customers start on the previous versions.
"""
    report.record("deployment-read", "The current deployment per event", notes)


if __name__ == "__main__":
    main()
