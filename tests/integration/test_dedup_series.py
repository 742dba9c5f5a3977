"""Deduplication per patient and device, and series that cannot collide, on real servers.

- The same client-supplied ``event_id`` from two patients: both readings are stored (the
  dedup key is patient, source, device and event id).
- Two devices of one patient reporting at the same instant: two points, one per device.
- The same reading posted twice by one device: one point, judged once (the worker counts
  the repeat in ``duplicates_dropped_total``, ``seen`` or ``batch``, and the day's resting
  heart rate is the mean of the two readings, not of three).

Heart rates at rest also make the day's resting heart rate, a point the processors write
themselves to the measurement ``resting_heart_rate``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from deploy.local.harness import Pipeline, new_patient, reading, running_pipeline
from deploy.local.influxdb import InfluxServer


@pytest.fixture(scope="module", params=["influx", "influx2"], ids=["influxdb1.8", "influxdb2.7"])
def pipeline(
    request: pytest.FixtureRequest,
    stack_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    """The pipeline storing into InfluxDB 1.8, then into 2.7 (the version compose ships)."""
    influx: InfluxServer = request.getfixturevalue(request.param)
    workdir: Path = tmp_path_factory.mktemp("dedup")
    with running_pipeline(stack_env=stack_env, influx=influx, workdir=workdir) as running:
        yield running


def _instant() -> datetime:
    """A whole minute an hour ago: recent enough for every retention, fixed within a test."""
    return (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)


def test_the_same_event_id_from_two_patients_is_stored_for_both(pipeline: Pipeline) -> None:
    a, b = new_patient("a"), new_patient("b")
    at = _instant()
    for patient, value in ((a, 61), (b, 77)):
        response = pipeline.post(reading(patient, value, at, event_id="shared-1", context="rest"))
        assert response.status_code == 202, response.text
    [row_a] = pipeline.wait_vitals(a, 1)
    [row_b] = pipeline.wait_vitals(b, 1)
    assert (row_a["value"], row_b["value"]) == (61, 77)
    assert row_a["event_id"] == row_b["event_id"] == "shared-1"


def test_two_devices_at_one_instant_are_two_points(pipeline: Pipeline) -> None:
    patient = new_patient("two-devices")
    at = _instant()
    body = [
        reading(patient, 60, at, device_id="wrist-watch", event_id="w-1", context="rest"),
        reading(patient, 95, at, device_id="chest-strap", event_id="s-1", context="rest"),
    ]
    response = pipeline.post(body)
    assert response.status_code == 202 and response.json()["accepted"] == 2, response.text
    rows = pipeline.wait_vitals(patient, 2)
    assert sorted((row["device"], row["value"]) for row in rows) == [
        ("chest-strap", 95),
        ("wrist-watch", 60),
    ]
    assert {row["_time"] for row in rows} == {at}


def test_a_repeat_from_the_same_device_is_one_point(pipeline: Pipeline) -> None:
    patient = new_patient("repeat")
    at = _instant()
    first = reading(patient, 66, at, event_id="r-1", context="rest")
    for _ in range(2):
        response = pipeline.post(first)
        assert response.status_code == 202, response.text
    # A later reading of the same device proves the worker got past the repeat.
    response = pipeline.post(reading(patient, 67, at + timedelta(minutes=1), context="rest"))
    assert response.status_code == 202, response.text
    rows = pipeline.wait_vitals(patient, 2)
    assert [row["value"] for row in rows] == [66, 67]
    assert _duplicates_dropped(pipeline) >= 1
    # The day's resting heart rate (the mean of the heart rates at rest) counted the repeat
    # once: 2 readings, 66 and 67.
    daily = pipeline.influx.query(
        f'from(bucket: "{pipeline.influx.bucket}") |> range(start: -30d)'
        f' |> filter(fn: (r) => r._measurement == "resting_heart_rate"'
        f' and r.patient_id == "{patient}" and r.kind == "daily")'
        ' |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
    )
    assert [(row["samples"], row["value"]) for row in daily] == [(2, 66.5)], daily


def _duplicates_dropped(pipeline: Pipeline) -> float:
    port = pipeline.env["PGHD_PROCESSORS_WEB_PORT"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    lines = [x for x in text.splitlines() if x.startswith("duplicates_dropped_total{")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)
