"""Evaluating the detectors on a labelled synthetic cohort, and ``pghd evaluate``."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pghd.cli import app
from pghd.commands.evaluate import COHORT_END, format_evaluation
from pghd.contracts import Severity
from pghd.simulation import Cohort, EpisodeKind, generate_cohort
from processors.evaluation import Evaluation, evaluate_cohort
from processors.replay import default_params, judge_patient

SMALL = {"patients": 12, "days": 10.0, "seed": 7, "episodes_fraction": 0.5}


def _cohort() -> Cohort:
    return generate_cohort(end=COHORT_END, **SMALL)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def evaluation() -> Evaluation:
    return evaluate_cohort(_cohort())


def test_every_episode_kind_is_scored_with_sensible_numbers(evaluation: Evaluation) -> None:
    assert [k.kind for k in evaluation.kinds] == [k.value for k in EpisodeKind]
    for k in evaluation.kinds:
        assert k.episodes >= 1, k.kind
        assert 0 <= k.detected <= k.episodes
        assert k.sensitivity is not None and 0 <= k.sensitivity <= 1
        assert k.sensitivity == pytest.approx(k.detected / k.episodes, abs=1e-3)
        assert sum(k.first_detectors.values()) == k.detected
        if k.detected:
            assert k.median_delay_min is not None and k.median_delay_min >= 0
            assert k.median_delay_min <= (timedelta(days=3, hours=12) / timedelta(minutes=1))
    assert sum(k.episodes for k in evaluation.kinds) == 6
    assert evaluation.readings > 10_000 and evaluation.rejected == 0


def test_false_alert_days_are_counted_per_thirty_patient_days(evaluation: Evaluation) -> None:
    healthy, outside = evaluation.healthy, evaluation.outside_episodes
    assert healthy.patients + outside.patients == 12 and outside.patients == 6
    assert healthy.patient_days == pytest.approx(healthy.patients * 10)
    assert 0 < outside.patient_days < outside.patients * 10
    for group in (healthy, outside):
        assert 0 <= group.alert_days <= group.patient_days + group.patients
        assert group.per_patient_month == pytest.approx(
            group.alert_days / group.patient_days * 30, abs=1e-3
        )
    days = sum(s.alert_days for s in evaluation.sources)
    assert days >= healthy.alert_days + outside.alert_days  # a day can have several sources
    assert all(0 <= s.critical <= s.anomalies for s in evaluation.sources)


def test_evaluation_is_deterministic(evaluation: Evaluation) -> None:
    assert evaluate_cohort(_cohort()).to_dict() == evaluation.to_dict()


def test_a_higher_alert_severity_never_finds_more(evaluation: Evaluation) -> None:
    critical = evaluate_cohort(_cohort(), min_severity=Severity.CRITICAL)
    assert critical.min_severity == "critical"
    for low, high in zip(evaluation.kinds, critical.kinds, strict=True):
        assert high.detected <= low.detected
    assert critical.healthy.alert_days <= evaluation.healthy.alert_days
    assert all(s.anomalies == s.critical for s in critical.sources)


def test_progress_is_reported_per_patient() -> None:
    cohort = generate_cohort(patients=3, days=2, end=COHORT_END, seed=3, episodes_fraction=0)
    seen: list[int] = []
    result = evaluate_cohort(cohort, on_patient=seen.append)
    assert len(seen) == 3 and sum(seen) == result.readings
    assert (
        result.outside_episodes.patients == 0 and result.outside_episodes.per_patient_month is None
    )
    assert all(k.episodes == 0 and k.sensitivity is None for k in result.kinds)


def test_judge_patient_counts_what_ingest_would_reject() -> None:
    good: dict[str, Any] = {
        "patient_id": "p-1",
        "metric": "heart_rate",
        "value": 70,
        "unit": "/min",
        "effective_time": "2026-11-01T08:00:00Z",
    }
    bad = {**good, "value": 999, "effective_time": "2026-11-01T08:05:00Z"}
    anomalies, judged, rejected = judge_patient(
        [good, bad, {**good, "unit": "furlongs"}], params=default_params(), now=COHORT_END
    )
    assert (anomalies, judged, rejected) == ([], 1, 2)


def test_evaluate_command_prints_the_table_and_writes_json(
    tmp_path: Path, evaluation: Evaluation
) -> None:
    target = tmp_path / "eval.json"
    args = ["evaluate", "--patients", "12", "--days", "10", "--seed", "7"]
    result = CliRunner().invoke(app, [*args, "--episodes-fraction", "0.5", "--json", str(target)])
    assert result.exit_code == 0, result.output
    assert format_evaluation(evaluation) in result.stdout
    for kind in EpisodeKind:
        assert f"  {kind.value} " in result.stdout
    assert "false alerts by channel / detector" in result.stdout
    assert json.loads(target.read_text()) == json.loads(json.dumps(evaluation.to_dict()))


def test_the_detectors_meet_their_targets_on_the_small_cohort(evaluation: Evaluation) -> None:
    assert all(k.sensitivity is not None and k.sensitivity >= 0.9 for k in evaluation.kinds)
    for group in (evaluation.healthy, evaluation.outside_episodes):
        assert group.per_patient_month is not None and group.per_patient_month <= 1.0
