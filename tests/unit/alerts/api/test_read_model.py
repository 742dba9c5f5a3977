"""The read model: latest alert per fingerprint, tombstones, silences from commands."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from alerts.api.read_model import ReadModel
from pghd import wire
from pghd.alert_commands import AlertCommand, CommandKind, Silence
from pghd.alerting import AlertState
from pghd.care_plans import CarePlan, CarePlanSettings
from pghd.enrollment import Action, Change, Enrollment, EnrollmentStatus
from pghd.topics import ALERT_COMMANDS, ENROLLMENTS
from tests.unit.alerts.api.conftest import NOW, make_alert


def test_latest_value_per_fingerprint_wins() -> None:
    model = ReadModel()
    first = make_alert()
    key = first.fingerprint.encode()
    model.apply_alert_record(key, wire.encode(first))
    acked = make_alert(
        status=AlertState.ACKNOWLEDGED, updated_at=NOW, acknowledged_by="nurse-ward-3"
    )
    model.apply_alert_record(key, wire.encode(acked))
    assert len(model.alerts) == 1
    assert model.alerts.get(first.alert_id) == acked
    reopened = make_alert(alert_id="al-new-2", updated_at=NOW)
    model.apply_alert_record(key, wire.encode(reopened))
    assert model.alerts.get(first.alert_id) is None
    assert model.alerts.get(first.fingerprint) == reopened
    model.apply_alert_record(key, None)
    assert len(model.alerts) == 0
    assert model.alerts.get("al-new-2") is None


def test_bad_records_raise() -> None:
    model = ReadModel()
    with pytest.raises(ValidationError):
        model.apply_alert_record(b"k", b'{"not": "an alert"}')
    with pytest.raises(ValueError):
        model.apply_alert_record(None, None)


def _command(kind: CommandKind, **target: object) -> AlertCommand:
    return AlertCommand(
        command_id=f"c-{kind.value}",
        kind=kind,
        patient_id="patient-001",
        by="nurse",
        issued_at=NOW,
        **target,  # type: ignore[arg-type]
    )


def test_silences_are_rebuilt_from_commands() -> None:
    model = ReadModel()
    silence = Silence(
        silence_id="s1",
        matchers={"patient_id": "patient-001"},
        starts_at=NOW - timedelta(hours=1),
        ends_at=NOW + timedelta(hours=1),
        created_by="nurse",
    )
    model.apply_command_record(wire.encode(_command(CommandKind.SILENCE, silence=silence)))
    model.apply_command_record(wire.encode(_command(CommandKind.ACKNOWLEDGE, alert_id="a")))
    entry = model.silences.get("s1")
    assert entry is not None
    assert entry.state(NOW) == "active"
    assert entry.state(NOW - timedelta(hours=2)) == "pending"
    model.apply_command(_command(CommandKind.EXPIRE_SILENCE, silence_id="s1"))
    model.apply_command(_command(CommandKind.EXPIRE_SILENCE, silence_id="unknown"))
    expired = model.silences.get("s1")
    assert expired is not None
    assert expired.state(NOW) == "expired"
    assert expired.expired_by == "nurse"
    # seen again on the topic after being added locally: unchanged
    model.apply_command(_command(CommandKind.SILENCE, silence=silence))
    assert model.silences.get("s1") == expired


def _silence_command(patient_id: str, silence_id: str) -> bytes:
    silence = Silence(
        silence_id=silence_id,
        matchers={"patient_id": patient_id},
        starts_at=NOW - timedelta(hours=1),
        ends_at=NOW + timedelta(hours=1),
        created_by="nurse",
    )
    command = AlertCommand(
        command_id=f"c-{silence_id}",
        kind=CommandKind.SILENCE,
        patient_id=patient_id,
        by="nurse",
        issued_at=NOW,
        silence=silence,
    )
    return wire.encode(command)


def _enrollment(patient_id: str) -> bytes:
    change = Change(change_id="c-1", action=Action.ENROLL, at=NOW, by="admin")
    enrollment = Enrollment(
        patient_id=patient_id,
        status=EnrollmentStatus.ENROLLED,
        enrolled_at=NOW,
        teams=["ward-a"],
        revision=1,
        change=change,
    )
    return enrollment.to_record()


def _listed(model: ReadModel, patient_id: str | None = None) -> list[str]:
    entries = model.list_silences(now=NOW, patient_id=patient_id)
    return [e.silence.silence_id for e in entries]


def test_the_enrollment_tombstone_of_an_erasure_drops_everything_held_about_the_patient() -> None:
    model = ReadModel()
    for patient in ("gone", "kept"):
        model.apply_record(ENROLLMENTS, patient.encode(), _enrollment(patient))
        model.apply_record(ALERT_COMMANDS, None, _silence_command(patient, f"s-{patient}"))
        model.load_alerts([make_alert(patient_id=patient)])
        plan = CarePlanSettings.model_validate({"spo2_scale": 2})
        model.care_plans[patient] = CarePlan.of(
            plan, patient_id=patient, updated_at=NOW, updated_by="nurse"
        )
    assert _listed(model, "gone") == ["s-gone"]

    model.apply_record(ENROLLMENTS, b"gone", None)

    assert _listed(model, "gone") == [] and _listed(model) == ["s-kept"]
    assert model.silences.get("s-gone") is None and model.silence("s-gone") is None
    assert model.alerts.query(patient_id="gone") == [] and "gone" not in model.care_plans
    assert model.teams_of("gone") == frozenset()
    assert len(model.alerts.query(patient_id="kept")) == 1 and "kept" in model.care_plans


def test_silences_of_a_patient_without_enrollment_are_not_listed() -> None:
    """After a restart the commands topic (30 days) gives an erased patient's silence
    commands again, before or after their tombstone, or with no tombstone left at all."""
    model = ReadModel()
    model.apply_record(ENROLLMENTS, b"gone", None)  # the tombstone read first
    model.apply_record(ALERT_COMMANDS, None, _silence_command("gone", "s-after"))
    model.apply_record(ALERT_COMMANDS, None, _silence_command("never", "s-never"))
    model.apply_record(ENROLLMENTS, b"kept", _enrollment("kept"))
    model.apply_record(ALERT_COMMANDS, None, _silence_command("kept", "s-kept"))

    assert _listed(model, "gone") == [] and _listed(model, "never") == []
    assert _listed(model) == ["s-kept"]
    assert model.silence("s-after") is None and model.silence("s-kept") is not None
