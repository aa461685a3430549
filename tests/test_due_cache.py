"""The remembered due times of timed triggers (sopflow.core.triggers): a due time is
reused only while everything it was computed from is the same, to the time zone of an
instant. Each test asks once, changes one input in place (as a step does), and asks again:
a cache keyed by less than what the trigger reads would give the first answer twice."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from sopflow.core import triggers
from sopflow.core.state import JourneyState, Profile
from sopflow.core.triggers import next_due
from sopflow.language.plan import AtPlan, CountdownPlan, TriggerPlan

TZ = "Asia/Shanghai"
ENTERED = datetime(2026, 3, 1, 2, tzinfo=UTC)
CHINA = timezone(timedelta(hours=8))


def journey(entered: datetime = ENTERED) -> JourneyState:
    return JourneyState(
        journey_id="p#1",
        playbook="p",
        version="v",
        stage="s",
        enrolled_at=entered,
        entered_stage_at=entered,
    )


def due(trigger: TriggerPlan, walk: JourneyState, profile: Profile) -> datetime | None:
    return next_due(trigger, "0", walk, profile, TZ)


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    triggers._DUE.clear()


AT_BIRTHDAY = TriggerPlan(kind="at", at=AtPlan(attribute="birthday", time="10:00", yearly=True))


def test_a_changed_customer_attribute_moves_an_at_trigger() -> None:
    walk, profile = journey(), Profile(attributes={"birthday": "1990-05-20"})
    assert due(AT_BIRTHDAY, walk, profile) == datetime(2026, 5, 20, 2, tzinfo=UTC)
    profile.attributes["birthday"] = "1990-06-02"  # in place, as a `set` action does
    assert due(AT_BIRTHDAY, walk, profile) == datetime(2026, 6, 2, 2, tzinfo=UTC)
    del profile.attributes["birthday"]
    assert due(AT_BIRTHDAY, walk, profile) is None


def test_a_journey_attribute_of_the_same_name_takes_over() -> None:
    walk, profile = journey(), Profile(attributes={"birthday": "1990-05-20"})
    assert due(AT_BIRTHDAY, walk, profile) == datetime(2026, 5, 20, 2, tzinfo=UTC)
    walk.attributes["birthday"] = "1990-04-01"
    assert due(AT_BIRTHDAY, walk, profile) == datetime(2026, 4, 1, 2, tzinfo=UTC)


def test_equal_values_of_other_types_are_not_the_same_input() -> None:
    moment = TriggerPlan(kind="at", at=AtPlan(attribute="visit"))
    walk, profile = journey(), Profile(attributes={"visit": "2026-03-10"})
    assert due(moment, walk, profile) == datetime(2026, 3, 10, tzinfo=CHINA)
    # The same day as a date (local midnight, as the string) and as a datetime at UTC
    # midnight: equal or not, each is parsed for itself.
    profile.attributes["visit"] = datetime(2026, 3, 10, tzinfo=UTC)
    assert due(moment, walk, profile) == datetime(2026, 3, 10, tzinfo=UTC)
    assert due(moment, walk, profile).utcoffset() == timedelta(0)  # type: ignore[union-attr]


def test_firing_ends_an_at_trigger_and_a_new_stage_visit_starts_it_again() -> None:
    walk, profile = journey(), Profile(attributes={"birthday": "1990-05-20"})
    first = due(AT_BIRTHDAY, walk, profile)
    assert first is not None
    walk.fired["0"] = first
    assert due(AT_BIRTHDAY, walk, profile) == datetime(2027, 5, 20, 2, tzinfo=UTC)
    walk.fired.clear()
    walk.entered_stage_at = datetime(2026, 6, 1, tzinfo=UTC)
    assert due(AT_BIRTHDAY, walk, profile) == datetime(2027, 5, 20, 2, tzinfo=UTC)


def test_a_day_trigger_follows_the_customer_s_added_at() -> None:
    third_day = TriggerPlan(kind="day", day=3, time="09:30")
    walk, profile = journey(), Profile(added_at=datetime(2026, 3, 1, 1, tzinfo=UTC))
    assert due(third_day, walk, profile) == datetime(2026, 3, 4, 1, 30, tzinfo=UTC)
    profile.added_at = datetime(2026, 3, 2, 1, tzinfo=UTC)
    assert due(third_day, walk, profile) == datetime(2026, 3, 5, 1, 30, tzinfo=UTC)


def test_a_countdown_follows_its_deadline_attribute() -> None:
    countdown = TriggerPlan(
        kind="countdown",
        countdown=CountdownPlan(deadline_attribute="expires_at", offsets_seconds=(86_400,)),
    )
    walk, profile = journey(), Profile(attributes={"expires_at": "2026-03-10T12:00:00+08:00"})
    assert due(countdown, walk, profile) == datetime(2026, 3, 9, 4, tzinfo=UTC)
    profile.attributes["expires_at"] = "2026-03-20T12:00:00+08:00"
    assert due(countdown, walk, profile) == datetime(2026, 3, 19, 4, tzinfo=UTC)


def test_a_countdown_from_the_enrolment_event_follows_that_data() -> None:
    countdown = TriggerPlan(
        kind="countdown",
        countdown=CountdownPlan(deadline_event_key="starts_at", offsets_seconds=(3_600,)),
    )
    walk = journey()
    walk.enrolment_data["starts_at"] = "2026-03-05T10:00:00+00:00"
    assert due(countdown, walk, Profile()) == datetime(2026, 3, 5, 9, tzinfo=UTC)
    walk.enrolment_data["starts_at"] = "2026-03-06T10:00:00+00:00"
    assert due(countdown, walk, Profile()) == datetime(2026, 3, 6, 9, tzinfo=UTC)


def test_the_same_instant_in_another_zone_gives_a_due_time_in_that_zone() -> None:
    # A countdown from entering the stage keeps the zone of the instant it started at;
    # the two instants are equal, so a key of instants alone would hand back the first.
    countdown = TriggerPlan(
        kind="countdown",
        countdown=CountdownPlan(deadline_after_seconds=86_400, offsets_seconds=(3_600,)),
    )
    in_utc = due(countdown, journey(ENTERED), Profile())
    in_china = due(countdown, journey(ENTERED.astimezone(CHINA)), Profile())
    assert in_utc == in_china
    assert in_utc is not None and in_utc.utcoffset() == timedelta(0)
    assert in_china is not None and in_china.utcoffset() == timedelta(hours=8)


def test_data_that_cannot_be_a_key_is_computed_each_time() -> None:
    moment = TriggerPlan(kind="at", at=AtPlan(attribute="visit"))
    walk, profile = journey(), Profile(attributes={"visit": ["2026-03-10"]})
    assert due(moment, walk, profile) is None  # a list is no moment
    assert triggers._DUE == {}


def test_every_remembered_kind_says_what_it_reads() -> None:
    # A kind added to the remembered ones without its inputs in `_inputs` is refused
    # rather than keyed by too little.
    for kind in triggers._REMEMBERED:
        assert kind in {"at", "day", "countdown"}
    with pytest.raises(TypeError):
        triggers._inputs(TriggerPlan(kind="inactivity"), "0", journey(), Profile())
