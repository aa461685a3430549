"""`sopflow dev`: the embedded default, everything on one machine under .sopflow/.

Starts the Temporal dev server (SQLite file, WAL journal, sopflow's search attributes), the
fake WeCom server (unless SOPFLOW_WECOM_API_BASE points elsewhere), one worker and the API;
deploys the playbooks; stops every child cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
from pydantic import SecretStr
from temporalio.client import Client

from cli.binaries import temporal_cli
from cli.fake_wecom import (
    DEV_AGENT_ID,
    DEV_APP_SECRET,
    DEV_CALLBACK_AES_KEY,
    DEV_CALLBACK_TOKEN,
    DEV_CORP_ID,
    DEV_SECRET,
)
from cli.heap import freeze_startup_heap
from cli.serving import api_server, ensure_port_free
from sopflow.errors import SopflowError
from sopflow.files import private_file
from sopflow.settings import Settings
from sopflow.store.database import Database
from sopflow.store.deploy import deploy_paths, import_folder
from sopflow.store.keys import Role, authenticate, create_key
from sopflow.store.plans import DeploymentConflict, PlanStore
from workflows.client import connect
from workflows.contracts import SEARCH_ATTRIBUTES

# Generous: on a busy machine a first start (a new SQLite database, the search attributes)
# has taken minutes; it returns as soon as the server answers (docs/limits.md).
SERVER_START_TIMEOUT_SECONDS = 180.0
SERVER_STOP_TIMEOUT_SECONDS = 15.0
WORKER_STOP_TIMEOUT_SECONDS = 30.0


def dev_server_command(settings: Settings) -> list[str]:
    """The `temporal server start-dev` command line for the embedded default."""
    host, port = settings.dev_server_address
    return [
        str(temporal_cli()),
        "server",
        "start-dev",
        "--ip",
        host,
        "--port",
        str(port),
        "--ui-port",
        str(settings.temporal_ui_port),
        "--namespace",
        settings.temporal_namespace,
        "--db-filename",
        str(settings.temporal_db),
        # WAL lets readers and the writer proceed together; NORMAL sync is what the
        # Temporal notes measured as safe enough for development and much faster.
        "--sqlite-pragma",
        "journal_mode=WAL",
        "--sqlite-pragma",
        "synchronous=NORMAL",
        *(
            arg
            for name, kind in SEARCH_ATTRIBUTES.items()
            for arg in ("--search-attribute", f"{name}={kind}")
        ),
        # Without this a freshly registered attribute can be "not mapped" for a while.
        "--dynamic-config-value",
        "system.forceSearchAttributesCacheRefreshOnRead=true",
        "--log-level",
        "warn",
    ]


def _die_with_parent() -> None:
    # Linux: the server receives SIGTERM if sopflow itself is killed with SIGKILL, so no
    # orphaned server keeps the database file and the ports.
    os.umask(0o077)  # what the child creates (its SQLite journal files) is private too
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def start_dev_server(settings: Settings) -> subprocess.Popen[bytes]:
    # The server's database and log are customers' data too: the log is created 0600 here,
    # and the server's umask (below) makes its database private (it must create the file
    # itself: an empty one is not a database it would set up).
    log = private_file(settings.home / "temporal.log").open("ab")
    return subprocess.Popen(
        dev_server_command(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
        # Its own process group: Ctrl-C reaches sopflow, which stops the server last,
        # after the worker has finished its in-flight tasks.
        start_new_session=True,
    )


async def wait_for_server(settings: Settings, server: subprocess.Popen[bytes]) -> Client:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
    while True:
        if server.poll() is not None:
            raise SopflowError(
                f"the Temporal dev server exited with code {server.returncode}; "
                f"see {settings.home / 'temporal.log'}"
            )
        try:
            return await connect(settings)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise SopflowError(
                    "the Temporal dev server did not start within "
                    f"{SERVER_START_TIMEOUT_SECONDS:.0f}s"
                ) from None
            await asyncio.sleep(0.2)


def stop_dev_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is not None:
        return
    server.terminate()
    try:
        server.wait(timeout=SERVER_STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


# --------------------------------------------------------------------------- fake WeCom

FAKE_WECOM_LOG = "fake-wecom.log"
FAKE_WECOM_START_TIMEOUT_SECONDS = 60.0
# The fake's development credentials, for each WeCom setting the environment leaves unset.
FAKE_WECOM_CREDENTIALS: dict[str, object] = {
    "wecom_corp_id": DEV_CORP_ID,
    "wecom_secret": SecretStr(DEV_SECRET),
    "wecom_app_secret": SecretStr(DEV_APP_SECRET),
    "wecom_agent_id": DEV_AGENT_ID,
    "wecom_callback_token": SecretStr(DEV_CALLBACK_TOKEN),
    "wecom_callback_aes_key": SecretStr(DEV_CALLBACK_AES_KEY),
}
# Against the fake, a task a minute after the add and a poll every five minutes would make
# trying the flow a wait: these timings apply unless the environment (or .env) sets them,
# and never to a real WeCom.
FAKE_WECOM_TIMINGS: dict[str, int] = {
    "wecom_batch_window_seconds": 5,
    "wecom_poll_seconds": 5,
}


def uses_fake_wecom(settings: Settings) -> bool:
    """The dev stack runs the fake unless SOPFLOW_WECOM_API_BASE names another server."""
    default: str = Settings.model_fields["wecom_api_base"].default
    return settings.wecom_api_base == default


def with_fake_wecom(settings: Settings, port: int) -> Settings:
    """The settings pointing at the fake on `port`, with the fake's credentials and short
    timings; a WeCom setting given in the environment (or .env) is kept."""
    unset = {
        name: value
        for name, value in FAKE_WECOM_CREDENTIALS.items()
        if getattr(settings, name) is None
    }
    timings = {
        name: value
        for name, value in FAKE_WECOM_TIMINGS.items()
        if name not in settings.model_fields_set
    }
    base = f"http://{settings.api_host}:{port}/cgi-bin"
    return settings.model_copy(update={**unset, **timings, "wecom_api_base": base})


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value else ""


def fake_wecom_command(settings: Settings, port: int) -> list[str]:
    """The fake with the settings' credentials, delivering callbacks to this API."""
    callback_url = f"http://{settings.api_host}:{settings.api_port}/v1/wecom/callback"
    return [
        sys.executable,
        "-m",
        "cli.fake_wecom",
        "--host",
        settings.api_host,
        "--port",
        str(port),
        "--callback-url",
        callback_url,
        "--corp-id",
        settings.wecom_corp_id or DEV_CORP_ID,
        "--secret",
        _secret(settings.wecom_secret) or DEV_SECRET,
        "--app-secret",
        _secret(settings.wecom_app_secret) or DEV_APP_SECRET,
        "--agent-id",
        str(settings.wecom_agent_id or DEV_AGENT_ID),
        "--callback-token",
        _secret(settings.wecom_callback_token) or DEV_CALLBACK_TOKEN,
        "--callback-aes-key",
        _secret(settings.wecom_callback_aes_key) or DEV_CALLBACK_AES_KEY,
    ]


