"""The judging pass on the streams devices send: bare heart rate, steps as interval counts,
sleep as sessions (processors.judging).

Heart rate comes every minute like a Fitbit intraday series, steps as 1-minute buckets
(zeros included) or Apple-style samples that exist only while there were steps. Each batch
is judged with ``now`` pinned to the moment it would have arrived.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from statistics import fmean

import pytest

from pghd.catalogue import CATALOGUE, Metric
from pghd.contracts import Anomaly, Context, Measurement, Phase, Severity, Source
from processors.baseline import BaselineState
from processors.detectors.news2_aggregate import News2State
from processors.judge import JudgeParams
from processors.judging import Outcome, judge
from processors.patient_state import PatientState

T0 = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
PARAMS = JudgeParams()


def _reading(
    metric: Metric,
    value: float,
    at: datetime,
    *,
    end: datetime | None = None,
    device: str = "watch",
    context: Context | None = None,
) -> Measurement:
    return Measurement(
        event_id=f"{metric.value}-{device}-{int(at.timestamp())}",
        patient_id="p-1",
        metric=metric,
        value=value,
        unit=CATALOGUE[metric].unit,
        effective_time=at,
        effective_end=end,
        received_at=end or at,
        source=Source(vendor="fitbit", device_id=device),
        context=context,
    )


def heart(at: datetime, bpm: float, **kw: object) -> Measurement:
    return _reading(Metric.HEART_RATE, bpm, at, **kw)  # type: ignore[arg-type]


def steps(start: datetime, count: float, *, minutes: int = 1, device: str = "watch") -> Measurement:
    return _reading(Metric.STEPS, count, start, end=start + minutes * MIN, device=device)


@dataclass
class Stream:
    """One patient's judging state carried from batch to batch, as the worker carries it."""

    states: dict[str, BaselineState] = field(default_factory=dict)
    news2: dict[str, News2State] = field(default_factory=dict)
    patients: dict[str, PatientState] = field(default_factory=dict)
    anomalies: list[Anomaly] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    def feed(self, batch: Sequence[Measurement], *, now: datetime) -> list[Anomaly]:
        out = judge(
            self.states,
            batch,
            params=PARAMS,
            now=now,
            news2_states=self.news2,
            patients=self.patients,
        )
        assert out.failed == []
        self.states.update(out.states)
        self.news2.update(out.news2)
        self.patients.update(out.patients)
        self.anomalies += out.anomalies
        self.outcomes.append(out)
        return out.anomalies

    def minutes(
        self, start: datetime, bpm: Iterable[float], cadence: Iterable[float] | None
    ) -> None:
        """A minute per batch: the heart rate and (unless None) that minute's steps bucket."""
        counts = None if cadence is None else list(cadence)
        for i, value in enumerate(bpm):
            at = start + i * MIN
            batch = [heart(at + 30 * timedelta(seconds=1), value)]
            if counts is not None:
                batch.append(steps(at, counts[i]))
            self.feed(batch, now=at + MIN)


def _settled(stream: Stream) -> None:
    """Two quiet hours first: the steps are known and the patient sat still."""
    start = T0 - timedelta(hours=2)
    stream.minutes(start, [64 + (i % 5) for i in range(120)], [0] * 120)


def critical(anomalies: Iterable[Anomaly]) -> list[Anomaly]:
    return [a for a in anomalies if a.severity is Severity.CRITICAL]


def test_a_long_run_with_steps_raises_nothing() -> None:
    stream = Stream()
    _settled(stream)
    before = len(stream.anomalies)
    # 40 minutes at 150 /min with 120 steps a minute, then a recovery while sitting down.
    recovery = [150 - 8 * i for i in range(10)] + [70] * 20
    stream.minutes(T0, [150] * 40 + recovery, [120] * 40 + [0] * 30)
    assert stream.anomalies[before:] == []


def test_interval_training_raises_nothing() -> None:
    stream = Stream()
    _settled(stream)
    before = len(stream.anomalies)
    rounds = 8
    stream.minutes(T0, ([165, 165, 140, 135]) * rounds, ([170, 170, 0, 0]) * rounds)
    assert stream.anomalies[before:] == []


def test_resting_tachycardia_is_critical_at_the_30th_still_minute() -> None:
    stream = Stream()
    # 125 /min is NEWS2 score 2 (not critical); still for 30 minutes it is.
    stream.minutes(T0, [125] * 35, [0] * 35)
    (onset,) = critical(stream.anomalies)
    assert onset.detector == "resting_tachycardia" and onset.episode_id
    assert onset.context is Context.REST
    assert timedelta(minutes=29) <= onset.observed_at - T0 <= timedelta(minutes=31)
    assert "no steps for 30 min" in onset.explanation
    (episode,) = {a.episode_id for a in stream.anomalies}
    assert episode == onset.episode_id  # the earlier NEWS2 info opened it; this raised it


