"""alerts.metrics: lifecycle transitions, notification outcomes, dead letters, annotations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from alerts.grafana import AnnotationQueue, GrafanaAnnotator
from alerts.metrics import AlertsMetrics, dead_letter_kind, notification_outcome, transitions
from alerts.state import PatientState, Where, decode, on_anomaly
from pghd import topics
from pghd.alerting import AlertState, GroupingPolicy, NotificationOutcome
from pghd.contracts import Anomaly, Severity
from tests.unit.alerts.conftest import make_anomaly
from tests.unit.alerts.test_grafana import FakeGrafana, action
from tests.unit.alerts.test_grafana import grafana as grafana  # the fixture

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def _opened(severity: Severity = Severity.CRITICAL) -> tuple[PatientState, PatientState]:
    before = PatientState(patient_id="p1", partition=0)
    anomaly = make_anomaly(severity=severity, observed_at=T0, detected_at=T0)
    step = on_anomaly(before, anomaly, config=None, policy=GroupingPolicy(), now=T0)
    return before, step.state


def test_an_alert_new_to_the_stored_state_is_opened_once() -> None:
    before, after = _opened()
    (alert,) = after.alerts.values()
    assert transitions(None, [alert]) == [("opened", alert)]
    assert transitions(before.model_dump(mode="json"), [alert]) == [("opened", alert)]
    assert transitions(after.model_dump(mode="json"), [alert]) == []  # a replay: nothing new


def test_an_alert_whose_status_became_resolved_is_resolved_once() -> None:
    _, after = _opened()
    (alert,) = after.alerts.values()
    resolved = alert.model_copy(
        update={"status": AlertState.RESOLVED, "resolved_at": T0 + timedelta(hours=2)}
    )
    stored = after.model_dump(mode="json")
    assert transitions(stored, [resolved]) == [("resolved", resolved)]
    again = after.model_copy(update={"alerts": {alert.fingerprint: resolved}})
    assert transitions(again.model_dump(mode="json"), [resolved]) == []


def test_alert_changes_are_counted_by_severity() -> None:
    metrics = AlertsMetrics()
    before, after = _opened(Severity.WARNING)
    metrics.alert_changes(before.model_dump(mode="json"), list(after.alerts.values()))
    metrics.alert_changes(after.model_dump(mode="json"), list(after.alerts.values()))
    assert _value(metrics.registry, "alerts_opened_total", severity="warning") == 1
    assert _value(metrics.registry, "alerts_resolved_total", severity="warning") == 0


def test_notification_attempts_are_success_retry_or_failure() -> None:
    assert notification_outcome(NotificationOutcome.DELIVERED, final=True) == "success"
    assert notification_outcome(NotificationOutcome.FAILED, final=False) == "retry"
    assert notification_outcome(NotificationOutcome.FAILED, final=True) == "failure"
    metrics = AlertsMetrics()
    metrics.notification("pager", NotificationOutcome.FAILED, final=False)
    metrics.notification("pager", NotificationOutcome.DELIVERED, final=True)
    assert _value(metrics.registry, "notifications_total", channel="pager", outcome="retry") == 1
    assert _value(metrics.registry, "notifications_total", channel="pager", outcome="success") == 1


def test_dead_letter_reasons_of_decode_map_to_bounded_kinds() -> None:
    where = Where(topic=topics.ANOMALIES, partition=0, offset=1, key="p1")

    def reason(payload: bytes) -> str:
        letter = decode(Anomaly, payload, where=where, now=T0)
        assert not isinstance(letter, Anomaly)
        return letter.reason

    wrong_key = make_anomaly(patient_id="p2").model_dump_json().encode()
    assert dead_letter_kind(reason(b"")) == "empty"
    assert dead_letter_kind(reason(b"garbage")) == "undecodable"
    assert dead_letter_kind(reason(b'{"anomaly_id": "x"}')) == "invalid"
    assert dead_letter_kind(reason(wrong_key)) == "key_mismatch"


def test_only_anomalies_topic_messages_count_as_anomalies_consumed() -> None:
    metrics = AlertsMetrics()
    metrics.consumed(topics.ANOMALIES)
    metrics.consumed(topics.ALERT_COMMANDS)
    assert _value(metrics.registry, "anomalies_consumed_total") == 1


async def test_the_annotation_queue_reports_each_outcome(grafana: FakeGrafana) -> None:
    outcomes: list[str] = []

    def make(**kwargs: object) -> AnnotationQueue:
        return AnnotationQueue(
            GrafanaAnnotator(grafana.url, token="glsa_test-token"),
            lookup=lambda a: None,
            remember=lambda a, n: None,
            backoff_s=0.01,
            on_outcome=outcomes.append,
            **kwargs,  # type: ignore[arg-type]
        )

    grafana.fail_first = 1
    assert await make(attempts=3).write(action()) is not None
    assert outcomes == ["retry", "written"]
    outcomes.clear()
    grafana.fail_first, grafana.calls = 5, 0
    assert await make(attempts=2).write(action()) is None
    assert outcomes == ["retry", "failed"]
    outcomes.clear()
    full = make(maxsize=1)
    full.submit(action())
    full.submit(action("acknowledged"))
    assert outcomes == ["dropped"]


def test_undelivered_gauge_and_given_up_counter() -> None:
    metrics = AlertsMetrics()
    metrics.set_undelivered({"retrying": 3, "given_up": 1})
    metrics.set_undelivered({"retrying": 2, "given_up": 1})
    metrics.gave_up("ward", "horizon")
    metrics.gave_up("ward", "unknown_outcome")
    metrics.gave_up("ward", "horizon")
    registry = metrics.registry
    assert _value(registry, "alerts_undelivered", state="retrying") == 2
    assert _value(registry, "alerts_undelivered", state="given_up") == 1
    assert _value(registry, "notifications_given_up_total", channel="ward", reason="horizon") == 2
    assert (
        _value(registry, "notifications_given_up_total", channel="ward", reason="unknown_outcome")
        == 1
    )
