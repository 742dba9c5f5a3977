"""Judging readings: one anomaly per reading and channel, baselines, points, duplicates."""

from __future__ import annotations

import pytest

from pghd import wire
from pghd.catalogue import Metric
from pghd.contracts import Anomaly, Context, Severity
from processors.baseline import BaselineState
from processors.dedup import reading_identity
from processors.detectors import glycaemia
from processors.judge import JudgeParams, judge_batch, state_key, state_keys

from .conftest import NOW, MakeReading

PARAMS = JudgeParams()
NORMAL_HR = [70, 71, 69, 72, 68, 70, 71, 69, 70, 73, 67, 70, 71, 69, 70, 72, 68, 70, 71, 69]
HR_KEY = state_key("p-1", "heart_rate", "awake-06")  # readings from 08:00 UTC, at rest


def warm_states(make_reading: MakeReading) -> dict[str, BaselineState]:
    result = judge_batch({}, [make_reading(float(v)) for v in NORMAL_HR], params=PARAMS, now=NOW)
    assert result.anomalies == []
    return result.states


def test_extreme_heart_rate_after_warm_up_gives_exactly_one_combined_anomaly(
    make_reading: MakeReading,
) -> None:
    states = warm_states(make_reading)
    # heart rate is sampled (ChannelSpec.sampled): a lone spike is a motion artefact, the
    # second in a row is not
    artefact, spike = make_reading(182.0), make_reading(182.0)
    result = judge_batch(states, [artefact, spike], params=PARAMS, now=NOW)
    assert len(result.anomalies) == 1
    anomaly = result.anomalies[0]
    assert anomaly.detector == "deviation"
    assert anomaly.contributing == ["news2"]
    assert anomaly.severity is Severity.CRITICAL
    assert anomaly.channel == "heart_rate" and anomaly.metric is Metric.HEART_RATE
    assert anomaly.value == 182.0 and anomaly.unit == "/min"
    assert anomaly.event_ids == [spike.event_id]
    assert anomaly.observed_at == spike.effective_time and anomaly.detected_at == NOW
    assert anomaly.baseline is not None and anomaly.baseline.mean == pytest.approx(70, abs=1)
    assert anomaly.explanation == (
        "Heart rate 182 /min is far above this patient's usual 70 /min (typical spread 4)"
        " and in the NEWS2 score-3 band (≥131 /min)."
    )
    assert wire.decode(Anomaly, wire.encode(anomaly)) == anomaly


def test_no_anomaly_during_warm_up_unless_a_news2_band_fires(make_reading: MakeReading) -> None:
    readings = [make_reading(float(v)) for v in NORMAL_HR[:5]]
    lone = make_reading(135.0)  # NEWS2 score 3, but a lone pulse may be a motion artefact
    readings.insert(3, lone)
    assert judge_batch({}, readings, params=PARAMS, now=NOW).anomalies == []
    repeated = make_reading(135.0)
    readings.insert(4, repeated)
    result = judge_batch({}, readings, params=PARAMS, now=NOW)
    assert [(a.detector, a.severity, a.baseline) for a in result.anomalies] == [
        ("news2", Severity.CRITICAL, None)
    ]
    assert result.anomalies[0].event_ids == [repeated.event_id]
    assert result.anomalies[0].contributing == []


def test_a_lone_heart_rate_spike_is_an_artefact_and_its_repeat_is_critical(
    make_reading: MakeReading,
) -> None:
    states = warm_states(make_reading)
    lone = make_reading(100.0)  # 30 /min above the usual 70 at rest: 7.5 spreads, NEWS2 1
    assert judge_batch(states, [lone], params=PARAMS, now=NOW).anomalies == []
    repeat = make_reading(100.0)
    result = judge_batch(states, [lone, repeat], params=PARAMS, now=NOW)
    (anomaly,) = result.anomalies
    assert (anomaly.detector, anomaly.severity) == ("deviation", Severity.CRITICAL)
    assert anomaly.event_ids == [repeat.event_id]


def test_a_lone_news2_score_3_pulse_waits_for_the_next_reading(make_reading: MakeReading) -> None:
    lone = make_reading(140.0)  # at rest, no baseline yet
    assert judge_batch({}, [lone], params=PARAMS, now=NOW).anomalies == []
    repeat = make_reading(140.0)
    (anomaly,) = judge_batch({}, [lone, repeat], params=PARAMS, now=NOW).anomalies
    assert (anomaly.detector, anomaly.severity, anomaly.baseline) == (
        "news2",
        Severity.CRITICAL,
        None,
    )
    assert anomaly.event_ids == [repeat.event_id]
    assert "NEWS2 score-3 band (≥131 /min)" in anomaly.explanation


