"""What the customer workflow publishes to Temporal's visibility, bounded so that the
server never refuses it.

A search attribute whose value is over the server's size limit (2,048 bytes of JSON per
value by default, `limit.searchAttributeSizeOfValue`) fails the workflow task with
BAD_SEARCH_ATTRIBUTES, and a terminated workflow loses the customer's state. Tags come
from events and playbooks, so the published lists are cut here, never refused there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

# Under the server's 2,048 bytes per value, with room for the payload's own framing.
MAX_LIST_BYTES = 1_900
# One keyword (a tag, a stage): longer ones are published cut to this many bytes.
MAX_KEYWORD_BYTES = 200


def encoded_size(value: object) -> int:
    """Bytes of a search attribute value as the SDK encodes it (compact ASCII JSON)."""
    return len(json.dumps(value, separators=(",", ":")))


def bounded_keyword(value: str) -> str:
    """`value`, cut so that its JSON takes at most MAX_KEYWORD_BYTES (never mid-character:
    the cut is on characters, measured as the SDK encodes them)."""
    if encoded_size(value) <= MAX_KEYWORD_BYTES:
        return value
    cut = value[:MAX_KEYWORD_BYTES]
    while cut and encoded_size(cut) > MAX_KEYWORD_BYTES:
        cut = cut[:-1]
    return cut


def bounded_keywords(values: Iterable[str]) -> list[str]:
    """The values in order, each cut to MAX_KEYWORD_BYTES, without repeats, as many as fit
    in MAX_LIST_BYTES of JSON; the rest are left out (the read model has them all)."""
    kept: list[str] = []
    seen: set[str] = set()
    size = 2  # the brackets
    for value in values:
        keyword = bounded_keyword(value)
        if keyword in seen:
            continue
        cost = encoded_size(keyword) + (1 if kept else 0)  # a comma before all but the first
        if size + cost > MAX_LIST_BYTES:
            break
        kept.append(keyword)
        seen.add(keyword)
        size += cost
    return kept
