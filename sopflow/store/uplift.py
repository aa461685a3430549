"""The outcomes of a playbook's enrolled customers, from the journey ledger and orders:
the rows the uplift report (sopflow.reports.uplift) is computed from."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, func, select

from sopflow.reports.uplift import CustomerOutcome
from sopflow.store.database import Database
from sopflow.store.tables import JourneyEvent, PaidOrder


def outcomes(database: Database, playbook: str) -> list[CustomerOutcome]:
    """Each customer ever enrolled in the playbook, once: the arm of their first
    enrolment (the arm is a hash of the customer: re-entries have the same one), whether
    any of their journeys reached the goal, and what they paid from that enrolment on."""
    ledger = JourneyEvent.__table__
    enrolled = select(ledger.c.customer_id, ledger.c.at, ledger.c.detail).where(
        ledger.c.playbook == playbook, ledger.c.kind == "enrolled"
    )
    goals = (
        select(ledger.c.customer_id)
        .where(ledger.c.playbook == playbook, ledger.c.kind == "goal_reached")
        .distinct()
    )
    first = (
        select(ledger.c.customer_id, func.min(ledger.c.at).label("since"))
        .where(ledger.c.playbook == playbook, ledger.c.kind == "enrolled")
        .group_by(ledger.c.customer_id)
        .subquery()
    )
    orders = PaidOrder.__table__
    revenue = (
        select(orders.c.customer_id, func.sum(orders.c.amount))
        .join(
            first,
            and_(first.c.customer_id == orders.c.customer_id, orders.c.paid_at >= first.c.since),
        )
        .group_by(orders.c.customer_id)
    )
    arms: dict[str, tuple[datetime, str]] = {}
    with database.engine.connect() as connection:
        for customer, at, detail in connection.execute(enrolled):
            arm = str((detail or {}).get("variant", ""))
            if customer not in arms or at < arms[customer][0]:
                arms[customer] = (at, arm)
        converted = {row[0] for row in connection.execute(goals)}
        paid = {customer: float(total or 0) for customer, total in connection.execute(revenue)}
    return [
        CustomerOutcome(customer, arm, customer in converted, paid.get(customer, 0.0))
        for customer, (_, arm) in sorted(arms.items())
    ]
