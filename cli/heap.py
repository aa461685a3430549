"""A long-running process's heap, settled once it has started.

CPython's full garbage collection walks every object the collector tracks. A worker or
an API process holds about 200,000 of them from its imports alone (pydantic's schemas,
SQLAlchemy, temporalio, the playbook language), which live as long as the process, so
each full collection paused it for 100 to 400 ms, a whole workflow task's worth of latency
landing on whatever events were in flight (bench/latency.py: the p99 of single events
followed these pauses). Once started, a process collects what garbage there is and moves
the survivors to the collector's permanent generation (`gc.freeze`), which later
collections skip; objects created afterwards (cached customers' workflows, requests) are
collected as before.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect, then exempt every object alive now from later collections; returns how
    many objects the collector will no longer walk."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
