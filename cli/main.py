"""The `sopflow` command line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.heap import freeze_startup_heap
from cli.wecom import wecom_app
from sopflow.errors import SopflowError
from sopflow.settings import Settings

if TYPE_CHECKING:
    from sopflow.store.plans import DeploymentRecord

app = typer.Typer(
    help="sopflow: customer-operation SOPs as durable Temporal journeys.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

ApiPort = Annotated[int | None, typer.Option("--api-port", help="API port (default 8000).")]
Home = Annotated[Path | None, typer.Option("--home", help="Data folder (default .sopflow).")]


def _settings(**overrides: object) -> Settings:
    """Environment settings with the command-line options that were given on top."""
    given = {k: v for k, v in overrides.items() if v is not None}
    environment = Settings()
    # Only what the environment set, so `model_fields_set` still tells it from a default
    # (`sopflow dev` fills the unset WeCom settings for its fake).
    chosen = environment.model_dump(include=environment.model_fields_set)
    return Settings.model_validate({**chosen, **given})


def _fail(error: SopflowError) -> typer.Exit:
    typer.echo(f"sopflow: {error}", err=True)
    return typer.Exit(code=1)


@app.command()
def dev(
    api_port: ApiPort = None,
    temporal_port: Annotated[int | None, typer.Option(help="Temporal gRPC port (7233).")] = None,
    ui_port: Annotated[int | None, typer.Option(help="Temporal UI port (8233).")] = None,
    home: Home = None,
    playbooks: Annotated[Path | None, typer.Option(help="Playbooks folder.")] = None,
    wecom_port: Annotated[
        int, typer.Option(help="Port of the fake WeCom server (8900); 0: no fake.")
    ] = 8900,
) -> None:
    """Run everything on this machine: Temporal dev server (SQLite), the fake WeCom
    server, worker and API."""
    from cli.dev import run_dev

    address = f"127.0.0.1:{temporal_port}" if temporal_port else None
    settings = _settings(
        api_port=api_port,
        temporal_address=address,
        temporal_ui_port=ui_port,
        home=home,
        playbooks_dir=playbooks,
    )
    logging.basicConfig(level=logging.WARNING)
    try:
        asyncio.run(
            run_dev(settings, announce=lambda line: typer.echo(line), wecom_port=wecom_port)
        )
    except SopflowError as e:
        raise _fail(e) from e


@app.command()
def worker() -> None:
    """Run one worker against the configured Temporal (SOPFLOW_TEMPORAL_ADDRESS, ...)."""
    from worker.main import build_worker
    from workflows.client import connect

    settings = Settings()
    logging.basicConfig(level=logging.INFO)

    async def run() -> None:
        # SIGINT and SIGTERM stop it gracefully: in-flight tasks finish (within a bound);
        # `sopflow dev` runs the worker as such a process and stops it with SIGTERM.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        client = await connect(settings)
        worker = build_worker(client, settings)
        freeze_startup_heap()  # full collections skip what the imports built (cli/heap.py)
        running = asyncio.create_task(worker.run())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([running, stopper], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not running.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.shutdown(), 30)
        with contextlib.suppress(asyncio.CancelledError):
            await running

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


@app.command()
def api(api_port: ApiPort = None) -> None:
    """Run the API alone against the configured Temporal."""
    import uvicorn

    from api.app import create_app

    settings = _settings(api_port=api_port)
    app = create_app(settings)
    freeze_startup_heap()  # full collections skip what the imports built (cli/heap.py)
    uvicorn.run(app, host=settings.api_host, port=settings.api_port)


@app.command()
def validate(paths: Annotated[list[Path], typer.Argument(help="Files or folders.")]) -> None:
    """Check documents; one `file:line:col: error|warning: message` a line; exit 1 on error."""
    from sopflow.language import compile_paths

    bundle = compile_paths(paths)
    for diagnostic in bundle.diagnostics:
        typer.echo(str(diagnostic))
    raise typer.Exit(code=1 if bundle.errors else 0)


@app.command()
def deploy(
    paths: Annotated[list[Path], typer.Argument(help="Playbook files or folders.")],
    home: Home = None,
    by: Annotated[
        str | None, typer.Option(help="Who deploys, for the history (default user@host).")
    ] = None,
) -> None:
    """Compile playbooks (with taxonomy, tiers, content) and deploy them for new journeys."""
    from sopflow.language import Diagnostic
    from sopflow.store.deploy import deploy_paths
    from sopflow.store.plans import PlanStore

    told: list[Diagnostic] = []
    try:
        record, deployed = deploy_paths(
            paths, PlanStore.from_settings(_settings(home=home)), by=by, told=told
        )
    except SopflowError as e:
        raise _fail(e) from e
    finally:
        for diagnostic in told:
            typer.echo(str(diagnostic), err=True)
    for _, name, version in deployed:
        typer.echo(f"deployed {name} {version}")
    if not record.profile_changed and record.deployment.profile:
        typer.echo(f"kept the deployed taxonomy and tiers (profile {record.deployment.profile})")
    typer.echo(f"deployment {record.id}" + (" (merged)" if record.merged else ""))


@app.command()
def deployments(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    home: Home = None,
) -> None:
    """The history of deployments: number, when, who, from where, and what changed."""
    from sopflow.store.plans import PlanStore

    for record in PlanStore.from_settings(_settings(home=home)).history(max(limit, 1)):
        typer.echo(describe_deployment(record))


def describe_deployment(record: DeploymentRecord) -> str:
    """One history line: `7  2026-11-23 01:00:00Z  cli  li@host  welcome 3e7f..., ...`."""
    changes = [f"{name} {record.deployment.playbooks[name]}" for name in record.changed]
    if record.profile_changed:
        changes.append(f"profile {record.deployment.profile or '(none)'}")
    merged = f" (based on {record.based_on}, merged)" if record.merged else ""
    return (
        f"{record.id}  {record.deployed_at:%Y-%m-%d %H:%M:%S}Z  {record.source}  "
        f"{record.deployed_by}  {', '.join(changes) or 'no change'}{merged}"
    )


plans_app = typer.Typer(
    help="Plans as a folder: export from the database, import into it.", no_args_is_help=True
)
app.add_typer(plans_app, name="plans")


@plans_app.command("export")
def plans_export(
    folder: Annotated[Path, typer.Argument(help="Where to write the plans.")],
    home: Home = None,
) -> None:
    """Write every stored plan and the current deployment (deployment.json) to a folder."""
    from sopflow.store.deploy import export_folder
    from sopflow.store.plans import PlanStore

    written = export_folder(PlanStore.from_settings(_settings(home=home)), folder)
    typer.echo(f"exported {written} plans and deployment.json to {folder}")


@plans_app.command("import")
def plans_import(
    folder: Annotated[Path, typer.Argument(help="A folder written by `plans export`.")],
    home: Home = None,
) -> None:
    """Store a folder's plans and deploy its deployment.json (the old .sopflow/plans/ too)."""
    from sopflow.store.deploy import import_folder
    from sopflow.store.plans import PlanStore

    try:
        count, record = import_folder(PlanStore.from_settings(_settings(home=home)), folder)
    except SopflowError as e:
        raise _fail(e) from e
    deployed = f"; deployment {record.id}" if record else "; no deployment.json, nothing deployed"
    typer.echo(f"imported {count} plans from {folder}{deployed}")


