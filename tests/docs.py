"""The project's documentation as the docs tests read it: the README and every docs/ page."""

from __future__ import annotations

from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def documentation() -> str:
    """Every page, one after the other: examples are found and run wherever they live."""
    return "\n".join(page.read_text(encoding="utf-8") for page in PAGES)
