"""Workflow modules compiled once per process, however often the sandbox imports them.

The determinism sandbox imports the workflow modules afresh for every workflow it starts
or brings back into its cache (a new customer, an evicted one replaying): a fresh module
namespace, so no state leaks from one customer to another. Without bytecode files (a
process with PYTHONDONTWRITEBYTECODE=1, common in container images, or a read-only source
tree) each of those imports compiled the module's source again: about 7 ms of CPU for
customer_workflow.py, most of the cost of a sandboxed workflow's first activation
(bench/latency.py; py-spy). Here the `workflows` package's modules are compiled once and
their code objects reused: a code object is immutable, and executing it still builds a
fresh namespace per import, so the sandbox's isolation is unchanged. The code is the one
read when the worker first imported the module; a worker does not pick up a source file
edited while it runs (it did so only for new customers, never for cached ones).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from collections.abc import Sequence
from types import CodeType, ModuleType

# The package whose modules the sandbox imports afresh (the pure layers pass through it
# whole: workflows/sandbox.py).
PACKAGE = "workflows"

_codes: dict[str, CodeType] = {}
_lock = threading.Lock()


class _CompiledOnceLoader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname: str) -> CodeType:
        path = self.get_filename(fullname)
        code = _codes.get(path)
        if code is None:
            code = super().get_code(fullname)
            if code is None:  # not reached for a source file; typed so by the stubs
                raise ImportError(f"no code for {fullname}", name=fullname)
            with _lock:
                code = _codes.setdefault(path, code)
        return code


class _CompiledOnceFinder(importlib.abc.MetaPathFinder):
    """Finds the package's modules where the path finder does, with the caching loader."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != PACKAGE and not fullname.startswith(f"{PACKAGE}."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or type(spec.loader) is not importlib.machinery.SourceFileLoader:
            return spec
        origin = spec.origin or ""
        loader = _CompiledOnceLoader(fullname, origin)
        packages = spec.submodule_search_locations
        return importlib.util.spec_from_file_location(
            fullname, origin, loader=loader, submodule_search_locations=packages
        )


_FINDER = _CompiledOnceFinder()


def install() -> None:
    """Serve the package's later imports from the code cache (idempotent)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def compiled() -> int:
    """How many modules the cache holds (for the tests)."""
    return len(_codes)