@app.command()
def graph(
    playbook: Annotated[Path, typer.Argument(help="A playbook file.")],
    name: Annotated[
        str | None, typer.Option(help="Which playbook, if the file has several.")
    ] = None,
) -> None:
    """Print a Mermaid stateDiagram-v2 of the playbook's stages and transitions."""
    from sopflow.language import compile_paths
    from sopflow.language.compiler import plans_of_file
    from sopflow.language.graph import mermaid

    try:
        plans = plans_of_file(compile_paths([playbook.parent, playbook]), playbook)
        chosen = [p for p in plans if name in (None, p.name)]
        if not chosen:
            names = ", ".join(p.name for p in plans)
            raise SopflowError(f"{playbook}: no playbook named '{name}' (it has {names})")
        typer.echo(mermaid(chosen[0]), nl=False)
    except SopflowError as e:
        raise _fail(e) from e


class Format(StrEnum):
    table = "table"
    json = "json"


@app.command()
def simulate(
    playbook: Annotated[Path, typer.Argument(help="A playbook file.")],
    events: Annotated[
        Path | None, typer.Option(help="YAML/JSON list of {at|after, type, data}.")
    ] = None,
    customer: Annotated[
        Path | None,
        typer.Option(
            help="YAML/JSON: id, timezone, attributes, tags (of the group or staff "
            "member, for their playbooks)."
        ),
    ] = None,
    days: Annotated[int, typer.Option(help="How many days to run.")] = 30,
    start: Annotated[
        str | None, typer.Option(help="Virtual start, ISO 8601 (default: now).")
    ] = None,
    format: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
    with_: Annotated[
        list[str] | None,
        typer.Option(
            "--with", help="Another playbook of the folder to run alongside (repeatable)."
        ),
    ] = None,
    customers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=1_000_000,
            help="Run this many customers through the same events and print, per "
            "playbook and experiment arm, customers, goals reached, messages and sends "
            "held out.",
        ),
    ] = None,
) -> None:
    """Run the playbooks of a file on a virtual clock and print the timeline of its
    subject: a customer, a group chat (audience: group) or a staff member (audience: staff).

    The file's playbooks run, with those of its folder they enrol subjects in and those
    named by --with; all of them share the subject (and the contact caps)."""
    import json
    from datetime import UTC, datetime

    from sopflow.core import simulator
    from sopflow.language import compile_paths
    from sopflow.language.compiler import plans_of_file
    from sopflow.language.diagnostics import did_you_mean

    try:
        moment = (
            datetime.fromisoformat(start) if start else datetime.now(UTC).replace(microsecond=0)
        )
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        bundle = compile_paths([playbook.parent])
        roots = plans_of_file(bundle, playbook)
        plan = roots[0]
        for name in with_ or []:
            if name not in bundle.plans:
                hint = did_you_mean(name, bundle.plans)
                raise SopflowError(f"--with: no playbook '{name}' in {playbook.parent}{hint}")
            roots.append(bundle.plans[name])
        scenario = (
            simulator.load_events(events, moment)
            if events
            else simulator.default_events(plan, moment)
        )
        # The subject of the playbook's audience: a customer, a group chat, a staff member.
        spec = simulator.subject_spec(plan, simulator.load_customer(customer) if customer else None)
        if customers is not None:
            counts = simulator.simulate_many(
                simulator.reachable_plans(roots, bundle.plans),
                bundle.profile,
                scenario,
                moment,
                days,
                spec,
                customers,
            )
            typer.echo(simulator.arm_table(counts), nl=False)
            return
        timeline = simulator.simulate(
            simulator.reachable_plans(roots, bundle.plans),
            bundle.profile,
            scenario,
            moment,
            days,
            spec,
        )
    except SopflowError as e:
        raise _fail(e) from e
    if format == Format.json:
        typer.echo(json.dumps(simulator.timeline_json(timeline), ensure_ascii=False, indent=2))
    else:
        tz = spec.timezone or plan.timezone
        typer.echo(simulator.timeline_table(timeline, moment, tz), nl=False)


