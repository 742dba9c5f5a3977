"""Readings outside the time bounds or the possible range are refused, naming the bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ingest.app import create_app
from ingest.deps import get_gateway
from ingest.settings import IngestSettings
from pghd.catalogue import CATALOGUE
from tests.unit.ingest.conftest import API_KEY, RecordingGateway, reading

URL = "/v1/measurements"


@pytest.fixture
def app(settings: IngestSettings, gateway: RecordingGateway) -> FastAPI:
    """The ingest app without enrollment checks: these tests are about the readings only."""
    app = create_app(settings.model_copy(update={"consent": "off"}))
    app.dependency_overrides[get_gateway] = lambda: gateway
    return app


@pytest.mark.parametrize(
    "when",
    [
        "1970-01-01T00:00:00Z",  # a device clock never set: the Unix epoch
        "1980-01-06T00:00:00+00:00",  # the GPS epoch
        "2000-01-01T00:59:59+01:00",  # 1999-12-31T23:59:59Z
        "0001-01-01T00:00:00+01:00",  # cannot even be converted to UTC
    ],
)
def test_readings_before_2000_are_refused_naming_the_floor(
    client: TestClient, gateway: RecordingGateway, when: str
) -> None:
    response = client.post(URL, json=[reading(), reading(effective_time=when)])
    assert response.status_code == 202, response.text
    [error] = response.json()["items"][1]["errors"]
    assert error["pointer"] == "/1/effective_time"
    assert error["field"] == "effective_time"
    assert error["detail"] == "is before 2000-01-01T00:00:00+00:00, the earliest accepted time"
    assert len(gateway.records) == 1
    assert 'readings_rejected_total{reason="time"} 1.0' in client.get("/metrics").text


def test_first_moment_of_2000_is_accepted_when_raw_data_is_kept_for_ever(
    settings: IngestSettings, gateway: RecordingGateway
) -> None:
    app = create_app(settings.model_copy(update={"consent": "off", "raw_retention": "off"}))
    app.dependency_overrides[get_gateway] = lambda: gateway
    client = TestClient(app, headers={"X-API-Key": API_KEY})
    response = client.post(URL, json=reading(effective_time="2000-01-01T01:00:00+01:00"))
    assert response.status_code == 202, response.text


def test_a_reading_older_than_the_raw_retention_is_refused_naming_it(
    client: TestClient, gateway: RecordingGateway
) -> None:
    """A phone syncing a 200-day-old backlog: InfluxDB (90-day raw retention) would refuse
    those points, so ingest refuses them item by item and takes the rest."""
    old = datetime.now(UTC) - timedelta(days=200)
    recent = datetime.now(UTC) - timedelta(days=89)
    response = client.post(
        URL,
        json=[reading(effective_time=old.isoformat()), reading(effective_time=recent.isoformat())],
    )
    assert response.status_code == 202, response.text
    first, second = response.json()["items"]
    assert second["status"] == "accepted"
    [error] = first["errors"]
    assert error["pointer"] == "/0/effective_time"
    assert error["detail"].startswith("is older than the raw retention of 90 days (before 20")
    assert error["detail"].endswith("the time-series store would not keep it")
    assert len(gateway.records) == 1
    assert 'readings_rejected_total{reason="time"} 1.0' in client.get("/metrics").text


@pytest.mark.parametrize(
    ("text", "days"),
    [("90d", 90.0), ("12w", 84.0), ("2160h", 90.0), ("off", None), ("0", None), ("", None)],
)
def test_retention_settings_parse(text: str, days: float | None) -> None:
    age = IngestSettings(raw_retention=text).max_reading_age  # type: ignore[call-arg]
    assert (None if age is None else age / timedelta(days=1)) == days


def test_a_retention_that_does_not_parse_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="not a number followed by m, h, d or w"):
        IngestSettings(raw_retention="90 days")  # type: ignore[call-arg]


@pytest.mark.parametrize("ahead", [timedelta(minutes=11), timedelta(days=365 * 7000)])
def test_readings_in_the_future_name_the_latest_time(
    client: TestClient, gateway: RecordingGateway, ahead: timedelta
) -> None:
    when = datetime.now(UTC) + ahead
    response = client.post(URL, json=reading(effective_time=when.isoformat()))
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["pointer"] == "/effective_time"
    assert error["detail"].startswith("is more than 10 minutes in the future (after 20")


def test_far_future_with_offset_is_refused_not_an_error(client: TestClient) -> None:
    response = client.post(URL, json=reading(effective_time="9999-12-31T23:59:59-05:00"))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "effective_time"


@pytest.mark.parametrize(
    ("metric", "channel", "field"),
    [
        (spec.metric.value, channel.name, "value" if not spec.is_composite else channel.name)
        for spec in CATALOGUE.values()
        for channel in spec.channels
    ],
)
def test_out_of_range_message_gives_the_range_for_every_channel(
    client: TestClient, metric: str, channel: str, field: str
) -> None:
    spec = CATALOGUE[metric]  # type: ignore[index]
    low, high = next(c for c in spec.channels if c.name == channel).possible
    over = high * 2 + 10
    body = reading(metric=metric, unit=spec.unit, value=over)
    if spec.is_composite:
        body = reading(metric=metric, unit=spec.unit, value=None, systolic=120, diastolic=80)
        body[field] = over if field == "systolic" else -1
    response = client.post(URL, json=body)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == field
    assert f"possible range {low:g} to {high:g} {spec.unit}" in error["detail"]


def test_diastolic_not_below_systolic_is_refused(client: TestClient) -> None:
    body = reading(metric="blood_pressure", unit="mmHg", value=None, systolic=80, diastolic=95)
    response = client.post(URL, json=body)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "diastolic"
    assert error["detail"] == "95 mm[Hg] is not below the systolic 80 mm[Hg]"
