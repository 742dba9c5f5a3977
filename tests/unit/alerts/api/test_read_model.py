"""The read model: latest alert per fingerprint, tombstones, silences from commands."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from alerts.api.read_model import ReadModel
from pghd import wire
from pghd.alert_commands import AlertCommand, CommandKind, Silence
from pghd.alerting import AlertState
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
