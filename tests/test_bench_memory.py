"""bench/memory.py's account: an allocation belongs to the innermost frame that names an
owner, within the worker's phase it was made in."""

from __future__ import annotations

import tracemalloc

from bench.memory import (
    ACTIVATING,
    CORE_PARTS,
    NATIVE_LABELS,
    NATIVE_OWNERS,
    OTHER,
    native_owner,
    owner,
)

SPANS = {ACTIVATING: ("/venv/temporalio/worker/_workflow.py", 860, 875)}


def traceback(*frames: tuple[str, int]) -> tracemalloc.Traceback:
    """Frames innermost first, as tracemalloc records them."""
    return tracemalloc.Traceback(frames)


def test_a_model_the_core_builds_is_the_customers_state_not_pydantics() -> None:
    trace = traceback(
        ("/venv/pydantic/main.py", 280),
        ("/repo/sopflow/core/actions.py", 194),
        ("/repo/workflows/customer_workflow.py", 221),
        ("/venv/temporalio/worker/_workflow_instance.py", 3255),
        ("/venv/temporalio/worker/_workflow.py", 869),
    )
    assert owner(trace, SPANS) == "workflow: the customer's state as the core builds it"


def test_a_payload_the_sdk_decodes_is_the_sdks() -> None:
    trace = traceback(
        ("/venv/pydantic/type_adapter.py", 466),
        ("/venv/temporalio/contrib/pydantic.py", 147),
        ("/venv/temporalio/converter/_payload_converter.py", 373),
        ("/venv/temporalio/worker/_workflow_instance.py", 506),
        ("/venv/temporalio/worker/_workflow.py", 869),
    )
    assert owner(trace, SPANS).startswith("SDK: payloads it decoded")


def test_outside_the_phases_nothing_is_the_workflows() -> None:
    trace = traceback(("/repo/workflows/customer_workflow.py", 1), ("/usr/lib/asyncio.py", 1))
    assert owner(trace, SPANS) == OTHER["outside"]


def test_native_blocks_go_to_the_innermost_owner() -> None:
    core = "_RNvMs_temporalio_sdk_core6worker8workflow"
    queue = f"{core}17CommandAndMachine8grow_one (raw_vec.rs)"
    python = "_PyObject_Malloc (obmalloc.c)"
    assert native_owner(f"main;{core};{queue};malloc (malloc.c)") == CORE_PARTS[0][1]
    # A Python object the core's bindings made is Python's.
    assert native_owner(f"main;{core};{python};malloc (malloc.c)") == NATIVE_LABELS[-2]
    upb = dict(NATIVE_OWNERS)["upb"]
    assert native_owner("main;PyUpb_Message_New;upb_Arena_Malloc (arena.c)") == upb
