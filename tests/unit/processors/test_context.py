"""The context of a reading: the device's word, then sleep, then steps, else unknown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pghd.contracts import Context
from processors.activity import StepInterval, StepTimeline
from processors.context import Evidence, SleepTimeline, infer_context

NIGHT = datetime(2026, 3, 9, 23, 0, tzinfo=UTC)


def _still(steps: StepTimeline, start: datetime, minutes: int) -> None:
    for i in range(minutes):
        at = start + timedelta(minutes=i)
        steps.add(StepInterval(at, at + timedelta(minutes=1), 0, "watch"))


def test_the_device_context_wins_over_everything_inferred() -> None:
    sleep, steps = SleepTimeline(), StepTimeline()
    sleep.add(NIGHT, NIGHT + timedelta(hours=8))
    got = infer_context(
        NIGHT + timedelta(hours=1), device=Context.ACTIVITY, sleep=sleep, steps=steps
    )
    assert (got.context, got.evidence) == (Context.ACTIVITY, Evidence.DEVICE)


def test_asleep_in_a_session_still_at_rest_outside_it_unknown_without_data() -> None:
    sleep, steps = SleepTimeline(), StepTimeline()
    sleep.add(NIGHT + timedelta(minutes=20), NIGHT + timedelta(hours=7), device="ring")
    _still(steps, NIGHT - timedelta(minutes=30), 50)  # 22:30-23:20 still
    asleep = infer_context(NIGHT + timedelta(hours=3), device=None, sleep=sleep, steps=steps)
    assert (asleep.context, asleep.evidence) == (Context.SLEEP, Evidence.SLEEP)
    in_bed = infer_context(NIGHT + timedelta(minutes=10), device=None, sleep=sleep, steps=steps)
    assert (in_bed.context, in_bed.evidence) == (Context.REST, Evidence.STEPS)
    morning = infer_context(NIGHT + timedelta(hours=8), device=None, sleep=sleep, steps=steps)
    assert (morning.context, morning.evidence) == (None, Evidence.NONE)


def test_a_session_sent_again_overwrites_and_the_state_round_trips() -> None:
    sleep = SleepTimeline()
    sleep.add(NIGHT, NIGHT + timedelta(hours=2), device="ring")
    sleep.add(NIGHT, NIGHT + timedelta(hours=6), device="ring")  # the finished session
    assert sleep.is_asleep(NIGHT + timedelta(hours=5))
    assert SleepTimeline.from_dict(sleep.to_dict()) == sleep
    assert len(sleep.asleep["ring"]) == 1
