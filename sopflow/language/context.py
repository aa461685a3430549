"""The names guards and templates can read: one context for both, documented once."""

from __future__ import annotations

# Fixed fields of each root; `attributes`, `data`, `scores` and `counters` are open maps.
CUSTOMER_FIELDS = frozenset(
    {
        "id",
        "tags",
        "tier",
        "lifecycle",
        "attributes",
        "scores",
        "orders",
        "timezone",
        "added_at",
        "last_interaction_at",
        "days_since_added",
        "days_inactive",
    }
)
ORDERS_FIELDS = frozenset(
    {
        "count",
        "total_spent",
        "first_at",
        "last_at",
        "average_interval_days",
        "predicted_next_at",
        "period_count",
        "period_spent",
    }
)
JOURNEY_FIELDS = frozenset(
    {
        "playbook",
        "stage",
        "entered_at",
        "enrolled_at",
        "attributes",
        "counters",
        "days_in_stage",
    }
)
EVENT_FIELDS = frozenset({"type", "data", "occurred_at"})
COUNTDOWN_FIELDS = frozenset({"remaining", "deadline"})

ROOTS = {
    "customer": CUSTOMER_FIELDS,
    "journey": JOURNEY_FIELDS,
    "event": EVENT_FIELDS,
    "countdown": COUNTDOWN_FIELDS,
}
GUARD_ROOTS = frozenset({"customer", "journey", "event", "now"})
TEMPLATE_ROOTS = frozenset({"customer", "journey", "event", "now", "countdown"})
