"""The `sopflow` command as a person runs it: real processes, real ports, the README's commands."""

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port
from tests.helpers import CONDITION_LIMIT_SECONDS

SOPFLOW = [sys.executable, "-m", "cli"]
# `sopflow dev` waits up to 180 s for its Temporal server (cli/dev.py), then starts the
# worker and the API: ready well within this on a busy machine, in seconds on an idle one.
DEV_READY_LIMIT_SECONDS = 300.0
# One README command (curl, the temporal CLI): a process start and one request.
COMMAND_LIMIT_SECONDS = 120.0
# `sopflow dev` stopping: the worker's in-flight tasks (30 s), then the server (15 s).
DEV_STOP_LIMIT_SECONDS = 120.0


def readme_shell_commands() -> list[str]:
    """The `sh` snippets of the README's "Try it" section, one command a line."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Try it", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def run_shell(
    command: str,
    cwd: Path,
    api_port: int,
    temporal_port: int,
    check: bool = True,
    wecom_port: int | None = None,
) -> str:
    command = command.replace("127.0.0.1:8000", f"127.0.0.1:{api_port}")
    if wecom_port is not None:
        command = command.replace("127.0.0.1:8900", f"127.0.0.1:{wecom_port}")
    command = command.replace(".venv/bin/temporal", str(Path(sys.executable).parent / "temporal"))
    command = command.replace("workflow list", f"workflow list --address 127.0.0.1:{temporal_port}")
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=COMMAND_LIMIT_SECONDS,
        check=check,
    )
    return done.stdout if done.returncode == 0 else ""


class DevProcess:
    """`sopflow dev` in a temporary folder, on free ports."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.api_port, self.temporal_port, self.ui_port = free_port(), free_port(), free_port()
        self.wecom_port = free_port()
        self.process: subprocess.Popen[str] | None = None

    def command(self, playbooks: Path = REPO / "playbooks") -> list[str]:
        return [
            *SOPFLOW,
            "dev",
            "--api-port",
            str(self.api_port),
            "--temporal-port",
            str(self.temporal_port),
            "--ui-port",
            str(self.ui_port),
            "--wecom-port",
            str(self.wecom_port),
            "--playbooks",
            str(playbooks),
        ]

    def run_to_end(self, playbooks: Path = REPO / "playbooks") -> subprocess.CompletedProcess[str]:
        """Run `sopflow dev` expecting it to refuse to start."""
        return subprocess.run(
            self.command(playbooks),
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=COMMAND_LIMIT_SECONDS,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )

    def start(self) -> str:
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert self.process.stdout is not None
        # A thread reads the output, so waiting for "ready" is bounded without racing the
        # pipe's buffering; it stops at the first line after "ready" is seen.
        printed: queue.Queue[str | None] = queue.Queue()
        stdout = self.process.stdout

        def read_until_ready() -> None:
            for line in stdout:
                printed.put(line)
                if "sopflow: ready" in line:
                    return
            printed.put(None)  # exited

        threading.Thread(target=read_until_ready, daemon=True).start()
        lines: list[str] = []
        deadline = time.monotonic() + DEV_READY_LIMIT_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = printed.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError("sopflow dev exited before it was ready:\n" + "".join(lines))
            lines.append(line)
            if "sopflow: ready" in line:
                return "".join(lines)
        self.process.kill()
        raise AssertionError(
            f"sopflow dev not ready within {DEV_READY_LIMIT_SECONDS:.0f}s:\n" + "".join(lines)
        )

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        assert self.process is not None and self.process.stdout is not None
        self.process.send_signal(sig)
        rest = self.process.stdout.read()
        self.process.stdout.close()
        return self.process.wait(timeout=DEV_STOP_LIMIT_SECONDS), rest


def server_pids(db: Path) -> list[str]:
    found = subprocess.run(["pgrep", "-f", str(db)], capture_output=True, text=True)
    return found.stdout.split()


def wait_for(probe, timeout: float = CONDITION_LIMIT_SECONDS):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met")


