"""YAML that is not a sopflow document: events and customers for `sopflow simulate`.

`sopflow validate DIR` and `sopflow deploy DIR` read every *.yaml below DIR. A scenario's
events (a list) or a simulated customer (a mapping with no apiVersion or kind) lying among
the playbooks is skipped with a note rather than refused as a broken playbook.
"""

from __future__ import annotations

from typing import Any

from sopflow.language.diagnostics import Diagnostic

# A mapping with any of these keys means to be a sopflow document (a playbook missing its
# header is still checked, and told what is missing).
CLAIMS = frozenset({"apiVersion", "kind", "metadata", "stages", "enrol"})


def foreign_note(data: Any, filename: str, line: int) -> Diagnostic | None:
    """A note for a document that is not a sopflow document, or None if it claims to be."""
    if isinstance(data, dict) and not CLAIMS & set(data):
        what = "a mapping with no apiVersion or kind: a customer for `sopflow simulate --customer`?"
    elif isinstance(data, list):
        what = "a list: events for `sopflow simulate --events`?"
    else:
        return None
    return Diagnostic("note", f"not a sopflow document ({what}), skipped", filename, line, 1)
