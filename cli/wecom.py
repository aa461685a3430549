"""`sopflow wecom ...`: WeCom chores an operator runs by hand."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from sopflow.errors import SopflowError
from sopflow.settings import Settings

wecom_app = typer.Typer(help="WeCom: the corp tag library.", no_args_is_help=True)
Home = Annotated[Path | None, typer.Option("--home", help="Data folder (default .sopflow).")]


@wecom_app.command("sync-tags")
def sync_tags_command(home: Home = None) -> None:
    """Create the deployed taxonomy's missing tag groups and tags in the corp tag library
    and keep their ids (run again after a taxonomy deploy; creates only what is missing)."""
    from sopflow.store.database import Database
    from sopflow.store.plans import PlanStore
    from sopflow.store.wecom_tags import CorpTags
    from worker.wecom.client import WeComClient
    from worker.wecom.tags import sync_tags

    settings = Settings() if home is None else Settings(home=home)
    database = Database.from_settings(settings)
    plans = PlanStore(database)
    deployment = plans.deployment()
    profile = plans.load_profile(deployment.profile) if deployment.profile else None
    if profile is None or not profile.groups:
        typer.echo("sopflow: no TagTaxonomy is deployed: nothing to sync", err=True)
        raise typer.Exit(code=1)

    async def run() -> None:
        async with WeComClient.from_settings(settings) as client:
            report = await sync_tags(client, profile, CorpTags(database))
        for group in report.created_groups:
            typer.echo(f"created group {group}")
        for tag in report.created_tags:
            typer.echo(f"created tag {tag}")
        for what, why in sorted(report.skipped.items()):
            typer.echo(f"skipped {what}: {why}")
        typer.echo(
            f"{len(report.created_tags)} tags created, {len(report.existing_tags)} "
            f"already in WeCom, {len(report.skipped)} skipped"
        )

    try:
        asyncio.run(run())
    except SopflowError as error:
        typer.echo(f"sopflow: {error}", err=True)
        raise typer.Exit(code=1) from error
