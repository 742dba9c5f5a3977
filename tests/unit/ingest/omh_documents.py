"""Open mHealth data points for the tests: the openmhealth/schemas test-data samples.

Bodies are those of ``test-data/omh/<schema>/<version>/shouldPass`` in openmhealth/schemas,
wrapped in a header as a data point carries them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SAMPLES", "data_point", "sample_with"]

SAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    "heart-rate": (
        "2.0",
        {
            "heart_rate": {"value": 50, "unit": "beats/min"},
            "effective_time_frame": {
                "time_interval": {
                    "start_date_time": "2020-02-05T06:00:00+01:00",
                    "end_date_time": "2020-02-06T06:00:00+01:00",
                }
            },
            "descriptive_statistic": "minimum",
        },
    ),
    "body-temperature": (
        "4.0",
        {
            "body_temperature": {"value": 97, "unit": "F"},
            "effective_time_frame": {"date_time": "2023-02-05T07:25:00+01:00"},
            "measurement_location": "forehead",
        },
    ),
    "blood-pressure": (
        "4.0",
        {
            "systolic_blood_pressure": {"value": 115, "unit": "mmHg"},
            "diastolic_blood_pressure": {"value": 60, "unit": "mmHg"},
            "effective_time_frame": {"date_time": "2020-02-05T07:25:00-08:00"},
        },
    ),
    "oxygen-saturation": (
        "2.0",
        {
            "oxygen_saturation": {"value": 95, "unit": "%"},
            "effective_time_frame": {"date_time": "2013-02-05T07:25:00-08:00"},
            "system": "peripheral capillary",
            "measurement_method": "pulse oximetry",
        },
    ),
    "respiratory-rate": (
        "2.0",
        {
            "respiratory_rate": {"value": 11, "unit": "breaths/min"},
            "effective_time_frame": {"date_time": "2020-02-05T07:25:00-08:00"},
            "temporal_relationship_to_physical_activity": "at rest",
        },
    ),
    "step-count": (
        "3.0",
        {
            "step_count": {"value": 10600, "unit": "steps"},
            "effective_time_frame": {
                "time_interval": {
                    "start_date_time": "2016-02-05T06:25:00Z",
                    "end_date_time": "2016-02-05T07:25:00Z",
                }
            },
        },
    ),
    "blood-glucose": (
        "4.0",
        {
            "blood_glucose": {"unit": "mg/dL", "value": 95},
            "effective_time_frame": {
                "time_interval": {
                    "start_date_time": "2013-02-05T07:25:00Z",
                    "end_date_time": "2013-06-05T07:25:00Z",
                }
            },
            "specimen_source": "capillary blood",
            "temporal_relationship_to_meal": "fasting",
            "temporal_relationship_to_sleep": "on waking",
            "descriptive_statistic": "minimum",
        },
    ),
    "sleep-duration": (
        "2.0",
        {
            "sleep_duration": {"value": 7.5, "unit": "h"},
            "effective_time_frame": {
                "time_interval": {
                    "start_date_time": "2016-02-05T20:35:00Z",
                    "end_date_time": "2016-02-06T06:35:00Z",
                }
            },
        },
    ),
}


def data_point(
    name: str, body: dict[str, Any] | None = None, *, user: str | None = "user1432", **header: Any
) -> dict[str, Any]:
    version, sample = SAMPLES[name]
    head: dict[str, Any] = {
        "id": "123e4567-e89b-12d3-a456-426655440000",
        "creation_date_time": "2013-02-05T07:25:00Z",
        "schema_id": {"namespace": "omh", "name": name, "version": version},
        "acquisition_provenance": {"source_name": "RunKeeper", "modality": "sensed"},
        **header,
    }
    if user is not None:
        head["user_id"] = user
    return {"header": head, "body": sample if body is None else body}


def sample_with(name: str, **changes: Any) -> dict[str, Any]:
    return {**SAMPLES[name][1], **changes}
