"""Open mHealth data points for the tests: the openmhealth/schemas test-data samples.

Bodies are those of ``test-data/omh/<schema>/<version>/shouldPass`` in openmhealth/schemas,
wrapped in a header as a data point carries them (and, in :data:`OTHER_SAMPLES`, a few more
files of that test data, named where they come from). :data:`TIME_FRAMES` and
:data:`REFUSED_TIME_FRAMES` are that test data's time frames, intervals, date-times, parts
of day and durations (``test-data/omh/{time-frame,time-interval,date-time,part-of-day,
duration-unit-value}/1.0`` and ``test-data/ieee/time-interval/1.0``), should pass and
should fail, each as an ``effective_time_frame``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "OTHER_SAMPLES",
    "REFUSED_TIME_FRAMES",
    "SAMPLES",
    "TIME_FRAMES",
    "data_point",
    "sample_with",
]

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
    "body-weight": (
        "2.0",
        {
            "body_weight": {"value": 50, "unit": "kg"},
            "effective_time_frame": {"date_time": "2013-02-05T07:25:00Z"},
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
    "sleep-episode": (
        "1.1",
        {
            "effective_time_frame": {
                "time_interval": {
                    "start_date_time": "2016-02-05T21:35:00Z",
                    "duration": {"value": 9, "unit": "h"},
                }
            },
            "latency_to_sleep_onset": {"value": 17.5, "unit": "min"},
            "latency_to_arising": {"value": 5.2, "unit": "min"},
            "total_sleep_time": {"value": 8.5, "unit": "h"},
            "wake_after_sleep_onset": {"value": 30, "unit": "min"},
            "number_of_awakenings": 1,
            "is_main_sleep": True,
            "sleep_maintenance_efficiency_percentage": {"value": 94.4, "unit": "%"},
        },
    ),
}

OTHER_SAMPLES: dict[str, dict[str, Any]] = {
    # test-data/omh/step-count/3.0/shouldPass/with-average.json: a month's daily average
    "step-count/with-average": {
        "step_count": {"value": 12500, "unit": "steps"},
        "effective_time_frame": {
            "time_interval": {
                "start_date_time": "2016-05-05T07:00:00Z",
                "end_date_time": "2016-06-05T07:00:00Z",
            }
        },
        "descriptive_statistic": "average",
        "descriptive_statistic_denominator": "d",
    },
    # test-data/omh/sleep-duration/2.0/shouldPass/with-descriptive-statistic.json: its
    # end_date_time lies years before its start
    "sleep-duration/with-descriptive-statistic": {
        "sleep_duration": {"value": 7.25, "unit": "h"},
        "effective_time_frame": {
            "time_interval": {
                "start_date_time": "2016-02-05T07:00:00Z",
                "end_date_time": "2013-06-06T07:00:00Z",
            }
        },
        "descriptive_statistic": "average",
        "descriptive_statistic_denominator": "d",
    },
    # test-data/omh/sleep-episode/1.0/shouldFail/effective-time-frame-with-timestamp.json
    "sleep-episode/with-timestamp": {
        "effective_time_frame": {"date_time": "2016-02-05T21:35:00Z"},
        "latency_to_sleep_onset": {"value": 17.5, "unit": "min"},
        "latency_to_arising": {"value": 5.2, "unit": "min"},
        "total_sleep_time": {"value": 8.5, "unit": "h"},
        "number_of_awakenings": 1,
        "is_main_sleep": True,
        "sleep_maintenance_efficiency_percentage": {"value": 94.4, "unit": "%"},
    },
}
"""Other samples of the same test data, named ``<schema>/<file>``."""


_DAY = "2013-02-05"  # the date of test-data/omh/time-interval/1.0/shouldPass/date-part-of-day.json
_START = "2013-02-05T07:25:00Z"  # start_date_time of .../start-time-duration.json

TIME_FRAMES: dict[str, dict[str, Any]] = {
    # test-data/omh/time-frame/1.0/shouldPass (ieee/time-frame/1.0 has the same two)
    "time-frame/date-time": {"date_time": "2013-02-05T07:25:00.123Z"},
    "time-frame/time-interval": {
        "time_interval": {
            "duration": {"value": 10, "unit": "d"},
            "end_date_time": "2013-02-05T07:35:00Z",
        }
    },
    # test-data/omh/time-interval/1.0/shouldPass, each as a time frame's time_interval
    "time-interval/date-part-of-day": {
        "time_interval": {"date": "2013-02-05", "part_of_day": "evening"}
    },
    "time-interval/duration-end-time": {
        "time_interval": {
            "duration": {"value": 10, "unit": "d"},
            "end_date_time": "2013-02-05T07:35:00Z",
        }
    },
    "time-interval/start-time-duration": {
        "time_interval": {
            "start_date_time": "2013-02-05T07:25:00Z",
            "duration": {"value": 10, "unit": "d"},
        }
    },
    "time-interval/start-time-earlier-than-end-time": {
        "time_interval": {
            "start_date_time": "2013-02-05T07:25:00Z",
            "end_date_time": "2013-02-05T07:35:00Z",
        }
    },
    "time-interval/start-time-later-than-end-time": {
        "time_interval": {
            "start_date_time": "2013-02-05T07:35:00Z",
            "end_date_time": "2013-02-05T07:25:00Z",
        }
    },
    # test-data/ieee/time-interval/1.0/shouldPass (the IEEE 1752.1 schema of the same name)
    "ieee/time-interval/end-time-duration": {
        "time_interval": {
            "duration": {"value": 10.9, "unit": "d"},
            "end_date_time": "2013-02-05T07:35:00Z",
        }
    },
    "ieee/time-interval/start-time-duration": {
        "time_interval": {
            "start_date_time": "2013-02-05T07:25:00Z",
            "duration": {"value": 10.2, "unit": "d"},
        }
    },
    # test-data/omh/date-time/1.0/shouldPass, each as a time frame's date_time
    "date-time/date-time-at-utc": {"date_time": "2013-02-05T07:25:00Z"},
    "date-time/date-time-with-milliseconds": {"date_time": "2013-02-05T07:25:00.123Z"},
    "date-time/date-time-with-timezone-offset": {"date_time": "2013-02-05T07:25:00+03:00"},
    # test-data/omh/part-of-day/1.0/shouldPass/valid-string.json, with the date above
    "part-of-day/valid-string": {"time_interval": {"date": _DAY, "part_of_day": "morning"}},
    # test-data/omh/duration-unit-value/1.0/shouldPass, as the duration from the start above
    "duration-unit-value/positive-value": {
        "time_interval": {"start_date_time": _START, "duration": {"unit": "h", "value": 7.6}}
    },
    "duration-unit-value/zero-value": {
        "time_interval": {"start_date_time": _START, "duration": {"unit": "min", "value": 0}}
    },
}
"""Every time frame shape of the openmhealth/schemas test data that should pass, named
``<schema>/<file>`` (test-data/omh/ unless it says ieee/), as an effective_time_frame."""

REFUSED_TIME_FRAMES: dict[str, dict[str, Any]] = {
    # test-data/omh/time-frame/1.0/shouldFail
    "time-frame/empty-document": {},
    "time-frame/time-interval-and-date-time": {
        "date_time": "2013-02-05T07:25:00.123Z",
        "time_interval": {
            "duration": {"value": 10, "unit": "d"},
            "end_date_time": "2013-02-05T07:35:00Z",
        },
    },
    # test-data/omh/time-interval/1.0/shouldFail (start-time-only.json: see the tests)
    "time-interval/duration-only": {"time_interval": {"duration": {"unit": "h", "value": 7.6}}},
    "time-interval/empty-document": {"time_interval": {}},
    "time-interval/end-time-only": {"time_interval": {"end_date_time": "2013-02-05T07:25:00Z"}},
    "time-interval/part-of-day-only": {"time_interval": {"part_of_day": "morning"}},
    # test-data/omh/date-time/1.0/shouldFail, as a date_time
    "date-time/date-only": {"date_time": "2013-02-05"},
    "date-time/date-time-without-timezone": {"date_time": "2013-02-05T07:25:00"},
    "date-time/empty-string": {"date_time": ""},
    "date-time/invalid-string": {"date_time": "foo"},
    "date-time/time-only": {"date_time": "07:25:00"},
    # test-data/omh/part-of-day/1.0/shouldFail, with the date above
    "part-of-day/empty-string": {"time_interval": {"date": _DAY, "part_of_day": ""}},
    "part-of-day/invalid-string": {"time_interval": {"date": _DAY, "part_of_day": "foo"}},
    "part-of-day/uppercase-string": {"time_interval": {"date": _DAY, "part_of_day": "MORNING"}},
    # test-data/omh/duration-unit-value/1.0/shouldFail, as the duration from the start above
    "duration-unit-value/empty-document": {
        "time_interval": {"start_date_time": _START, "duration": {}}
    },
    "duration-unit-value/invalid-unit": {
        "time_interval": {"start_date_time": _START, "duration": {"unit": "foo", "value": 7.6}}
    },
    "duration-unit-value/unit-only": {
        "time_interval": {"start_date_time": _START, "duration": {"unit": "yr"}}
    },
    "duration-unit-value/value-only": {
        "time_interval": {"start_date_time": _START, "duration": {"value": 10}}
    },
}
"""The time frames the same test data refuses (shouldFail), named likewise."""


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
