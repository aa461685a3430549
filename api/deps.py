"""Dependencies as Annotated aliases: routes declare what they need by type."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from temporalio.client import Client

from sopflow.plan_store import PlanStore
from sopflow.settings import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_temporal(request: Request) -> Client:
    client: Client = request.app.state.temporal
    return client


def get_plan_store(request: Request) -> PlanStore:
    store: PlanStore = request.app.state.plan_store
    return store


SettingsDep = Annotated[Settings, Depends(get_settings)]
TemporalDep = Annotated[Client, Depends(get_temporal)]
PlanStoreDep = Annotated[PlanStore, Depends(get_plan_store)]