@app.command("migrate")
def migrate_command(
    playbook: Annotated[Path, typer.Argument(help="The playbook file of the new version.")],
    from_version: Annotated[str, typer.Option("--from", help="The version to move from.")],
    dry_run: Annotated[bool, typer.Option(help="Only count, per stage.")] = False,
    name: Annotated[
        str | None, typer.Option(help="Which playbook, if the file has several.")
    ] = None,
) -> None:
    """Move in-flight journeys from an older version, as the playbook's migration says."""
    from cli.migrate import migrate
    from sopflow.language import compile_paths
    from sopflow.language.compiler import plans_of_file
    from sopflow.store.plans import PlanStore
    from workflows.client import connect

    settings = Settings()

    async def run() -> None:
        plans = plans_of_file(compile_paths([playbook.parent, playbook]), playbook)
        chosen = [p for p in plans if name in (None, p.name)]
        if not chosen:
            raise SopflowError(f"{playbook}: no playbook named '{name}'")
        client = await connect(settings)
        steps, signalled = await migrate(
            client, PlanStore.from_settings(settings), chosen[0], from_version, dry_run=dry_run
        )
        for step in steps:
            typer.echo(f"{step.stage} -> {step.target}: {step.customers} customers")
        total = sum(step.customers for step in steps)
        if dry_run:
            typer.echo(f"dry run: {total} customers would move to {chosen[0].version}")
        else:
            typer.echo(f"signalled {signalled} customers to move to {chosen[0].version}")

    try:
        asyncio.run(run())
    except SopflowError as e:
        raise _fail(e) from e


