"""Hand-built sequences through :func:`judge_batch`: the hard cases of real wearable data."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import count

from pghd.catalogue import CATALOGUE, Metric
from pghd.contracts import Anomaly, Context, Measurement, Severity, Source
from processors.baseline import BaselineState
from processors.judge import JudgeParams, judge_batch, state_key, state_keys

from .conftest import NOW, T0

PARAMS = JudgeParams()
_IDS = count()
JITTER = [0.0, 1.0, -1.0, 2.0, -2.0, 1.0, 0.0, -1.0, 1.0, -2.0, 2.0, 0.0]
DAY0 = T0.replace(hour=0) - timedelta(days=20)


def reading(
    value: float | None,
    when: datetime,
    *,
    metric: Metric = Metric.HEART_RATE,
    context: Context | None = Context.REST,
    components: dict[str, float] | None = None,
) -> Measurement:
    return Measurement(
        event_id=f"s-{next(_IDS)}",
        patient_id="p-1",
        metric=metric,
        value=value,
        components=components,
        unit=CATALOGUE[metric].unit,
        effective_time=when,
        received_at=when,
        source=Source(vendor="acme", device_id="dev-1"),
        context=context,
    )


def run(
    readings: list[Measurement], states: dict[str, BaselineState] | None = None
) -> tuple[list[Anomaly], dict[str, BaselineState]]:
    """Judge ``readings`` one by one, as the stream would, and return every anomaly."""
    states = dict(states or {})
    anomalies: list[Anomaly] = []
    for r in readings:
        result = judge_batch(states, [r], params=PARAMS, now=NOW)
        states.update(result.states)
        anomalies += result.anomalies
    return anomalies, states


def alerts(anomalies: list[Anomaly]) -> list[Anomaly]:
    return [a for a in anomalies if a.severity is not Severity.INFO]


def temperatures(days: int, *, level: float = 36.6, start: datetime = DAY0) -> list[Measurement]:
    """Three thermometer readings a day (07:00, 13:00, 21:00 UTC), a little noise."""
    out = []
    for day in range(days):
        for i, hour in enumerate((7, 13, 21)):
            value = level + 0.05 * JITTER[(3 * day + i) % len(JITTER)]
            when = start + timedelta(days=day, hours=hour)
            out.append(reading(round(value, 2), when, metric=Metric.BODY_TEMPERATURE, context=None))
    return out


def heart_rates(day: int, *, awake: float = 78.0, asleep: float = 56.0) -> list[Measurement]:
    """One day of a watch: asleep 00:00-06:00, awake at rest 07:00-22:00, every 10 minutes."""
    out = []
    base = DAY0 + timedelta(days=day)
    for i in range(6 * 6):
        out.append(
            reading(
                asleep + JITTER[i % 12], base + timedelta(minutes=10 * i), context=Context.SLEEP
            )
        )
    for i in range(15 * 6):
        when = base + timedelta(hours=7, minutes=10 * i)
        out.append(reading(awake + 2 * JITTER[i % 12], when))
    return out


def test_sleeping_and_waking_heart_rates_are_each_normal_against_their_own_baseline() -> None:
    anomalies, states = run([r for day in range(4) for r in heart_rates(day)])
    assert anomalies == []
    sleep = states[state_key("p-1", "heart_rate", "sleep")]
    morning = states[state_key("p-1", "heart_rate", "awake-06")]
    assert sleep.mean < 60 < 75 < morning.mean


def test_exercise_spikes_do_not_alert_nor_move_the_baseline() -> None:
    _, states = run([r for day in range(3) for r in heart_rates(day)])
    key = state_key("p-1", "heart_rate", "awake-12")
    before = states[key]
    burst_start = DAY0 + timedelta(days=3, hours=13)
    burst = [
        reading(
            150.0 + 3 * JITTER[i % 12],
            burst_start + timedelta(minutes=3 * i),
            context=Context.ACTIVITY,
        )
        for i in range(15)
    ]
    cool_down = [
        reading(80.0 + JITTER[i], burst_start + timedelta(minutes=50 + 5 * i)) for i in range(6)
    ]
    anomalies, after = run(burst + cool_down, states)
    assert alerts(anomalies) == []
    assert after[key].mean == states[key].mean or abs(after[key].mean - before.mean) < 0.5
    assert all(state_keys(r) == [] for r in burst)


def test_a_fever_is_caught_by_temperature_at_its_first_reading() -> None:
    _, states = run(temperatures(10))
    fever = reading(38.6, DAY0 + timedelta(days=10, hours=7), metric=Metric.BODY_TEMPERATURE)
    anomalies, _ = run([fever], states)
    (anomaly,) = anomalies
    assert (anomaly.detector, anomaly.severity) == ("deviation", Severity.CRITICAL)
    assert anomaly.baseline is not None and anomaly.baseline.mean < 36.7
    assert anomaly.explanation.startswith(
        "Temperature 38.6 °C is far above this patient's usual 36.6 °C"
    )


def test_a_fever_raises_the_resting_heart_rate_night_after_night() -> None:
    nights = [
        reading(
            62.0 + JITTER[d % 12] / 2,
            DAY0 + timedelta(days=d, hours=7),
            metric=Metric.RESTING_HEART_RATE,
        )
        for d in range(10)
    ]
    fever = [
        reading(v, DAY0 + timedelta(days=10 + d, hours=7), metric=Metric.RESTING_HEART_RATE)
        for d, v in enumerate((68.0, 69.0, 70.0))
    ]
    anomalies, _ = run(nights + fever)
    assert [(a.detector, a.severity) for a in anomalies] == [
        ("overnight", Severity.WARNING),
        ("overnight", Severity.WARNING),
    ]
    assert anomalies[0].observed_at == fever[1].effective_time
    assert anomalies[0].explanation == (
        "Resting heart rate 69 /min is 7 /min above this patient's usual 62 /min"
        " for the 2nd night running."
    )
    assert "3rd night running" in anomalies[1].explanation


def test_a_slow_week_long_rise_is_caught_by_cusum_not_by_single_readings() -> None:
    _, states = run(temperatures(10))
    rise = temperatures(8, start=DAY0 + timedelta(days=10))
    for i, r in enumerate(rise):  # +0.1 °C a day: never four spreads off in one reading
        rise[i] = reading(
            round(r.value + 0.1 * i / 3, 2) if r.value else None,
            r.effective_time,
            metric=Metric.BODY_TEMPERATURE,
            context=None,
        )
    anomalies, _ = run(rise, states)
    found = alerts(anomalies)
    assert found, "the rise went unnoticed"
    assert {a.detector for a in found} == {"cusum"}
    assert found[0].observed_at >= DAY0 + timedelta(days=13)
    assert "sustained shift above this patient's usual" in found[0].explanation


def test_a_gap_then_a_normal_reading_is_a_data_quality_note_not_an_alert() -> None:
    _, states = run(temperatures(10))
    back = DAY0 + timedelta(days=15, hours=7)
    anomalies, after = run(
        [reading(36.95, back, metric=Metric.BODY_TEMPERATURE, context=None)], states
    )
    (note,) = anomalies
    assert (note.detector, note.severity) == ("data_gap", Severity.INFO)
    assert "days without data" in note.explanation
    assert after[state_key("p-1", "body_temperature", "awake")].n == 31  # and it was learnt


def test_a_low_normal_systolic_is_info_once_the_patients_normal_is_known() -> None:
    def bp(systolic: float, day: int) -> Measurement:
        when = DAY0 + timedelta(days=day // 2, hours=7 + 12 * (day % 2))
        return reading(
            None,
            when,
            metric=Metric.BLOOD_PRESSURE,
            components={"systolic": systolic, "diastolic": 70.0},
        )

    warm_up = [bp(98.0, d) for d in range(3)]  # in the NEWS2 score-2 band, no baseline yet
    anomalies, _ = run(warm_up)
    assert [a.severity for a in anomalies] == [Severity.INFO, Severity.INFO, Severity.WARNING]
    normal = [bp(105.0 + JITTER[d % 12] * 2, d) for d in range(3, 25)]
    _, states = run(normal)
    low, _ = run([bp(98.0, 26)], states)
    assert [a.severity for a in low] == [Severity.INFO]
    assert "not far from this patient's usual level" in low[0].explanation
    very_low, _ = run([bp(88.0, 26)], states)
    assert very_low[0].severity is Severity.CRITICAL
