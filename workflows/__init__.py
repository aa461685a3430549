"""Deterministic journey code: the pure core and the Temporal workflow that hosts it."""
