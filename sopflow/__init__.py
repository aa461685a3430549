"""sopflow: customer-operation SOPs as durable Temporal journeys."""

__version__ = "0.1.0"
