"""The PostgreSQL the tests run the read model on.

`SOPFLOW_TEST_POSTGRES_URL` when it is set; else the server at 127.0.0.1:5432 (trust auth,
database `test`) when one answers; else a throwaway server started from the `pgserver`
wheel (PostgreSQL binaries on PyPI, so a fresh machine needs nothing but Python), in a
temporary folder that is deleted afterwards. As root, initdb refuses to run: pgserver then
runs the server as its own system user (`pgserver`, created once with useradd). The
throwaway server listens on a Unix socket only, so it never clashes with a port in use.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
# Generous: on a loaded machine a local connection can take seconds; a server that does
# not answer at all fails at once (connection refused).
CONNECT_TIMEOUT_SECONDS = 10


def answers(url: str) -> bool:
    """True when a PostgreSQL server accepts a connection at `url`."""
    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_SECONDS):
            return True
    except psycopg.OperationalError:
        return False


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a PostgreSQL server in a new temporary folder; yield its URL; stop and delete
    it afterwards. pgserver waits for the server to accept connections before returning."""
    with warnings.catch_warnings():
        # pgserver keeps a lock file in the user's runtime folder; with no XDG_RUNTIME_DIR
        # (CI, a root shell) platformdirs falls back to /tmp/runtime-<uid> and says so.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pgserver

    # Directly under the system's temporary folder: pgserver opens the folders above its
    # data folder to its own user (as root), which must not loosen pytest's private ones.
    folder = Path(tempfile.mkdtemp(prefix="sopflow-pg-"))
    try:
        server = pgserver.get_server(folder / "pgdata", cleanup_mode="delete")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def session_postgres_url() -> Iterator[str]:
    """The URL of the PostgreSQL for this test session, starting one if none is at hand."""
    configured = os.environ.get("SOPFLOW_TEST_POSTGRES_URL")
    if configured:
        yield configured
    elif answers(DEFAULT_URL):
        yield DEFAULT_URL
    else:
        with throwaway_postgres() as url:
            yield url


def with_option(url: str, name: str, value: str) -> str:
    """`url` with one more query parameter (a socket URL already has `?host=`)."""
    return f"{url}{'&' if '?' in url else '?'}{name}={value}"
