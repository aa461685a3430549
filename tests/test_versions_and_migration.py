"""Invariant 3 on the real dev server: a version deployed mid-journey leaves in-flight
customers on their version; `sopflow migrate` moves them when asked, and not before."""

from datetime import timedelta

from temporalio.testing import WorkflowEnvironment

from cli.migrate import migrate
from sopflow.settings import Settings
from tests.helpers import describe, eventually, plan_store, read_deliveries, send_event, terminate
from worker.main import build_worker

V1 = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: versioned}
enrol: {event: contact.added}
stages:
  greet:
    on_enter: [{send: {channel: log, text: "v1 hello"}}]
    triggers: [{after: 3d, goto: done}]
  done: {end: true}
"""

V2 = """\
apiVersion: sopflow/v1
kind: Playbook
metadata: {name: versioned}
enrol: {event: contact.added}
migrations:
  - from: "%s"
    stages: {greet: welcome}
stages:
  welcome:
    on_enter: [{send: {channel: log, text: "v2 hello"}}]
    triggers: [{after: 1d, goto: done}]
  done: {end: true}
"""


async def test_in_flight_journeys_keep_their_version_until_migrated(
    dev_env: WorkflowEnvironment, settings: Settings, make_plan
) -> None:
    settings = settings.model_copy(update={"publish_search_attributes": True})
    store = plan_store(settings)
    v1 = make_plan(V1)
    store.deploy(v1)
    client = dev_env.client
    old = [f"mig-{settings.temporal_task_queue[-6:]}-{i}" for i in range(3)]
    async with build_worker(client, settings):
        for customer in old:
            await send_event(client, settings, customer, "contact.added", "add")
        for customer in old:
            await eventually(lambda c=customer: _on(client, c, v1.version, "greet"))

        v2 = make_plan(V2 % v1.version)
        store.deploy(v2)
        newcomer = f"{old[0]}-new"
        await send_event(client, settings, newcomer, "contact.added", "add")
        await send_event(client, settings, old[0], "page.viewed", "view")
        await eventually(lambda: _on(client, newcomer, v2.version, "welcome"))
        view = await describe(client, old[0])
        [journey] = view.journeys
        assert (journey.version, journey.stage) == (v1.version, "greet")  # not moved
        assert view.next_due_at == journey.entered_stage_at + timedelta(days=3)

        async def counted() -> list:
            steps, _ = await migrate(client, store, v2, v1.version, dry_run=True)
            return steps if [s.customers for s in steps] == [3, 0] else []

        steps = await eventually(counted)
        assert [(s.stage, s.target) for s in steps] == [("greet", "welcome"), ("done", "done")]
        for customer in old:  # a dry run moves no one
            assert await _on(client, customer, v1.version, "greet")

        _, signalled = await migrate(client, store, v2, v1.version, dry_run=False)
        assert signalled == 3
        for customer in old:
            await eventually(lambda c=customer: _on(client, c, v2.version, "welcome"))
        view = await describe(client, old[0])
        [journey] = view.journeys
        migrated = [e for e in view.timeline if e.kind == "migrated"]
        assert [(e.detail["from_stage"], e.detail["to_stage"]) for e in migrated] == [
            ("greet", "welcome")
        ]
        # The customer keeps their place: entry time kept, the v2 timer counts from it,
        # and the v2 greeting is not sent to someone who was greeted already.
        assert view.next_due_at == journey.entered_stage_at + timedelta(days=1)
        texts = [d["text"] for d in read_deliveries(settings)]
        assert texts.count("v1 hello") == 3 and texts.count("v2 hello") == 1
        await terminate(client, *old, newcomer)


async def _on(client, customer: str, version: str, stage: str) -> bool:
    view = await describe(client, customer)
    return any(j.version == version and j.stage == stage for j in view.journeys)
