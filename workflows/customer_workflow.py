"""CustomerJourneyWorkflow: the durable shell around the pure journey core.

One workflow per customer. It waits for an event signal or the earliest due time, steps
the core, hands deliveries to activities and carries its whole state across
continue-as-new. Everything that decides *what* happens lives in sopflow.core.journey.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from sopflow.core import journey
    from sopflow.core.deployment import Deployment
    from sopflow.core.migration import apply_migration
    from sopflow.core.sender import Outcome
    from sopflow.core.state import CustomerState, Delivery, StepResult
    from sopflow.core.step import Catalog
    from sopflow.language.channels import LOCAL_CHANNELS
    from sopflow.language.plan import Plan, ProfilePlan, shared_plan, shared_profile
    from workflows.contracts import (
        BATCHED_LOCAL_DELIVERIES_PATCH,
        CARRIED_OUTBOX_MAX_BYTES,
        CARRIED_PLANS_MAX_BYTES,
        CARRIED_STATE_MAX_BYTES,
        DELIVER_ACTIVITY,
        DELIVER_BATCH_ACTIVITY,
        DELIVERY_STATES_PATCH,
        DESCRIBE_QUERY,
        DUE_TIMER_PATCH,
        EVENT_SIGNAL,
        LEDGER_WITH_DELIVERIES_PATCH,
        LIFECYCLE_SEARCH_ATTRIBUTE,
        LOAD_PLANS_ACTIVITY,
        LOCAL_DELIVERIES_PATCH,
        LOCAL_LANE,
        LOCAL_PLAN_LOADING_PATCH,
        MAX_DELIVERY_BATCH,
        MAX_PUBLISHED_TAGS,
        MIGRATE_SIGNAL,
        PER_CHANNEL_OUTBOXES_PATCH,
        RECORD_TIMELINE_ACTIVITY,
        STAGES_SEARCH_ATTRIBUTE,
        TAGS_SEARCH_ATTRIBUTE,
        TIER_SEARCH_ATTRIBUTE,
        VERSIONS_SEARCH_ATTRIBUTE,
        WECOM_TAGS_PATCH,
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
        delivery_lane,
    )
    from workflows.sender_contracts import (
        CANCEL_SEND_SIGNAL,
        DELIVERY_OUTCOME_SIGNAL,
        DeliveryOutcomeSignal,
        sender_workflow_id,
    )
    from workflows.visibility import bounded_keyword, bounded_keywords

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
        # Deliveries wait in ordered outboxes, one per lane (`delivery_lane`); before the
        # per-channel patch, one lane held them all.
        self._per_channel = False
        self._wecom_tags = False  # WECOM_TAGS_PATCH, read when the run starts
        self._carried: list[Delivery] = list(input.outbox)
        self._outboxes: dict[str, list[Delivery]] = {}
        self._in_flight: dict[str, list[Delivery]] = {}
        self._lanes: dict[str, asyncio.Task[None]] = {}
        self._recorded_seq = input.recorded_seq
        self._recording = False
        self._published: tuple[object, ...] | None = None
        # Due times that could not be computed stop the timers until the next event or
        # migration (which may fix what broke them); the failure is in the timeline.
        self._timers_paused = False
        # WeCom sends' later states, reported by the staff member's sender workflow
        # (DELIVERY_OUTCOME_SIGNAL), waiting for the main loop; acted on from the patch on.
        self._delivery_states = False
        self._send_outcomes: list[Outcome] = []
        # A send was handed over awaiting confirmation: the loop checks whether its
        # journey has left the stage meanwhile.
        self._handed_over = False
        # The timer of the earliest due time, kept while signals come and go and the due
        # time stays what it was (DUE_TIMER_PATCH, read when the run starts).
        self._due_timers = False
        self._timer: asyncio.Task[None] | None = None
        self._timer_due: datetime | None = None
        # A waiting ledger write goes out with the next local batch (one marker for both);
        # LEDGER_WITH_DELIVERIES_PATCH, read when the run starts.
        self._ledger_with_deliveries = False
        # The SDK keeps the start input for as long as the run is cached (and passes it to
        # `run`, which does not read it). After a continue-as-new it holds its own decoded
        # copy of each plan (14 to 114 KiB for the shipped playbooks) where the workflow
        # uses the process's shared one, and it would keep the carried state, inbox and
        # outbox alive after the workflow has moved on from them: it lets go of them here.
        input.state, input.plans, input.profiles = None, {}, {}
        input.inbox, input.migrations, input.outbox = [], [], []

    @workflow.signal(name=EVENT_SIGNAL)
    def receive_event(self, signal: EventSignal) -> None:
        self._inbox.append(signal)

    @workflow.signal(name=MIGRATE_SIGNAL)
    def receive_migration(self, signal: MigrationSignal) -> None:
        self._migrations.append(signal)

    @workflow.signal(name=DELIVERY_OUTCOME_SIGNAL)
    def receive_delivery_outcome(self, signal: DeliveryOutcomeSignal) -> None:
        self._send_outcomes.extend(signal.outcomes)

    @workflow.query(name=DESCRIBE_QUERY)
    def describe(self) -> CustomerView:
        try:
            due = None if self._timers_paused else journey.next_due_at(self._state, self._catalog())
        except Exception:  # recorded by the main loop; a query changes nothing
            due = None
        return CustomerView(
            customer_id=self._state.customer_id,
            profile=self._state.profile,
            journeys=list(self._state.journeys.values()),
            timeline=self._state.timeline,
            next_due_at=due,
            group=self._state.group,
            quarantined=self._state.quarantined,
        )

    @workflow.run
    async def run(self, input: CustomerWorkflowInput) -> None:
        self._per_channel = workflow.patched(PER_CHANNEL_OUTBOXES_PATCH)
        self._wecom_tags = workflow.patched(WECOM_TAGS_PATCH)
        self._delivery_states = workflow.patched(DELIVERY_STATES_PATCH)
        self._due_timers = workflow.patched(DUE_TIMER_PATCH)
        self._ledger_with_deliveries = workflow.patched(LEDGER_WITH_DELIVERIES_PATCH)
        if not self._per_channel:
            # The single outbox of the histories recorded before the patch: its loop starts
            # first, as it did then, so that they replay command for command.
            self._lanes[""] = asyncio.create_task(self._deliver_in_order(""))
        record_loop = asyncio.create_task(self._record_in_order())
        for delivery in self._carried:
            self._enqueue(delivery)
        self._carried = []
        if self._per_channel:
            # Plans of journeys in flight that the previous run could not carry.
            pinned = {j.version for j in self._state.journeys.values() if j.status == "active"}
            await self._load_missing_plans(Deployment(playbooks={v: v for v in pinned}))
        while True:
            if self._should_continue_as_new():
                if self._drained() or self._must_continue_as_new():
                    break
                if not self._per_channel:
                    # Before the patch: stop taking events until everything is delivered.
                    await workflow.wait_condition(self._drained)
                    break
            await self._wait_for_work()
            # Events first: each acts at its own time and fires what was due before it;
            # then whatever else is due by now. The simulator keeps the same order.
            while self._inbox:
                signal = self._inbox.pop(0)
                await self._load_missing_plans(signal.deployment)
                self._deployment = self._loaded_part(signal.deployment)
                for event in signal.all_events():
                    self._timers_paused = False
                    # The workflow drops its old state: hand it over rather than copy it.
                    self._step(
                        {
                            "input": "event",
                            "type": event.type,
                            "idempotency_key": event.idempotency_key,
                        },
                        lambda state, e=event: journey.apply_event(  # type: ignore[misc]
                            state, e, self._catalog(), workflow.now(), owned=True
                        ),
                    )
            if not self._timers_paused:
                self._step(
                    {"input": "timers"},
                    lambda state: journey.apply_due_timers(
                        state, self._catalog(), workflow.now(), owned=True
                    ),
                )
            # Between steps is the safe point to move a journey to another version.
            while self._migrations:
                migration = self._migrations.pop(0)
                await self._load_missing_plans(migration.deployment)
                self._timers_paused = False
                self._step(
                    {"input": "migration", "playbook": migration.order.playbook},
                    lambda state, m=migration: apply_migration(  # type: ignore[misc]
                        state, m.order, self._catalog(), workflow.now()
                    ),
                )
            self._record_send_outcomes()
            await self._cancel_sends_left_behind()
            self._publish_search_attributes()
        self._record_send_outcomes()
        carried = self._undelivered()
        # Idle loops are cancelled. One with a delivery or a ledger write in flight (a
        # forced continue-as-new) is left as it is: cancelling would request the
        # activity's cancellation and resolve it as failed, and the loop would go on to
        # schedule the next delivery after the continue-as-new command. The new run sends
        # what was in flight again, under the same idempotency keys.
        for lane, task in self._lanes.items():
            if not self._in_flight.get(lane):
                task.cancel()
        if not self._recording:
            record_loop.cancel()
        workflow.continue_as_new(self._carry_over(carried))

    def _step(self, what: dict[str, Any], run: Callable[[CustomerState], StepResult]) -> None:
        """Run one step of the core on the workflow's own state. The core quarantines what
        it cannot process itself (state restored, input recorded and skipped); this catch
        is the last line, so that no input ever fails the workflow task."""
        try:
            result = run(self._state)
        except Exception as error:
            workflow.logger.error("the core failed on %s: %s", what, error)
            self._quarantine(error, what)
            return
        self._apply(result)

    def _quarantine(self, error: Exception, what: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            self._state = journey.quarantine(self._state, workflow.now(), error, what, owned=True)

    def _record_send_outcomes(self) -> None:
        """Move the timeline entries of the WeCom sends the sender workflow reported on;
        a report for an unknown, late or repeated key changes nothing."""
        outcomes, self._send_outcomes = self._send_outcomes, []
        if not self._delivery_states:
            return  # before the patch the signal had no handler: nothing acted on it
        for outcome in outcomes:
            with contextlib.suppress(Exception):  # a report never fails the workflow task
                self._state, _ = journey.record_send_outcome(
                    self._state, outcome.idempotency_key, outcome.status, outcome.detail, owned=True
                )

    async def _cancel_sends_left_behind(self) -> None:
        """A journey that left the stage cancels its sends still awaiting the staff
        member's confirmation (the playbook's `wecom.cancel_on_leave`): a signal to that
        staff member's sender workflow, which reports the outcome back."""
        self._handed_over = False
        if not self._delivery_states:
            return
        try:
            self._state, cancels = journey.request_cancels(self._state, self._catalog(), owned=True)
        except Exception as error:  # recorded, never a failed workflow task
            self._quarantine(error, {"input": "cancel_on_leave"})
            return
        for cancel in cancels:
            handle = workflow.get_external_workflow_handle(sender_workflow_id(cancel.sender))
            # The sender's workflow has ended: it holds nothing of this customer's.
            with contextlib.suppress(Exception):
                await handle.signal(CANCEL_SEND_SIGNAL, cancel.idempotency_key)

    def _catalog(self) -> Catalog:
        profile = self._profiles.get(self._deployment.profile or "")
        return Catalog(
            plans=self._plans,
            deployed=self._deployment.playbooks,
            profile=profile,
            wecom_tags=self._wecom_tags,
        )

    async def _wait_for_work(self) -> None:
        if self._inbox or self._migrations:
            return
        if self._delivery_states and (self._send_outcomes or self._handed_over):
            return
        due = self._next_due()

        def work() -> bool:
            if self._inbox or self._migrations:
                return True
            if self._delivery_states and (self._send_outcomes or self._handed_over):
                return True
            # While a continue-as-new waits for the outboxes, their draining is work too.
            return self._per_channel and self._should_continue_as_new() and self._drained()

        if self._due_timers:
            await self._wait_on_due_timer(work, due)
            return
        # Before the patch: a new timer on every loop, which the next signal cancels.
        if due is None:
            await workflow.wait_condition(work)
            return
        delay = due - workflow.now()
        if delay > timedelta(0):
            # A timeout means something is due: the caller fires it.
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(work, timeout=delay)

    async def _wait_on_due_timer(self, work: Callable[[], bool], due: datetime | None) -> None:
        """Wait for work or for `due` on one timer per due time. A signal that leaves the
        due time as it was leaves the timer running: no TimerCanceled and TimerStarted
        pair (two history events) per signal. A due time that moved replaces the timer."""
        if due is not None and due <= workflow.now():
            return  # due already: the caller fires it
        if due != self._timer_due and self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_due = due
        if due is None:
            await workflow.wait_condition(work)
            return
        if self._timer is None:
            # A fired timer means something is due: the caller fires it.
            self._timer = asyncio.create_task(asyncio.sleep((due - workflow.now()).total_seconds()))
        timer = self._timer
        await workflow.wait_condition(lambda: work() or timer.done())
        if timer.done():
            self._timer = None
            self._timer_due = None

    def _next_due(self) -> datetime | None:
        if self._timers_paused:
            return None
        try:
            return journey.next_due_at(self._state, self._catalog())
        except Exception as error:
            self._timers_paused = True
            timeline = self._state.timeline
            if not (timeline and timeline[-1].kind == "quarantined"):  # recorded just now
                self._quarantine(error, {"input": "timers", "paused": "until the next event"})
            return None

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
        for delivery in result.deliveries:
            self._enqueue(delivery)

    def _enqueue(self, delivery: Delivery) -> None:
        lane = delivery_lane(delivery.channel) if self._per_channel else ""
        self._outboxes.setdefault(lane, []).append(delivery)
        if lane not in self._lanes:
            self._lanes[lane] = asyncio.create_task(self._deliver_in_order(lane))

    def _drained(self) -> bool:
        """Nothing waits to be delivered or recorded: a continue-as-new abandons nothing."""
        return (
            not any(self._outboxes.values())
            and not any(self._in_flight.values())
            and not self._recording
            and self._recorded_seq >= self._state.timeline_seq
            and workflow.all_handlers_finished()
        )

    def _undelivered(self) -> list[Delivery]:
        """What a forced continue-as-new carries: deliveries in flight (sent again under
        their idempotency keys; the ledger drops one that got through) and those waiting."""
        return [
            delivery
            for lane in sorted(self._outboxes.keys() | self._in_flight.keys())
            for delivery in self._in_flight.get(lane, []) + self._outboxes.get(lane, [])
        ]

    async def _deliver_in_order(self, lane: str) -> None:
        """Deliver one lane's outbox, one delivery (or one batch of local ones) at a time,
        in the order the core produced them."""
        outbox = self._outboxes.setdefault(lane, [])
        while True:
            await workflow.wait_condition(lambda: bool(outbox))
            batched = outbox[0].channel in LOCAL_CHANNELS and workflow.patched(
                BATCHED_LOCAL_DELIVERIES_PATCH
            )
            batch = self._take_local_batch(outbox) if batched else [outbox.pop(0)]
            self._in_flight[lane] = batch
            ledger = self._ledger_write_to_carry() if batched else None
            try:
                if batched:
                    result = await self._execute_batch(batch, ledger and ledger[1])
                    outcomes = result.outcomes
                    if ledger and result.timeline_recorded:
                        self._recorded_seq = max(self._recorded_seq, ledger[0])
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
            if ledger:
                # Written, or (its write or the batch failed) left to the ledger loop.
                self._recording = False
            for outcome in outcomes:
                self._state = journey.record_delivery_outcome(
                    self._state,
                    outcome.idempotency_key,
                    outcome.delivered,
                    outcome.detail,
                    status=journey.as_status(outcome.status),
                    sender=outcome.sender,
                    owned=True,
                )
                self._handed_over |= outcome.status == "awaiting_confirmation"
            self._in_flight[lane] = []

    @staticmethod
    def _take_local_batch(outbox: list[Delivery]) -> list[Delivery]:
        """The local messages at the head of the outbox: a step that sends several (a batch
        of events, three sends on entering a stage) delivers them in one local activity,
        one marker and one ledger query instead of one of each per message."""
        batch: list[Delivery] = []
        while outbox and outbox[0].channel in LOCAL_CHANNELS and len(batch) < MAX_DELIVERY_BATCH:
            batch.append(outbox.pop(0))
        return batch

    async def _execute_batch(
        self, batch: list[Delivery], timeline: RecordTimelineInput | None = None
    ) -> DeliveryBatchOutcome:
        result: DeliveryBatchOutcome = await workflow.execute_local_activity(
            DELIVER_BATCH_ACTIVITY,
            DeliveryBatch(deliveries=batch, timeline=timeline),
            result_type=DeliveryBatchOutcome,
            start_to_close_timeout=DELIVERY_START_TO_CLOSE,
            schedule_to_close_timeout=DELIVERY_SCHEDULE_TO_CLOSE,
            retry_policy=DELIVERY_RETRY,
        )
        return result

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
            await workflow.wait_condition(self._ledger_write_due)
            upto, request = self._take_ledger_write()
            await workflow.execute_local_activity(
                RECORD_TIMELINE_ACTIVITY,
                request,
                result_type=int,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RECORD_RETRY,
            )
            self._recorded_seq = upto
            self._recording = False

    def _ledger_write_due(self) -> bool:
        """Timeline entries wait for the ledger, and no local batch takes them along: one
        is in flight with a write (the loop writes what came since once it is back), or
        one goes out in this very activation (its lane's condition holds too)."""
        if self._state.timeline_seq <= self._recorded_seq:
            return False
        if not self._ledger_with_deliveries:
            return True
        local_lane_idle = LOCAL_LANE in self._lanes and not self._in_flight.get(LOCAL_LANE)
        batch_starting = local_lane_idle and bool(self._outboxes.get(LOCAL_LANE))
        return not self._recording and not batch_starting

    def _ledger_write_to_carry(self) -> tuple[int, RecordTimelineInput] | None:
        """The ledger write a local batch takes along (LEDGER_WITH_DELIVERIES_PATCH): what
        waits, unless the ledger loop is writing already."""
        if not self._ledger_with_deliveries or self._recording:
            return None
        if self._state.timeline_seq <= self._recorded_seq:
            return None
        return self._take_ledger_write()

    def _take_ledger_write(self) -> tuple[int, RecordTimelineInput]:
        """The timeline entries the ledger has not got yet, up to which seq, marked as
        being written (`_recording`) until the write is back."""
        entries = [e for e in self._state.timeline if e.seq > self._recorded_seq]
        self._recording = True
        request = RecordTimelineInput(customer_id=self._state.customer_id, entries=entries)
        return self._state.timeline_seq, request

    def _publish_search_attributes(self) -> None:
        """Expose stages, versions, tags, tier and lifecycle to Temporal's visibility, so
        `temporal workflow list --query "SopflowStages = 'welcome:icebreak'"` finds people."""
        if not self._options.publish_search_attributes:
            return
        active = [j for j in self._state.journeys.values() if j.status == "active"]
        profile = self._state.profile
        # Bounded: a value over the server's size limit would fail the workflow task.
        values = (
            bounded_keywords(sorted(f"{j.playbook}:{j.stage}" for j in active)),
            bounded_keywords(sorted(f"{j.playbook}@{j.version}" for j in active)),
            bounded_keywords(sorted(profile.tags)[:MAX_PUBLISHED_TAGS]),
            bounded_keyword(profile.tier or ""),
            bounded_keyword(profile.lifecycle or ""),
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

    @staticmethod
    def _plans_that_fit(plans: dict[str, Plan], pinned: set[str]) -> dict[str, Plan]:
        """The plans to carry, up to CARRIED_PLANS_MAX_BYTES: pinned ones first. What is
        left out is loaded again (a local activity): pinned ones when the next run starts,
        deployed ones with the next event, which carries the deployment."""
        kept: dict[str, Plan] = {}
        size = 0
        for version in sorted(plans, key=lambda v: (v not in pinned, v)):
            cost = len(plans[version].model_dump_json())
            if size + cost > CARRIED_PLANS_MAX_BYTES:
                continue
            kept[version] = plans[version]
            size += cost
        return kept

    def _deliveries_that_fit(self, undelivered: list[Delivery]) -> list[Delivery]:
        """Undelivered deliveries to carry, up to CARRIED_OUTBOX_MAX_BYTES in order; any
        beyond (a lane failing for so long that thousands wait) are recorded failed."""
        kept: list[Delivery] = []
        size = 0
        for delivery in undelivered:
            cost = len(delivery.model_dump_json())
            if size + cost <= CARRIED_OUTBOX_MAX_BYTES:
                kept.append(delivery)
                size += cost
                continue
            self._state = journey.record_delivery_outcome(
                self._state,
                delivery.idempotency_key,
                False,
                f"{len(undelivered)} deliveries were waiting when the customer's workflow "
                "continued as new: more than it carries, so this one was given up",
                owned=True,
            )
        return kept

    def _must_continue_as_new(self) -> bool:
        """A lane has been failing for so long that the history would grow too big."""
        length = workflow.info().get_current_history_length()
        return self._per_channel and length >= self._options.force_continue_as_new_after_events

    def _carry_over(self, undelivered: list[Delivery]) -> CustomerWorkflowInput:
        pinned = {j.version for j in self._state.journeys.values() if j.status == "active"}
        in_use = pinned | self._deployment.versions()
        profile = self._deployment.profile
        plans = {v: p for v, p in self._plans.items() if v in in_use}
        if self._per_channel:
            journey.compact(self._state, CARRIED_STATE_MAX_BYTES, self._recorded_seq)
            plans = self._plans_that_fit(plans, pinned)
            undelivered = self._deliveries_that_fit(undelivered)
        return CustomerWorkflowInput(
            customer_id=self._state.customer_id,
            state=self._state,
            outbox=undelivered,
            plans=plans,
            profiles={v: p for v, p in self._profiles.items() if v == profile},
            deployment=self._deployment,
            inbox=self._inbox,
            migrations=self._migrations,
            recorded_seq=self._recorded_seq,
            options=self._options,
        )
