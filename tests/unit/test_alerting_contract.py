"""The alerting contracts: Alert on the wire, its fingerprint, and the routing config."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from pghd import wire
from pghd.alerting import (
    Alert,
    AlertLabels,
    AlertState,
    NotificationOutcome,
    NotificationRecord,
    RoutingConfig,
    TimeWindow,
    label_fingerprint,
)
from pghd.contracts import Severity

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "alerts" / "routing.example.json"
T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def make_alert(**changes: Any) -> Alert:
    labels = AlertLabels(patient_id="p1", problem="heart_rate")
    fields: dict[str, Any] = {
        "alert_id": "al-1",
        "fingerprint": label_fingerprint(labels),
        "labels": labels,
        "severity": Severity.WARNING,
        "opened_at": T0,
        "updated_at": T0,
        "last_anomaly_at": T0,
        "anomaly_ids": ["an-1"],
        "anomaly_count": 1,
    }
    fields.update(changes)
    return Alert(**fields)


def test_fingerprint_is_stable_across_runs_and_label_order() -> None:
    labels = AlertLabels(patient_id="p1", problem="heart_rate")
    # pinned: a change here re-keys every alert on the compacted topic
    assert label_fingerprint(labels) == "05e201030ee5ed4b"
    assert label_fingerprint({"problem": "heart_rate", "patient_id": "p1"}) == "05e201030ee5ed4b"
    assert label_fingerprint(AlertLabels(patient_id="p2", problem="heart_rate")) != (
        label_fingerprint(labels)
    )


def test_alert_json_round_trip_through_the_wire_format() -> None:
    alert = make_alert(
        status=AlertState.RESOLVED,
        acknowledged_at=T0 + timedelta(minutes=3),
        acknowledged_by="nurse-7",
        resolved_at=T0 + timedelta(hours=1),
        resolved_by="nurse-7",
        resolved_reason="patient called, device was loose",
        notifications=[
            NotificationRecord(
                channel="ward-a-nurses",
                route="ward-a",
                attempt=1,
                at=T0,
                outcome=NotificationOutcome.DELIVERED,
            )
        ],
        escalation_level=1,
    )
    payload = wire.encode(alert)
    assert b"json://" not in payload
    assert wire.decode(Alert, payload) == alert
    assert wire.decode(Alert, wire.encode(make_alert())) == make_alert()


def test_times_are_normalised_to_utc() -> None:
    paris = datetime(2026, 11, 25, 9, 0, tzinfo=ZoneInfo("Europe/Paris"))
    opened = make_alert(opened_at=paris).opened_at
    assert opened.tzinfo is UTC and opened == T0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"fingerprint": "0000000000000000"}, "fingerprint does not match"),
        ({"status": AlertState.RESOLVED}, "needs resolved_at"),
        ({"resolved_at": T0}, "has no resolved_at"),
        ({"status": AlertState.ACKNOWLEDGED}, "needs acknowledged_at"),
        ({"anomaly_count": 0}, "anomaly_count"),
        ({"anomaly_ids": [f"a{i}" for i in range(101)], "anomaly_count": 101}, "at most 100"),
        ({"opened_at": datetime(2026, 11, 25, 8, 0)}, "timezone"),
        ({"surprise": 1}, "Extra inputs"),
    ],
)
def test_inconsistent_alerts_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make_alert(**changes)


def test_match_labels_add_severity_and_status() -> None:
    assert make_alert().match_labels() == {
        "patient_id": "p1",
        "problem": "heart_rate",
        "severity": "warning",
        "status": "open",
    }


def test_the_example_routing_config_is_valid() -> None:
    config = RoutingConfig.model_validate_json(EXAMPLE.read_bytes())
    assert config.team_of("sim-0001") == "cardio"
    assert config.team_of("anyone-else") == "ward-a"
    assert config.budget is not None and config.budget.max_notifications >= 1


def _config(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "channels": {"nurses": "json://127.0.0.1:1/n"},
        "routes": [{"name": "all", "escalation": [{"after_s": 0, "channels": ["nurses"]}]}],
    }
    document.update(changes)
    return document


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"routes": [{"name": "all", "escalation": [{"after_s": 0, "channels": ["x"]}]}]},
            r"route all step 1: undefined channels \['x'\]",
        ),
        (
            {"routes": [_config()["routes"][0], _config()["routes"][0]]},
            "route names must be unique",
        ),
        (
            {
                "routes": [
                    {
                        "name": "all",
                        "escalation": [
                            {"after_s": 600, "channels": ["nurses"]},
                            {"after_s": 60, "channels": ["nurses"]},
                        ],
                    }
                ]
            },
            "must not go back in time",
        ),
        ({"routes": []}, "at least 1 item"),
        (
            {
                "routes": [
                    {
                        "name": "all",
                        "active": {"start": "08:00", "end": "18:00", "timezone": "Mars/Olympus"},
                        "escalation": [{"after_s": 0, "channels": ["nurses"]}],
                    }
                ]
            },
            "unknown time zone",
        ),
    ],
)
def test_bad_routing_configs_say_what_is_wrong(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RoutingConfig.model_validate(_config(**changes))


def test_config_errors_never_echo_channel_urls() -> None:
    document = _config(channels={"lead": "mailto://u:s3cret-token@example.org", "bad": "nope"})
    with pytest.raises(ValidationError, match="channel bad: not an Apprise URL") as info:
        RoutingConfig.model_validate(document)
    assert "s3cret-token" not in str(info.value)
    with pytest.raises(ValidationError) as info:
        RoutingConfig.model_validate_json(json.dumps(_config(channels={"x": "json://t0ken@h"})))
    assert "t0ken" not in str(info.value)


def test_time_window_within_a_day_and_across_midnight() -> None:
    day = TimeWindow(start=time(8), end=time(20), timezone="Europe/London")
    night = TimeWindow(start=time(20), end=time(8), timezone="Europe/London")
    summer_noon = datetime(2026, 7, 1, 11, 30, tzinfo=UTC)  # 12:30 BST
    summer_7am_utc = datetime(2026, 7, 1, 7, 30, tzinfo=UTC)  # 08:30 BST
    winter_7am_utc = datetime(2026, 1, 7, 7, 30, tzinfo=UTC)  # 07:30 GMT
    assert day.contains(summer_noon) and not night.contains(summer_noon)
    assert day.contains(summer_7am_utc) and not night.contains(summer_7am_utc)
    assert night.contains(winter_7am_utc) and not day.contains(winter_7am_utc)


def test_time_window_days_belong_to_the_evening_the_window_started() -> None:
    # Friday 22:00 → Saturday 06:00 only
    friday_nights = TimeWindow(start=time(22), end=time(6), days=[4])
    assert friday_nights.contains(datetime(2026, 11, 27, 23, 0, tzinfo=UTC))  # Friday 23:00
    assert friday_nights.contains(datetime(2026, 11, 28, 5, 0, tzinfo=UTC))  # Saturday 05:00
    assert not friday_nights.contains(datetime(2026, 11, 28, 23, 0, tzinfo=UTC))  # Saturday
    assert not friday_nights.contains(datetime(2026, 11, 27, 5, 0, tzinfo=UTC))  # Thu night
