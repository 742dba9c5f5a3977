"""``pghd audit``: who read or changed a patient's data, from the care-team API's audit trail.

Asks ``GET /v1/audit`` of the care-team API (``--url``; default: the local stack's, else
``http://127.0.0.1:8001``) with an admin's bearer token (``--token`` or ``PGHD_CARE_TOKEN``;
for the local stack's API, its admin's by default: :mod:`pghd.commands.alerts`): one line
per request, oldest first, with who asked (name, role), what (operation and path), the
outcome and the request id. ``--json`` prints the events as the API answers them,
``--fhir`` as a FHIR R4 Bundle of AuditEvent resources.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import httpx
import typer

from pghd.commands.alerts import JsonOption, TokenOption, UrlOption, _call
from pghd.commands.dev import format_table

__all__ = ["audit"]


def audit(
    patient: Annotated[
        str | None, typer.Option("--patient", help="Only events about this patient.")
    ] = None,
    since: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"],
            help="Only events recorded at or after this time (UTC unless it gives an offset;"
            " default: 30 days ago).",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="The newest N events.")] = 1000,
    fhir: Annotated[
        bool, typer.Option("--fhir", help="Print a FHIR Bundle of AuditEvents.")
    ] = False,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Print the audit trail (admins only): who read or changed patient data, and how it went."""
    params: dict[str, str] = {"limit": str(limit)}
    if patient:
        params["patient_id"] = patient
    if since is not None:
        params["since"] = (since if since.tzinfo else since.replace(tzinfo=UTC)).isoformat()
    if fhir:
        params["format"] = "fhir"
    events = _call("GET", f"/v1/audit?{httpx.QueryParams(params)}", url=url, token=token)
    if as_json or fhir:
        typer.echo(json.dumps(events, indent=2))
        return
    rows = [
        [
            e["recorded"],
            f"{e['agent']['name']} ({e['agent']['role']})",
            e["operation"].split(" ", 1)[0] + " " + e["resource"],
            f"{e['outcome']} {e['status']}",
            ",".join(e["patients"]) if not patient else "",
            e["request_id"],
        ]
        for e in events
    ]
    headers = ["recorded", "who", "request", "outcome", "patients", "request id"]
    typer.echo(format_table(headers, rows) if rows else "no audit events")
    typer.echo(f"{len(rows)} events")
