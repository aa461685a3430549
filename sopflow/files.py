"""Files sopflow creates hold customers' data and keys: readable by their owner only.

Folders are created 0700 and files 0600 whatever the process's umask (the read model,
the delivery and task logs, plans, the Temporal dev server's database and log, the
development key). A folder or file that already exists keeps the mode it has: an
operator who chose one decided.
"""

from __future__ import annotations

import os
from pathlib import Path

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def private_folder(path: Path) -> Path:
    """Create `path` (and missing parents) with mode 0700; an existing folder is kept."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        folder.mkdir(mode=FOLDER_MODE, exist_ok=True)
        os.chmod(folder, FOLDER_MODE)  # mkdir's mode passes through the umask
    return path


def private_file(path: Path) -> Path:
    """Create an empty `path` with mode 0600 unless it exists (in a private folder)."""
    private_folder(path.parent)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return path
    os.close(descriptor)
    os.chmod(path, FILE_MODE)
    return path


def append_line(path: Path, line: str) -> None:
    """Append a line to `path`, creating it 0600 (in a private folder) if needed."""
    if not path.exists():
        private_file(path)
    with path.open("a", encoding="utf-8") as file:
        file.write(line + "\n")
