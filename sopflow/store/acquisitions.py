"""Acquisitions, paid orders and cost inputs: the read side of cost per fan and ROI."""

from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from sopflow.core.state import CustomerEvent
from sopflow.reports.acquisition import (
    Acquisition,
    ChannelFigures,
    conversion_rate,
    cost_per_new_fan,
    roi,
)
from sopflow.store.database import Database
from sopflow.store.ledger import _insert_ignoring_duplicates
from sopflow.store.segments import record_event_attributes
from sopflow.store.tables import Acquisition as AcquisitionRow
from sopflow.store.tables import CostInput, PaidOrder

FIXED = "*"  # the channel code of fixed costs
UNKNOWN_CHANNEL = "unknown"


def record_events(database: Database, events: Sequence[CustomerEvent], zone: str) -> None:
    """New fans (first contact.added), paid orders and the customers' profiles for
    audiences; repeats change nothing."""
    tz = ZoneInfo(zone)
    fans = [
        {
            "customer_id": e.customer_id,
            "channel_code": str(e.data.get("channel_code") or UNKNOWN_CHANNEL),
            "added_at": e.occurred_at,
            "period": e.occurred_at.astimezone(tz).strftime("%Y-%m"),
        }
        for e in events
        if e.type == "contact.added"
    ]
    orders = [
        {
            "idempotency_key": e.idempotency_key,
            "customer_id": e.customer_id,
            "amount": _amount(e.data.get("amount")),
            "paid_at": e.occurred_at,
        }
        for e in events
        if e.type == "order.paid"
    ]
    with database.session() as session, session.begin():
        # Every customer in the audiences' profiles, with the attributes events bring.
        record_event_attributes(session, events)
        _insert_ignoring_duplicates(session, AcquisitionRow.__table__, fans)
        _insert_ignoring_duplicates(session, PaidOrder.__table__, orders)


def _amount(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def set_cost(
    database: Database, period: str, channel_code: str, fixed_cost: float, traffic_cost: float
) -> None:
    with database.session() as session, session.begin():
        row = session.get(CostInput, (period, channel_code))
        if row is None:
            session.add(
                CostInput(
                    period=period,
                    channel_code=channel_code,
                    fixed_cost=fixed_cost,
                    traffic_cost=traffic_cost,
                )
            )
        else:
            row.fixed_cost, row.traffic_cost = fixed_cost, traffic_cost


def figures(database: Database, period: str) -> Acquisition:
    """The period's new fans, conversion, revenue and costs, per channel and in total."""
    with database.session() as session:
        fans = session.execute(
            select(AcquisitionRow.channel_code, func.count())
            .where(AcquisitionRow.period == period)
            .group_by(AcquisitionRow.channel_code)
        ).all()
        buyers = (
            select(PaidOrder.customer_id, func.sum(PaidOrder.amount).label("spent"))
            .group_by(PaidOrder.customer_id)
            .subquery()
        )
        converted = session.execute(
            select(AcquisitionRow.channel_code, func.count(), func.sum(buyers.c.spent))
            .join(buyers, buyers.c.customer_id == AcquisitionRow.customer_id)
            .where(AcquisitionRow.period == period)
            .group_by(AcquisitionRow.channel_code)
        ).all()
        costs = {
            row.channel_code: row
            for row in session.scalars(select(CostInput).where(CostInput.period == period))
        }
    new_by_channel = {channel: count for channel, count in fans}
    bought = {channel: (count, float(spent or 0)) for channel, count, spent in converted}
    channels = []
    for channel in sorted(set(new_by_channel) | (set(costs) - {FIXED})):
        new = new_by_channel.get(channel, 0)
        count, revenue = bought.get(channel, (0, 0.0))
        traffic = costs[channel].traffic_cost if channel in costs else 0.0
        channels.append(
            ChannelFigures(
                channel_code=channel,
                new_fans=new,
                converted=count,
                conversion_rate=conversion_rate(count, new),
                traffic_cost=traffic,
                revenue=revenue,
            )
        )
    fixed = costs[FIXED].fixed_cost if FIXED in costs else 0.0
    fixed += sum(row.fixed_cost for code, row in costs.items() if code != FIXED)
    traffic = sum(c.traffic_cost for c in channels) + (
        costs[FIXED].traffic_cost if FIXED in costs else 0.0
    )
    new_fans = sum(c.new_fans for c in channels)
    total_converted = sum(c.converted for c in channels)
    revenue = sum(c.revenue for c in channels)
    return Acquisition(
        period=period,
        fixed_cost=fixed,
        traffic_cost=traffic,
        new_fans=new_fans,
        cost_per_new_fan=cost_per_new_fan(fixed, traffic, new_fans),
        converted=total_converted,
        conversion_rate=conversion_rate(total_converted, new_fans),
        revenue=revenue,
        roi=roi(revenue, fixed + traffic),
        channels=channels,
    )
