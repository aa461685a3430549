"""The read model's idempotent writes, on SQLite and on PostgreSQL."""

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import func, inspect, select

from sopflow.core.state import Delivery, TimelineEntry
from sopflow.settings import Settings
from sopflow.store.database import Database, upgrade
from sopflow.store.ledger import Ledger
from sopflow.store.tables import DeliveryRecord, JourneyEvent, TaskRecord

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


def task_delivery(key: str = "c1/p#1/1") -> Delivery:
    return Delivery(
        idempotency_key=key,
        kind="task",
        customer_id="c1",
        playbook="p",
        journey_id="p#1",
        stage="s",
        channel="task",
        text="Call",
        scheduled_at=T0,
        assignee="li",
        script="hello",
        due_at=T0 + timedelta(days=1),
    )


def test_schema_upgrade_is_idempotent(database_settings: Settings) -> None:
    database = Database.from_settings(database_settings)
    upgrade(database.url)  # a second run changes nothing and does not fail
    tables = set(inspect(database.engine).get_table_names())
    assert {"deliveries", "tasks", "journey_events", "alembic_version"} <= tables
    database.dispose()


def test_the_delivery_ledger_refuses_a_duplicate(database_settings: Settings) -> None:
    database = Database.from_settings(database_settings)
    ledger = Ledger(database)
    delivery = task_delivery()
    assert not ledger.delivered(delivery.idempotency_key)
    assert ledger.record_delivery(delivery, "HTTP 200") is True
    assert ledger.record_delivery(delivery, "HTTP 200") is False
    assert ledger.delivered(delivery.idempotency_key)
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(DeliveryRecord)) == 1
        [task] = session.scalars(select(TaskRecord)).all()
    assert (task.assignee, task.status, task.title, task.script) == ("li", "open", "Call", "hello")
    database.dispose()


def test_the_journey_ledger_keeps_each_entry_once_and_moves_tasks(
    database_settings: Settings,
) -> None:
    database = Database.from_settings(database_settings)
    ledger = Ledger(database)
    ledger.record_delivery(task_delivery(), None)
    entries = [
        TimelineEntry(at=T0, kind="stage_entered", seq=1, playbook="p", stage="s"),
        TimelineEntry(
            at=T0 + timedelta(hours=3),
            kind="task_postponed",
            seq=2,
            playbook="p",
            stage="s",
            detail={"task_id": "c1/p#1/1", "due_at": (T0 + timedelta(days=3)).isoformat()},
        ),
    ]
    assert ledger.record_timeline("c1", entries) == 2
    assert ledger.record_timeline("c1", entries) == 0  # a retried write adds nothing
    [task] = ledger.tasks_of("li")
    assert task.status == "open" and task.due_at == T0 + timedelta(days=3)
    completed = TimelineEntry(
        at=T0 + timedelta(days=2),
        kind="task_completed",
        seq=3,
        playbook="p",
        stage="s",
        detail={"task_id": "c1/p#1/1"},
    )
    ledger.record_timeline("c1", [completed])
    [task] = ledger.tasks_of("li")
    assert (task.status, task.completed_at) == ("completed", T0 + timedelta(days=2))
    with database.session() as session:
        seqs = session.scalars(select(JourneyEvent.seq).order_by(JourneyEvent.seq)).all()
    assert seqs == [1, 2, 3]
    database.dispose()