# Two `sopflow dev` starts and stops and the README's commands, each bounded above: the
# whole is bounded by their sum, far above what it takes on an idle machine (about 20 s).
@pytest.mark.timeout(2 * (DEV_READY_LIMIT_SECONDS + DEV_STOP_LIMIT_SECONDS) + 300)
def test_dev_runs_the_readme_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    dev = DevProcess(tmp_path)
    banner = dev.start()
    assert f"API docs     http://127.0.0.1:{dev.api_port}/docs" in banner
    assert f"Temporal UI  http://127.0.0.1:{dev.ui_port}" in banner
    assert f"console      http://127.0.0.1:{dev.api_port}/console/" in banner
    assert "deployed welcome" in banner
    assert f"fake WeCom   http://127.0.0.1:{dev.wecom_port}" in banner
    assert "WeCom tasks collect for 5 s, polled every 5 s" in banner
    commands = readme_shell_commands()
    add, show, tail, reply, search, callback, show_added, fake_state, confirm, show_again = commands
    assert show_again == show_added
    try:
        assert (
            json.loads(run_shell(add, tmp_path, dev.api_port, dev.temporal_port))["workflow_id"]
            == "customer/wx_42"
        )
        delivered = wait_for(
            lambda: run_shell(tail, tmp_path, dev.api_port, dev.temporal_port, check=False)
        )
        assert json.loads(delivered)["stage"] == "icebreak"
        customer = json.loads(run_shell(show, tmp_path, dev.api_port, dev.temporal_port))
        assert customer["journeys"][0]["stage"] == "icebreak"
        listed = wait_for(
            lambda: "customer/wx_42" in run_shell(search, tmp_path, dev.api_port, dev.temporal_port)
        )
        assert listed
        # A customer added through WeCom's callback with a channel code, as the fake
        # delivers it: welcomed with the callback's welcome code, the gift awaiting its task.
        fired = run_shell(callback, tmp_path, dev.api_port, dev.temporal_port, True, dev.wecom_port)
        assert json.loads(fired)["deliveries"] == [{"status": 200, "body": "success"}]
        assert "<State>try_readme</State>" in json.loads(fired)["plaintext"]

        def wm_7_messages(command: str) -> dict[str, str]:
            shown = run_shell(command, tmp_path, dev.api_port, dev.temporal_port, False)
            body = json.loads(shown) if shown else {}
            return {
                e["text"]: e["status"] for e in body.get("timeline", []) if e["kind"] == "message"
            }

        welcome = "你好，我是你的专属顾问李雷，很高兴认识你！"
        gift = "新人礼包已为你准备好，回复「1」即可领取。"
        # The welcome is `sent` only if WeCom took its code: within the code's 20 s life.
        assert wait_for(
            lambda: wm_7_messages(show_added) == {welcome: "sent", gift: "awaiting_confirmation"}
        )
        customer = json.loads(run_shell(show_added, tmp_path, dev.api_port, dev.temporal_port))
        assert [j["playbook"] for j in customer["journeys"]] == ["wecom_welcome"]
        assert customer["profile"]["attributes"]["owner"] == "li_lei"

        def task() -> dict | None:
            shown = run_shell(
                fake_state, tmp_path, dev.api_port, dev.temporal_port, True, dev.wecom_port
            )
            return next(iter(json.loads(shown)["mass_sends"]), None)

        created = wait_for(task)  # after the 5 s batch window of the fake's timings
        assert created["tasks"] == {"li_lei": {"status": 0, "recipients": {"wm_7": 0}}}
        assert created["content"]["text"]["content"] == gift
        state = json.loads(
            run_shell(fake_state, tmp_path, dev.api_port, dev.temporal_port, True, dev.wecom_port)
        )
        assert [(w["external_userid"], w["text"]["content"]) for w in state["welcomes"]] == [
            ("wm_7", welcome)
        ]
        confirmed = run_shell(
            confirm, tmp_path, dev.api_port, dev.temporal_port, True, dev.wecom_port
        )
        assert json.loads(confirmed) == {"recipients": {"wm_7": 1}}
        # sopflow learns it at its next poll (every 5 s against the fake).
        assert wait_for(lambda: wm_7_messages(show_again) == {welcome: "sent", gift: "sent"})
    finally:
        code, output = dev.stop()
    assert code == 0, output
    assert "sopflow: stopped" in output
    db = tmp_path / ".sopflow" / "temporal.db"
    assert server_pids(db) == []  # no Temporal server left behind

    # Run again: the customer is where it was, and the README's reply moves it on.
    dev = DevProcess(tmp_path)
    dev.start()
    try:
        customer = json.loads(run_shell(show, tmp_path, dev.api_port, dev.temporal_port))
        assert [j["stage"] for j in customer["journeys"]] == ["icebreak"]
        run_shell(reply, tmp_path, dev.api_port, dev.temporal_port)

        def engaged() -> bool:
            body = json.loads(run_shell(show, tmp_path, dev.api_port, dev.temporal_port))
            return body["journeys"][0]["stage"] == "engaged"

        assert wait_for(engaged)
    finally:
        code, _ = dev.stop(signal.SIGINT)
    assert code == 0


