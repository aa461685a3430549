"""Deployments in the read model: numbered, merged or refused when stale, never lost; the
history; the cached current deployment; the folder format; schema upgrades at once."""

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect

from sopflow.core.deployment import PROFILE_RULES, Deployment, DeploymentChange, merge
from sopflow.errors import SopflowError
from sopflow.language import compile_paths, compile_playbook
from sopflow.language.plan import Plan
from sopflow.settings import Settings
from sopflow.store.database import Database, database_url
from sopflow.store.deploy import export_folder, import_folder
from sopflow.store.plans import DeploymentConflict, PlanStore
from tests.conftest import REPO, throwaway_schema
from tests.test_end_to_end import running  # noqa: F401 - the API-and-worker fixture

PLAYBOOK = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: %s}
enrol: {event: contact.added}
stages:
  hello:
    on_enter: [{send: {channel: log, text: "%s"}}]
    end: true
"""


def plan(name: str, text: str = "hello") -> Plan:
    return compile_playbook(PLAYBOOK % (name, text), filename=f"{name}.yaml")


def change(**playbooks: str) -> DeploymentChange:
    return DeploymentChange(playbooks=playbooks)


# The merge rule, pure ---------------------------------------------------------------


def test_a_deploy_on_the_current_deployment_applies_as_is() -> None:
    head = Deployment(playbooks={"a": "1", "b": "1"}, profile="p1")
    merged = merge(head, head, change(a="2"))
    assert merged.conflicts == ()
    assert merged.deployment == Deployment(playbooks={"a": "2", "b": "1"}, profile="p1")


def test_a_stale_deploy_of_other_playbooks_is_merged_and_keeps_the_concurrent_change() -> None:
    base = Deployment(playbooks={"a": "1", "b": "1"})
    head = Deployment(playbooks={"a": "2", "b": "1"})  # someone changed a meanwhile
    merged = merge(base, head, change(b="2"))
    assert merged.conflicts == ()
    assert merged.deployment.playbooks == {"a": "2", "b": "2"}


def test_a_stale_deploy_that_resends_an_unchanged_playbook_keeps_the_concurrent_version() -> None:
    base = Deployment(playbooks={"a": "1", "b": "1"})
    head = Deployment(playbooks={"a": "2", "b": "1"})
    # A folder deploy carries every playbook; it changed only b.
    merged = merge(base, head, change(a="1", b="2"))
    assert merged.conflicts == ()
    assert merged.deployment.playbooks == {"a": "2", "b": "2"}


def test_a_stale_deploy_that_changed_the_same_playbook_conflicts_unless_it_agrees() -> None:
    base = Deployment(playbooks={"a": "1"})
    head = Deployment(playbooks={"a": "2"})
    assert merge(base, head, change(a="3")).conflicts == ("a",)
    assert merge(base, head, change(a="2")).conflicts == ()
    # A playbook both added, differently.
    assert merge(Deployment(), Deployment(playbooks={"n": "1"}), change(n="2")).conflicts == ("n",)


def test_the_profile_rules_merge_by_the_same_rule() -> None:
    base = Deployment(playbooks={"a": "1"}, profile="p1")
    head = Deployment(playbooks={"a": "1"}, profile="p2")
    mine = DeploymentChange(playbooks={"a": "1"}, profile="p3", sets_profile=True)
    assert merge(base, head, mine).conflicts == (PROFILE_RULES,)
    keeps = DeploymentChange(playbooks={"a": "5"})  # does not touch the profile
    assert merge(base, head, keeps).deployment == Deployment(playbooks={"a": "5"}, profile="p2")


# The store, on SQLite and PostgreSQL ---------------------------------------------------


def test_deploys_are_numbered_with_who_what_and_when(database_settings: Settings) -> None:
    store = PlanStore.from_settings(database_settings)
    assert store.current() is None
    assert store.deployment() == Deployment()
    a1, b1 = plan("a", "one"), plan("b", "one")
    first = store.deploy_all([a1, b1], None, by="li@laptop", source="cli")
    second = store.deploy(plan("a", "two"), by="ops (key k1)", source="api")
    assert (first.id, second.id) == (1, 2)
    assert (second.based_on, second.merged, second.changed) == (1, False, ("a",))
    assert second.deployment.playbooks == {"a": plan("a", "two").version, "b": b1.version}
    [newest, oldest] = store.history()
    assert (newest.id, newest.deployed_by, newest.source) == (2, "ops (key k1)", "api")
    assert (oldest.deployed, oldest.changed) == ({"a": a1.version, "b": b1.version}, ("a", "b"))
    assert oldest.deployed_at <= newest.deployed_at and newest.deployed_at.tzinfo is not None
    assert [r.id for r in store.history(limit=1, before=2)] == [1]
    assert store.load(a1.version) == a1
    assert [p.version for p in store.versions_of("a")] == [a1.version, plan("a", "two").version]
    assert store.deployment() == second.deployment
    store.database.dispose()


def test_a_stale_deploy_is_merged_or_refused_and_never_lost(database_settings: Settings) -> None:
    store = PlanStore.from_settings(database_settings)
    start = store.deploy_all([plan("a"), plan("b")], None)
    theirs = store.deploy(plan("a", "theirs"))  # lands first
    mine = store.deploy_all([plan("b", "mine")], None, keep_profile=True, base=start.id)
    assert (mine.id, mine.based_on, mine.merged) == (3, start.id, True)
    assert mine.deployment.playbooks == {
        "a": plan("a", "theirs").version,  # the concurrent change survives
        "b": plan("b", "mine").version,
    }
    with pytest.raises(DeploymentConflict) as refused:
        store.deploy_all([plan("a", "mine")], None, keep_profile=True, base=start.id)
    assert str(refused.value) == (
        "this deploy is based on deployment 1, and a deploy since then changed a too "
        "(the current deployment is 3): deploy again on top of the current one"
    )
    assert (refused.value.base, refused.value.current, refused.value.conflicts) == (1, 3, ("a",))
    # Based on deployment 2, which already had their a, the same deploy goes through.
    again = store.deploy_all([plan("a", "mine")], None, keep_profile=True, base=theirs.id)
    assert (again.id, again.merged, again.changed) == (4, True, ("a",))
    with pytest.raises(DeploymentConflict, match="deployment 9 does not exist; the current one"):
        store.deploy_all([plan("c")], None, base=9)
    assert [r.id for r in store.history()] == [4, 3, 2, 1]  # the refused ones wrote nothing
    store.database.dispose()


def test_concurrent_deploys_through_separate_engines_are_all_kept_or_refused(
    database_settings: Settings,
) -> None:
    """Threads with engines of their own, as processes would: every deploy of a playbook
    of its own is kept; of deploys of one playbook on the same base, exactly one wins."""
    url = database_url(database_settings)
    first = PlanStore.from_settings(database_settings)
    first.deploy(plan("shared", "base"))
    first.database.dispose()
    threads = 8
    barrier = threading.Barrier(threads * 2)
    outcomes: list[tuple[str, int | None]] = []

    def deploy(name: str, text: str, base: int | None) -> None:
        store = PlanStore(Database(url))
        barrier.wait()
        try:
            record = store.deploy_all([plan(name, text)], None, keep_profile=True, base=base)
            outcomes.append((f"{name}:{text}", record.id))
        except DeploymentConflict:
            outcomes.append((f"{name}:{text}", None))
        finally:
            store.database.dispose()

    workers = [
        *(threading.Thread(target=deploy, args=(f"own{i}", "x", None)) for i in range(threads)),
        *(threading.Thread(target=deploy, args=("shared", f"v{i}", 1)) for i in range(threads)),
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    kept = {what: number for what, number in outcomes if number is not None}
    assert len(outcomes) == threads * 2
    assert {w for w in kept if w.startswith("own")} == {f"own{i}:x" for i in range(threads)}
    assert len([w for w in kept if w.startswith("shared")]) == 1
    store = PlanStore(Database(url))
    history = {r.id: r for r in store.history(limit=100)}
    assert sorted(history) == list(range(1, len(kept) + 2))  # numbered without a gap
    for what, number in kept.items():  # each kept deploy is in the history, as it was
        name, text = what.split(":")
        assert history[number].deployed == {name: plan(name, text).version}
    final = store.current()
    assert final is not None
    winner = next(w for w in kept if w.startswith("shared")).split(":")[1]
    assert final.deployment.playbooks == {
        "shared": plan("shared", winner).version,
        **{f"own{i}": plan(f"own{i}", "x").version for i in range(threads)},
    }
    store.database.dispose()


def test_a_deploy_made_by_another_process_is_seen_after_the_check_interval(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path / "home")
    patient = PlanStore(Database.from_settings(settings), check_seconds=3600)
    eager = PlanStore(Database.from_settings(settings), check_seconds=0)
    patient.deploy(plan("a", "one"))
    assert patient.deployment().playbooks["a"] == plan("a", "one").version
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    (playbooks / "a.yaml").write_text(PLAYBOOK % ("a", "two"))
    subprocess.run(
        [sys.executable, "-m", "cli", "deploy", str(playbooks), "--by", "elsewhere"],
        env={**os.environ, "PYTHONPATH": str(REPO), "SOPFLOW_HOME": str(settings.home)},
        check=True,
        capture_output=True,
    )
    # This process cached deployment 1 an hour's worth ago: it keeps it until a check...
    assert patient.deployment().playbooks["a"] == plan("a", "one").version
    # ...which finds deployment 2 by its number.
    assert eager.deployment().playbooks["a"] == plan("a", "two").version
    assert patient.deployment().playbooks["a"] == plan("a", "two").version  # shared cache
    [latest, _] = eager.history()
    assert (latest.deployed_by, latest.source) == ("elsewhere", "cli")


def test_the_folder_format_round_trips(tmp_path: Path) -> None:
    source = PlanStore.from_settings(Settings(home=tmp_path / "one"))
    bundle = compile_paths([REPO / "playbooks"])
    source.deploy_all(list(bundle.plans.values()), bundle.profile)
    source.deploy(plan("extra"))
    folder = tmp_path / "exported"
    assert export_folder(source, folder) == len(bundle.plans) + 2  # the profile and extra
    target = PlanStore.from_settings(Settings(home=tmp_path / "two"))
    count, record = import_folder(target, folder, by="restore")
    assert count == len(bundle.plans) + 2
    assert record is not None and (record.deployed_by, record.source) == ("restore", "import")
    assert target.deployment() == source.deployment()
    (folder / "deployment.json").write_text('{"playbooks": {"welcome": "0000000000000000"}}')
    with pytest.raises(SopflowError, match="deploys versions the folder does not hold: 0000"):
        import_folder(target, folder)
    (folder / "broken.json").write_text("{}")
    with pytest.raises(SopflowError, match=r"broken.json: not a sopflow plan"):
        import_folder(target, folder)


# Schema upgrades by many processes at once ---------------------------------------------

UPGRADE_WHEN_TOLD = """\
import sys, time
from pathlib import Path
from sopflow.store.database import upgrade
Path(sys.argv[3]).touch()
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
upgrade(sys.argv[1])
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with throwaway_schema(request.getfixturevalue("postgres_server")) as url:
        yield url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.mark.timeout(120)
