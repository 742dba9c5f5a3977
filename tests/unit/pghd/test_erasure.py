"""The erasure marker and the report made of the stages' audit events (pure)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pghd import wire
from pghd.audit import to_fhir
from pghd.erasure import (
    MARKER_PREFIX,
    decode_marker,
    is_marker,
    new_marker,
    report_of,
    stage_event,
)
from tests.clock import ANCHOR


def test_a_marker_is_told_from_readings_by_its_first_bytes_and_round_trips() -> None:
    marker = new_marker("p-1", at=ANCHOR, by="ops")
    payload = wire.encode(marker)
    assert payload.startswith(MARKER_PREFIX) and is_marker(payload)
    assert decode_marker(payload) == marker
    reading = b'{"schema_version":2,"patient_id":"p-1","readings":[]}'
    assert not is_marker(reading) and not is_marker(None)


def test_a_damaged_marker_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="not a valid erasure marker"):
        decode_marker(MARKER_PREFIX + b',"patient_id":"p 1"}')


def test_the_report_is_complete_only_when_every_stage_reported_success() -> None:
    marker = new_marker("p-1", at=ANCHOR, by="ops")
    later = ANCHOR + timedelta(seconds=1)
    processors = stage_event(
        marker, stage="processors", resource="s", removed={"state_records": 1}, recorded=later
    )
    store_failed = stage_event(
        marker, stage="store", resource="influxdb", removed={}, recorded=later, failed="down"
    )
    other = stage_event(
        new_marker("p-1", at=ANCHOR, by="ops"),
        stage="alerts",
        resource="alerts",
        removed={"alerts": 3},
        recorded=later,
    )
    report = report_of(marker, {"enrollments": 1}, [processors, store_failed, other])
    assert report.removed == {"ingest": {"enrollments": 1}, "processors": {"state_records": 1}}
    assert report.failed == {"store": "down"}
    assert report.pending == ["alerts"]  # the other erasure's event is not this one's
    assert not report.complete

    store_ok = stage_event(
        marker, stage="store", resource="influxdb", removed={"points": 9}, recorded=later
    )
    alerts = stage_event(marker, stage="alerts", resource="a", removed={}, recorded=later)
    done = report_of(marker, {}, [processors, store_failed, store_ok, alerts])
    assert done.complete and done.removed["store"] == {"points": 9} and done.failed == {}


def test_a_stage_report_is_a_fhir_audit_event_of_a_deletion_with_its_counts() -> None:
    marker = new_marker("p-1", at=ANCHOR, by="ops")
    event = stage_event(
        marker, stage="store", resource="influxdb", removed={"points": 12}, recorded=ANCHOR
    )
    fhir = to_fhir(event)
    assert fhir["action"] == "D" and fhir["outcome"] == "0"
    details = {d["type"]: d["valueString"] for d in fhir["entity"][0]["detail"]}
    assert details["removed:points"] == "12"
    assert details["request-id"] == marker.erasure_id
    assert fhir["entity"][0]["what"]["reference"] == "Patient/p-1"


def test_an_ordinary_audit_event_is_encoded_as_before_erasure_existed() -> None:
    """Readers of the previous version refuse unknown fields: only erasure events carry
    ``removed``, and a reader skips a record it cannot read instead of failing."""
    from alerts.api.audit_log import _event
    from pghd.audit import AuditAgent, new_event

    event = new_event(
        recorded=ANCHOR,
        service="care-api",
        method="GET",
        route="/v1/alerts",
        resource="/v1/alerts",
        agent=AuditAgent(name="nurse", role="clinician"),
        patients=["p-1"],
        status=200,
        request_id="r-1",
    )
    assert b"removed" not in wire.encode(event) and b"note" not in wire.encode(event)
    assert _event(wire.encode(event)) == event
    assert _event(b'{"schema_version":1,"from":"the future"}') is None