def test_a_very_high_rate_at_rest_is_critical_as_soon_as_rest_is_settled() -> None:
    stream = Stream()
    # 150 /min is NEWS2 score 3: at rest (12 still minutes, Mishra et al.) it is critical
    # at once, before the 30-minute rule.
    stream.minutes(T0, [150] * 35, [0] * 35)
    (onset,) = critical(stream.anomalies)
    assert onset.detector == "news2" and onset.phase is Phase.ONSET
    assert onset.observed_at - T0 <= timedelta(minutes=13)


def test_steps_two_hours_late_withdraw_the_provisional_finding() -> None:
    stream = Stream()
    _settled(stream)
    # The workout's heart rate arrives in real time, its steps two hours later.
    stream.minutes(T0, [150] * 40, None)
    (provisional,) = critical(stream.anomalies)
    assert provisional.phase is Phase.ONSET and "provisional" in provisional.explanation
    assert provisional.context is None
    late = [steps(T0 + i * MIN, 125) for i in range(40)]
    (withdrawn,) = stream.feed(late, now=T0 + timedelta(hours=2))
    assert withdrawn.phase is Phase.WITHDRAWN
    assert withdrawn.episode_id == provisional.episode_id
    assert "exercise" in withdrawn.explanation
    assert stream.patients["p-1"].provisional == {}


def test_steps_two_hours_late_confirm_a_real_resting_tachycardia() -> None:
    stream = Stream()
    _settled(stream)
    stream.minutes(T0, [150] * 40, None)
    assert len(critical(stream.anomalies)) == 1
    late = [steps(T0 + i * MIN, 0) for i in range(40)]
    assert stream.feed(late, now=T0 + timedelta(hours=2)) == []
    assert stream.patients["p-1"].provisional == {}


def test_two_devices_counting_one_walk_keep_the_heart_rate_out_of_the_rest_baseline() -> None:
    stream = Stream()
    _settled(stream)
    before = len(stream.anomalies)
    # The phone sends Apple-style samples only while walking; the watch 1-minute buckets.
    for i in range(40):
        at = T0 + i * MIN
        batch = [heart(at, 125), steps(at, 110)]
        if i % 5 == 0:
            batch.append(steps(at, 520, minutes=5, device="phone"))
        stream.feed(batch, now=at + MIN)
    assert stream.anomalies[before:] == []
    timeline = stream.patients["p-1"].steps
    assert timeline.state_at(T0 + 10 * MIN).cadence == 110  # the largest, not the sum


def test_a_night_with_the_watch_off_then_a_normal_morning() -> None:
    stream = Stream()
    _settled(stream)
    before = len(stream.anomalies)
    # Off at 16:00, nothing all night; on again the next morning at 07:00 at rest, then a
    # walk to work: the gap is no finding that pages, the walk is not judged at rest.
    morning = T0 + timedelta(hours=17)
    stream.minutes(morning, [66] * 20 + [118] * 20, [0] * 20 + [105] * 20)
    assert [a for a in stream.anomalies[before:] if a.severity is not Severity.INFO] == []


def test_one_finding_per_episode_not_one_per_reading() -> None:
    stream = Stream()
    stream.minutes(T0, [150] * 90, [0] * 90)
    tachy = [a for a in stream.anomalies if a.episode_id is not None]
    assert len({a.episode_id for a in tachy}) == 1
    assert sum(len(o.raw) for o in stream.outcomes) > 50  # every reading found it
    assert len(tachy) <= 3


def test_an_episode_resolves_after_half_an_hour_back_at_rest() -> None:
    stream = Stream()
    _settled(stream)
    stream.minutes(T0, [150] * 40 + [66] * 45, [0] * 85)
    phases = [a.phase for a in stream.anomalies if a.channel == "heart_rate"]
    assert phases[0] is Phase.ONSET and phases[-1] is Phase.RESOLVED
    (resolved,) = [a for a in stream.anomalies if a.phase is Phase.RESOLVED]
    assert resolved.severity is Severity.INFO
    assert "back within this patient's normal" in resolved.explanation


def test_the_night_resting_heart_rate_is_computed_from_the_sleep_session() -> None:
    stream = Stream()
    night = datetime(2026, 3, 10, 23, 0, tzinfo=UTC)
    beats = [heart(night + i * 5 * MIN, 52 + (i % 3)) for i in range(90)]  # 7.5 h
    for reading in beats:
        stream.feed([reading], now=reading.effective_time + MIN)
    wake = night + timedelta(hours=7, minutes=30)
    session = _reading(Metric.SLEEP_DURATION, 7.1, night, end=wake, device="watch")
    stream.feed([session], now=wake + 5 * MIN)
    out = stream.outcomes[-1]
    (point,) = out.resting
    assert point.measurement == "resting_heart_rate" and point.tags["kind"] == "nightly"
    assert point.fields == {"value": 53.0, "samples": 90} and point.time == wake
    assert point in out.points() and all(v.measurement == "vitals" for v in out.vitals)


