"""The partial NEWS2 aggregate: missing vitals, the window, trigger levels, deduplication."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pghd.care_plans import CarePlan, CarePlanSettings
from pghd.catalogue import Metric
from pghd.contracts import Context, Measurement, Severity, Source
from processors.detectors.news2_aggregate import (
    News2State,
    Vital,
    aggregate,
    explain,
    observe,
)
from processors.judge import JudgeParams, judge_batch

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
PARAMS = JudgeParams()


def vital(score: int, minutes: float, event_id: str = "e") -> Vital:
    return Vital(value=0.0, score=score, time=T0 + timedelta(minutes=minutes), event_id=event_id)


def test_aggregate_counts_the_latest_vitals_in_the_window_and_names_the_missing() -> None:
    state = News2State(
        latest={
            "pulse": vital(2, 0, "e-pulse"),
            "spo2_scale1": vital(3, 10, "e-spo2"),
            "temperature": vital(1, 20, "e-temp"),
            "respiration_rate": vital(3, -61),  # older than an hour before the newest vital
        }
    )
    found = aggregate(state, window=HOUR)
    assert found.score == 6
    assert found.scores == {"spo2_scale1": 3, "pulse": 2, "temperature": 1}
    assert found.missing == ("respiration_rate", "systolic_bp")
    assert found.event_ids == ("e-spo2", "e-pulse", "e-temp")
    assert found.at == T0 + timedelta(minutes=20)
    assert explain(found) == (
        "Partial NEWS2 6 from SpO2 3, pulse 2, temperature 1 in the last hour"
        " (respiratory rate and blood pressure missing): urgent response threshold."
    )
    # a later reading moves the window on: the pulse from 08:00 drops out
    later = observe(state, [("temperature", vital(1, 65))], window=HOUR)[1]
    assert later is not None
    assert (later.score, later.missing) == (4, ("respiration_rate", "systolic_bp", "pulse"))


def test_explanation_with_every_wearable_vital_and_scale_2() -> None:
    state = News2State(
        latest={
            name: vital(score, 0)
            for name, score in {
                "respiration_rate": 2,
                "spo2_scale1": 2,
                "systolic_bp": 0,
                "pulse": 2,
                "temperature": 1,
            }.items()
        }
    )
    found = aggregate(state, window=timedelta(hours=2), spo2_scale=2)
    assert explain(found) == (
        "Partial NEWS2 7 from respiratory rate 2, SpO2 (scale 2) 2, blood pressure 0, pulse 2,"
        " temperature 1 in the last 2 hours (consciousness and supplemental oxygen not known):"
        " emergency response threshold."
    )


def test_a_stable_high_aggregate_is_raised_once_and_a_rise_again() -> None:
    state: News2State | None = None
    raised = []
    scores = [("pulse", 2), ("temperature", 1), ("respiration_rate", 2)]  # 2, 3, 5
    scores += [("pulse", 2), ("temperature", 1), ("pulse", 2)]  # stays 5
    scores += [("systolic_bp", 2)]  # 7
    scores += [("pulse", 2), ("temperature", 1)]  # stays 7
    for minute, (name, score) in enumerate(scores):
        state, found, severity = observe(state, [(name, vital(score, minute))], window=HOUR)
        assert found is not None and state is not None
        raised.append((found.score, severity))
    assert [r for r in raised if r[1] is not None] == [
        (5, Severity.WARNING),
        (7, Severity.CRITICAL),
    ]


def test_the_episode_ends_after_a_window_without_a_high_aggregate() -> None:
    first = [
        ("pulse", vital(2, 0)),
        ("temperature", vital(1, 0)),
        ("respiration_rate", vital(2, 0)),
    ]
    state, _, severity = observe(None, first, window=HOUR)
    assert severity is Severity.WARNING
    state, found, severity = observe(state, [("respiration_rate", vital(0, 10))], window=HOUR)
    assert found is not None and (found.score, severity) == (3, None)
    # back to 5 within the hour: the same episode, not raised again
    state, found, severity = observe(state, [("respiration_rate", vital(2, 30))], window=HOUR)
    assert found is not None and (found.score, severity) == (5, None)
    state, _, _ = observe(state, [("respiration_rate", vital(0, 40))], window=HOUR)
    state, _, _ = observe(
        state, [("pulse", vital(2, 100)), ("temperature", vital(1, 100))], window=HOUR
    )
    # an hour and more after the last high aggregate: a new episode, raised again
    state, found, severity = observe(state, [("respiration_rate", vital(2, 101))], window=HOUR)
    assert found is not None and (found.score, severity) == (5, Severity.WARNING)
    assert state is not None and News2State.from_dict(state.to_dict()) == state


def test_a_red_score_already_paged_so_five_is_not_raised_but_seven_is() -> None:
    # a single parameter scoring 3 is the per-vital detector's critical alert already
    state, found, severity = observe(
        None, [("pulse", vital(2, 0)), ("respiration_rate", vital(3, 0))], window=HOUR
    )
    assert found is not None and (found.score, found.red, severity) == (5, True, None)
    state, found, severity = observe(state, [("temperature", vital(2, 5))], window=HOUR)
    assert found is not None and (found.score, severity) == (7, Severity.CRITICAL)


def test_a_late_reading_changes_nothing() -> None:
    state, _, _ = observe(None, [("pulse", vital(2, 10))], window=HOUR)
    assert observe(state, [("pulse", vital(3, 5))], window=HOUR) == (None, None, None)


def reading(metric: Metric, minutes: float, *, n: int, **values: object) -> Measurement:
    when = T0 + timedelta(minutes=minutes)
    fields = {"value": values["value"]} if "value" in values else {"components": values}
    return Measurement(
        event_id=f"e-{n}",
        patient_id="p-1",
        metric=metric,
        unit={
            Metric.HEART_RATE: "/min",
            Metric.SPO2: "%",
            Metric.BODY_TEMPERATURE: "Cel",
            Metric.RESPIRATORY_RATE: "/min",
            Metric.BLOOD_PRESSURE: "mm[Hg]",
        }[metric],
        effective_time=when,
        received_at=when,
        source=Source(vendor="acme"),
        context=Context.REST,
        **fields,  # type: ignore[arg-type]
    )


def test_judging_raises_one_aggregate_anomaly_and_writes_news2_points() -> None:
    readings = [
        reading(Metric.HEART_RATE, 0, n=1, value=115.0),  # 2
        reading(Metric.BODY_TEMPERATURE, 5, n=2, value=38.6),  # 1
        reading(Metric.RESPIRATORY_RATE, 10, n=3, value=22.0),  # 2
        reading(Metric.HEART_RATE, 15, n=4, value=116.0),  # 2, aggregate stays 5
        reading(Metric.BLOOD_PRESSURE, 20, n=5, systolic=128.0, diastolic=80.0),  # 0
    ]
    result = judge_batch({}, readings, params=PARAMS, now=T0 + HOUR)
    (aggregate_anomaly,) = [a for a in result.anomalies if a.channel == "news2"]
    assert aggregate_anomaly.detector == "news2_aggregate"
    assert (aggregate_anomaly.severity, aggregate_anomaly.score) == (Severity.WARNING, 5.0)
    assert aggregate_anomaly.metric is Metric.RESPIRATORY_RATE
    assert aggregate_anomaly.event_ids == ["e-3", "e-1", "e-2"]
    assert aggregate_anomaly.explanation == (
        "Partial NEWS2 5 from respiratory rate 2, pulse 2, temperature 1 in the last hour"
        " (SpO2 and blood pressure missing): urgent response threshold."
    )
    assert [p.fields["score"] for p in result.scores] == [2, 3, 5, 5, 5]
    last = result.scores[-1]
    assert last.measurement == "news2"
    assert last.tags == {"patient_id": "p-1", "partial": "true", "spo2_scale": "1"}
    assert last.fields == {
        "score": 5,
        "parameters_count": 4,
        "missing": "spo2",
        "respiratory_rate": 2,
        "systolic_bp": 0,
        "pulse": 2,
        "temperature": 1,
    }
    assert last.time == T0 + timedelta(minutes=20)
    # the state carries over between batches: the next pulse does not raise it again
    again = judge_batch(
        {},
        [reading(Metric.HEART_RATE, 25, n=6, value=117.0)],
        params=PARAMS,
        now=T0 + HOUR,
        news2_states=result.news2,
    )
    assert [a for a in again.anomalies if a.channel == "news2"] == []


@pytest.mark.parametrize(("scale", "expected"), [(1, 3), (2, 0)])
def test_the_aggregate_scores_spo2_on_the_plans_scale(scale: int, expected: int) -> None:
    plan = CarePlan.of(
        CarePlanSettings(spo2_scale=scale), patient_id="p-1", updated_at=T0, updated_by="n"
    )
    result = judge_batch(
        {},
        [reading(Metric.SPO2, 0, n=1, value=89.0)],
        params=PARAMS,
        now=T0,
        plans={"p-1": plan},
    )
    assert result.scores[-1].fields["spo2"] == expected
    assert result.scores[-1].tags["spo2_scale"] == str(scale)


def test_pulse_during_activity_is_not_part_of_the_aggregate() -> None:
    run = reading(Metric.HEART_RATE, 0, n=1, value=150.0).model_copy(
        update={"context": Context.ACTIVITY}
    )
    result = judge_batch({}, [run], params=PARAMS, now=T0)
    assert result.scores == [] and result.news2 == {}
