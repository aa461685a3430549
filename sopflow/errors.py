"""The one error base of sopflow: every user-facing failure derives from it."""

from __future__ import annotations


class SopflowError(Exception):
    """A mistake a person can act on; the message says what and where."""
