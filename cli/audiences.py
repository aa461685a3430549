"""`sopflow audiences` and `sopflow enrol`: preview a segment, enrol it with a progress bar."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer

from sopflow.errors import SopflowError
from sopflow.settings import Settings

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID
    from temporalio.client import Client

    from workflows.enrolment_contracts import BatchProgress

# The store and Temporal are imported by the commands that use them: `sopflow --help`
# and the other commands start without them.

audiences_app = typer.Typer(
    help="Audiences: named segments of customers (kind: Audience documents).",
    no_args_is_help=True,
)
# How often the progress bar asks the batch where it stands.
POLL_SECONDS = 0.5


def _fail(error: SopflowError) -> typer.Exit:
    typer.echo(f"sopflow: {error}", err=True)
    return typer.Exit(code=1)


@audiences_app.command("list")
def audiences_list() -> None:
    """Every audience with its expression."""
    from sopflow.store.database import Database
    from sopflow.store.segments import list_segments

    for segment in list_segments(Database.from_settings(Settings())):
        typer.echo(f"{segment.name}  {segment.when}")


@audiences_app.command("preview")
def audiences_preview(
    name: str,
    sample: Annotated[int, typer.Option(help="How many customer ids to show.")] = 20,
) -> None:
    """How many customers the audience holds now, and the first of them."""
    from sopflow.store.database import Database
    from sopflow.store.segments import load_segment, preview_segment

    database = Database.from_settings(Settings())
    segment = load_segment(database, name)
    if segment is None:
        raise _fail(SopflowError(f"no audience '{name}'"))
    preview = preview_segment(database, segment, sample)
    typer.echo(f"{preview.count} customers of {preview.scanned} in audience {name}")
    if preview.errors:
        typer.echo(f"{preview.errors} not evaluated: {preview.first_error}")
    for customer in preview.sample:
        typer.echo(customer)


@audiences_app.command("reindex")
def audiences_reindex() -> None:
    """Project every customer's profile from the journey ledger (after an upgrade)."""
    from sopflow.store.database import Database
    from sopflow.store.segments import profile_count, rebuild_profiles

    database = Database.from_settings(Settings())
    customers = rebuild_profiles(database)
    typer.echo(f"projected {customers} subjects' ledgers; {profile_count(database)} profiles")


def enrol(
    playbook: Annotated[str, typer.Argument(help="The playbook to enrol them in.")],
    audience: Annotated[str | None, typer.Option(help="The audience's name.")] = None,
    batch_id: Annotated[
        str | None, typer.Option(help="Name the batch (default: generated); used once.")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="Customers per second (default: the setting).")
    ] = None,
    detach: Annotated[bool, typer.Option(help="Start it and return.")] = False,
    cancel: Annotated[
        str | None, typer.Option(help="Cancel this batch instead (PLAYBOOK is ignored).")
    ] = None,
    status: Annotated[
        str | None, typer.Option(help="Follow this batch instead (PLAYBOOK is ignored).")
    ] = None,
) -> None:
    """Enrol every customer of an audience in a playbook: a durable, resumable batch.
    Ctrl-C stops following it, not the batch (`--cancel BATCH` stops it)."""
    from sopflow.language.subjects import Audience
    from sopflow.store.database import Database
    from sopflow.store.plans import PlanStore
    from sopflow.store.segments import load_segment
    from workflows.client import connect
    from workflows.enrolment_client import cancel_batch, start_batch

    settings = Settings()

    async def run() -> None:
        client = await connect(settings)
        if cancel is not None:
            if not await cancel_batch(client, cancel):
                raise SopflowError(f"no enrolment batch '{cancel}'")
            typer.echo(f"cancelling batch {cancel}")
            return
        if status is not None:
            await _follow(client, status)
            return
        if audience is None:
            raise SopflowError("name the audience: --audience NAME")
        database = Database.from_settings(settings)
        if load_segment(database, audience) is None:
            raise SopflowError(f"no audience '{audience}'")
        plans = PlanStore(database)
        version = plans.deployment().playbooks.get(playbook)
        plan = plans.load(version) if version else None
        if plan is None or plan.audience != Audience.CUSTOMER.value:
            raise SopflowError(f"no deployed customer playbook '{playbook}'")
        started = await start_batch(client, settings, audience, playbook, batch_id, rate)
        typer.echo(f"batch {started.batch_id}: enrolling audience {audience} in {playbook}")
        if not detach:
            await _follow(client, started.batch_id)

    try:
        asyncio.run(run())
    except SopflowError as e:
        raise _fail(e) from e
    except KeyboardInterrupt:
        typer.echo("stopped following; the batch goes on (--cancel BATCH stops it)")


async def _follow(client: Client, batch_id: str) -> None:
    """A progress bar over the audience's customers, until the batch ends."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from workflows.enrolment_client import batch_progress

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("done {task.fields[done]} skipped {task.fields[skipped]} "),
        TextColumn("failed {task.fields[failed]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns) as bar:
        task = bar.add_task("scanned", total=None, done=0, skipped=0, failed=0)
        while True:
            progress = await batch_progress(client, batch_id)
            if progress is None:
                raise SopflowError(f"no enrolment batch '{batch_id}'")
            _show(bar, task, progress)
            if progress.status != "running":
                break
            await asyncio.sleep(POLL_SECONDS)
    typer.echo(_summary(progress))
    if progress.status == "failed":
        raise SopflowError(progress.error or "the batch failed")


def _show(bar: Progress, task: TaskID, progress: BatchProgress) -> None:
    bar.update(
        task,
        completed=progress.done + progress.skipped + progress.failed,
        total=progress.matched if progress.status != "running" else None,
        description=f"{progress.matched} in audience, {progress.scanned} scanned",
        done=progress.done,
        skipped=progress.skipped,
        failed=progress.failed,
    )


def _summary(progress: BatchProgress) -> str:
    return (
        f"batch {progress.batch_id} {progress.status}: {progress.matched} customers in "
        f"audience {progress.audience}, {progress.done} enrolled in {progress.playbook}, "
        f"{progress.skipped} skipped, {progress.failed} failed"
    )
