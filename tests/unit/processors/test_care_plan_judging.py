"""Judging with a care plan: SpO2 scale 2, limits, detector overrides, replay."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from pghd.care_plans import CarePlan, CarePlanSettings
from pghd.catalogue import CATALOGUE, Metric
from pghd.cli import app
from pghd.contracts import Anomaly, Context, Severity
from processors.detectors import news2
from processors.judge import JudgeParams, judge_batch
from processors.replay import replay_rows

from .conftest import NOW, MakeReading

PARAMS = JudgeParams()
SPO2 = CATALOGUE[Metric.SPO2].channels[0]
NORMAL_HR = [70, 71, 69, 72, 68, 70, 71, 69, 70, 73, 67, 70, 71, 69, 70, 72, 68, 70, 71, 69]


def plan(patient_id: str = "p-1", **settings: object) -> CarePlan:
    return CarePlan.of(
        CarePlanSettings.model_validate(settings),
        patient_id=patient_id,
        updated_at=datetime(2026, 11, 25, 7, tzinfo=UTC),
        updated_by="nurse",
    )


def per_vital(anomalies: list[Anomaly]) -> list[tuple[str, str, Severity]]:
    """(channel, detector, severity) of the anomalies, without the NEWS2 aggregate's."""
    return [(a.channel, a.detector, a.severity) for a in anomalies if a.channel != "news2"]


def test_spo2_89_scores_3_on_scale_1_and_0_on_scale_2() -> None:
    assert news2.news2_score(89.0, spec=SPO2) == 3
    assert news2.news2_score(89.0, spec=SPO2, spo2_scale=2) == 0
    assert news2.news2_score(85.0, spec=SPO2, spo2_scale=2) == 2
    assert news2.news2_score(83.0, spec=SPO2, spo2_scale=2) == 3
    assert news2.news2_score(99.0, spec=SPO2, spo2_scale=2) == 0  # on air: never scored high


def test_a_scale_2_plan_stops_the_spo2_alert_for_that_patient_only(
    make_reading: MakeReading,
) -> None:
    copd = make_reading(89.0, metric=Metric.SPO2, patient_id="copd")
    other = make_reading(89.0, metric=Metric.SPO2, patient_id="other")
    plans = {"copd": plan("copd", spo2_scale=2)}
    result = judge_batch({}, [copd, other], params=PARAMS, now=NOW, plans=plans)
    assert [(a.patient_id, a.detector, a.severity) for a in result.anomalies] == [
        ("other", "news2", Severity.CRITICAL)
    ]
    low = make_reading(84.0, metric=Metric.SPO2, patient_id="copd")
    (anomaly,) = judge_batch({}, [low], params=PARAMS, now=NOW, plans=plans).anomalies
    assert anomaly.severity is Severity.INFO  # score 2, unconfirmed, on scale 2
    assert "score-2 band (84\u201385 %, SpO2 scale 2)" in anomaly.explanation


def test_resting_tachycardia_limit_stops_a_warning_that_fires_without_it(
    make_reading: MakeReading,
) -> None:
    readings = [make_reading(118.0, context=Context.REST) for _ in range(3)]
    without = judge_batch({}, readings, params=PARAMS, now=NOW)
    # no baseline yet: three readings in the score-2 band confirm it
    assert per_vital(without.anomalies)[-1] == ("heart_rate", "news2", Severity.WARNING)
    plans = {"p-1": plan(limits={"heart_rate": {"high": 125}})}
    with_plan = judge_batch({}, readings, params=PARAMS, now=NOW, plans=plans)
    assert [s for _, _, s in per_vital(with_plan.anomalies)] == [Severity.INFO] * 3
    assert with_plan.anomalies[-1].explanation == (
        "Heart rate 118 /min is in the NEWS2 score-2 band (111\u2013130 /min) but within this"
        " patient's care-plan limits (≤125 /min)."
    )


def test_a_plan_never_quiets_a_critical_finding(make_reading: MakeReading) -> None:
    plans = {"p-1": plan(limits={"heart_rate": {"high": 140}})}
    # a score-3 pulse is critical once the next reading repeats it (a lone one may be a
    # motion artefact); the plan's higher limit does not quiet it
    readings = [make_reading(135.0), make_reading(135.0)]
    (anomaly,) = judge_batch({}, readings, params=PARAMS, now=NOW, plans=plans).anomalies
    assert (anomaly.detector, anomaly.severity) == ("news2", Severity.CRITICAL)
    assert anomaly.event_ids == [readings[1].event_id]