def start_fake_wecom(settings: Settings, port: int) -> subprocess.Popen[bytes]:
    log = private_file(settings.home / FAKE_WECOM_LOG).open("ab")
    return subprocess.Popen(
        fake_wecom_command(settings, port),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
        start_new_session=True,
    )


async def wait_for_fake_wecom(settings: Settings, fake: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + FAKE_WECOM_START_TIMEOUT_SECONDS
    url = f"http://{settings.api_host}:{port}/_fake/openapi.json"
    async with httpx.AsyncClient(timeout=2.0) as http:
        while True:
            if fake.poll() is not None:
                raise SopflowError(
                    f"the fake WeCom server exited with code {fake.returncode}; "
                    f"see {settings.home / FAKE_WECOM_LOG}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise SopflowError(
                    "the fake WeCom server did not start within "
                    f"{FAKE_WECOM_START_TIMEOUT_SECONDS:.0f}s; see {settings.home / FAKE_WECOM_LOG}"
                )
            await asyncio.sleep(0.1)


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=SERVER_STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --------------------------------------------------------------------------- the stack


async def run_dev(
    settings: Settings,
    announce: Callable[[str], None] = print,
    wecom_port: int | None = 8900,
) -> None:
    """Run the embedded default until SIGINT or SIGTERM; with `wecom_port`, against the
    fake WeCom on that port (unless SOPFLOW_WECOM_API_BASE names another server)."""
    host, port = settings.dev_server_address
    ensure_port_free(host, port, "Temporal dev server", "--temporal-port")
    ensure_port_free(host, settings.temporal_ui_port, "Temporal UI", "--ui-port")
    ensure_port_free(settings.api_host, settings.api_port, "API", "--api-port")
    fake_port = wecom_port if wecom_port and uses_fake_wecom(settings) else None
    if fake_port is not None:
        ensure_port_free(settings.api_host, fake_port, "fake WeCom server", "--wecom-port")
        settings = with_fake_wecom(settings, fake_port)
    deployed = deploy_playbooks(settings, announce)
    operator_key = development_key(settings)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    server = start_dev_server(settings)
    worker: subprocess.Popen[bytes] | None = None
    fake: subprocess.Popen[bytes] | None = None
    try:
        if fake_port is not None:
            fake = start_fake_wecom(settings, fake_port)
            await wait_for_fake_wecom(settings, fake, fake_port)
        client = await wait_for_server(settings, server)
        # The worker runs in its own process: a workflow task that holds its CPU (or a
        # worker stopped dead) cannot stall the API's event loop.
        worker = start_worker(settings)
        api = api_server(settings, client)
        freeze_startup_heap()  # full collections skip what the imports built (cli/heap.py)
        serving = asyncio.create_task(api.serve(), name="api")
        working = asyncio.create_task(asyncio.to_thread(worker.wait), name="worker")
        while not api.started and not serving.done() and not working.done():
            await asyncio.sleep(0.05)
        announce(f"sopflow: worker pid {worker.pid}, log in {settings.home / WORKER_LOG}")
        if fake_port is not None:
            announce(
                f"sopflow: fake WeCom   http://{settings.api_host}:{fake_port} (test hooks: "
                f"/_fake/docs), callbacks to /v1/wecom/callback"
            )
            announce(
                f"sopflow: WeCom tasks collect for {settings.wecom_batch_window_seconds} s, "
                f"polled every {settings.wecom_poll_seconds} s "
                "(SOPFLOW_WECOM_BATCH_WINDOW_SECONDS, SOPFLOW_WECOM_POLL_SECONDS)"
            )
        elif settings.wecom_corp_id:
            announce(f"sopflow: WeCom at {settings.wecom_api_base}")
        _announce_ready(settings, deployed, announce)
        announce(
            f"sopflow: operator key (development) in {settings.home / DEV_KEY_FILE}: {operator_key}"
        )
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait(
            [serving, working, stopper], return_when=asyncio.FIRST_COMPLETED
        )
        announce("sopflow: stopping")
        api.should_exit = True
        # In-flight workflow tasks finish first; a stuck one must not block Ctrl-C.
        if not await asyncio.to_thread(stop_worker, worker):
            announce("sopflow: the worker did not stop in time; Temporal retries its tasks")
        await asyncio.gather(serving, working, return_exceptions=True)
        stopper.cancel()
        if working in done:
            raise SopflowError(
                f"the worker stopped (exit code {worker.returncode}); see "
                f"{settings.home / WORKER_LOG}"
            )
        if serving in done and serving.exception() is not None:
            raise SopflowError(f"the api stopped: {serving.exception()}")
    finally:
        if worker is not None:
            stop_worker(worker)
        stop_process(fake)
        stop_dev_server(server)
    announce("sopflow: stopped")


WORKER_LOG = "worker.log"


def start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    """`sopflow worker` with these settings, logging to the data folder."""
    log = private_file(settings.home / WORKER_LOG).open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "worker"],
        env={**os.environ, **settings.environment()},
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
        # Its own process group: Ctrl-C reaches sopflow, which stops the worker itself.
        start_new_session=True,
    )


