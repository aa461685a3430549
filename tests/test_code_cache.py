"""The sandbox's fresh imports of the workflow modules reuse one compilation per process
(workflows/code_cache.py) and still get fresh namespaces."""

import importlib.util
import sys
from types import ModuleType

from workflows import code_cache
from workflows.sandbox import workflow_runner

NAME = "workflows.customer_workflow"


def fresh_import(name: str) -> ModuleType:
    """Import `name` as the sandbox does: through sys.meta_path, ignoring sys.modules."""
    saved = sys.modules.pop(name, None)
    try:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        if saved is not None:
            sys.modules[name] = saved


def test_fresh_imports_share_the_code_and_nothing_else() -> None:
    workflow_runner(sandboxed=True)  # installs the cache
    first, second = fresh_import(NAME), fresh_import(NAME)
    one, other = first.CustomerJourneyWorkflow, second.CustomerJourneyWorkflow
    assert one is not other  # each import still builds its own class and globals
    assert first.__dict__ is not second.__dict__
    # ... from the same compiled code: the source was not compiled again
    assert one._step.__code__ is other._step.__code__


def test_only_the_workflows_package_is_served() -> None:
    workflow_runner(sandboxed=True)
    spec = importlib.util.find_spec("sopflow.core.journey")
    assert spec is not None
    assert type(spec.loader).__name__ != "_CompiledOnceLoader"
    assert code_cache.compiled() >= 1
