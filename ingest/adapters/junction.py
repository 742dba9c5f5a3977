"""Junction (formerly Vital, tryvital.io) webhook events to intake candidates.

Every event is ``{"event_type": ..., "data": {...}, "user_id": ..., "client_user_id": ...,
"team_id": ...}``; ``user_id`` (also at ``data.user_id``) is the Junction user, the vendor
account the registry links to a patient. Timeseries events
``daily.data.<resource>.created|updated`` carry a batch of samples at ``data.data`` with
the source at ``data.source`` (``provider``, ``type``)::

    {"timestamp": "2026-11-25T08:00:00+00:00", "value": 72, "unit": "bpm",
     "timezone_offset": 3600, "type": null}

Interval series (steps) also carry ``start`` (inclusive; ``timestamp`` repeats it) and
``end`` (exclusive): the reading is stamped at ``start`` and keeps ``end`` as its
``effective_end``. Blood pressure carries ``systolic`` and ``diastolic`` instead of
``value``. Junction identifies a sample by
resource, provider, source type and timestamp, and a later value replaces an earlier one;
the event id here adds the value, so a redelivery is a duplicate the processors drop and a
revision lands on the same InfluxDB point.

Resources read: heartrate, blood_oxygen, glucose, blood_pressure, body_temperature
(``temperature`` too), weight, respiratory_rate, steps. Others (hrv, which is RMSSD; water,
caffeine, vo2_max, summaries such as sleep and activity...) are counted as ignored, and so are
events without samples (historical.* pull notifications, provider.connection.*, labtest.*).

Times are UTC (``+00:00``) except for the floating-time providers (Abbott LibreView,
Freestyle Libre), whose ``+00:00`` is the device's local clock: those are shifted by
``timezone_offset`` (an interval's start and end alike), and refused when it is missing.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from ingest.adapters.vendor_samples import Extraction, PayloadError, number, sample_candidate
from ingest.intake import Candidate, error, pointer_of
from pghd.catalogue import Metric

__all__ = ["RESOURCES", "extract"]

VENDOR = "junction"
_DATA_EVENT = re.compile(r"^daily\.data\.(?P<resource>[a-z0-9_]+)\.(created|updated)$")
_FLOATING_TIME = frozenset({"abbott_libreview", "freestyle_libre", "freestyle_libre_ble"})

# resource -> (metric, vendor unit -> unit pghd accepts; None: use the sample's own unit)
RESOURCES: dict[str, tuple[Metric, dict[str, str]]] = {
    "heartrate": (Metric.HEART_RATE, {"bpm": "/min"}),
    "blood_oxygen": (Metric.SPO2, {"percent": "%"}),
    "glucose": (Metric.BLOOD_GLUCOSE, {"mg/dl": "mg/dL", "mmol/l": "mmol/L"}),
    "blood_pressure": (Metric.BLOOD_PRESSURE, {"mmhg": "mm[Hg]"}),
    "body_temperature": (Metric.BODY_TEMPERATURE, {"celsius": "Cel", "c": "Cel"}),
    "temperature": (Metric.BODY_TEMPERATURE, {"celsius": "Cel", "c": "Cel"}),
    "weight": (Metric.WEIGHT, {"kilogram": "kg"}),
    "respiratory_rate": (Metric.RESPIRATORY_RATE, {"bpm": "/min", "breaths/min": "/min"}),
    "steps": (Metric.STEPS, {"count": "{steps}", "steps": "{steps}"}),
}
_DEFAULT_UNIT = {
    Metric.HEART_RATE: "/min",
    Metric.SPO2: "%",
    Metric.BLOOD_PRESSURE: "mm[Hg]",
    Metric.STEPS: "{steps}",
    Metric.RESPIRATORY_RATE: "/min",
}


def extract(document: Any) -> Extraction:
    """The readings of one Junction event. Raises :class:`PayloadError` for another shape."""
    if not isinstance(document, dict) or not isinstance(document.get("event_type"), str):
        raise PayloadError('a Junction event is a JSON object with a string "event_type"')
    event = document["event_type"]
    data = document.get("data")
    account = document.get("user_id")
    if not isinstance(account, str) and isinstance(data, dict):
        account = data.get("user_id")
    match = _DATA_EVENT.match(event)
    resource = match.group("resource") if match else None
    if resource is None or resource not in RESOURCES:
        extraction = Extraction(event=event, account=account if isinstance(account, str) else None)
        samples = data.get("data") if isinstance(data, dict) else None
        extraction.ignore(
            resource or f"event:{event}",
            len(samples) if resource and isinstance(samples, list) else 1,
        )
        return extraction
    if not isinstance(account, str) or not account:
        raise PayloadError(f"a Junction {event} event needs user_id (the Junction user)")
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise PayloadError(f'a Junction {event} event carries its samples in "data.data"')
    source: dict[str, Any] = data["source"] if isinstance(data.get("source"), dict) else {}
    found = source.get("provider") or source.get("slug")
    provider = found if isinstance(found, str) else "unknown"
    kind = source.get("type")
    source_type = kind if isinstance(kind, str) else "unknown"
    extraction = Extraction(event=event, account=account)
    for index, sample in enumerate(data["data"]):
        pointer = f"/data/data/{index}"
        if not isinstance(sample, dict):
            extraction.candidates.append(
                Candidate(
                    pointer=pointer, account=account, errors=(error(pointer, "not an object"),)
                )
            )
            continue
        extraction.candidates.append(
            _candidate(
                sample,
                resource=resource,
                pointer=pointer,
                account=account,
                provider=provider,
                source_type=source_type,
            )
        )
    return extraction


def _candidate(
    sample: dict[str, Any],
    *,
    resource: str,
    pointer: str,
    account: str,
    provider: str,
    source_type: str,
) -> Candidate:
    metric, units = RESOURCES[resource]
    time_field = "start" if "start" in sample else "timestamp"
    time = sample.get(time_field)
    end = sample.get("end") if time_field == "start" else None  # exclusive end of the interval
    if provider in _FLOATING_TIME and isinstance(time, str):
        shifted = _from_floating(time, sample.get("timezone_offset"))
        if shifted is None:
            detail = (
                f"{provider} sends floating (device-local) time; without timezone_offset "
                "the instant is unknown"
            )
            return Candidate(
                pointer=pointer,
                account=account,
                errors=(error(pointer_of(pointer, ["timezone_offset"]), detail),),
            )
        time = shifted
        if isinstance(end, str):
            end = _from_floating(end, sample.get("timezone_offset"))
    raw_unit = sample.get("unit")
    unit = (
        units.get(raw_unit.strip().lower(), raw_unit.strip())
        if isinstance(raw_unit, str) and raw_unit.strip()
        else _DEFAULT_UNIT.get(metric, "")
    )
    return sample_candidate(
        vendor=VENDOR,
        account=account,
        pointer=pointer,
        kind=f"{resource}|{provider}|{source_type}",
        metric=metric,
        unit=unit,
        time=time,
        value=sample.get("value"),
        systolic=sample.get("systolic"),
        diastolic=sample.get("diastolic"),
        app=provider,
        time_field=time_field,
        end=end,
    )


def _from_floating(time: str, offset: Any) -> str | None:
    """A floating local time (written as ``+00:00``) made UTC with ``offset`` seconds."""
    seconds = number(offset)
    if seconds is None:
        return None
    try:
        local = datetime.fromisoformat(time.replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        return time  # triage reports the unreadable time
    return (local - timedelta(seconds=seconds)).replace(tzinfo=UTC).isoformat()
