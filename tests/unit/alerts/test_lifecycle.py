"""The pure alert lifecycle: grouping, severity, acknowledge, resolve, inhibition, silences."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from alerts.lifecycle import (
    SYSTEM_ACTOR,
    Action,
    AlertStateError,
    Annotate,
    GroupingPolicy,
    Page,
    Silence,
    acknowledge,
    apply_anomaly,
    auto_resolve,
    fingerprint,
    group_key,
    inhibited,
    resolve,
    silenced,
)
from pghd.alerting import Alert, AlertLabels, AlertState
from pghd.contracts import Anomaly, Phase, Severity

from .conftest import make_anomaly

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
POLICY = GroupingPolicy(group_interval_s=3600, auto_resolve_after_s=6 * 3600, max_anomaly_ids=50)


def anomaly(n: int = 0, *, at: datetime | None = None, **changes: Any) -> Anomaly:
    """Anomaly ``an-n`` detected ``n`` seconds after T0 (or at ``at``)."""
    detected = at if at is not None else T0 + timedelta(seconds=n)
    fields: dict[str, Any] = {
        "anomaly_id": f"an-{n}",
        "severity": Severity.WARNING,
        "observed_at": detected,
        "detected_at": detected,
    }
    fields.update(changes)
    return make_anomaly(**fields)


def feed(anomalies: Sequence[Anomaly], alert: Alert | None = None) -> tuple[Alert, list[Action]]:
    actions: list[Action] = []
    assert anomalies
    for a in anomalies:
        alert, new = apply_anomaly(alert, a, policy=POLICY, now=a.detected_at)
        actions += new
    assert alert is not None
    return alert, actions


def pages(actions: Sequence[Action]) -> list[Page]:
    return [a for a in actions if isinstance(a, Page)]


def notes(actions: Sequence[Action]) -> list[Annotate]:
    return [a for a in actions if isinstance(a, Annotate)]


def test_a_burst_of_100_anomalies_makes_one_alert_that_pages_once() -> None:
    alert, actions = feed([anomaly(n * 10) for n in range(100)])
    assert pages(actions) == [Page("opened")]
    assert [a.kind for a in notes(actions)] == ["opened"]
    assert alert.status is AlertState.OPEN
    assert alert.anomaly_count == 100
    assert alert.anomaly_ids == [f"an-{n * 10}" for n in range(50, 100)]  # the latest 50
    assert alert.opened_at == T0 and alert.last_anomaly_at == T0 + timedelta(seconds=990)
    assert alert.fingerprint == fingerprint(alert.labels)


@given(
    st.lists(
        st.tuples(st.integers(0, 3600), st.sampled_from(list(Severity))), min_size=1, max_size=60
    )
)
def test_anomalies_within_the_interval_page_on_open_and_on_each_rise_only(
    steps: list[tuple[int, Severity]],
) -> None:
    at, batch = T0, []
    for n, (gap, severity) in enumerate(steps):
        at += timedelta(seconds=gap)
        batch.append(anomaly(at=at, anomaly_id=f"an-{n}", severity=severity))
    alert, actions = feed(batch)
    rises = sum(
        1 for n in range(1, len(steps)) if steps[n][1].rank > max(s.rank for _, s in steps[:n])
    )
    assert pages(actions) == [Page("opened")] + [Page("severity_raised")] * rises
    assert alert.anomaly_count == len(steps)
    assert alert.severity.rank == max(s.rank for _, s in steps)


def test_group_key_is_patient_and_problem() -> None:
    systolic = anomaly(metric="blood_pressure", channel="blood_pressure.systolic", unit="mm[Hg]")
    diastolic = anomaly(metric="blood_pressure", channel="blood_pressure.diastolic", unit="mm[Hg]")
    assert group_key(systolic) == group_key(diastolic)
    assert group_key(systolic) == AlertLabels(patient_id="p1", problem="blood_pressure")
    assert group_key(anomaly(metric="resting_heart_rate", channel="resting_heart_rate")) == (
        group_key(anomaly())
    )
    assert group_key(anomaly(patient_id="p2")) != group_key(anomaly())
    assert group_key(anomaly(metric="spo2", channel="spo2", unit="%")) != group_key(anomaly())


def test_an_anomaly_of_another_fingerprint_is_refused() -> None:
    alert, _ = feed([anomaly()])
    with pytest.raises(ValueError, match="fingerprints differ"):
        apply_anomaly(alert, anomaly(1, patient_id="p2"), policy=POLICY, now=T0)


def test_severity_rise_pages_once_and_never_lowers() -> None:
    warnings = [anomaly(n) for n in range(5)]
    criticals = [anomaly(100 + n, severity=Severity.CRITICAL) for n in range(5)]
    alert, actions = feed([*warnings, *criticals, anomaly(200)])
    assert pages(actions) == [Page("opened"), Page("severity_raised")]
    assert [a.kind for a in notes(actions)] == ["opened", "severity_raised"]
    assert alert.severity is Severity.CRITICAL
    assert alert.anomaly_count == 11


def test_a_replayed_anomaly_changes_nothing() -> None:
    alert, _ = feed([anomaly(0), anomaly(1)])
    again, actions = apply_anomaly(alert, anomaly(1), policy=POLICY, now=T0 + timedelta(hours=1))
    assert again == alert and actions == []
    closed, _ = resolve(alert, by="nurse-7", reason="ok", now=T0 + timedelta(minutes=5))
    assert apply_anomaly(closed, anomaly(1), policy=POLICY, now=T0 + timedelta(hours=1)) == (
        closed,
        [],
    )


def test_resolve_then_a_new_anomaly_opens_a_new_alert() -> None:
    alert, _ = feed([anomaly(0)])
    closed, actions = resolve(alert, by="nurse-7", reason="sensor loose", now=T0 + timedelta(1))
    assert closed.status is AlertState.RESOLVED
    assert (closed.resolved_by, closed.resolved_reason) == ("nurse-7", "sensor loose")
    [note] = notes(actions)
    assert (note.kind, note.time, note.time_end) == ("resolved", T0, T0 + timedelta(1))
    assert "alert" in note.tags and "patient:p1" in note.tags
    assert resolve(closed, by="x", reason="again", now=T0 + timedelta(2)) == (closed, [])

    reopened, actions = feed(
        [anomaly(at=T0 + timedelta(days=1, seconds=1), anomaly_id="an-x")], closed
    )
    assert reopened.alert_id != alert.alert_id
    assert reopened.fingerprint == alert.fingerprint
    assert reopened.status is AlertState.OPEN and reopened.anomaly_count == 1
    assert pages(actions) == [Page("opened")]


def test_a_gap_longer_than_the_group_interval_closes_the_old_alert_and_opens_another() -> None:
    alert, _ = feed([anomaly(0)])
    later = anomaly(3601)
    new, actions = apply_anomaly(alert, later, policy=POLICY, now=later.detected_at)
    assert new.alert_id != alert.alert_id and new.anomaly_ids == ["an-3601"]
    assert [a.kind for a in notes(actions)] == ["resolved", "opened"]
    assert notes(actions)[0].alert_id == alert.alert_id
    assert pages(actions) == [Page("opened")]
    within = anomaly(3600)
    same, _ = apply_anomaly(alert, within, policy=POLICY, now=within.detected_at)
    assert same.alert_id == alert.alert_id


def test_alert_ids_are_deterministic_for_a_replay() -> None:
    first, _ = feed([anomaly(0), anomaly(1)])
    second, _ = feed([anomaly(0), anomaly(1)])
    assert first.alert_id == second.alert_id


def test_acknowledge_then_resolve() -> None:
    alert, _ = feed([anomaly(0)])
    at = T0 + timedelta(minutes=4)
    taken, actions = acknowledge(alert, by="nurse-7", now=at)
    assert taken.status is AlertState.ACKNOWLEDGED
    assert (taken.acknowledged_by, taken.acknowledged_at) == ("nurse-7", at)
    assert taken.next_notify_at is None
    assert [a.kind for a in notes(actions)] == ["acknowledged"]
    assert acknowledge(taken, by="nurse-8", now=at + timedelta(1)) == (taken, [])

    attached, actions = apply_anomaly(taken, anomaly(600), policy=POLICY, now=T0)
    assert attached.status is AlertState.ACKNOWLEDGED and actions == []

    closed, _ = resolve(attached, by="nurse-7", reason="treated", now=at + timedelta(hours=1))
    assert closed.acknowledged_by == "nurse-7"
    with pytest.raises(AlertStateError, match="resolved"):
        acknowledge(closed, by="nurse-7", now=at + timedelta(hours=2))
    with pytest.raises(ValueError, match="by must be"):
        acknowledge(alert, by="", now=at)
    with pytest.raises(ValueError, match="by must be"):
        resolve(alert, by="x" * 129, reason="", now=at)


def test_auto_resolve_after_the_quiet_period_and_not_before() -> None:
    alert, _ = feed([anomaly(0), anomaly(600)])
    quiet = timedelta(seconds=POLICY.auto_resolve_after_s)
    last = T0 + timedelta(seconds=600)
    assert auto_resolve(alert, now=last + quiet - timedelta(seconds=1), quiet_for=quiet) == (
        alert,
        [],
    )
    closed, actions = auto_resolve(alert, now=last + quiet, quiet_for=quiet)
    assert closed.status is AlertState.RESOLVED and closed.resolved_by == SYSTEM_ACTOR
    assert closed.resolved_reason == "no anomaly for 360 min"
    assert [a.kind for a in notes(actions)] == ["resolved"]
    assert auto_resolve(closed, now=last + 2 * quiet, quiet_for=quiet) == (closed, [])


def _alert(patient: str, metric: str, severity: Severity, n: int) -> Alert:
    unit = {"heart_rate": "/min", "spo2": "%", "body_temperature": "Cel"}[metric]
    alert, _ = feed(
        [
            anomaly(
                n, patient_id=patient, metric=metric, channel=metric, unit=unit, severity=severity
            )
        ]
    )
    return alert


def test_a_critical_alert_inhibits_lesser_ones_of_the_same_patient() -> None:
    critical = _alert("p1", "spo2", Severity.CRITICAL, 1)
    warning = _alert("p1", "heart_rate", Severity.WARNING, 2)
    info = _alert("p1", "body_temperature", Severity.INFO, 3)
    other_patient = _alert("p2", "heart_rate", Severity.WARNING, 4)
    others = [critical, warning, info, other_patient]
    assert inhibited(warning, others) and inhibited(info, others)
    assert not inhibited(critical, others)
    assert not inhibited(other_patient, others)
    assert not inhibited(warning, [warning, info, other_patient])
    closed, _ = resolve(critical, by="nurse-7", reason="ok", now=T0 + timedelta(hours=1))
    assert not inhibited(warning, [closed, info])
    # another critical of the same patient is not inhibited by the first
    assert not inhibited(_alert("p1", "heart_rate", Severity.CRITICAL, 5), others)


def test_silences_match_labels_and_severity_while_active() -> None:
    alert = _alert("p1", "heart_rate", Severity.WARNING, 1)
    start, end = T0, T0 + timedelta(hours=2)
    by_patient = Silence(
        matchers={"patient_id": "p1"}, starts_at=start, ends_at=end, created_by="dr-3"
    )
    warnings_only = Silence(
        matchers={"patient_id": "p1", "severity": "warning"},
        starts_at=start,
        ends_at=end,
        created_by="dr-3",
        comment="known arrhythmia, review Monday",
    )
    other = Silence(matchers={"problem": "spo2"}, starts_at=start, ends_at=end, created_by="dr-3")
    assert silenced(alert, [by_patient], now=T0 + timedelta(minutes=30))
    assert silenced(alert, [other, warnings_only], now=T0)
    assert not silenced(alert, [other], now=T0)
    assert not silenced(_alert("p1", "heart_rate", Severity.CRITICAL, 2), [warnings_only], now=T0)
    assert not silenced(alert, [by_patient], now=end)  # expired: ends_at is exclusive
    assert not silenced(alert, [by_patient], now=start - timedelta(seconds=1))  # not started


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ends_at": T0}, "ends_at must be after starts_at"),
        ({"matchers": {}}, "at least 1 item"),
        ({"matchers": {"ward": "a"}}, "unknown labels"),
    ],
)
def test_bad_silences_are_refused(changes: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {
        "matchers": {"patient_id": "p1"},
        "starts_at": T0,
        "ends_at": T0 + timedelta(hours=1),
        "created_by": "dr-3",
    }
    with pytest.raises(ValidationError, match=message):
        Silence(**(fields | changes))


def test_an_episode_is_one_alert_however_long_it_lasts_and_its_end_resolves_it() -> None:
    onset = anomaly(0, episode_id="ep-1", phase=Phase.ONSET)
    # A reminder a day later (beyond the group interval) still belongs to the episode.
    reminder = anomaly(24 * 3600, episode_id="ep-1", phase=Phase.UPDATE)
    alert, actions = feed([onset, reminder])
    assert alert.active and alert.anomaly_count == 2 and alert.episode_ids == ["ep-1"]
    assert [a for a in actions if isinstance(a, Page)] == [Page("opened")]
    end = anomaly(
        25 * 3600,
        episode_id="ep-1",
        phase=Phase.RESOLVED,
        severity=Severity.INFO,
        explanation="Heart rate back within this patient's normal for 30 min.",
    )
    closed, actions = apply_anomaly(alert, end, policy=POLICY, now=end.detected_at)
    assert closed is not None and closed.status is AlertState.RESOLVED
    assert closed.resolved_by == SYSTEM_ACTOR
    assert closed.resolved_reason is not None and closed.resolved_reason.startswith(
        "episode resolved: Heart rate back"
    )
    assert not [a for a in actions if isinstance(a, Page)]


def test_a_withdrawn_episode_resolves_its_alert_saying_so_and_two_episodes_wait_for_both() -> None:
    first = anomaly(0, episode_id="ep-1", phase=Phase.ONSET, severity=Severity.CRITICAL)
    second = anomaly(60, episode_id="ep-2", phase=Phase.ONSET)
    alert, _ = feed([first, second])
    assert alert.episode_ids == ["ep-1", "ep-2"]
    gone = anomaly(120, episode_id="ep-1", phase=Phase.WITHDRAWN, severity=Severity.INFO)
    still, _ = apply_anomaly(alert, gone, policy=POLICY, now=gone.detected_at)
    assert still is not None and still.active and still.episode_ids == ["ep-2"]
    done = anomaly(180, episode_id="ep-2", phase=Phase.WITHDRAWN, severity=Severity.INFO)
    closed, _ = apply_anomaly(still, done, policy=POLICY, now=done.detected_at)
    assert closed is not None and closed.status is AlertState.RESOLVED
    assert closed.resolved_reason is not None and closed.resolved_reason.startswith("withdrawn:")


def test_the_end_of_an_episode_no_alert_holds_opens_nothing() -> None:
    end = anomaly(0, episode_id="ep-9", phase=Phase.RESOLVED, severity=Severity.INFO)
    assert apply_anomaly(None, end, policy=POLICY, now=T0) == (None, [])
