"""The `sopflow` command line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Annotated

import typer

from sopflow.errors import SopflowError
from sopflow.settings import Settings

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
    return Settings.model_validate({**Settings().model_dump(), **given})


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
) -> None:
    """Run everything on this machine: Temporal dev server (SQLite), worker and API."""
    from sopflow.dev import run_dev

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
        asyncio.run(run_dev(settings, announce=lambda line: typer.echo(line)))
    except SopflowError as e:
        raise _fail(e) from e


@app.command()
def worker() -> None:
    """Run one worker against the configured Temporal (SOPFLOW_TEMPORAL_ADDRESS, ...)."""
    from sopflow.temporal_connection import connect
    from worker.main import build_worker

    settings = Settings()
    logging.basicConfig(level=logging.INFO)

    async def run() -> None:
        client = await connect(settings)
        await build_worker(client, settings).run()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


@app.command()
def api(api_port: ApiPort = None) -> None:
    """Run the API alone against the configured Temporal."""
    import uvicorn

    from api.app import create_app

    settings = _settings(api_port=api_port)
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port)


@app.command()
def validate(paths: Annotated[list[Path], typer.Argument(help="Files or folders.")]) -> None:
    """Check playbooks; one `file:line:col: error: message` a line; exit 1 on any error."""
    from sopflow.deploy import playbook_files
    from sopflow.language import PlaybookError, compile_playbook_file

    errors = 0
    for path in playbook_files(paths):
        try:
            compile_playbook_file(path)
        except PlaybookError as e:
            for diagnostic in e.diagnostics:
                typer.echo(str(diagnostic))
                errors += diagnostic.severity == "error"
    raise typer.Exit(code=1 if errors else 0)


@app.command()
def deploy(
    paths: Annotated[list[Path], typer.Argument(help="Playbook files.")], home: Home = None
) -> None:
    """Compile playbooks and make them the versions new journeys start on."""
    from sopflow.deploy import playbook_files
    from sopflow.language import PlaybookError, compile_playbook_file
    from sopflow.plan_store import PlanStore

    store = PlanStore(_settings(home=home).plans_dir)
    try:
        plans = [compile_playbook_file(p) for p in playbook_files(paths)]
    except PlaybookError as e:
        raise _fail(e) from e
    for plan in plans:
        store.deploy(plan)
        typer.echo(f"deployed {plan.name} {plan.version}")


@app.command()
def schemas(
    check: Annotated[
        bool, typer.Option(help="Fail when schemas/ differs from the models.")
    ] = False,
    folder: Annotated[Path, typer.Option(help="Where the schemas live.")] = Path("schemas"),
) -> None:
    """Write the JSON Schemas of playbooks and events (or check them for drift)."""
    from sopflow.schemas import drifted_schemas, write_schemas

    if check:
        drifted = drifted_schemas(folder)
        for name in drifted:
            typer.echo(f"{folder / name}: out of date; run `sopflow schemas`", err=True)
        raise typer.Exit(code=1 if drifted else 0)
    for path in write_schemas(folder):
        typer.echo(f"wrote {path}")
