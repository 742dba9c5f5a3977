"""Erasure of a patient's data: the marker that travels with the readings, and its reports.

An erasure is asked for once (``POST /v1/patients/{patient_id}/erase`` on ingest, or
``pghd patients erase P``). Ingest tombstones what it owns (the enrollment, the care plan)
and then writes an :class:`ErasureMarker` to ``pghd.measurements.v1``, keyed by the patient
like their readings, so it lands *behind* every reading of theirs accepted before it. Each
stage handles the marker where it stands in its input, after everything before it:

- the **processors** delete the patient's state records and dedup buckets (tombstones to
  the table's changelog), tombstone the care plan again, then forward the marker to
  ``pghd.points.v1``, ``pghd.anomalies.v1`` and ``pghd.alert-commands.v1`` (again keyed by
  the patient, again behind their earlier records);
- the **store** stage writes the points before it, then deletes every point tagged with the
  patient from every bucket it writes (raw and downsampled);
- the **alerts** worker, at the marker on either of its inputs, tombstones the patient's
  alerts on ``pghd.alerts.v1``, deletes its table state (silences and pending
  notifications included) and the patient's Grafana annotations.

Each stage then appends an :class:`~pghd.audit.AuditEvent` to ``pghd.audit.v1`` with
``request_id`` = the erasure id and ``removed`` = what it removed (counts); the report of an
erasure is those events (:func:`report_of`). A replay of a topic replays the marker too,
after the same readings, so a stage that reads its input again erases again.

Pure models and functions; no I/O.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pghd import wire
from pghd.audit import AuditAgent, AuditEvent
from pghd.contracts import PatientId, UtcDatetime

__all__ = [
    "MARKER_PREFIX",
    "STAGES",
    "ErasureMarker",
    "ErasureReport",
    "decode_marker",
    "is_marker",
    "new_marker",
    "report_of",
    "stage_event",
]

#: The stages that report an erasure, in the order the marker reaches them.
STAGES = ("processors", "store", "alerts")

#: Every marker's JSON starts with these bytes (``kind`` is its first field).
MARKER_PREFIX = b'{"kind":"erasure"'


class ErasureMarker(BaseModel):
    """The record that asks every stage to erase one patient's data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["erasure"] = "erasure"
    schema_version: Literal[1] = 1
    erasure_id: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    patient_id: PatientId
    requested_at: UtcDatetime
    requested_by: str = Field(max_length=200, description="the admin who asked")


def new_marker(patient_id: str, *, at: datetime, by: str) -> ErasureMarker:
    """A marker with a fresh erasure id."""
    return ErasureMarker(
        erasure_id=uuid.uuid4().hex, patient_id=patient_id, requested_at=at, requested_by=by
    )


def is_marker(payload: bytes | None) -> bool:
    """Whether a record's value is an erasure marker (cheap: a prefix test)."""
    return payload is not None and payload.startswith(MARKER_PREFIX)


def decode_marker(payload: bytes) -> ErasureMarker:
    """The marker of ``payload``; raises ``ValueError`` if it is not a valid one."""
    try:
        return wire.decode(ErasureMarker, payload)
    except (ValidationError, orjson.JSONDecodeError) as exc:
        raise ValueError(f"not a valid erasure marker: {exc}") from exc


def stage_event(
    marker: ErasureMarker,
    *,
    stage: str,
    resource: str,
    removed: Mapping[str, int],
    recorded: datetime,
    failed: str | None = None,
) -> AuditEvent:
    """The audit event by which ``stage`` reports what it removed for ``marker``."""
    return AuditEvent(
        audit_id=uuid.uuid4().hex,
        recorded=recorded,
        service=stage,
        action="delete",
        operation="ERASE patient",
        resource=resource,
        agent=AuditAgent(name=marker.requested_by, role="admin"),
        patients=[marker.patient_id],
        outcome="failed" if failed else "success",
        status=500 if failed else 200,
        request_id=marker.erasure_id,
        removed=dict(removed),
        note=failed,
    )


class ErasureReport(BaseModel):
    """What an erasure removed so far, stage by stage."""

    erasure_id: str
    patient_id: str
    removed: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="stage (ingest, processors, store, alerts) -> counts"
    )
    failed: dict[str, str] = Field(default_factory=dict, description="stage -> why it failed")
    pending: list[str] = Field(
        default_factory=list, description="stages that have not reported (yet)"
    )

    @property
    def complete(self) -> bool:
        """Every stage reported success."""
        return not self.pending and not self.failed


def report_of(
    marker: ErasureMarker, ingest_removed: Mapping[str, int], events: Iterable[AuditEvent]
) -> ErasureReport:
    """The report of ``marker`` from ingest's own counts and the stages' audit events."""
    removed: dict[str, dict[str, int]] = {"ingest": dict(ingest_removed)}
    failed: dict[str, str] = {}
    for event in events:
        if event.request_id != marker.erasure_id or event.service not in STAGES:
            continue
        if event.outcome == "success":
            removed[event.service] = dict(event.removed or {})
            failed.pop(event.service, None)
        else:  # the latest word of a stage wins: a later failure is shown too
            failed[event.service] = event.note or "failed"
            if event.removed:
                removed[event.service] = dict(event.removed)
    pending = [s for s in STAGES if s not in removed and s not in failed]
    return ErasureReport(
        erasure_id=marker.erasure_id,
        patient_id=marker.patient_id,
        removed=removed,
        failed=failed,
        pending=pending,
    )
