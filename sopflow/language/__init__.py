"""The playbook language: YAML documents -> pydantic models -> immutable plans.

Pure: no I/O beyond parsing text handed in, no Temporal import. The workflow sandbox
passes this package through, so it must stay deterministic.
"""

from sopflow.language.compiler import compile_playbook, compile_playbook_file
from sopflow.language.diagnostics import Diagnostic, PlaybookError
from sopflow.language.plan import Plan

__all__ = ["Diagnostic", "Plan", "PlaybookError", "compile_playbook", "compile_playbook_file"]
