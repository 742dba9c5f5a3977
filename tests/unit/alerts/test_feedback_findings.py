"""Feedback events from alert transitions: a finding opened or resolved makes exactly one
event per transition, worded from the reviewed templates, about the patient's own data only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from alerts.feedback.findings import finding_events
from alerts.state import PatientState, Step, on_anomaly, on_command, on_tick
from pghd import wire
from pghd.alert_commands import AlertCommand, CommandKind, Silence
from pghd.alerting import AlertState, GroupingPolicy, RoutingConfig
from pghd.contracts import BaselineSnapshot, Phase, Severity
from pghd.feedback.events import FindingDetails, event_id
from pghd.feedback.wording import Kind

from .conftest import make_anomaly
from .test_state import CONFIG

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
POLICY = GroupingPolicy(group_interval_s=3600, auto_resolve_after_s=7200)


def fresh(patient: str = "p1") -> PatientState:
    return PatientState(patient_id=patient, partition=3)


def step_anomaly(
    state: PatientState,
    n: int,
    *,
    at: datetime = T0,
    config: RoutingConfig | None = CONFIG,
    **changes: object,
) -> Step:
    anomaly = make_anomaly(
        anomaly_id=f"an-{n}", patient_id=state.patient_id, detected_at=at, **changes
    )
    return on_anomaly(state, anomaly, config=config, policy=POLICY, now=at)


def test_an_opened_finding_is_told_once_in_the_patients_own_terms() -> None:
    step = step_anomaly(fresh(), 1, observed_at=T0 - timedelta(minutes=5))
    (event,) = step.feedback
    (alert,) = step.state.alerts.values()
    assert event.kind is Kind.FINDING_OPENED and event.severity is Severity.CRITICAL
    assert event.id == event_id(alert.alert_id, "finding_opened")
    assert (event.patient_id, event.occurred_at) == ("p1", alert.opened_at)
    assert event.message.startswith(
        "Your heart rate has been 69 beats per minute above your usual since 11:55 UTC on"
        " 25 November 2026; your care team has been told and will contact you."
    )
    assert event.details == FindingDetails(
        finding_id=alert.alert_id,
        metric="heart_rate",
        opened_at=T0,
        observed_at=T0 - timedelta(minutes=5),
        value=151.0,
        unit="/min",
        usual_low=62.0,
        usual_high=82.0,
    )


def test_anything_but_the_opening_and_the_resolution_makes_no_event() -> None:
    state = step_anomaly(fresh(), 1, severity=Severity.WARNING).state
    joined = step_anomaly(state, 2, at=T0 + timedelta(minutes=1), severity=Severity.WARNING)
    assert joined.dirty and joined.feedback == []  # another anomaly of the same finding
    raised = step_anomaly(joined.state, 3, at=T0 + timedelta(minutes=2))
    assert raised.changed[0].severity is Severity.CRITICAL and raised.feedback == []
    replayed = step_anomaly(raised.state, 3, at=T0 + timedelta(minutes=3))
    assert not replayed.dirty and replayed.feedback == []  # a replayed anomaly
    ack = AlertCommand(
        command_id="c1",
        kind=CommandKind.ACKNOWLEDGE,
        patient_id="p1",
        alert_id=raised.changed[0].alert_id,
        by="nurse-7",
        issued_at=T0 + timedelta(minutes=4),
    )
    acked, _ = on_command(raised.state, ack, now=T0 + timedelta(minutes=4))
    assert acked.dirty and acked.feedback == []


def test_a_quiet_finding_resolves_once_and_says_so() -> None:
    state = step_anomaly(fresh(), 1, severity=Severity.WARNING).state
    quiet = T0 + timedelta(hours=3)
    resolved = on_tick(state, config=None, policy=POLICY, now=quiet)
    (event,) = resolved.feedback
    (alert,) = resolved.state.alerts.values()
    assert alert.status is AlertState.RESOLVED
    assert event.kind is Kind.FINDING_RESOLVED and event.occurred_at == quiet
    assert event.id == event_id(alert.alert_id, "finding_resolved")
    assert event.message == (
        "Your heart rate is back within your usual range. Your care team has been updated."
    )
    assert isinstance(event.details, FindingDetails) and event.details.resolved_at == quiet
    again = on_tick(resolved.state, config=None, policy=POLICY, now=quiet + timedelta(hours=1))
    assert again.feedback == []


def test_an_episode_that_resolves_resolves_its_finding() -> None:
    state = step_anomaly(fresh(), 1, episode_id="ep-1").state
    over = step_anomaly(
        state, 2, at=T0 + timedelta(minutes=30), episode_id="ep-1", phase=Phase.RESOLVED
    )
    assert [e.kind for e in over.feedback] == [Kind.FINDING_RESOLVED]


def test_a_care_team_resolve_is_not_told_as_back_within_the_usual_range() -> None:
    """The template says the readings are back to usual: a nurse's resolve (after calling
    the patient, say) does not establish that."""
    step = step_anomaly(fresh(), 1)
    command = AlertCommand(
        command_id="c2",
        kind=CommandKind.RESOLVE,
        patient_id="p1",
        alert_id=step.changed[0].alert_id,
        by="nurse-7",
        issued_at=T0 + timedelta(minutes=10),
        reason="called the patient",
    )
    resolved, outcome = on_command(step.state, command, now=T0 + timedelta(minutes=10))
    assert outcome == "applied" and resolved.feedback == []


def test_a_superseded_finding_is_followed_by_the_new_ones_opening_only() -> None:
    state = step_anomaly(fresh(), 1, severity=Severity.WARNING).state
    later = T0 + timedelta(minutes=90)  # beyond the group interval, before auto-resolve
    step = step_anomaly(state, 2, at=later)
    assert [a.status for a in step.changed] == [AlertState.RESOLVED, AlertState.OPEN]
    (event,) = step.feedback
    assert event.kind is Kind.FINDING_OPENED
    assert isinstance(event.details, FindingDetails)
    assert event.details.finding_id == step.changed[1].alert_id


def test_a_finding_without_a_usual_range_reads_different_from_the_usual() -> None:
    step = step_anomaly(fresh(), 1, baseline=None, severity=Severity.INFO)
    (event,) = step.feedback
    assert event.message.startswith("Your heart rate has been different from your usual since")
    assert isinstance(event.details, FindingDetails) and event.details.usual_low is None
    within = BaselineSnapshot(mean=150, spread=5, low=140, high=160, n=300)
    (trend,) = step_anomaly(fresh(), 2, baseline=within).feedback
    assert "different from your usual" in trend.message


def test_the_payload_holds_the_patients_own_data_and_no_care_team_words() -> None:
    """Two patients' transitions: each event names its patient only, and carries neither the
    care-team explanation nor who acted on the alert."""
    mine = step_anomaly(fresh("p1"), 1, explanation="p1: see p2's chart too (nurse note)")
    theirs = step_anomaly(fresh("p2"), 2, value=40.0)
    for step, patient, other in ((mine, "p1", "p2"), (theirs, "p2", "p1")):
        (event,) = step.feedback
        payload = orjson.loads(wire.encode(event))
        assert payload["patient_id"] == patient
        assert other not in wire.encode(event).decode()
        assert set(payload) == {
            "schema_version", "id", "kind", "patient_id", "occurred_at", "severity",
            "message", "details",
        }  # fmt: skip
        assert "nurse note" not in payload["message"]


def test_finding_events_compare_with_the_state_before_the_transition() -> None:
    step = step_anomaly(fresh(), 1)
    (alert,) = step.changed
    known = finding_events(step.state.alerts, [alert], anomaly=None, paged=True)
    assert known == []  # already known
    alone = finding_events({}, [alert], anomaly=None, paged=True)
    assert alone == [], "an opening needs its anomaly"


UNTOLD = "Your care team can see this in your record."


@pytest.mark.parametrize("severity", [Severity.CRITICAL, Severity.WARNING])
def test_a_finding_that_pages_someone_says_the_care_team_was_told(severity: Severity) -> None:
    step = step_anomaly(fresh(), 1, severity=severity)
    assert step.deliveries
    (event,) = step.feedback
    assert "your care team has been told" in event.message and UNTOLD not in event.message


def _silenced() -> PatientState:
    hush = Silence(
        matchers={"patient_id": "p1"},
        starts_at=T0 - timedelta(hours=1),
        ends_at=T0 + timedelta(hours=2),
        created_by="dr-3",
        comment="in hospital this week",
    )
    return fresh().model_copy(update={"silences": [hush]})


@pytest.mark.parametrize(
    "paging_no_one",
    [
        lambda: step_anomaly(_silenced(), 1),  # the care team muted this patient
        lambda: step_anomaly(fresh(), 1, config=None),  # no routing configured
        lambda: on_anomaly(  # late, and late findings do not page
            fresh(),
            make_anomaly(anomaly_id="an-1", patient_id="p1", detected_at=T0),
            config=CONFIG,
            policy=POLICY,
            now=T0 + timedelta(hours=2),
            late_after_s=600,
            page_late=False,
        ),
    ],
    ids=["silenced", "no-routing", "late-not-paged"],
)
def test_a_finding_that_pages_no_one_does_not_say_the_care_team_was_told(
    paging_no_one: Callable[[], Step],
) -> None:
    step = paging_no_one()
    assert step.deliveries == []
    (event,) = step.feedback
    assert event.kind is Kind.FINDING_OPENED and event.severity is Severity.CRITICAL
    assert UNTOLD in event.message, event.message
    for claim in ("has been told", "will contact you", "in touch"):
        assert claim not in event.message
    assert event.message.endswith(  # critical: what to do if unwell, still
        "If you feel unwell now, call your care team or your local emergency number."
    )
