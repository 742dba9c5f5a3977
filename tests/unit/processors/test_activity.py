"""Activity from step intervals, on the shapes devices send (see processors.activity).

Fitbit intraday steps come as 1-minute buckets, zeros included; Garmin as 15-minute epochs;
Apple Health as samples with a start and an end, only while there were steps. Times are
pinned; nothing depends on the hour the suite runs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pghd.contracts import Context
from processors.activity import StepInterval, StepTimeline

T0 = datetime(2026, 3, 9, 6, 0, tzinfo=UTC)


def _minutes(timeline: StepTimeline, start: datetime, counts: list[float], device: str) -> None:
    """Fitbit-style 1-minute buckets from ``start``, zeros included."""
    for i, count in enumerate(counts):
        at = start + timedelta(minutes=i)
        timeline.add(StepInterval(at, at + timedelta(minutes=1), count, device))


def test_a_long_run_is_activity_throughout_and_rest_only_12_minutes_after() -> None:
    timeline = StepTimeline()
    _minutes(timeline, T0, [0] * 20 + [170] * 60 + [0] * 30, "watch")
    before = timeline.state_at(T0 + timedelta(minutes=19))
    assert before.context is Context.REST
    for minute in (21, 40, 79):
        state = timeline.state_at(T0 + timedelta(minutes=minute))
        assert state.context is Context.ACTIVITY
    assert timeline.state_at(T0 + timedelta(minutes=79)).cadence == pytest.approx(170)
    # The last steps were in minute 79: at rest once the 12 minutes after it are still.
    assert timeline.state_at(T0 + timedelta(minutes=90)).context is Context.ACTIVITY
    settled = timeline.state_at(T0 + timedelta(minutes=91))
    assert settled.context is Context.REST and settled.still_for == timedelta(minutes=12)


def test_interval_training_never_reads_as_rest_between_the_sprints() -> None:
    timeline = StepTimeline()
    # 8 rounds of 2 min at 160 steps/min and 2 min standing: the heart rate stays up in the
    # breaks, which must not be judged against the resting baseline.
    _minutes(timeline, T0, ([160] * 2 + [0] * 2) * 8 + [0] * 15, "watch")
    for minute in range(1, 32):
        assert timeline.state_at(T0 + timedelta(minutes=minute)).context is Context.ACTIVITY
    assert timeline.state_at(T0 + timedelta(minutes=3)).cadence == pytest.approx(320 / 5)


def test_a_night_with_the_watch_off_then_a_normal_morning() -> None:
    timeline = StepTimeline()
    evening = T0 - timedelta(hours=9)  # 21:00
    _minutes(timeline, evening, [30] * 60, "watch")  # until 22:00, then taken off
    # Nothing is known between 22:00 and the morning sync: not rest, unknown.
    night = timeline.state_at(T0 - timedelta(hours=3))
    assert night.context is None and night.cadence is None
    # 07:00 on again: the sync brings the morning's buckets (zeros, then a walk at 07:20).
    _minutes(timeline, T0 + timedelta(hours=1), [0] * 20 + [90] * 10 + [0] * 30, "watch")
    assert timeline.state_at(T0 + timedelta(hours=1, minutes=15)).context is Context.REST
    assert timeline.state_at(T0 + timedelta(hours=1, minutes=25)).context is Context.ACTIVITY


def test_steps_arriving_two_hours_after_the_heart_rate() -> None:
    timeline = StepTimeline()
    _minutes(timeline, T0, [0] * 60, "phone")  # 06:00-07:00 synced
    workout = T0 + timedelta(hours=1, minutes=30)  # heart rate at 07:30 arrives at once
    assert timeline.state_at(workout).context is None  # steps not synced yet: unknown
    # Two hours later the phone syncs 07:00-09:00: a run from 07:10 to 07:50.
    _minutes(timeline, T0 + timedelta(hours=1), [0] * 10 + [150] * 40 + [0] * 70, "phone")
    late = timeline.state_at(workout)
    assert late.context is Context.ACTIVITY and late.cadence == pytest.approx(150)


def test_two_devices_counting_one_walk_are_not_added_up() -> None:
    timeline = StepTimeline()
    _minutes(timeline, T0, [100] * 10, "watch")
    # The phone in the pocket counts the same walk as Apple Health samples (seconds apart,
    # several in a minute) and sends one of them twice on a re-sync.
    for second in range(0, 600, 20):
        at = T0 + timedelta(seconds=second)
        timeline.add(StepInterval(at, at + timedelta(seconds=20), 33.0, "phone"))
    repeat = T0 + timedelta(seconds=100)
    timeline.add(StepInterval(repeat, repeat + timedelta(seconds=20), 33.0, "phone"))
    state = timeline.state_at(T0 + timedelta(minutes=9))
    assert state.cadence == pytest.approx(100)  # the larger of 100 and 99, not their sum


def test_a_garmin_epoch_spreads_its_steps_over_its_15_minutes() -> None:
    timeline = StepTimeline()
    timeline.add(StepInterval(T0, T0 + timedelta(minutes=15), 1500, "garmin"))
    timeline.add(StepInterval(T0 + timedelta(minutes=15), T0 + timedelta(minutes=30), 0, "garmin"))
    assert timeline.state_at(T0 + timedelta(minutes=14)).cadence == pytest.approx(100)
    assert timeline.state_at(T0 + timedelta(minutes=25)).context is Context.ACTIVITY
    assert timeline.state_at(T0 + timedelta(minutes=26)).context is Context.REST


def test_the_state_travels_as_a_plain_dict_and_old_minutes_are_dropped() -> None:
    timeline = StepTimeline()
    _minutes(timeline, T0, [12, 0, 7], "watch")
    again = StepTimeline.from_dict(timeline.to_dict())
    assert again == timeline
    timeline.add(
        StepInterval(T0 + timedelta(hours=40), T0 + timedelta(hours=40, minutes=1), 5, "watch")
    )
    assert sorted(timeline.intervals["watch"]) == [int((T0 + timedelta(hours=40)).timestamp())]


def _reference_state(timeline: StepTimeline, at: datetime) -> tuple[float, int]:
    """Cadence and minutes still, from every minute of the two hours before ``at`` spread by
    overlap and taken as the largest count of any device: the plain definition."""
    end = int(at.timestamp()) // 60 + 1
    first = end - 120
    best = [0.0] * 120
    for spans in timeline.intervals.values():
        mine = [0.0] * 120
        for start, (stop, count) in spans.items():
            for i in range(120):
                lo, hi = (first + i) * 60, (first + i + 1) * 60
                overlap = min(stop, hi) - max(start, lo)
                if overlap > 0 and count > 0:
                    mine[i] += count * overlap / (stop - start)
        best = [max(a, b) for a, b in zip(best, mine, strict=True)]
    moving = [i for i, steps in enumerate(best) if steps > 0]
    still = 120 - 1 - moving[-1] if moving else 120
    since = timeline.known_from()
    if since is not None:
        still = max(0, min(still, end - since // 60))
    return sum(best[-5:]) / 5, still


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["watch", "phone"]),
            st.integers(min_value=0, max_value=300),  # start, minutes after T0
            st.sampled_from([1, 5, 15, 60]),  # bucket length, minutes
            st.sampled_from([0.0, 0.0, 12.0, 90.0]),
        ),
        max_size=40,
    ),
    st.integers(min_value=0, max_value=300),
)
def test_state_at_matches_the_per_minute_definition(
    buckets: list[tuple[str, int, int, float]], probe: int
) -> None:
    """The short-window scan and the backward search for the last step give what spreading
    every interval over its minutes gives, whatever the devices, lengths and order."""
    timeline = StepTimeline()
    for device, start, length, count in buckets:
        begin = T0 + timedelta(minutes=start)
        timeline.add(StepInterval(begin, begin + timedelta(minutes=length), count, device))
    at = T0 + timedelta(minutes=probe, seconds=30)
    state = timeline.state_at(at)
    if state.context is None:
        return
    cadence, still = _reference_state(timeline, at)
    assert state.cadence == pytest.approx(cadence)
    assert state.still_for == timedelta(minutes=still)
