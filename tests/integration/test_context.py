"""Context from the data itself, on real servers: heart rate posted bare (as Fitbit, Garmin,
Oura and the aggregators send it) beside steps as 1-minute buckets, through ingest's HTTP API,
Kafka, the processors and the alerts worker.

- A workout (150 /min while the steps run at 120 a minute for 40 minutes) raises nothing.
- The same heart rate with the steps at zero is critical by the 30th still minute.
- The same workout with its steps posted an hour later: the heart rate alone is a
  provisional finding (a critical alert), withdrawn on the anomalies topic once the steps
  arrive, and the alert resolves itself saying so.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from deploy.local.harness import Pipeline, new_patient, reading, running_pipeline, wait_for
from deploy.local.influxdb import InfluxServer
from pghd import topics
from pghd.alerting import Alert, AlertState
from pghd.contracts import Anomaly, Phase, Severity
from tests.clock import ANCHOR
from tests.integration.sync import alert_states, caught_up

MIN = timedelta(minutes=1)
WORKOUT_MIN = 40


@pytest.fixture(scope="module")
def pipeline(
    stack_env: dict[str, str], influx: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    workdir: Path = tmp_path_factory.mktemp("context")
    with running_pipeline(stack_env=stack_env, influx=influx, workdir=workdir) as running:
        yield running


def _heart(patient: str, minutes: int, bpm: float) -> list[dict[str, object]]:
    start = ANCHOR + timedelta(hours=2)
    return [
        reading(patient, bpm, start + i * MIN + 20 * timedelta(seconds=1)) for i in range(minutes)
    ]


def _steps(patient: str, minutes: int, per_minute: float) -> list[dict[str, object]]:
    start = ANCHOR + timedelta(hours=2)
    return [
        reading(
            patient,
            per_minute,
            start + i * MIN,
            metric="steps",
            unit="{steps}",
            effective_end=(start + (i + 1) * MIN).isoformat(),
        )
        for i in range(minutes)
    ]


def _post_minute_by_minute(pipeline: Pipeline, *series: list[dict[str, object]]) -> None:
    """Each minute's readings in their own request, in time order, as a phone forwards them."""
    for minute in zip(*series, strict=True):
        response = pipeline.post(list(minute))
        assert response.status_code == 202, response.text


def _alerts(pipeline: Pipeline, patient: str) -> list[Alert]:
    """The latest state of each of the patient's alerts."""
    latest = {
        a.alert_id: a for a in alert_states(pipeline.kafka_bootstrap) if a.patient_id == patient
    }
    return list(latest.values())


def _judged(pipeline: Pipeline) -> None:
    caught_up(pipeline.kafka_bootstrap, pipeline.env["PGHD_PROCESSORS_APP_ID"])
    alerts_group = pipeline.env["PGHD_ALERTS_APP_ID"]
    caught_up(pipeline.kafka_bootstrap, alerts_group, (topics.ANOMALIES, topics.ALERT_COMMANDS))


def _pages(anomalies: list[Anomaly]) -> list[Anomaly]:
    return [a for a in anomalies if a.severity is not Severity.INFO]


def test_a_workout_with_its_steps_raises_no_alert(pipeline: Pipeline) -> None:
    patient = new_patient()
    _post_minute_by_minute(
        pipeline, _heart(patient, WORKOUT_MIN, 150), _steps(patient, WORKOUT_MIN, 120)
    )
    pipeline.wait_vitals(patient, 2 * WORKOUT_MIN)
    _judged(pipeline)
    anomalies = pipeline.anomalies(patient, expect=0, settle=1.0, timeout=1.0)
    assert _pages(anomalies) == [], [a.explanation for a in anomalies]
    assert _alerts(pipeline, patient) == []


def test_the_same_heart_rate_still_for_30_minutes_is_critical_by_the_30th(
    pipeline: Pipeline,
) -> None:
    patient = new_patient()
    start = ANCHOR + timedelta(hours=2)
    _post_minute_by_minute(pipeline, _heart(patient, 32, 150), _steps(patient, 32, 0))
    anomalies = pipeline.anomalies(patient, expect=1, settle=2.0)
    critical = [a for a in anomalies if a.severity is Severity.CRITICAL]
    assert critical, [a.explanation for a in anomalies]
    first = min(critical, key=lambda a: a.observed_at)
    assert first.observed_at <= start + 32 * MIN
    assert first.context == "rest" and first.phase is Phase.ONSET and first.episode_id
    alert = wait_for(
        lambda: next(iter(_alerts(pipeline, patient)), None),
        timeout=60,
        what="the critical alert",
        diagnostics=pipeline.diagnostics,
    )
    assert alert.severity is Severity.CRITICAL and alert.episode_ids == [first.episode_id]
    wait_for(
        lambda: pipeline.sink.messages_about(patient) or None,
        timeout=60,
        what="the page for the critical alert",
        diagnostics=pipeline.diagnostics,
    )


def test_a_workout_whose_steps_come_an_hour_late_is_withdrawn_once_they_arrive(
    pipeline: Pipeline,
) -> None:
    patient = new_patient()
    beats = _heart(patient, WORKOUT_MIN, 150)
    _post_minute_by_minute(pipeline, beats)
    provisional = wait_for(
        lambda: next(
            (
                a
                for a in pipeline.anomalies(patient, expect=1, settle=0.5)
                if a.severity is Severity.CRITICAL
            ),
            None,
        ),
        timeout=90,
        what="the provisional finding",
        diagnostics=pipeline.diagnostics,
    )
    assert "provisional" in provisional.explanation and provisional.context is None
    wait_for(
        lambda: (
            [a for a in _alerts(pipeline, patient) if a.status is not AlertState.RESOLVED] or None
        ),
        timeout=60,
        what="the provisional alert",
        diagnostics=pipeline.diagnostics,
    )
    # The phone syncs the workout's steps an hour later, in one request.
    response = pipeline.post(_steps(patient, WORKOUT_MIN, 120))
    assert response.status_code == 202, response.text

    def withdrawn() -> Anomaly | None:
        found = pipeline.anomalies(patient, expect=1, settle=0.5)
        return next((a for a in found if a.phase is Phase.WITHDRAWN), None)

    withdrawal = wait_for(
        withdrawn, timeout=90, what="the withdrawal", diagnostics=pipeline.diagnostics
    )
    assert withdrawal.episode_id == provisional.episode_id
    assert withdrawal.severity is Severity.INFO

    def resolved() -> list[Alert] | None:
        alerts = _alerts(pipeline, patient)
        return alerts if alerts and all(a.status is AlertState.RESOLVED for a in alerts) else None

    (alert,) = wait_for(
        resolved, timeout=60, what="the alert resolved", diagnostics=pipeline.diagnostics
    )
    assert alert.resolved_reason is not None and alert.resolved_reason.startswith("withdrawn:")
    _judged(pipeline)
    assert [a for a in _alerts(pipeline, patient) if a.status is not AlertState.RESOLVED] == []
