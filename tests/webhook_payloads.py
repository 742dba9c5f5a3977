"""Vendor webhook payloads shaped as the vendors document them, and signed requests of them.

Terra: events ``{"type", "user": TerraUser, "data": [Body | Daily | Activity | Sleep],
"version"}`` with the field names of Terra's data models (docs.tryterra.co, and the models
of Terra's client libraries). Junction: ``{"event_type", "data": {"source", "user_id",
"data": [samples]}, "user_id", "client_user_id", "team_id"}`` as in Junction's event
structure documentation. Used by the unit and the integration tests.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timedelta
from typing import Any

from ingest.webhooks.signing import (
    PGHD_SIGNATURE_HEADER,
    TERRA_SIGNATURE_HEADER,
    signature_header,
    svix_headers,
    svix_key,
)

TERRA_SECRET = "terra-signing-secret-0123456789"
JUNCTION_SECRET = "whsec_" + base64.b64encode(b"junction-signing-secret-012345").decode()
GENERIC_SECRET = "acme-push-secret-0123456789"
TEAM_ID = "6b74423d-0504-4470-9afb-477252ccf67a"


def _at(start: datetime, minutes: float) -> str:
    return (start + timedelta(minutes=minutes)).isoformat()


def terra_user(user_id: str, provider: str = "WITHINGS") -> dict[str, Any]:
    return {
        "user_id": user_id,
        "provider": provider,
        "reference_id": "ref-" + user_id[:8],
        "scopes": "HEALTH_EXPORT",
        "active": True,
        "last_webhook_update": None,
        "created_at": "2026-10-07T03:45:00.000000+00:00",
    }


def terra_body(user_id: str, start: datetime) -> dict[str, Any]:
    """A Terra ``body`` event: HR, HRV (SDNN and RMSSD), SpO2, temperatures, BP, glucose, weight."""
    return {
        "type": "body",
        "user": terra_user(user_id),
        "version": "2022-03-16",
        "data": [
            {
                "metadata": {"start_time": _at(start, 0), "end_time": _at(start, 60)},
                "device_data": {"name": "Withings ScanWatch", "manufacturer": "Withings"},
                "heart_data": {
                    "heart_rate_data": {
                        "summary": {"resting_hr_bpm": 58, "avg_hr_bpm": 71, "max_hr_bpm": 92},
                        "detailed": {
                            "hr_samples": [
                                {"timestamp": _at(start, 1), "bpm": 72},
                                {"timestamp": _at(start, 2), "bpm": 75},
                            ],
                            "hrv_samples_sdnn": [{"timestamp": _at(start, 3), "hrv_sdnn": 48.5}],
                            "hrv_samples_rmssd": [{"timestamp": _at(start, 3), "hrv_rmssd": 40}],
                        },
                    },
                    "afib_classification_samples": [],
                    "ecgsignal": [],
                    "pulse_wave_velocity_samples": [],
                },
                "oxygen_data": {
                    "saturation_samples": [
                        {"timestamp": _at(start, 4), "percentage": 97},
                        {"timestamp": _at(start, 4), "percentage": 61, "type": "muscle"},
                    ],
                    "avg_saturation_percentage": 97,
                    "vo2_samples": [],
                    "vo2max_ml_per_min_per_kg": None,
                },
                "temperature_data": {
                    "body_temperature_samples": [
                        {"timestamp": _at(start, 5), "temperature_celsius": 36.8}
                    ],
                    "skin_temperature_samples": [
                        {"timestamp": _at(start, 5), "temperature_celsius": 33.1}
                    ],
                    "ambient_temperature_samples": [],
                },
                "blood_pressure_data": {
                    "blood_pressure_samples": [
                        {"timestamp": _at(start, 6), "systolic_bp": 128, "diastolic_bp": 84}
                    ]
                },
                "glucose_data": {
                    "blood_glucose_samples": [
                        {
                            "timestamp": _at(start, 7),
                            "blood_glucose_mg_per_dL": 104,
                            "glucose_level_flag": 0,
                            "trend_arrow": 0,
                        }
                    ],
                    "detailed_blood_glucose_samples": [],
                    "day_avg_blood_glucose_mg_per_dL": 104,
                },
                "measurements_data": {
                    "measurements": [
                        {"measurement_time": _at(start, 8), "weight_kg": 81.2, "BMI": 24.1}
                    ]
                },
                "ketone_data": {"ketone_samples": []},
            }
        ],
    }


def terra_daily(user_id: str, start: datetime) -> dict[str, Any]:
    """A Terra ``daily`` event: HR samples, resting HR, SpO2, the day's steps."""
    return {
        "type": "daily",
        "user": terra_user(user_id, "GARMIN"),
        "version": "2022-03-16",
        "data": [
            {
                "metadata": {
                    "start_time": _at(start, 0),
                    "end_time": _at(start, 24 * 60),
                    "upload_type": 1,
                },
                "heart_rate_data": {
                    "summary": {"resting_hr_bpm": 61, "avg_hr_bpm": 74},
                    "detailed": {
                        "hr_samples": [{"timestamp": _at(start, 30), "bpm": 66}],
                        "hrv_samples_sdnn": [],
                        "hrv_samples_rmssd": [],
                    },
                },
                "oxygen_data": {
                    "saturation_samples": [{"timestamp": _at(start, 31), "percentage": 96}]
                },
                "distance_data": {
                    "steps": 8421,
                    "distance_meters": 6100.5,
                    "detailed": {
                        "step_samples": [
                            {"timestamp": _at(start, 60), "steps": 400},
                            {"timestamp": _at(start, 120), "steps": 900},
                        ],
                        "distance_samples": [],
                    },
                },
                "stress_data": {"samples": [{"timestamp": _at(start, 40), "level": 30}]},
                "calories_data": {"total_burned_calories": 2300, "calorie_samples": []},
            }
        ],
    }