def test_a_heart_rate_below_the_baseline_is_not_judged_but_a_slow_pulse_is(
    make_reading: MakeReading,
) -> None:
    states = warm_states(make_reading)
    # 20 /min below the usual 70 at rest (5 spreads): sleep or calm, judged upward only
    calm = [make_reading(50.0), make_reading(50.0)]
    assert judge_batch(states, calm, params=PARAMS, now=NOW).anomalies == []
    # <= 40 /min is NEWS2's score-3 band whatever the patient does, critical at once: only
    # spikes *above* the normal band are held back for the next reading
    for context in (Context.REST, Context.SLEEP, Context.ACTIVITY, None):
        slow = make_reading(38.0, context=context)
        result = judge_batch(states, [slow], params=PARAMS, now=NOW)
        assert [(a.event_ids, a.detector, a.severity) for a in result.anomalies] == [
            ([slow.event_id], "news2", Severity.CRITICAL)
        ], context
        assert "score-3 band (≤40 /min)" in result.anomalies[-1].explanation


def test_activity_context_skips_news2_pulse_and_the_baseline(make_reading: MakeReading) -> None:
    states = warm_states(make_reading)
    result = judge_batch(
        states, [make_reading(150.0, context=Context.ACTIVITY)], params=PARAMS, now=NOW
    )
    assert result.anomalies == []
    assert result.states == {}
    assert len(result.vitals) == 1


def test_anomalous_reading_does_not_move_the_baseline(make_reading: MakeReading) -> None:
    states = warm_states(make_reading)
    result = judge_batch(states, [make_reading(182.0)], params=PARAMS, now=NOW)
    kept = result.states[HR_KEY]  # the detectors' memory moved on, the baseline did not
    assert (kept.n, kept.mean, kept.spread) == (
        states[HR_KEY].n,
        states[HR_KEY].mean,
        states[HR_KEY].spread,
    )
    assert kept.hits[-1] == 1
    assert result.baselines == []
    normal = judge_batch(states, [make_reading(71.0)], params=PARAMS, now=NOW)
    assert normal.states[HR_KEY].n == states[HR_KEY].n + 1


def test_news2_only_reading_still_updates_the_baseline(make_reading: MakeReading) -> None:
    spo2 = [make_reading(90.0 + (i % 2), metric=Metric.SPO2) for i in range(25)]
    result = judge_batch({}, spo2, params=PARAMS, now=NOW)
    assert len(result.anomalies) == 25
    assert {a.detector for a in result.anomalies} == {"news2"}
    assert result.states[state_key("p-1", "spo2", "awake")].n == 25


def test_duplicate_event_ids_in_one_batch_are_judged_once(make_reading: MakeReading) -> None:
    # SpO2 88 % (NEWS2 score 3) is critical on every reading; a heart rate would not do:
    # its lone spike is held back and a repeat flagged, one anomaly either way
    first = make_reading(88.0, metric=Metric.SPO2, event_id="dup")
    again = make_reading(88.0, metric=Metric.SPO2, event_id="dup")
    result = judge_batch({}, [first, again], params=PARAMS, now=NOW)
    assert result.duplicates == [reading_identity(first)]
    assert len(result.vitals) == 1 and len(result.anomalies) == 1


def test_equal_event_ids_of_two_patients_or_two_devices_are_both_judged(
    make_reading: MakeReading,
) -> None:
    # SpO2, critical on every reading: lone heart-rate spikes are held back (ChannelSpec.sampled)
    first = make_reading(88.0, metric=Metric.SPO2, event_id="shared-1")
    other_patient = first.model_copy(update={"patient_id": "p-2"})
    other_device = first.model_copy(
        update={"source": first.source.model_copy(update={"device_id": "chest-strap-9"})}
    )
    result = judge_batch({}, [first, other_patient, other_device], params=PARAMS, now=NOW)
    assert result.duplicates == []
    assert len(result.vitals) == 3
    assert len({a.anomaly_id for a in result.anomalies}) == len(result.anomalies) == 3
    assert {p.tags["device"] for p in result.vitals} == {"watch-1", "chest-strap-9"}


def test_anomaly_id_is_deterministic(make_reading: MakeReading) -> None:
    # SpO2 88 % is critical on its own (a lone heart-rate spike would be held back)
    spike = make_reading(88.0, metric=Metric.SPO2)
    one = judge_batch({}, [spike], params=PARAMS, now=NOW)
    two = judge_batch({}, [spike], params=PARAMS, now=NOW.replace(hour=13))
    assert one.anomalies[0].anomaly_id == two.anomalies[0].anomaly_id
    assert len(one.anomalies[0].anomaly_id) == 32
    other = judge_batch({}, [make_reading(88.0, metric=Metric.SPO2)], params=PARAMS, now=NOW)
    assert other.anomalies[0].anomaly_id != one.anomalies[0].anomaly_id


def test_judge_batch_does_not_modify_the_given_states(make_reading: MakeReading) -> None:
    states = warm_states(make_reading)
    before = dict(states)
    judge_batch(states, [make_reading(71.0)], params=PARAMS, now=NOW)
    assert states == before


