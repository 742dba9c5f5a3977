"""Evaluating the detectors on a labelled synthetic cohort, and ``pghd evaluate``.

The cohort sends what devices send (bare heart rate, steps as intervals, sleep as sessions,
late syncs); the replay judges it in arrival order and then runs the alerts lifecycle.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from alerts.routing import load_routing_config
from pghd.cli import app
from pghd.commands.evaluate import COHORT_END, format_evaluation
from pghd.contracts import Phase, Severity
from pghd.simulation import Cohort, EpisodeKind, generate_cohort
from processors.evaluation import (
    ROUTING_EXAMPLE,
    Evaluation,
    evaluate_cohort,
    notifications,
    replay_arrivals,
)
from processors.replay import default_params

# 14 patients x 18 days, the first 4 a warm-up: each of the 7 kinds twice (0.5 x 14 = 7
# episode patients, kinds dealt in turn), rhr_drift included (it needs ~12 days).
SMALL = {"patients": 14, "days": 18.0, "seed": 7, "episodes_fraction": 0.5}
WARMUP = timedelta(days=4)


def _cohort() -> Cohort:
    return generate_cohort(end=COHORT_END, **SMALL)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def evaluation() -> Evaluation:
    return evaluate_cohort(_cohort(), warmup=WARMUP, workers=2)


def test_every_episode_kind_is_scored_at_both_levels(evaluation: Evaluation) -> None:
    assert evaluation.days == 14 and evaluation.warmup_days == 4 and not evaluation.labels
    for kinds in (evaluation.kinds, evaluation.care.kinds):
        assert [k.kind for k in kinds] == [k.value for k in EpisodeKind]
        for k in kinds:
            assert 0 <= k.detected <= k.episodes
            if k.episodes:
                assert k.sensitivity == pytest.approx(k.detected / k.episodes, abs=1e-3)
            if k.detected:
                assert k.median_delay_min is not None and k.median_delay_min >= 0
    assert sum(k.episodes for k in evaluation.kinds) == 7
    assert evaluation.readings > 100_000 and evaluation.rejected == 0


def test_notifications_never_detect_more_than_the_anomalies_behind_them(
    evaluation: Evaluation,
) -> None:
    for anomaly_level, care_level in zip(evaluation.kinds, evaluation.care.kinds, strict=True):
        assert care_level.detected <= anomaly_level.detected
        if care_level.detected:  # a page comes at or after the anomaly it is about
            assert care_level.median_delay_min is not None
            assert anomaly_level.median_delay_min is not None
    assert evaluation.care.healthy.alert_days <= evaluation.healthy.alert_days


def test_episodes_fold_findings_into_a_few_anomalies(evaluation: Evaluation) -> None:
    assert evaluation.episodes_emitted > 0
    assert evaluation.anomalies_per_episode is not None and evaluation.anomalies_per_episode <= 5
    for k in evaluation.kinds:
        if k.detected:
            assert k.anomalies_median is not None and k.anomalies_max is not None
            assert 1 <= k.anomalies_median <= k.anomalies_max


def test_false_alert_days_are_counted_per_thirty_scored_patient_days(
    evaluation: Evaluation,
) -> None:
    healthy, outside = evaluation.healthy, evaluation.outside_episodes
    assert healthy.patients + outside.patients == 14 and outside.patients == 7
    assert healthy.patient_days == pytest.approx(healthy.patients * 14)  # warm-up left out
    assert 0 < outside.patient_days < outside.patients * 14
    for group in (healthy, outside):
        assert 0 <= group.alert_days <= group.patient_days + group.patients
        if group.per_patient_month is not None:
            assert group.per_patient_month == pytest.approx(
                group.alert_days / group.patient_days * 30, abs=1e-3
            )
    assert all(0 <= s.critical <= s.anomalies for s in evaluation.sources)


def test_evaluation_is_deterministic_and_the_same_in_one_process(evaluation: Evaluation) -> None:
    again = evaluate_cohort(_cohort(), warmup=WARMUP, workers=1)
    assert again.to_dict() == evaluation.to_dict()


def test_a_higher_alert_severity_never_finds_more(evaluation: Evaluation) -> None:
    critical = evaluate_cohort(_cohort(), warmup=WARMUP, min_severity=Severity.CRITICAL, workers=2)
    assert critical.min_severity == "critical"
    for low, high in zip(evaluation.kinds, critical.kinds, strict=True):
        assert high.detected <= low.detected
    assert critical.healthy.alert_days <= evaluation.healthy.alert_days
    assert all(s.anomalies == s.critical for s in critical.sources)


def test_replay_arrivals_counts_what_ingest_would_reject_and_batches_a_sync() -> None:
    good: dict[str, Any] = {
        "patient_id": "p-1",
        "metric": "heart_rate",
        "value": 70,
        "unit": "/min",
        "effective_time": "2026-11-01T08:00:00Z",
    }
    bad = {**good, "value": 999, "effective_time": "2026-11-01T08:05:00Z"}
    at = COHORT_END + timedelta(hours=9)  # an hour after the readings: a sync
    replay = replay_arrivals(
        [(at, good), (at, bad), (at, {**good, "unit": "furlongs"})], params=default_params()
    )
    assert (replay.anomalies, replay.judged, replay.rejected) == ([], 1, 2)


def test_a_critical_anomaly_pages_and_its_withdrawal_pages_no_one() -> None:
    # 40 minutes of 150 /min with no steps known: a provisional critical; the steps an hour
    # later withdraw it. The shipped routing pages the critical once and nothing after.
    start = COHORT_END - timedelta(days=1)
    beats = [
        (
            start + timedelta(minutes=i, seconds=40),
            {
                "patient_id": "p-1",
                "metric": "heart_rate",
                "value": 150,
                "unit": "/min",
                "effective_time": (start + timedelta(minutes=i, seconds=30)).isoformat(),
            },
        )
        for i in range(40)
    ]
    sync = start + timedelta(hours=1, minutes=40)
    steps = [
        (
            sync,
            {
                "patient_id": "p-1",
                "metric": "steps",
                "value": 130,
                "unit": "{steps}",
                "effective_time": (start + timedelta(minutes=i)).isoformat(),
                "effective_end": (start + timedelta(minutes=i + 1)).isoformat(),
            },
        )
        for i in range(40)
    ]
    replay = replay_arrivals([*beats, *steps], params=default_params())
    phases = [a.phase for a in replay.anomalies]
    assert phases == [Phase.ONSET, Phase.WITHDRAWN]
    sent = notifications("p-1", replay.anomalies, config=load_routing_config(ROUTING_EXAMPLE))
    assert sent and {n.severity for n in sent} == {Severity.CRITICAL}
    assert all(n.at < sync for n in sent)


def test_progress_is_reported_per_patient() -> None:
    cohort = generate_cohort(patients=3, days=3, end=COHORT_END, seed=3, episodes_fraction=0)
    seen: list[int] = []
    result = evaluate_cohort(cohort, warmup=timedelta(days=1), on_patient=seen.append)
    assert len(seen) == 3 and sum(seen) == result.readings
    assert result.outside_episodes.patients == 0
    assert result.outside_episodes.per_patient_month is None
    assert all(k.episodes == 0 and k.sensitivity is None for k in result.kinds)


def test_evaluate_command_prints_both_levels_and_writes_json(
    tmp_path: Path, evaluation: Evaluation
) -> None:
    target = tmp_path / "eval.json"
    args = ["evaluate", "--patients", "14", "--days", "14", "--warmup-days", "4", "--seed", "7"]
    args += ["--episodes-fraction", "0.5", "--workers", "2", "--json", str(target)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert format_evaluation(evaluation) in result.stdout
    assert "unlabelled streams, as devices send them" in result.stdout
    assert "1. anomalies the processors publish" in result.stdout
    assert "2. notifications care teams get" in result.stdout
    for kind in EpisodeKind:
        assert f"  {kind.value} " in result.stdout
    assert json.loads(target.read_text()) == json.loads(json.dumps(evaluation.to_dict()))