def test_processes_that_upgrade_an_empty_schema_at_once_all_succeed(
    empty_database: str, tmp_path: Path
) -> None:
    """Without the lock, 1 to 3 of 4 failed on an empty schema (a duplicate table)."""
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(4)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", UPGRADE_WHEN_TOLD, empty_database, str(go), str(flag)],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stderr=subprocess.PIPE,
            text=True,
        )
        for flag in ready
    ]
    deadline = time.monotonic() + 60
    while not all(flag.exists() for flag in ready):  # every process imported, waiting
        assert time.monotonic() < deadline, "the upgrading processes did not start"
        time.sleep(0.02)
    go.touch()
    errors = [p.communicate(timeout=90)[1] for p in processes]
    failures = [e[-500:] for p, e in zip(processes, errors, strict=True) if p.returncode != 0]
    assert failures == []
    database = Database(empty_database)
    assert {"plans", "deployments", "deliveries", "alembic_version"} <= set(
        inspect(database.engine).get_table_names()
    )
    database.dispose()


# Through the API and the CLI ---------------------------------------------------------------

YAML = {"Content-Type": "application/yaml"}


def if_match(deployment: int) -> dict[str, str]:
    return {**YAML, "If-Match": f'"{deployment}"'}


async def test_api_deploys_name_their_base_and_a_conflict_answers_409(running) -> None:  # noqa: F811
    http = running.http
    current = await http.get("/v1/deployments/current")
    assert current.status_code == 200
    number = current.json()["id"]
    assert current.headers["ETag"] == f'"{number}"'
    first = await http.post(
        "/v1/playbooks",
        content=PLAYBOOK % ("api_a", "one"),
        headers=if_match(number),
    )
    assert first.status_code == 201
    assert first.headers["ETag"] == f'"{number + 1}"'
    assert {k: first.json()[k] for k in ("deployment", "based_on", "merged")} == {
        "deployment": number + 1,
        "based_on": number,
        "merged": False,
    }
    # Based on the same deployment, another playbook: merged, both kept.
    other = await http.post(
        f"/v1/playbooks?base={number}", content=PLAYBOOK % ("api_b", "one"), headers=YAML
    )
    assert other.status_code == 201
    assert (other.json()["deployment"], other.json()["merged"]) == (number + 2, True)
    # Based on the same deployment, the playbook the first deploy changed: refused.
    stale = await http.post(
        "/v1/playbooks",
        content=PLAYBOOK % ("api_a", "two"),
        headers=if_match(number),
    )
    assert stale.status_code == 409
    assert stale.json()["error"] == {
        "code": "deployment_conflict",
        "message": f"this deploy is based on deployment {number}, and a deploy since then "
        f"changed api_a too (the current deployment is {number + 2}): deploy again on top of "
        "the current one",
        "details": [],
    }
    bad = await http.post(
        "/v1/playbooks", content=PLAYBOOK % ("api_a", "two"), headers={**YAML, "If-Match": "soon"}
    )
    assert bad.status_code == 422
    assert (
        bad.json()["error"]["message"] == "If-Match: 'soon' is not a deployment ETag such as \"7\""
    )
    listed = {p["name"]: p["version"] for p in (await http.get("/v1/playbooks")).json()}
    assert listed["api_a"] == plan("api_a", "one").version  # the refused deploy changed nothing
    assert listed["api_b"] == plan("api_b", "one").version
    history = (await http.get("/v1/deployments", params={"limit": 3})).json()
    assert [h["id"] for h in history] == [number + 2, number + 1, number]
    newest = history[0]
    assert newest["deployed_by"].startswith("tests (key ") and newest["source"] == "api"
    assert (newest["based_on"], newest["merged"], newest["changed"]) == (number, True, ["api_b"])
    assert newest["deployed"] == {"api_b": plan("api_b", "one").version}
    assert newest["playbooks"]["api_a"] == plan("api_a", "one").version