def test_the_funnel_counts_entries_transitions_times_and_goals(
    database_settings: Settings,
) -> None:
    from sopflow.reports.funnel import funnel

    database = Database.from_settings(database_settings)
    ledger = Ledger(database)

    def entry(seq: int, hours: int, kind: str, stage: str, **extra: object) -> TimelineEntry:
        return TimelineEntry(
            at=T0 + timedelta(hours=hours), kind=kind, seq=seq, playbook="p", stage=stage, **extra
        )  # type: ignore[arg-type]

    ledger.record_timeline(
        "a",
        [
            entry(1, 0, "enrolled", "new"),
            entry(2, 0, "stage_entered", "new"),
            entry(3, 0, "message", "new", channel="wecom.private"),
            entry(4, 2, "stage_entered", "hot"),
            entry(5, 5, "goal_reached", "hot"),
            entry(6, 6, "stage_entered", "won"),
            entry(7, 6, "journey_ended", "won"),
        ],
    )
    ledger.record_timeline(
        "b",
        [
            entry(1, 0, "enrolled", "new"),
            entry(2, 0, "stage_entered", "new"),
            entry(3, 4, "stage_entered", "hot"),
        ],
    )
    result = funnel("p", ["new", "hot", "won"], ledger.funnel_rows("p"))
    assert (result.enrolled, result.goal_reached, result.goal_conversion_rate) == (2, 1, 0.5)
    assert [(s.stage, s.entered, s.median_seconds_in_stage) for s in result.stages] == [
        ("new", 2, 3 * 3600.0),
        ("hot", 2, 4 * 3600.0),
        ("won", 1, 0.0),
    ]
    assert [(t.source, t.target, t.customers, t.rate) for t in result.transitions] == [
        ("new", "hot", 2, 1.0),
        ("hot", "won", 1, 0.5),
    ]
    assert result.messages_by_channel == {"wecom.private": 1}
    database.dispose()


def test_the_domains_own_examples() -> None:
    from sopflow.reports.acquisition import conversion_rate, cost_per_new_fan, roi

    # The worked example: 50,000 fixed + 200,000 ads, 10,000 new fans -> 25 per fan;
    # 2,000 of 10,000 converted -> 20%.
    assert cost_per_new_fan(50_000, 200_000, 10_000) == 25
    assert conversion_rate(2_000, 10_000) == 20.0
    assert roi(500_000, 250_000) == 2.0
    assert cost_per_new_fan(1, 1, 0) is None and roi(1, 0) is None


def test_acquisition_figures_per_channel_and_month(database_settings: Settings) -> None:
    from sopflow.core.state import CustomerEvent
    from sopflow.store.acquisitions import figures, record_events, set_cost

    database = Database.from_settings(database_settings)

    def event(customer: str, kind: str, key: str, **data: object) -> CustomerEvent:
        return CustomerEvent(
            customer_id=customer, type=kind, occurred_at=T0, data=data, idempotency_key=key
        )

    batch = [
        event("a1", "contact.added", "k1", channel_code="qr_store"),
        event("a2", "contact.added", "k2", channel_code="qr_store"),
        event("b1", "contact.added", "k3", channel_code="ads_douyin"),
        event("a1", "order.paid", "k4", amount=120),
        event("a1", "order.paid", "k5", amount=80),
    ]
    record_events(database, batch, "Asia/Shanghai")
    record_events(database, batch, "Asia/Shanghai")  # a retried request changes nothing
    set_cost(database, "2026-11", "*", 50, 0)
    set_cost(database, "2026-11", "qr_store", 0, 100)
    set_cost(database, "2026-11", "ads_douyin", 0, 400)
    set_cost(database, "2026-11", "ads_douyin", 0, 250)  # corrected: the last value counts
    result = figures(database, "2026-11")
    assert (result.new_fans, result.fixed_cost, result.traffic_cost) == (3, 50, 350)
    assert result.cost_per_new_fan == 400 / 3
    assert (result.converted, result.conversion_rate, result.revenue) == (1, 33.33, 200)
    assert result.roi == 0.5
    assert [
        (c.channel_code, c.new_fans, c.converted, c.conversion_rate) for c in result.channels
    ] == [("ads_douyin", 1, 0, 0.0), ("qr_store", 2, 1, 50.0)]
    assert figures(database, "2026-12").new_fans == 0
    database.dispose()


