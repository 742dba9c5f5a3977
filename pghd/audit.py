"""The audit trail: who read or changed which patient's data, through which API, and how it went.

An :class:`AuditEvent` is appended to ``pghd.audit.v1`` (not compacted; kept for
``retention.ms``, six years by default) for every request to an API route that reads or
writes patient data, answered or refused. Pure models and functions, no I/O; the services'
middleware (:mod:`pghd.audit_trail`) fills and sends them.

The shape follows FHIR R4 ``AuditEvent`` and :func:`to_fhir` renders one as such:

- ``recorded`` -> ``recorded``;
- ``action`` (read, create, update, delete, execute) -> ``action`` (R, C, U, D, E);
- ``operation`` (``GET /v1/alerts/{alert_id}``) -> ``type`` rest, ``subtype`` the FHIR
  interaction (read, search-type, create, update, delete), and an ``entity.detail``;
- ``outcome`` / ``status`` -> ``outcome`` (0 success, 4 denied or invalid, 8 failed) and
  ``outcomeDesc``;
- ``agent`` (name, role, teams) -> ``agent[0]`` (``who.identifier``, ``role``,
  ``requestor`` true);
- ``service`` -> ``source.observer.display``;
- ``patients`` -> one ``entity`` per patient (``what`` Patient/<id>, object role 1);
- ``resource`` and ``request_id`` -> ``entity.detail`` path and request-id;
- ``removed`` (an erasure stage's counts, :mod:`pghd.erasure`) -> ``entity.detail``
  ``removed:<kind>``; ``note`` -> appended to ``outcomeDesc``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pghd.contracts import PatientId, UtcDatetime

__all__ = ["AuditAgent", "AuditEvent", "action_of", "new_event", "outcome_of", "to_fhir"]

Action = Literal["read", "create", "update", "delete", "execute"]
Outcome = Literal["success", "denied", "failed"]

_FHIR_ACTION = {"read": "R", "create": "C", "update": "U", "delete": "D", "execute": "E"}
_FHIR_OUTCOME = {"success": "0", "denied": "4", "failed": "8"}
_INTERACTION = {
    "read": "read",
    "create": "create",
    "update": "update",
    "delete": "delete",
    "execute": "operation",
}


class AuditAgent(BaseModel):
    """Who made the request: a care-team member, an admin, a device source, or nobody known."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description='the principal, source or admin name; "anonymous" if none')
    role: str = Field(description="viewer, clinician, admin, source, or none")
    teams: list[str] = Field(default_factory=list)


class AuditEvent(BaseModel):
    """One request to an API route that touches patient data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    audit_id: str
    recorded: UtcDatetime
    service: str = Field(description="the API that answered: care-api, ingest")
    action: Action
    operation: str = Field(description='method and route template, "GET /v1/alerts/{alert_id}"')
    resource: str = Field(description="the path requested, without its query string")
    agent: AuditAgent
    patients: list[PatientId] = Field(
        default_factory=list, description="the patients whose data was read or written"
    )
    outcome: Outcome
    status: int = Field(description="the HTTP status answered")
    request_id: str
    removed: dict[str, int] | None = Field(
        default=None,
        description="what an erasure stage removed (counts by kind); absent otherwise, so an"
        " event of any other kind reads as before",
    )
    note: str | None = Field(default=None, max_length=500, description="why it failed")


def action_of(method: str) -> Action:
    """The audit action of an HTTP method (a search is a read: FHIR tells them apart by
    ``subtype`` only)."""
    actions: dict[str, Action] = {
        "GET": "read",
        "HEAD": "read",
        "POST": "create",
        "PUT": "update",
        "PATCH": "update",
        "DELETE": "delete",
    }
    return actions.get(method.upper(), "execute")


def outcome_of(status: int) -> Outcome:
    """``success`` below 400, ``denied`` for 401/403 and other refusals, ``failed`` from 500."""
    if status < 400:
        return "success"
    return "failed" if status >= 500 else "denied"


def new_event(
    *,
    recorded: datetime,
    service: str,
    method: str,
    route: str,
    resource: str,
    agent: AuditAgent,
    patients: list[str],
    status: int,
    request_id: str,
) -> AuditEvent:
    """An event for one answered request."""
    return AuditEvent(
        audit_id=uuid.uuid4().hex,
        recorded=recorded,
        service=service,
        action=action_of(method),
        operation=f"{method.upper()} {route}",
        resource=resource,
        agent=agent,
        patients=sorted(set(patients)),
        outcome=outcome_of(status),
        status=status,
        request_id=request_id,
    )


def to_fhir(event: AuditEvent) -> dict[str, Any]:
    """``event`` as a FHIR R4 AuditEvent resource (the mapping of the module docstring)."""
    interaction = _INTERACTION[event.action]
    if event.action == "read" and "{" not in event.operation.split(" ", 1)[1]:
        interaction = "search-type"
    details = [
        {"type": "operation", "valueString": event.operation},
        {"type": "path", "valueString": event.resource},
        {"type": "request-id", "valueString": event.request_id},
    ]
    details += [
        {"type": f"removed:{kind}", "valueString": str(count)}
        for kind, count in sorted((event.removed or {}).items())
    ]
    return {
        "resourceType": "AuditEvent",
        "id": event.audit_id,
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
        },
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": interaction}],
        "action": _FHIR_ACTION[event.action],
        "recorded": event.recorded.isoformat().replace("+00:00", "Z"),
        "outcome": _FHIR_OUTCOME[event.outcome],
        "outcomeDesc": f"HTTP {event.status}" + (f": {event.note}" if event.note else ""),
        "agent": [
            {
                "who": {"identifier": {"value": event.agent.name}},
                "role": [{"text": event.agent.role}]
                + [{"text": f"team:{team}"} for team in event.agent.teams],
                "requestor": True,
            }
        ],
        "source": {"observer": {"display": event.service}},
        "entity": [
            {
                "what": {"reference": f"Patient/{patient}"},
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "1",
                    "display": "Patient",
                },
                "detail": details,
            }
            for patient in event.patients
        ]
        or [{"detail": details}],
    }
