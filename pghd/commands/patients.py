"""``pghd patients``: enroll patients, link their devices, record and revoke consent,
assign them to the care teams whose members may see them, issue their own bearer tokens,
export their data, and erase them.

Talks HTTP to ingest's patients API (``--url``, default ``http://127.0.0.1:8000``, or
``PGHD_INGEST_URL``) with an admin bearer token (``--token`` or ``PGHD_ADMIN_TOKEN``; its
SHA-256 digest is in ``PGHD_INGEST_ADMIN_TOKENS``). A refused request prints the API's
problem detail and exits 1. :func:`enroll_cohort` is what ``pghd simulate --enroll`` uses.

``pghd patients export P`` streams ``GET /v1/patients/P/export`` to stdout or ``--output``
(written to ``FILE.part`` and renamed once complete, so an interrupted export never leaves
a complete-looking file), with a byte counter on stderr once it takes more than two seconds.

``pghd patients token P`` issues (or rotates) the patient's own bearer token for the
care-team API's ``/v1/me`` and prints it alone on stdout (``TOKEN=$(pghd patients token P)``),
once: only its digest is kept; ``--revoke`` revokes it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import httpx
import typer
from tqdm import tqdm

from pghd.commands.dev import format_table
from pghd.export.document import ExportFormat

__all__ = ["DEFAULT_URL", "ApiRefused", "app", "enroll_cohort", "request"]

DEFAULT_URL = "http://127.0.0.1:8000"

app = typer.Typer(
    help="Enrollment, device links, consent and care teams, over ingest's patients API.",
    no_args_is_help=True,
)

UrlOption = Annotated[
    str, typer.Option("--url", envvar="PGHD_INGEST_URL", help="Base URL of the ingest API.")
]
TokenOption = Annotated[
    str,
    typer.Option(
        "--token", envvar="PGHD_ADMIN_TOKEN", help="An admin bearer token.", show_default=False
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON as is.")]
Patient = Annotated[str, typer.Argument(help="Patient id.")]
Team = Annotated[str, typer.Argument(help="Care team whose members may see the patient.")]


class ApiRefused(RuntimeError):
    """The patients API refused a request (``status``) or could not be reached (None)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def request(
    client: httpx.Client, method: str, path: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    """One request; raises :class:`ApiRefused` with the problem's detail on 4xx/5xx."""
    try:
        response = client.request(method, path, json=body)
    except httpx.TransportError as exc:
        raise ApiRefused(f"cannot reach the ingest API at {client.base_url}: {exc}") from exc
    if response.status_code >= 400:
        raise ApiRefused(_problem(response), status=response.status_code)
    return response


def _problem(response: httpx.Response) -> str:
    try:
        payload: Any = response.json()
    except ValueError:
        payload = None
    detail = payload.get("detail") if isinstance(payload, dict) else None
    lines = [f"HTTP {response.status_code}: {detail or response.text or response.reason_phrase}"]
    retry = response.headers.get("Retry-After")
    if retry:
        lines[0] += f" (retry after {retry} s)"
    for error in (payload.get("errors") if isinstance(payload, dict) else None) or []:
        lines.append(f"  {error.get('field') or error.get('pointer')}: {error.get('detail')}")
    return "\n".join(lines)


def _client(url: str, token: str) -> httpx.Client:
    if not token:
        typer.echo("no admin token: pass --token or set PGHD_ADMIN_TOKEN", err=True)
        raise typer.Exit(1)
    headers = {"Authorization": f"Bearer {token}", "User-Agent": "pghd-cli"}
    return httpx.Client(base_url=url, headers=headers, timeout=20.0)


def _call(
    method: str, path: str, *, url: str, token: str, body: dict[str, Any] | None = None
) -> Any:
    """The decoded JSON answer, or exit 1 with the problem's detail."""
    with _client(url, token) as client:
        try:
            return request(client, method, path, body).json()
        except ApiRefused as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None


def _print(enrollment: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(enrollment, indent=2))
        return
    typer.echo(f"patient   {enrollment['patient_id']}")
    typer.echo(f"status    {enrollment['status']} (since {enrollment['enrolled_at']})")
    if enrollment.get("withdrawn_at"):
        typer.echo(f"withdrawn {enrollment['withdrawn_at']}")
    change = enrollment["change"]
    typer.echo(f"revision  {enrollment['revision']}: {change['action']} by {change['by']}")
    typer.echo(f"updated   {change['at']}")
    rows = [
        [metric, c["granted_at"], c.get("revoked_at") or "-"]
        for metric, c in sorted(enrollment["consents"].items())
    ]
    typer.echo(format_table(["consent", "granted", "revoked"], rows) if rows else "no consents")
    links = [[k["source"], k["account"], k["linked_at"]] for k in enrollment["links"]]
    typer.echo(format_table(["source", "account", "linked"], links) if links else "no links")
    typer.echo(f"teams     {_teams(enrollment) or 'none (only admins see the patient)'}")
    tokens = enrollment.get("patient_tokens") or []
    held = f"issued {tokens[-1]['issued_at']}" if tokens else "none (no /v1/me access)"
    typer.echo(f"token     {held}")


def _teams(enrollment: dict[str, Any]) -> str:
    """The patient's care teams, comma separated ("" when none); ``get``: an API from before
    teams answers without them."""
    return ",".join(enrollment.get("teams") or [])


def _link(text: str) -> dict[str, str]:
    source, sep, account = text.partition(":")
    if not sep or not source or not account:
        raise typer.BadParameter(f"{text!r} is not SOURCE:ACCOUNT")
    return {"source": source, "account": account}


@app.command()
def enroll(
    patient_id: Patient,
    consent: Annotated[
        list[str] | None, typer.Option("--consent", help="A metric consented to (repeat).")
    ] = None,
    link: Annotated[
        list[str] | None, typer.Option("--link", help="SOURCE:ACCOUNT to link (repeat).")
    ] = None,
    team: Annotated[
        list[str] | None, typer.Option("--team", help="A care team to assign to (repeat).")
    ] = None,
    issue_token: Annotated[
        bool,
        typer.Option(
            "--issue-token", help="Also issue the patient's own bearer token (printed once)."
        ),
    ] = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = "",
    as_json: JsonOption = False,
) -> None:
    """Enroll a patient, optionally with consents, device links, care teams and a token."""
    body = {
        "patient_id": patient_id,
        "consents": consent or [],
        "links": [_link(text) for text in link or []],
        "teams": team or [],
        "issue_token": issue_token,
    }
    enrolled = _call("POST", "/v1/patients", url=url, token=token, body=body)
    _print(enrolled, as_json)
    if enrolled.get("token") and not as_json:
        typer.echo(f"patient token (shown once): {enrolled['token']}")


@app.command("list")
def list_patients(
    status: Annotated[str | None, typer.Option(help="enrolled or withdrawn")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = "",
    as_json: JsonOption = False,
) -> None:
    """List enrollments by patient id."""
    params = {"limit": str(limit), "offset": str(offset)} | ({"status": status} if status else {})
    page = _call("GET", f"/v1/patients?{httpx.QueryParams(params)}", url=url, token=token)
    if as_json:
        typer.echo(json.dumps(page, indent=2))
        return
    rows = [
        [
            e["patient_id"],
            e["status"],
            ",".join(sorted(m for m, c in e["consents"].items() if not c.get("revoked_at"))),
            len(e["links"]),
            _teams(e) or "-",
            e["change"]["at"],
        ]
        for e in page["items"]
    ]
    headers = ["patient", "status", "consents", "links", "teams", "updated"]
    typer.echo(format_table(headers, rows))
    typer.echo(f"{len(rows)} of {page['total']}")


@app.command()
def show(
    patient_id: Patient,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = "",
    as_json: JsonOption = False,
) -> None:
    """One patient's enrollment, consents, links and care teams."""
    _print(_call("GET", f"/v1/patients/{patient_id}", url=url, token=token), as_json)


@app.command("link")
def link_account(
    patient_id: Patient,
    source: Annotated[str, typer.Argument(help="Vendor (API key) name.")],
    account: Annotated[str, typer.Argument(help="Vendor account or device id.")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = "",
) -> None:
    """Link a vendor account or device to the patient."""
    body = {"source": source, "account": account}
    _call("POST", f"/v1/patients/{patient_id}/links", url=url, token=token, body=body)
    typer.echo(f"{source} account {account!r} linked to patient {patient_id}")


@app.command()
def unlink(
    patient_id: Patient,
    source: Annotated[str, typer.Argument(help="Vendor (API key) name.")],
    account: Annotated[str, typer.Argument(help="Vendor account or device id.")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = "",
) -> None:
    """Unlink a vendor account or device from the patient."""
    path = f"/v1/patients/{patient_id}/links/{source}/{account}"
    _call("DELETE", path, url=url, token=token)
    typer.echo(f"{source} account {account!r} unlinked from patient {patient_id}")


@app.command()
def consent(
    patient_id: Patient,
    metrics: Annotated[list[str], typer.Argument(help="Metrics consented to.")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = "",
) -> None:
    """Record consent to store one or more metrics."""
    for metric in metrics:
        _call("PUT", f"/v1/patients/{patient_id}/consents/{metric}", url=url, token=token)
        typer.echo(f"patient {patient_id} consents to {metric}")


@app.command()
def revoke(
    patient_id: Patient,
    metrics: Annotated[list[str], typer.Argument(help="Metrics whose consent is revoked.")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = "",
) -> None:
    """Revoke consent: no more readings of these metrics are stored."""
    for metric in metrics:
        _call("DELETE", f"/v1/patients/{patient_id}/consents/{metric}", url=url, token=token)
        typer.echo(f"patient {patient_id} revoked consent to {metric}")


@app.command()
def assign(
    patient_id: Patient, team: Team, url: UrlOption = DEFAULT_URL, token: TokenOption = ""
) -> None:
    """Assign the patient to a care team, whose members may then see the patient."""
    _call("PUT", f"/v1/patients/{patient_id}/teams/{team}", url=url, token=token)
    typer.echo(f"patient {patient_id} assigned to team {team}")


@app.command()
def unassign(
    patient_id: Patient, team: Team, url: UrlOption = DEFAULT_URL, token: TokenOption = ""
) -> None:
    """Take the patient out of a care team, whose members then no longer see the patient."""
    _call("DELETE", f"/v1/patients/{patient_id}/teams/{team}", url=url, token=token)
    typer.echo(f"patient {patient_id} unassigned from team {team}")


@app.command("token")
def patient_token(
    patient_id: Patient,
    revoke: Annotated[
        bool, typer.Option("--revoke", help="Revoke the patient's token instead.")
    ] = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = "",
) -> None:
    """Issue the patient's own bearer token (for the care-team API's /v1/me) and print it,
    once; any token they held stops working. With --revoke, revoke it."""
    if revoke:
        _call("DELETE", f"/v1/patients/{patient_id}/token", url=url, token=token)
        typer.echo(f"patient {patient_id}'s token revoked")
        return
    issued = _call("POST", f"/v1/patients/{patient_id}/token", url=url, token=token)
    typer.echo(issued["token"])
    typer.echo(
        f"patient {patient_id}'s token above is shown once (only its digest is kept);"
        " any earlier token stopped working",
        err=True,
    )


_EXPORT_TIMEOUT = httpx.Timeout(20.0, read=300.0)  # a window of a long history may take long


def _stream_export(
    client: httpx.Client, patient_id: str, format_: ExportFormat, out: BinaryIO, *, progress: bool
) -> int:
    """Write the export to ``out``; return its size. Raises :class:`ApiRefused` when the API
    refuses, :class:`ExportInterrupted` when the answer breaks off."""
    path = f"/v1/patients/{patient_id}/export"
    written = 0
    try:
        with (
            client.stream(
                "GET", path, params={"format": format_.value}, timeout=_EXPORT_TIMEOUT
            ) as response,
            tqdm(
                desc=f"export {patient_id}",
                unit="B",
                unit_scale=True,
                file=sys.stderr,
                delay=2.0,
                disable=not progress,
            ) as bar,
        ):
            if response.status_code >= 400:
                response.read()
                raise ApiRefused(_problem(response), status=response.status_code)
            for chunk in response.iter_bytes():
                out.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
    except httpx.TransportError as exc:
        if written == 0 and isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            raise ApiRefused(f"cannot reach the ingest API at {client.base_url}: {exc}") from exc
        raise ExportInterrupted(written, exc) from exc
    return written


class ExportInterrupted(RuntimeError):
    """The export broke off after ``written`` bytes."""

    def __init__(self, written: int, cause: BaseException) -> None:
        super().__init__(f"the export broke off after {written} bytes: {cause}")
        self.written = written


@app.command()
def export(
    patient_id: Patient,
    format_: Annotated[
        ExportFormat, typer.Option("--format", help="fhir: a FHIR R4 Bundle; omh: Open mHealth.")
    ] = ExportFormat.FHIR,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write to this file (default: stdout).", dir_okay=False
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = "",
) -> None:
    """Export a patient's readings and findings (FHIR R4 Bundle or Open mHealth data points)."""
    with _client(url, token) as client:
        try:
            if output is None:
                size = _stream_export(
                    client, patient_id, format_, sys.stdout.buffer, progress=not quiet
                )
                sys.stdout.flush()
            else:
                partial = output.with_name(output.name + ".part")
                try:
                    with partial.open("wb") as out:
                        size = _stream_export(client, patient_id, format_, out, progress=not quiet)
                    os.replace(partial, output)
                finally:
                    partial.unlink(missing_ok=True)
        except ApiRefused as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
        except OSError as exc:
            typer.echo(f"cannot write {output or 'stdout'}: {exc.strerror or exc}", err=True)
            raise typer.Exit(1) from None
        except ExportInterrupted as exc:
            where = "stdout holds an incomplete document" if output is None else "nothing written"
            typer.echo(f"{exc} ({where}); run it again", err=True)
            raise typer.Exit(1) from None
    if not quiet:
        target = "stdout" if output is None else str(output)
        typer.echo(
            f"patient {patient_id} exported as {format_.value} to {target}: {size} bytes", err=True
        )


@app.command()
def withdraw(patient_id: Patient, url: UrlOption = DEFAULT_URL, token: TokenOption = "") -> None:
    """Withdraw the patient: every consent revoked, every link dropped (teams stay)."""
    _call("POST", f"/v1/patients/{patient_id}/withdraw", url=url, token=token)
    typer.echo(f"patient {patient_id} withdrawn: every consent revoked, every link dropped")


@app.command()
def erase(
    patient_id: Patient,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = "",
    wait: Annotated[
        float, typer.Option("--wait", help="Seconds to wait for every stage's report.")
    ] = 60.0,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Erase everything stored about the patient (enrollment, readings in every InfluxDB
    bucket, the workers' state, alerts, annotations) and refuse their readings from now on.

    Asking again is safe. Exits 0 once every stage reported, 2 if some had not within
    ``--wait`` or failed (the report says which; ask again), 1 if refused."""
    if not yes:
        typer.confirm(f"Erase every reading and alert of patient {patient_id}?", abort=True)
    with _client(url, token) as client:
        client.timeout = httpx.Timeout(wait + 30.0)
        try:
            response = request(client, "POST", f"/v1/patients/{patient_id}/erase?wait={wait:g}")
        except ApiRefused as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
    report = response.json()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_erasure(report)
    if response.status_code != 200:
        raise typer.Exit(2)


def _print_erasure(report: dict[str, Any]) -> None:
    typer.echo(f"erasure {report['erasure_id']} of patient {report['patient_id']}")
    rows = [
        [stage, kind, str(count)]
        for stage, counts in report["removed"].items()
        for kind, count in sorted(counts.items())
    ]
    if rows:
        typer.echo(format_table(["stage", "removed", "count"], rows))
    for stage, why in report.get("failed", {}).items():
        typer.echo(f"FAILED  {stage}: {why}")
    if report.get("pending"):
        pending = ", ".join(report["pending"])
        typer.echo(f"not reported yet: {pending} (ask again to erase what is left and report)")
    else:
        typer.echo("every stage reported")


def enroll_cohort(
    client: httpx.Client, consents: Mapping[str, set[str]], *, source: str | None = None
) -> int:
    """Enroll each patient with consent to its metrics (already enrolled: consents added),
    and, with ``source``, link that source to each patient (account: the patient id, as an
    app that addresses readings by patient id has), so that it may write for them.

    ``client`` carries the base URL and admin token. Returns how many patients were newly
    enrolled; raises :class:`ApiRefused` when the API refuses.
    """
    enrolled = 0
    for patient_id, metrics in consents.items():
        link = {"source": source, "account": patient_id} if source else None
        body = {
            "patient_id": patient_id,
            "consents": sorted(metrics),
            "links": [link] if link else [],
        }
        try:
            request(client, "POST", "/v1/patients", body)
            enrolled += 1
            continue
        except ApiRefused as exc:
            if exc.status != 409:
                raise
        for metric in sorted(metrics):
            request(client, "PUT", f"/v1/patients/{patient_id}/consents/{metric}")
        if link:
            request(client, "POST", f"/v1/patients/{patient_id}/links", link)
    return enrolled