def test_a_nights_resting_heart_rate_leaves_out_moving_samples_and_needs_six() -> None:
    night = datetime(2026, 3, 10, 23, 0, tzinfo=UTC)
    wake = night + timedelta(hours=7)
    stream = Stream()
    # Asleep at 52 /min, up at 03:00 for ten minutes of walking at 95 /min.
    up = night + timedelta(hours=4)
    beats = [heart(night + i * 5 * MIN, 52) for i in range(84)]
    beats += [heart(up + i * MIN, 95) for i in range(10)]
    walk = [steps(up + i * MIN, 60) for i in range(10)]
    stream.feed(sorted(beats + walk, key=lambda r: r.effective_time), now=wake)
    session = _reading(Metric.SLEEP_DURATION, 6.8, night, end=wake, device="watch")
    stream.feed([session], now=wake + 5 * MIN)
    (point,) = stream.outcomes[-1].resting
    assert point.fields["value"] == 52.0
    # The next night the watch was off but for five samples: no value for that night.
    other = Stream()
    few = [heart(night + i * 30 * MIN, 50) for i in range(5)]
    other.feed(few, now=wake)
    other.feed([session], now=wake + 5 * MIN)
    assert other.outcomes[-1].resting == []


def test_the_patient_state_travels_as_a_plain_dict() -> None:
    import json

    stream = Stream()
    _settled(stream)
    stream.minutes(T0, [150] * 40, None)  # a provisional finding, an open episode, a run
    state = stream.patients["p-1"]
    assert state.provisional and state.episode and state.tachy is not None and state.days
    raw = json.loads(json.dumps(state.to_dict()))
    again = PatientState.from_dict(raw)
    assert again.to_dict() == state.to_dict()
    assert again.steps.state_at(T0 - MIN) == state.steps.state_at(T0 - MIN)


def test_daily_resting_heart_rate_is_written_from_readings_at_rest() -> None:
    stream = Stream()
    _settled(stream)
    daily = [p for o in stream.outcomes for p in o.resting if p.tags["kind"] == "daily"]
    assert daily and daily[-1].measurement == "resting_heart_rate"
    assert daily[-1].fields["samples"] == 109
    assert daily[-1].time == datetime(2026, 3, 10, 0, 0, tzinfo=UTC)
    # Rest begins after 12 still minutes: the first 11 readings are not at rest yet.
    assert daily[-1].fields["value"] == pytest.approx(
        fmean(64 + (i % 5) for i in range(11, 120)), abs=0.01
    )


def test_two_raised_nights_after_a_fortnight_raise_a_nightsignal_warning() -> None:
    stream = Stream()
    first = datetime(2026, 2, 1, 23, 0, tzinfo=UTC)
    for night in range(18):
        start = first + timedelta(days=night)
        raised = 9 if night >= 16 else 0  # the last two nights 9 /min up
        for i in range(60):  # every 7 minutes for 7 hours
            at = start + i * 7 * MIN
            stream.feed([heart(at, 54 + (i % 3) + raised)], now=at + MIN)
        wake = start + timedelta(hours=7)
        stream.feed([_reading(Metric.SLEEP_DURATION, 6.8, start, end=wake)], now=wake + 10 * MIN)
    nights = [a for a in stream.anomalies if a.detector == "nightsignal"]
    assert len(nights) == 1, [a.explanation for a in stream.anomalies]
    (warning,) = nights
    assert warning.severity is Severity.WARNING and warning.phase is Phase.ONSET
    assert warning.metric is Metric.RESTING_HEART_RATE and warning.value == pytest.approx(
        64, abs=0.5
    )
    assert "two nights running" in warning.explanation


def test_a_reading_after_a_long_gap_is_a_note_outside_any_episode() -> None:
    stream = Stream()
    days = [T0 + timedelta(days=d) for d in range(20)]
    for at in days:
        stream.feed([_reading(Metric.SPO2, 97.0 + (at.day % 2), at)], now=at)
    assert stream.anomalies == []
    back = days[-1] + timedelta(days=4)  # four days without a reading
    (note,) = stream.feed([_reading(Metric.SPO2, 97.0, back)], now=back)
    assert note.detector == "data_gap" and note.severity is Severity.INFO
    assert note.episode_id is None and note.phase is None
    assert stream.patients["p-1"].episode is None  # nothing departed: no episode to keep open