def stop_worker(worker: subprocess.Popen[bytes]) -> bool:
    """SIGTERM (the worker finishes its in-flight tasks), then SIGKILL after the bound;
    False when it had to be killed."""
    if worker.poll() is not None:
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(worker.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
    worker.terminate()
    try:
        worker.wait(timeout=WORKER_STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
        return False
    return True


DEV_KEY_FILE = "dev-operator.key"


def deploy_playbooks(
    settings: Settings, announce: Callable[[str], None] = print
) -> list[tuple[str, str, str]]:
    """Deploy the playbooks folder; first, once, the plans a data folder from before the
    database-backed store kept in `plans/`, so its journeys in flight find their versions.

    The deploy is based on the last one `sopflow dev` made: what was deployed since through
    the API or the CLI is kept unless the folder changed the same playbook (or the
    taxonomy and tiers) too, and then the newer deployment is kept and the folder is not
    deployed; either way the banner says so."""
    store = PlanStore.from_settings(settings)
    if store.current() is None and (settings.plans_dir / "deployment.json").exists():
        import_folder(store, settings.plans_dir, by="sopflow dev", source="dev")
    own = next((r.id for r in store.history(limit=200) if r.source == "dev"), None)
    try:
        record, deployed = deploy_paths(
            [settings.playbooks_dir], store, by="sopflow dev", source="dev", base=own
        )
    except DeploymentConflict as e:
        announce(
            f"sopflow: kept deployment {e.current}: it changed what {settings.playbooks_dir}/ "
            f"changes too ({', '.join(e.conflicts)}); deploy the folder with "
            f"`.venv/bin/sopflow deploy {settings.playbooks_dir}` to replace it"
        )
        return []
    if record.merged:
        announce(
            f"sopflow: deployment {record.id} keeps what was deployed since sopflow dev's "
            f"last start (deployment {own}) and adds {settings.playbooks_dir}/'s changes"
        )
    return deployed


def development_key(settings: Settings) -> str:
    """An operator key for the embedded default, kept in a 0600 file across restarts."""
    database = Database.from_settings(settings)
    path = settings.home / DEV_KEY_FILE
    if path.exists():
        token = path.read_text(encoding="utf-8").strip()
        if authenticate(database, token) is not None:
            return token
    token, _ = create_key(database, Role.OPERATOR, "sopflow dev")
    private_file(path)
    path.write_text(token + "\n", encoding="utf-8")
    return token


def _announce_ready(
    settings: Settings, deployed: list[tuple[str, str, str]], announce: Callable[[str], None]
) -> None:
    base = f"http://{settings.api_host}:{settings.api_port}"
    host, _ = settings.dev_server_address
    for path, name, version in deployed:
        announce(f"sopflow: deployed {name} {version} from {path}")
    announce(f"sopflow: Temporal at {settings.temporal_address}, data in {settings.temporal_db}")
    announce(f"sopflow: Temporal UI  http://{host}:{settings.temporal_ui_port}")
    announce(f"sopflow: API docs     {base}/docs")
    announce(f"sopflow: console      {base}/console/ (sign in with the operator key below)")
    announce(f"sopflow: ready; send an event with POST {base}/v1/events (Ctrl-C stops)")
