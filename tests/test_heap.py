"""A started process's heap is settled once (cli/heap.py): garbage collected first, the
survivors exempt from later full collections, what comes after collected as before."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from cli.heap import freeze_startup_heap


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the test session collects as usual


def test_garbage_is_collected_before_the_survivors_are_frozen(unfrozen: None) -> None:
    garbage, kept = Node(), Node()
    dropped = weakref.ref(garbage)
    del garbage
    frozen = freeze_startup_heap()
    assert dropped() is None  # collected, not frozen for good
    assert frozen == gc.get_freeze_count() > 0
    later = Node()
    later_ref = weakref.ref(later)
    del later
    gc.collect()
    assert later_ref() is None  # what comes after the freeze is collected as before
    # and a full collection no longer walks what was frozen
    assert all(o is not kept for o in gc.get_objects())
