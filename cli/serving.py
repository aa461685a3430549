"""Run the API and the worker inside an asyncio program that owns signal handling."""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator

import uvicorn
from temporalio.client import Client

from api.app import create_app
from sopflow.errors import SopflowError
from sopflow.settings import Settings


class EmbeddedApiServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the supervisor decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def api_server(settings: Settings, temporal: Client | None = None) -> EmbeddedApiServer:
    config = uvicorn.Config(
        create_app(settings, temporal),
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        # Bound request bodies and connections so one client cannot exhaust the process.
        limit_concurrency=1000,
        # A request stuck on Temporal must not hold a shutdown forever.
        timeout_graceful_shutdown=5,
    )
    return EmbeddedApiServer(config)


def ensure_port_free(host: str, port: int, what: str, option: str) -> None:
    """Fail with a clear message (not a traceback) when something already listens there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers themselves bind: connections of a previous run lingering in
        # TIME_WAIT must not count as "in use"; a listening socket still does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise SopflowError(
                    f"port {port} on {host} is already in use, so the {what} cannot start: "
                    f"stop what listens there or choose another port with {option}"
                ) from e
            raise SopflowError(f"cannot listen on {host}:{port} for the {what}: {e}") from e