def test_tighter_glucose_limits_warn_where_the_standard_levels_do_not(
    make_reading: MakeReading,
) -> None:
    reading = make_reading(75.0, metric=Metric.BLOOD_GLUCOSE)
    assert judge_batch({}, [reading], params=PARAMS, now=NOW).anomalies == []
    plans = {"p-1": plan(limits={"blood_glucose": {"low": 80, "high": 180}})}
    (anomaly,) = judge_batch({}, [reading], params=PARAMS, now=NOW, plans=plans).anomalies
    assert (anomaly.detector, anomaly.severity) == ("care_plan", Severity.WARNING)
    assert anomaly.explanation == (
        "Blood glucose 75 mg/dL is below this patient's care-plan limit of 80 mg/dL."
    )


def test_limits_do_not_flag_exercise(make_reading: MakeReading) -> None:
    plans = {"p-1": plan(limits={"heart_rate": {"high": 100}})}
    run = make_reading(125.0, context=Context.ACTIVITY)
    assert judge_batch({}, [run], params=PARAMS, now=NOW, plans=plans).anomalies == []
    resting = make_reading(105.0, context=Context.REST)
    (anomaly,) = judge_batch({}, [resting], params=PARAMS, now=NOW, plans=plans).anomalies
    assert (anomaly.detector, anomaly.severity) == ("care_plan", Severity.WARNING)


def test_deviation_threshold_and_detector_off_per_channel(make_reading: MakeReading) -> None:
    warm = judge_batch({}, [make_reading(float(v)) for v in NORMAL_HR], params=PARAMS, now=NOW)
    # ~9 spreads above 70, NEWS2 pulse scores only 1; sent twice, as a lone heart-rate
    # spike is held back as a motion artefact
    spikes = [make_reading(105.0), make_reading(105.0)]
    (anomaly,) = judge_batch(warm.states, spikes, params=PARAMS, now=NOW).anomalies
    assert (anomaly.detector, anomaly.severity) == ("deviation", Severity.CRITICAL)
    assert anomaly.event_ids == [spikes[1].event_id]
    raised = {"p-1": plan(detectors={"heart_rate": {"z_warning": 12, "z_critical": 15}})}
    assert (
        per_vital(judge_batch(warm.states, spikes, params=PARAMS, now=NOW, plans=raised).anomalies)
        == []
    )
    off = {"p-1": plan(detectors={"heart_rate": {"off": ["deviation"]}})}
    assert (
        per_vital(judge_batch(warm.states, spikes, params=PARAMS, now=NOW, plans=off).anomalies)
        == []
    )
    # another channel of the same patient is not affected
    other = {"p-1": plan(detectors={"spo2": {"off": ["deviation"]}})}
    result = judge_batch(warm.states, spikes, params=PARAMS, now=NOW, plans=other)
    assert per_vital(result.anomalies) == [("heart_rate", "deviation", Severity.CRITICAL)]


def test_replay_takes_the_plan() -> None:
    rows = [{"timestamp": "2026-11-25T08:00:00Z", "value": "89"}]
    assert replay_rows(rows, metric=Metric.SPO2)[0].severity == "critical"
    flags = replay_rows(rows, metric=Metric.SPO2, plan=plan("someone-else", spo2_scale=2))
    assert not flags[0].anomaly


def test_replay_command_takes_a_care_plan_file(tmp_path: Path) -> None:
    source = tmp_path / "spo2.csv"
    source.write_text("timestamp,value\n2026-11-25T08:00:00Z,89\n2026-11-25T08:05:00Z,84\n")
    plan_file = tmp_path / "plan.json"
    shown = plan("copd-1", spo2_scale=2, note="as pghd care-plan show --json prints it")
    plan_file.write_text(shown.model_dump_json())
    args = ["replay", "--metric", "spo2", "--input", str(source)]
    plain = CliRunner().invoke(app, [*args, "--output", str(tmp_path / "a.csv")])
    assert plain.exit_code == 0, plain.output
    with_plan = CliRunner().invoke(
        app, [*args, "--output", str(tmp_path / "b.csv"), "--care-plan", str(plan_file)]
    )
    assert with_plan.exit_code == 0, with_plan.output
    severities = [
        [row["severity"] for row in csv.DictReader((tmp_path / name).open())]
        for name in ("a.csv", "b.csv")
    ]
    assert severities == [["critical", "critical"], ["", "info"]]
    plan_file.write_text('{"spo2_scale": 4}')
    bad = CliRunner().invoke(
        app, [*args, "--output", str(tmp_path / "c.csv"), "--care-plan", str(plan_file)]
    )
    # the error box wraps its text at the terminal's width, which the path's length moves
    unboxed = " ".join(bad.output.replace("│", " ").split())
    assert bad.exit_code == 2 and "spo2_scale: Input should be 1 or 2" in unboxed, bad.output
