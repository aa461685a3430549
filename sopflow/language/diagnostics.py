"""Diagnostics that point at file:line:column and the key path of a mistake."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from sopflow.errors import SopflowError

# A note tells what was done (a file skipped) and changes no exit code.
Severity = Literal["error", "warning", "note"]
KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Diagnostic:
    """One finding about a playbook, printable as `file:line:col: severity: message`."""

    severity: Severity
    message: str
    file: str
    line: int
    column: int
    path: KeyPath = ()

    def __str__(self) -> str:
        where = f" (at {format_path(self.path)})" if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.message}{where}"


class PlaybookError(SopflowError):
    """A playbook that cannot be compiled; carries every diagnostic found."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


def format_path(path: KeyPath) -> str:
    """`stages.greet.triggers[0].goto` from ('stages', 'greet', 'triggers', 0, 'goto')."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def nearest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate nearest to `word`, if any is near enough to be a likely typo."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """A ", did you mean 'x'?" suffix for the nearest candidate, or empty."""
    close = nearest(word, candidates)
    return f", did you mean '{close}'?" if close else ""
