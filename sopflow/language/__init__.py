"""The playbook language: YAML documents -> pydantic models -> immutable plans.

Pure: no I/O beyond reading the files it is handed, no Temporal import. The workflow
sandbox passes this package through, so what runs in workflows must stay deterministic.
"""

from sopflow.language.compiler import (
    Bundle,
    compile_bundle,
    compile_paths,
    compile_playbook,
    compile_playbook_file,
)
from sopflow.language.diagnostics import Diagnostic, PlaybookError
from sopflow.language.plan import Plan, ProfilePlan

__all__ = [
    "Bundle",
    "Diagnostic",
    "Plan",
    "PlaybookError",
    "ProfilePlan",
    "compile_bundle",
    "compile_paths",
    "compile_playbook",
    "compile_playbook_file",
]
