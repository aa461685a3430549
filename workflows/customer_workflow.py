"""CustomerJourneyWorkflow: the durable shell around the pure journey core.

One workflow per customer. It waits for an event signal or the earliest due time, steps
the core, hands deliveries to activities and carries its whole state across
continue-as-new. Everything that decides *what* happens lives in sopflow.core.journey.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from sopflow.core import journey
    from sopflow.core.deployment import Deployment
    from sopflow.core.migration import apply_migration
    from sopflow.core.state import CustomerState, Delivery, StepResult
    from sopflow.core.step import Catalog
    from sopflow.language.channels import LOCAL_CHANNELS
    from sopflow.language.plan import Plan, ProfilePlan, shared_plan, shared_profile
    from workflows.contracts import (
        BATCHED_LOCAL_DELIVERIES_PATCH,
        DELIVER_ACTIVITY,
        DELIVER_BATCH_ACTIVITY,
        DESCRIBE_QUERY,
        EVENT_SIGNAL,
        LIFECYCLE_SEARCH_ATTRIBUTE,
        LOAD_PLANS_ACTIVITY,
        LOCAL_DELIVERIES_PATCH,
        LOCAL_PLAN_LOADING_PATCH,
        MAX_DELIVERY_BATCH,
        MAX_PUBLISHED_TAGS,
        MIGRATE_SIGNAL,
        RECORD_TIMELINE_ACTIVITY,
        STAGES_SEARCH_ATTRIBUTE,
        TAGS_SEARCH_ATTRIBUTE,
        TIER_SEARCH_ATTRIBUTE,
        VERSIONS_SEARCH_ATTRIBUTE,
        WORKFLOW_NAME,
        CustomerView,
        CustomerWorkflowInput,
        DeliveryBatch,
        DeliveryBatchOutcome,
        DeliveryOutcome,
        EventSignal,
        LoadPlansInput,
        LoadPlansResult,
        MigrationSignal,
        RecordTimelineInput,
    )

STAGES = SearchAttributeKey.for_keyword_list(STAGES_SEARCH_ATTRIBUTE)
VERSIONS = SearchAttributeKey.for_keyword_list(VERSIONS_SEARCH_ATTRIBUTE)
TAGS = SearchAttributeKey.for_keyword_list(TAGS_SEARCH_ATTRIBUTE)
TIER = SearchAttributeKey.for_keyword(TIER_SEARCH_ATTRIBUTE)
LIFECYCLE = SearchAttributeKey.for_keyword(LIFECYCLE_SEARCH_ATTRIBUTE)

# Deliveries retry with backoff for a day (an endpoint down for hours still gets its
# message); a permanent refusal (a 4xx) is not retried and is recorded as failed.
DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=["PermanentDeliveryError"],
)
DELIVERY_START_TO_CLOSE = timedelta(seconds=30)
DELIVERY_SCHEDULE_TO_CLOSE = timedelta(hours=24)
# Ledger writes are short keyed inserts: local activities (one history marker each),
# retried until the database answers, without holding back the journeys.
RECORD_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))


@workflow.defn(name=WORKFLOW_NAME)
class CustomerJourneyWorkflow:
    # @workflow.init: under signal-with-start the signal handler runs before `run`, so
    # the state it appends to must exist already.
    @workflow.init
    def __init__(self, input: CustomerWorkflowInput) -> None:
        self._state = input.state or CustomerState(customer_id=input.customer_id)
        self._plans: dict[str, Plan] = {v: shared_plan(p) for v, p in input.plans.items()}
        self._profiles: dict[str, ProfilePlan] = {
            v: shared_profile(p) for v, p in input.profiles.items()
        }
        self._deployment: Deployment = input.deployment
        self._inbox: list[EventSignal] = list(input.inbox)
        self._migrations: list[MigrationSignal] = list(input.migrations)
        self._options = input.options
        self._outbox: list[Delivery] = []
        self._delivering = False
        self._recorded_seq = input.recorded_seq
        self._recording = False
        self._published: tuple[object, ...] | None = None

    @workflow.signal(name=EVENT_SIGNAL)
    def receive_event(self, signal: EventSignal) -> None:
        self._inbox.append(signal)

    @workflow.signal(name=MIGRATE_SIGNAL)
    def receive_migration(self, signal: MigrationSignal) -> None:
        self._migrations.append(signal)

    @workflow.query(name=DESCRIBE_QUERY)
    def describe(self) -> CustomerView:
        return CustomerView(
            customer_id=self._state.customer_id,
            profile=self._state.profile,
            journeys=list(self._state.journeys.values()),
            timeline=self._state.timeline,
            next_due_at=journey.next_due_at(self._state, self._catalog()),
            group=self._state.group,
        )

    @workflow.run
    async def run(self, input: CustomerWorkflowInput) -> None:
        # Deliveries run beside the main loop, one at a time and in order, so a slow
        # webhook never holds back the customer's other journeys.
        delivery_loop = asyncio.create_task(self._deliver_in_order())
        record_loop = asyncio.create_task(self._record_in_order())
        while not self._should_continue_as_new():
            await self._wait_for_work()
            # Events first: each acts at its own time and fires what was due before it;
            # then whatever else is due by now. The simulator keeps the same order.
            while self._inbox:
                signal = self._inbox.pop(0)
                await self._load_missing_plans(signal.deployment)
                self._deployment = self._loaded_part(signal.deployment)
                for event in signal.all_events():
                    # The workflow drops its old state: hand it over rather than copy it.
                    self._apply(
                        journey.apply_event(
                            self._state, event, self._catalog(), workflow.now(), owned=True
                        )
                    )
            self._apply(
                journey.apply_due_timers(self._state, self._catalog(), workflow.now(), owned=True)
            )
            # Between steps is the safe point to move a journey to another version.
            while self._migrations:
                migration = self._migrations.pop(0)
                await self._load_missing_plans(migration.deployment)
                self._apply(
                    apply_migration(self._state, migration.order, self._catalog(), workflow.now())
                )
            self._publish_search_attributes()
        await workflow.wait_condition(
            lambda: (
                not self._outbox
                and not self._delivering
                and not self._recording
                and self._recorded_seq >= self._state.timeline_seq
                and workflow.all_handlers_finished()
            )
        )
        delivery_loop.cancel()
        record_loop.cancel()
        workflow.continue_as_new(self._carry_over())

    def _catalog(self) -> Catalog:
        profile = self._profiles.get(self._deployment.profile or "")
        return Catalog(plans=self._plans, deployed=self._deployment.playbooks, profile=profile)

    async def _wait_for_work(self) -> None:
        if self._inbox or self._migrations:
            return
        due = journey.next_due_at(self._state, self._catalog())
        if due is None:
            await workflow.wait_condition(lambda: bool(self._inbox or self._migrations))
            return
        delay = due - workflow.now()
        if delay > timedelta(0):
            # A timeout means something is due: the caller fires it.
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: bool(self._inbox or self._migrations), timeout=delay
                )

    async def _load_missing_plans(self, deployment: Deployment) -> None:
        # Plans are immutable and content-addressed, so a cached version is never stale;
        # loading through an activity records the plan in history for replay.
        missing = sorted(v for v in deployment.versions() if v not in self._plans)
        profile = deployment.profile
        missing_profiles = [profile] if profile and profile not in self._profiles else []
        if not missing and not missing_profiles:
            return
        request = LoadPlansInput(versions=missing, profile_versions=missing_profiles)
        # A read of the worker's plan store: a local activity (a marker, no round trip
        # through the server's activity queue, which every new customer paid before).
        if workflow.patched(LOCAL_PLAN_LOADING_PATCH):
            result: LoadPlansResult = await workflow.execute_local_activity(
                LOAD_PLANS_ACTIVITY,
                request,
                result_type=LoadPlansResult,
                start_to_close_timeout=timedelta(seconds=30),
            )
        else:
            result = await workflow.execute_activity(
                LOAD_PLANS_ACTIVITY,
                request,
                result_type=LoadPlansResult,
                start_to_close_timeout=timedelta(seconds=30),
            )
        for plan in result.plans:
            self._plans[plan.version] = shared_plan(plan)
        for rules in result.profiles:
            self._profiles[rules.version] = shared_profile(rules)
        if result.missing:
            workflow.logger.warning("plan versions not found, not used: %s", result.missing)

    def _loaded_part(self, deployment: Deployment) -> Deployment:
        playbooks = {n: v for n, v in deployment.playbooks.items() if v in self._plans}
        profile = deployment.profile if deployment.profile in self._profiles else None
        return Deployment(playbooks=playbooks, profile=profile)

    def _apply(self, result: StepResult) -> None:
        self._state = result.state
        self._outbox.extend(result.deliveries)

    async def _deliver_in_order(self) -> None:
        while True:
            await workflow.wait_condition(lambda: bool(self._outbox))
            batched = self._outbox[0].channel in LOCAL_CHANNELS and workflow.patched(
                BATCHED_LOCAL_DELIVERIES_PATCH
            )
            batch = self._take_local_batch() if batched else [self._outbox.pop(0)]
            self._delivering = True
            try:
                if batched:
                    outcomes = await self._execute_batch(batch)
                else:
                    outcomes = [await self._execute_delivery(batch[0])]
            except ActivityError as e:
                # The cause is the adapter's own failure ("webhook refused with HTTP 404").
                cause = e.cause
                detail = cause.message if isinstance(cause, FailureError) else str(e)
                outcomes = [
                    DeliveryOutcome(
                        idempotency_key=d.idempotency_key, delivered=False, detail=detail
                    )
                    for d in batch
                ]
            for outcome in outcomes:
                self._state = journey.record_delivery_outcome(
                    self._state,
                    outcome.idempotency_key,
                    outcome.delivered,
                    outcome.detail,
                    owned=True,
                )
            self._delivering = False

    def _take_local_batch(self) -> list[Delivery]:
        """The local messages at the head of the outbox: a step that sends several (a batch
        of events, three sends on entering a stage) delivers them in one local activity,
        one marker and one ledger query instead of one of each per message."""
        batch: list[Delivery] = []
        while (
            self._outbox
            and self._outbox[0].channel in LOCAL_CHANNELS
            and len(batch) < MAX_DELIVERY_BATCH
        ):
            batch.append(self._outbox.pop(0))
        return batch

    async def _execute_batch(self, batch: list[Delivery]) -> list[DeliveryOutcome]:
        result: DeliveryBatchOutcome = await workflow.execute_local_activity(
            DELIVER_BATCH_ACTIVITY,
            DeliveryBatch(deliveries=batch),
            result_type=DeliveryBatchOutcome,
            start_to_close_timeout=DELIVERY_START_TO_CLOSE,
            schedule_to_close_timeout=DELIVERY_SCHEDULE_TO_CLOSE,
            retry_policy=DELIVERY_RETRY,
        )
        return result.outcomes

    async def _execute_delivery(self, delivery: Delivery) -> DeliveryOutcome:
        # One delivery: what remote channels use, and what histories recorded before the
        # batches replay. A local channel ran as a local activity (a marker in history
        # instead of a scheduled activity and the workflow task that records its result);
        # remote ones keep ordinary activities, whose retries for a day do not hold the
        # workflow task. Histories from before that choice replay with ordinary ones.
        local = delivery.channel in LOCAL_CHANNELS and workflow.patched(LOCAL_DELIVERIES_PATCH)
        execute = workflow.execute_local_activity if local else workflow.execute_activity
        outcome: DeliveryOutcome = await execute(
            DELIVER_ACTIVITY,
            delivery,
            result_type=DeliveryOutcome,
            start_to_close_timeout=DELIVERY_START_TO_CLOSE,
            schedule_to_close_timeout=DELIVERY_SCHEDULE_TO_CLOSE,
            retry_policy=DELIVERY_RETRY,
        )
        return outcome

    async def _record_in_order(self) -> None:
        while True:
            await workflow.wait_condition(lambda: self._state.timeline_seq > self._recorded_seq)
            upto = self._state.timeline_seq
            entries = [e for e in self._state.timeline if e.seq > self._recorded_seq]
            self._recording = True
            await workflow.execute_local_activity(
                RECORD_TIMELINE_ACTIVITY,
                RecordTimelineInput(customer_id=self._state.customer_id, entries=entries),
                result_type=int,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RECORD_RETRY,
            )
            self._recorded_seq = upto
            self._recording = False

    def _publish_search_attributes(self) -> None:
        """Expose stages, versions, tags, tier and lifecycle to Temporal's visibility, so
        `temporal workflow list --query "SopflowStages = 'welcome:icebreak'"` finds people."""
        if not self._options.publish_search_attributes:
            return
        active = [j for j in self._state.journeys.values() if j.status == "active"]
        profile = self._state.profile
        values = (
            sorted(f"{j.playbook}:{j.stage}" for j in active),
            sorted(f"{j.playbook}@{j.version}" for j in active),
            sorted(profile.tags)[:MAX_PUBLISHED_TAGS],
            profile.tier or "",
            profile.lifecycle or "",
        )
        if values == self._published:
            return  # an unchanged upsert would still cost a history event
        stages, versions, tags, tier, lifecycle = values
        workflow.upsert_search_attributes(
            [
                STAGES.value_set(stages),
                VERSIONS.value_set(versions),
                TAGS.value_set(tags),
                TIER.value_set(tier) if tier else TIER.value_unset(),
                LIFECYCLE.value_set(lifecycle) if lifecycle else LIFECYCLE.value_unset(),
            ]
        )
        self._published = values

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self._options.continue_as_new_after_events
        )

    def _carry_over(self) -> CustomerWorkflowInput:
        in_use = {j.version for j in self._state.journeys.values() if j.status == "active"}
        in_use |= self._deployment.versions()
        profile = self._deployment.profile
        return CustomerWorkflowInput(
            customer_id=self._state.customer_id,
            state=self._state,
            plans={v: p for v, p in self._plans.items() if v in in_use},
            profiles={v: p for v, p in self._profiles.items() if v == profile},
            deployment=self._deployment,
            inbox=self._inbox,
            migrations=self._migrations,
            recorded_seq=self._recorded_seq,
            options=self._options,
        )