app.add_typer(wecom_app, name="wecom")


def _audience_commands() -> None:
    from cli.audiences import audiences_app, enrol

    app.add_typer(audiences_app, name="audiences")
    app.command()(enrol)


_audience_commands()


keys_app = typer.Typer(help="API keys with roles: ingest, staff, operator.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="ingest | staff | operator")],
    name: Annotated[str, typer.Option(help="Who or what uses the key.")] = "unnamed",
    staff: Annotated[str | None, typer.Option(help="For a staff key: the staff id.")] = None,
    home: Home = None,
) -> None:
    """Create a key; it is printed once, only its hash is kept."""
    from sopflow.store.database import Database
    from sopflow.store.keys import Role, create_key

    try:
        chosen = Role(role)
    except ValueError:
        raise _fail(SopflowError(f"unknown role '{role}': use ingest, staff or operator")) from None
    try:
        token, principal = create_key(
            Database.from_settings(_settings(home=home)), chosen, name, staff
        )
    except SopflowError as e:
        raise _fail(e) from e
    typer.echo(token)
    typer.echo(
        f"created key {principal.key_id} ({chosen.value}, {name}); store it now: "
        "it is not shown again",
        err=True,
    )


@keys_app.command("list")
def keys_list(home: Home = None) -> None:
    """The keys: id, role, name, staff id, created, revoked."""
    from sopflow.store.database import Database
    from sopflow.store.keys import list_keys

    for key in list_keys(Database.from_settings(_settings(home=home))):
        revoked = f" revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else ""
        typer.echo(
            f"{key.key_id}  {key.role:<8} {key.name}  {key.staff_id or '-'}  "
            f"created {key.created_at:%Y-%m-%d}{revoked}"
        )


@keys_app.command("revoke")
def keys_revoke(key_id: str, home: Home = None) -> None:
    """Revoke a key at once."""
    from sopflow.store.database import Database
    from sopflow.store.keys import revoke_key

    if not revoke_key(Database.from_settings(_settings(home=home)), key_id):
        raise _fail(SopflowError(f"no active key '{key_id}'"))
    typer.echo(f"revoked {key_id}")


@app.command()
def schemas(
    check: Annotated[
        bool, typer.Option(help="Fail when schemas/ differs from the models.")
    ] = False,
    folder: Annotated[Path, typer.Option(help="Where the schemas live.")] = Path("schemas"),
) -> None:
    """Write the JSON Schemas of playbooks and events (or check them for drift)."""
    from cli.schemas import drifted_schemas, write_schemas

    if check:
        drifted = drifted_schemas(folder)
        for name in drifted:
            typer.echo(f"{folder / name}: out of date; run `sopflow schemas`", err=True)
        raise typer.Exit(code=1 if drifted else 0)
    for path in write_schemas(folder):
        typer.echo(f"wrote {path}")