@pytest.mark.timeout(240)
def test_a_stalled_worker_does_not_freeze_the_api(tmp_path: Path) -> None:
    """Issue 11, finding 6: `sopflow dev` runs the worker in its own process. Stopped dead
    (SIGSTOP: what a workflow task holding the CPU for seconds looks like from outside),
    the API still answers and takes events; let go, the worker acts on them."""
    import httpx

    dev = DevProcess(tmp_path)
    banner = dev.start()
    match = re.search(r"sopflow: worker pid (\d+), log in ", banner)
    assert match, banner
    worker_pid = int(match.group(1))
    assert worker_pid != dev.process.pid  # type: ignore[union-attr]
    key = (tmp_path / ".sopflow" / "dev-operator.key").read_text().strip()
    base = f"http://127.0.0.1:{dev.api_port}"
    headers = {"Authorization": f"Bearer {key}"}
    os.kill(worker_pid, signal.SIGSTOP)
    try:
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        accepted = httpx.post(
            f"{base}/v1/events",
            json={"customer_id": "stalled-1", "type": "contact.added"},
            headers=headers,
            timeout=10,
        )
        assert accepted.status_code == 202
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    finally:
        os.kill(worker_pid, signal.SIGCONT)

    def enrolled() -> bool:
        response = httpx.get(f"{base}/v1/customers/stalled-1", headers=headers, timeout=10)
        return response.status_code == 200 and bool(response.json()["journeys"])

    try:
        assert wait_for(enrolled, timeout=60)
    finally:
        code, output = dev.stop()
    assert code == 0, output
    assert subprocess.run(["kill", "-0", str(worker_pid)], capture_output=True).returncode != 0


def test_dev_refuses_a_port_in_use_with_a_clear_message(tmp_path: Path) -> None:
    dev = DevProcess(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", dev.api_port))
        taken.listen()
        done = dev.run_to_end()
    assert done.returncode == 1
    assert done.stderr == (
        f"sopflow: port {dev.api_port} on 127.0.0.1 is already in use, so the API cannot "
        "start: stop what listens there or choose another port with --api-port\n"
    )
    assert "Traceback" not in done.stdout + done.stderr


def test_dev_refuses_a_broken_playbook_before_starting_anything(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text(
        (REPO / "playbooks/welcome.yaml").read_text().replace("goto: dormant", "goto: dormnat")
    )
    dev = DevProcess(tmp_path)
    done = dev.run_to_end(tmp_path)
    assert done.returncode == 1
    assert "unknown stage 'dormnat', did you mean 'dormant'?" in done.stderr
    assert not (tmp_path / ".sopflow" / "temporal.db").exists()


def test_validate_prints_one_diagnostic_a_line_and_exits_1(tmp_path: Path) -> None:
    good = subprocess.run(
        [*SOPFLOW, "validate", str(REPO / "playbooks")], capture_output=True, text=True, cwd=REPO
    )
    assert (good.returncode, good.stdout) == (0, "")
    broken = tmp_path / "pb.yaml"
    broken.write_text(
        (REPO / "playbooks/welcome.yaml")
        .read_text()
        .replace("after: 3d", "after: 3 days")
        .replace("goto: dormant", "goto: x")
    )
    bad = subprocess.run([*SOPFLOW, "validate", str(broken)], capture_output=True, text=True)
    assert bad.returncode == 1
    lines = bad.stdout.splitlines()
    assert len(lines) == 1
    assert re.fullmatch(
        rf"{re.escape(str(broken))}:\d+:\d+: error: '3 days' is not a duration.*", lines[0]
    )


def test_dev_fills_only_the_wecom_settings_the_environment_leaves_unset(monkeypatch) -> None:
    from cli.dev import fake_wecom_command, uses_fake_wecom, with_fake_wecom
    from cli.fake_wecom import DEV_CALLBACK_TOKEN
    from cli.main import _settings
    from sopflow.settings import Settings

    mine = Settings(wecom_corp_id="wwmine")
    filled = with_fake_wecom(mine, 8901)
    assert filled.wecom_corp_id == "wwmine"
    assert filled.wecom_callback_token is not None
    assert filled.wecom_callback_token.get_secret_value() == DEV_CALLBACK_TOKEN
    assert filled.wecom_api_base == "http://127.0.0.1:8901/cgi-bin"
    # The fake is started with the same corp id, so its callbacks are sealed for it.
    command = fake_wecom_command(filled, 8901)
    assert command[command.index("--corp-id") + 1] == "wwmine"
    assert uses_fake_wecom(mine)
    assert not uses_fake_wecom(Settings(wecom_api_base="https://wecom.example.com/cgi-bin"))
    # Short timings for the fake, each unless the environment sets it, as `sopflow dev`
    # reads it (the command line's options on top of the environment).
    assert (filled.wecom_batch_window_seconds, filled.wecom_poll_seconds) == (5, 5)
    monkeypatch.setenv("SOPFLOW_WECOM_POLL_SECONDS", "30")
    chosen = with_fake_wecom(_settings(api_port=8001), 8901)
    assert (chosen.wecom_batch_window_seconds, chosen.wecom_poll_seconds) == (5, 30)
    assert chosen.api_port == 8001
    assert chosen.environment()["SOPFLOW_WECOM_POLL_SECONDS"] == "30"  # the worker's too
