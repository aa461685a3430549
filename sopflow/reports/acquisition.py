"""Acquisition economics, as operators define them.

- cost per new fan (单粉成本) = (fixed cost + traffic cost) / new fans
- conversion rate = converted / total x 100%
- ROI = revenue / cost
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class ChannelFigures(BaseModel):
    channel_code: str
    new_fans: int
    converted: int = Field(description="New fans of the period who paid at least one order.")
    conversion_rate: float = Field(description="converted / new fans x 100 (%)")
    traffic_cost: float
    revenue: float


class Acquisition(BaseModel):
    period: str
    fixed_cost: float
    traffic_cost: float
    new_fans: int
    cost_per_new_fan: float | None
    converted: int
    conversion_rate: float
    revenue: float
    roi: float | None = Field(description="revenue / (fixed + traffic cost)")
    channels: list[ChannelFigures]


def cost_per_new_fan(fixed_cost: float, traffic_cost: float, new_fans: int) -> float | None:
    return (fixed_cost + traffic_cost) / new_fans if new_fans else None


def conversion_rate(converted: int, total: int) -> float:
    return round(converted / total * 100, 2) if total else 0.0


def roi(revenue: float, cost: float) -> float | None:
    return round(revenue / cost, 4) if cost else None