def test_orders_are_keyed_per_customer_and_rows_of_before_survive_the_upgrade(
    database_settings: Settings,
) -> None:
    """Issue 11 finding 8: two customers' `order-1` are two orders (revision 0004 rebuilds
    the table; rows written under 0003 are kept)."""
    from alembic import command
    from alembic.config import Config

    from sopflow.core.state import CustomerEvent
    from sopflow.store.acquisitions import record_events
    from sopflow.store.database import MIGRATIONS, database_url
    from sopflow.store.tables import PaidOrder

    url = database_url(database_settings)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "0003")  # the schema before this revision, with an order in it
    database = Database(url)
    with database.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO orders (idempotency_key, customer_id, amount, paid_at) "
            "VALUES ('old-1', 'c0', 5.0, '2026-11-01 00:00:00')"
        )
    upgrade(database.url)

    def order(customer: str, amount: float) -> CustomerEvent:
        return CustomerEvent(
            customer_id=customer,
            type="order.paid",
            occurred_at=T0,
            data={"amount": amount},
            idempotency_key="order-1",
        )

    record_events(database, [order("c1", 100), order("c2", 200)], "Asia/Shanghai")
    record_events(database, [order("c1", 100)], "Asia/Shanghai")  # a repeat: nothing new
    with database.session() as session:
        rows = {
            (o.customer_id, o.idempotency_key, o.amount) for o in session.scalars(select(PaidOrder))
        }
    assert rows == {("c0", "old-1", 5.0), ("c1", "order-1", 100.0), ("c2", "order-1", 200.0)}
    database.dispose()


def test_durable_idempotency_keys_per_customer(database_settings: Settings) -> None:
    from sopflow.store.event_keys import KnownKey, claim, mark_sent, payload_hash

    database = Database.from_settings(database_settings)
    first = payload_hash("order.paid", T0, {"amount": 1, "sku": "a"})
    # The same event in other notation hashes the same; another event does not.
    same = payload_hash(
        "order.paid", T0.astimezone(timezone(timedelta(hours=8))), {"sku": "a", "amount": 1}
    )
    assert same == first
    assert payload_hash("order.paid", T0, {"amount": 2, "sku": "a"}) != first
    known = claim(database, {("c1", "k"): first, ("c2", "k"): "b" * 64})
    assert known == {("c1", "k"): KnownKey(first, False), ("c2", "k"): KnownKey("b" * 64, False)}
    mark_sent(database, [("c1", "k")])
    # A later claim of the same keys finds what was recorded first.
    again = claim(database, {("c1", "k"): "c" * 64, ("c2", "k"): "b" * 64})
    assert again == {("c1", "k"): KnownKey(first, True), ("c2", "k"): KnownKey("b" * 64, False)}
    database.dispose()


def test_an_inbox_pages_through_every_task_tasks_without_a_due_time_last(
    database_settings: Settings,
) -> None:
    """Escalation tasks have no due time; a page ending on one used to make the next
    cursor unusable."""
    from sopflow.store.tasks import Cursor, list_tasks, staff_stats

    database = Database.from_settings(database_settings)
    ledger = Ledger(database)
    for n in range(5):
        delivery = task_delivery(f"c1/p#1/{n}")
        due = None if n % 2 else T0 + timedelta(hours=n)
        ledger.record_delivery(delivery.model_copy(update={"due_at": due}), None)
    seen, cursor = [], None
    while True:
        page, cursor = list_tasks(database, "li", None, 2, cursor, T0)
        seen += [t.task_id for t in page]
        if cursor is None:
            break
        assert Cursor.decode(cursor.encode()) == cursor
    assert seen == ["c1/p#1/0", "c1/p#1/2", "c1/p#1/4", "c1/p#1/1", "c1/p#1/3"]
    [stats] = staff_stats(database, "li", T0 + timedelta(days=1))
    assert (stats.total, stats.open, stats.overdue) == (5, 5, 3)
    database.dispose()