def terra_sleep(user_id: str, start: datetime) -> dict[str, Any]:
    """A Terra ``sleep`` event: HR, respiration and SpO2 samples, time asleep."""
    return {
        "type": "sleep",
        "user": terra_user(user_id, "OURA"),
        "version": "2022-03-16",
        "data": [
            {
                "metadata": {"start_time": _at(start, 0), "end_time": _at(start, 480)},
                "heart_rate_data": {
                    "summary": {"avg_hr_bpm": 55},
                    "detailed": {"hr_samples": [{"timestamp": _at(start, 60), "bpm": 54}]},
                },
                "respiration_data": {
                    "breaths_data": {
                        "samples": [{"timestamp": _at(start, 61), "breaths_per_min": 14}]
                    },
                    "oxygen_saturation_data": {
                        "samples": [{"timestamp": _at(start, 62), "percentage": 95}]
                    },
                    "snoring_data": {"samples": []},
                },
                "sleep_durations_data": {
                    "asleep": {"duration_asleep_state_seconds": 25200},
                    "hypnogram_samples": [{"timestamp": _at(start, 1), "level": 4}],
                },
            }
        ],
    }


def junction_event(
    resource: str,
    user_id: str,
    samples: list[dict[str, Any]],
    *,
    provider: str = "fitbit",
    source_type: str = "watch",
    action: str = "created",
) -> dict[str, Any]:
    """A Junction ``daily.data.<resource>.<action>`` timeseries event."""
    return {
        "event_type": f"daily.data.{resource}.{action}",
        "user_id": user_id,
        "client_user_id": "client-" + user_id[:8],
        "team_id": TEAM_ID,
        "data": {
            "source": {
                "provider": provider,
                "type": source_type,
                "app_id": None,
                "name": provider.title(),
                "slug": provider,
                "logo": f"https://storage.googleapis.com/vital-assets/{provider}.png",
            },
            "user_id": user_id,
            "data": samples,
        },
    }


def junction_sample(when: datetime, value: float, unit: str, **extra: Any) -> dict[str, Any]:
    """One Junction timeseries sample (UTC, written with ``+00:00`` as Junction does)."""
    return {
        "id": None,
        "timestamp": when.isoformat(),
        "timezone_offset": 3600,
        "type": None,
        "unit": unit,
        "value": value,
        **extra,
    }


def body_of(document: Any) -> bytes:
    return json.dumps(document).encode()


def terra_headers(
    body: bytes, *, secret: str = TERRA_SECRET, at: int | None = None
) -> dict[str, str]:
    stamp = int(time.time()) if at is None else at
    return {
        TERRA_SIGNATURE_HEADER: signature_header([secret.encode()], timestamp=stamp, body=body),
        "Content-Type": "application/json",
    }


def generic_headers(
    body: bytes, *, secret: str = GENERIC_SECRET, at: int | None = None
) -> dict[str, str]:
    stamp = int(time.time()) if at is None else at
    return {
        PGHD_SIGNATURE_HEADER: signature_header([secret.encode()], timestamp=stamp, body=body),
        "Content-Type": "application/json",
    }


def junction_headers(
    body: bytes, *, secret: str = JUNCTION_SECRET, at: int | None = None, msg_id: str = "msg_1"
) -> dict[str, str]:
    stamp = int(time.time()) if at is None else at
    return {
        **svix_headers([svix_key(secret)], msg_id=msg_id, timestamp=stamp, body=body),
        "Content-Type": "application/json",
    }


def webhook_config() -> dict[str, dict[str, Any]]:
    """``PGHD_INGEST_WEBHOOKS`` for the three test sources."""
    return {
        "terra": {"kind": "terra", "secret": TERRA_SECRET},
        "junction": {"kind": "junction", "secret": JUNCTION_SECRET},
        "acme-push": {
            "kind": "generic",
            "secret": GENERIC_SECRET,
            "handshake": "hub",
            "verify_token": "hub-token-42",
        },
        "fitbit": {
            "kind": "generic",
            "secret": "fitbit-client-secret-0",
            "handshake": "fitbit",
            "verify_token": "fitbit-code-7",
        },
    }