def test_blood_pressure_is_judged_per_channel(make_reading: MakeReading) -> None:
    reading = make_reading(
        metric=Metric.BLOOD_PRESSURE, components={"systolic": 85.0, "diastolic": 55.0}
    )
    result = judge_batch({}, [reading], params=PARAMS, now=NOW)
    assert [a.channel for a in result.anomalies] == ["blood_pressure.systolic"]
    assert result.anomalies[0].explanation == (
        "Systolic blood pressure 85 mmHg is in the NEWS2 score-3 band (≤90 mmHg)."
    )
    assert {p.tags["channel"] for p in result.vitals} == {
        "blood_pressure.systolic",
        "blood_pressure.diastolic",
    }


def test_low_glucose_is_critical(make_reading: MakeReading) -> None:
    result = judge_batch(
        {}, [make_reading(45.0, metric=Metric.BLOOD_GLUCOSE)], params=PARAMS, now=NOW
    )
    (anomaly,) = result.anomalies
    assert (anomaly.detector, anomaly.severity) == ("glycaemia", Severity.CRITICAL)
    assert (
        anomaly.explanation == "Blood glucose 45 mg/dL is below 54 mg/dL (level-2 hypoglycaemia)."
    )


def test_points_for_influx(make_reading: MakeReading) -> None:
    states = warm_states(make_reading)
    # two spikes in a row (a lone heart-rate spike is held back as a motion artefact)
    first, spike, normal = make_reading(182.0), make_reading(182.0), make_reading(71.0)
    result = judge_batch(states, [first, spike, normal], params=PARAMS, now=NOW)
    vital = result.vitals[1]
    assert vital.measurement == "vitals" and vital.fields == {"value": 182.0, "event_id": "e-21"}
    assert vital.tags == {
        "patient_id": "p-1",
        "metric": "heart_rate",
        "channel": "heart_rate",
        "source": "acme",
        "device": "watch-1",
        "unit": "/min",
    }
    assert vital.time == spike.effective_time
    (baseline,) = result.baselines
    assert baseline.tags == {"patient_id": "p-1", "channel": "heart_rate", "context": "awake-06"}
    assert set(baseline.fields) == {"mean", "spread", "low", "high", "n"}
    assert baseline.time == normal.effective_time
    points = result.points()
    assert [p.measurement for p in points] == [
        "vitals",
        "vitals",
        "vitals",
        "baselines",
        "news2",  # the partial NEWS2 after each heart rate (pulse) reading
        "news2",
        "news2",
        "anomalies",  # the second spike's only
    ]
    assert points[-1].tags["detector"] == "deviation" and points[-1].tags["severity"] == "critical"
    assert points[-1].time == spike.effective_time


def test_warm_up_writes_no_baseline_points(make_reading: MakeReading) -> None:
    result = judge_batch({}, [make_reading(float(v)) for v in NORMAL_HR], params=PARAMS, now=NOW)
    assert len(result.baselines) == 1  # only once the baseline is ready, at the 20th reading


def test_a_reading_that_breaks_a_detector_is_reported_not_raised(
    make_reading: MakeReading, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = glycaemia.glycaemia

    def boom(value: float, **kwargs: object):
        if value == 99.0:
            raise RuntimeError("bug")
        return real(value, **kwargs)

    monkeypatch.setattr(glycaemia, "glycaemia", boom)
    bad, good = make_reading(99.0), make_reading(70.0)
    result = judge_batch({}, [bad, good], params=PARAMS, now=NOW)
    assert result.failed == [(bad.event_id, "judging failed: RuntimeError('bug')")]
    assert len(result.vitals) == 1


def test_hypertensive_reading_is_flagged_before_any_baseline(make_reading: MakeReading) -> None:
    reading = make_reading(
        metric=Metric.BLOOD_PRESSURE, components={"systolic": 205.0, "diastolic": 115.0}
    )
    result = judge_batch({}, [reading], params=PARAMS, now=NOW)
    by_channel = {a.channel: a for a in result.anomalies}
    assert by_channel["blood_pressure.systolic"].severity is Severity.CRITICAL
    assert by_channel["blood_pressure.systolic"].detector == "hypertension"
    assert by_channel["blood_pressure.diastolic"].severity is Severity.WARNING
    assert "205 mmHg" in by_channel["blood_pressure.systolic"].explanation


def test_state_keys_name_every_context_bucket_a_reading_needs(make_reading: MakeReading) -> None:
    awake = make_reading(70.0)  # 08:00 UTC, no context
    asleep = make_reading(55.0, context=Context.SLEEP)
    assert state_keys(awake) == ["p-1|heart_rate|awake-06"]
    assert state_keys(asleep) == ["p-1|heart_rate|sleep"]
    assert state_keys(make_reading(150.0, context=Context.ACTIVITY)) == []
    bp = make_reading(metric=Metric.BLOOD_PRESSURE, components={"systolic": 120, "diastolic": 80})
    assert state_keys(bp) == [
        "p-1|blood_pressure.systolic|awake",
        "p-1|blood_pressure.diastolic|awake",
    ]
    assert state_keys(make_reading(5000.0, metric=Metric.STEPS)) == []
    result = judge_batch({}, [awake, asleep, bp], params=PARAMS, now=NOW)
    assert set(result.states) <= {k for r in (awake, asleep, bp) for k in state_keys(r)}