def test_the_cli_lists_the_history_and_moves_plans_through_a_folder(tmp_path: Path) -> None:
    def sopflow(*args: str, home: str = "one") -> str:
        done = subprocess.run(
            [sys.executable, "-m", "cli", *args],
            env={**os.environ, "PYTHONPATH": str(REPO), "SOPFLOW_HOME": str(tmp_path / home)},
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    deployed = sopflow("deploy", str(REPO / "playbooks" / "welcome.yaml"), "--by", "li@laptop")
    welcome = plan_version(REPO / "playbooks" / "welcome.yaml")
    assert deployed.splitlines() == [f"deployed welcome {welcome}", "deployment 1"]
    [line] = sopflow("deployments").splitlines()
    assert re.fullmatch(
        rf"1  \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\dZ  cli  li@laptop  welcome {welcome}", line
    )
    folder = tmp_path / "exported"
    assert (
        sopflow("plans", "export", str(folder))
        == f"exported 1 plans and deployment.json to {folder}\n"
    )
    assert sorted(p.name for p in folder.iterdir()) == ["deployment.json", f"{welcome}.json"]
    imported = sopflow("plans", "import", str(folder), home="two")
    assert imported == f"imported 1 plans from {folder}; deployment 1\n"
    [line] = sopflow("deployments", home="two").splitlines()
    assert " import " in line and f"welcome {welcome}" in line


def plan_version(path: Path) -> str:
    from sopflow.language import compile_playbook_file

    return compile_playbook_file(path).version


def test_sopflow_dev_imports_an_old_plans_folder_once_then_deploys(tmp_path: Path) -> None:
    """A data folder from before the database-backed store keeps its journeys' versions."""
    from cli.dev import deploy_playbooks

    old = PlanStore.from_settings(Settings(home=tmp_path / "old"))
    retired = plan("retired", "only in the old folder")
    old.deploy(retired)
    settings = Settings(home=tmp_path / "home", playbooks_dir=REPO / "playbooks")
    export_folder(old, settings.plans_dir)  # the layout the folder store wrote
    deployed = deploy_playbooks(settings)
    assert "welcome" in {name for _, name, _ in deployed}
    store = PlanStore.from_settings(settings)
    assert store.load(retired.version) == retired  # journeys pinned to it find it
    history = store.history()
    assert [(r.id, r.source) for r in history] == [(2, "dev"), (1, "dev")]
    assert history[1].deployed == {"retired": retired.version}
    deploy_playbooks(settings)  # the next start imports nothing again: one deploy more
    assert [r.id for r in store.history()] == [3, 2, 1]
    assert store.history(limit=1)[0].deployed == history[0].deployed
    old.database.dispose()
    store.database.dispose()


def test_a_deploy_without_a_taxonomy_keeps_the_deployed_one_and_says_so(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    home = str(tmp_path / "home")
    runner = CliRunner()
    everything = runner.invoke(app, ["deploy", str(REPO / "playbooks"), "--home", home])
    assert everything.exit_code == 0, everything.output
    profile = PlanStore.from_settings(Settings(home=tmp_path / "home")).deployment().profile
    assert profile is not None
    one = runner.invoke(app, ["deploy", str(REPO / "playbooks" / "welcome.yaml"), "--home", home])
    assert one.exit_code == 0, one.output
    assert f"kept the deployed taxonomy and tiers (profile {profile})" in one.output
    assert PlanStore.from_settings(Settings(home=tmp_path / "home")).deployment().profile == profile


def _folder_with_taxonomy(folder: Path, value: str) -> Path:
    """A copy of the shipped playbooks whose taxonomy gains one tag value."""
    import shutil

    shutil.copytree(REPO / "playbooks", folder)
    taxonomy = folder / "taxonomy.yaml"
    text = taxonomy.read_text(encoding="utf-8")
    assert "tags: [haggling, " in text
    taxonomy.write_text(
        text.replace("tags: [haggling, ", f"tags: [{value}, haggling, ", 1), encoding="utf-8"
    )
    return folder


def test_restarting_sopflow_dev_keeps_a_taxonomy_deployed_through_the_api(tmp_path: Path) -> None:
    from cli.dev import deploy_playbooks

    settings = Settings(home=tmp_path / "home", playbooks_dir=REPO / "playbooks")
    said: list[str] = []
    deploy_playbooks(settings, said.append)
    store = PlanStore.from_settings(settings)
    # An operator deploys a taxonomy with one more tag through the API.
    newer = compile_paths([_folder_with_taxonomy(tmp_path / "api", "api_only")]).profile
    assert newer is not None
    store.deploy_all([], newer, source="api", by="ops")
    deploy_playbooks(settings, said.append)  # sopflow dev starts again, playbooks/ unchanged
    assert store.deployment().profile == newer.version
    assert any("keeps what was deployed since" in line for line in said)


def test_sopflow_dev_does_not_replace_a_newer_taxonomy_when_the_folder_changed_it_too(
    tmp_path: Path,
) -> None:
    from cli.dev import deploy_playbooks

    settings = Settings(home=tmp_path / "home", playbooks_dir=REPO / "playbooks")
    deploy_playbooks(settings, print)
    store = PlanStore.from_settings(settings)
    newer = compile_paths([_folder_with_taxonomy(tmp_path / "api", "api_only")]).profile
    assert newer is not None
    store.deploy_all([], newer, source="api", by="ops")
    edited = settings.model_copy(
        update={"playbooks_dir": _folder_with_taxonomy(tmp_path / "local", "local_only")}
    )
    said: list[str] = []
    assert deploy_playbooks(edited, said.append) == []
    assert store.deployment().profile == newer.version
    assert any(line.startswith("sopflow: kept deployment") for line in said), said
