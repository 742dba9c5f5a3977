"""``pghd alerts``: list, show, acknowledge, resolve and silence alerts over the care-team API.

Talks HTTP to ``python -m alerts.api.main`` (``--url`` or ``PGHD_CARE_API_URL``) with a
care-team bearer token (``--token`` or ``PGHD_CARE_TOKEN``). Given no URL, it uses the local
stack's care-team API when ``make run`` (``pghd run``) runs one (the ``care-api`` service of
``.local/run/stack.json``), else ``http://127.0.0.1:8001``; given no token for the local
stack's API, the local admin's token ``make run`` made (``.local/run/care-token``). A token
is never taken from the local stack for another URL. No token at all: a message saying how
to give one, exit 2. A refused request prints the API's problem detail and exits 1.
``pghd care-plan`` and ``pghd audit`` share these options.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from pghd.commands.dev import format_table

__all__ = [
    "DEFAULT_URL",
    "LOCAL_CARE_API",
    "LOCAL_CARE_TOKEN",
    "NO_TOKEN",
    "app",
    "care_api_target",
    "local_care_api",
    "parse_duration",
]

DEFAULT_URL = "http://127.0.0.1:8001"
LOCAL_CARE_API = "care-api"  # the local stack's service (pghd run)
LOCAL_CARE_TOKEN = "care-token"  # its admin's token, in .local/run/
NO_TOKEN = "no token: pass --token, set PGHD_CARE_TOKEN, or start the local stack with make run"

app = typer.Typer(
    help="Care-team actions on alerts, over the care-team API. Without --url and --token: the"
    " local stack's API and its admin token (after `make run`).",
    no_args_is_help=True,
)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="PGHD_CARE_API_URL",
        help="Base URL of the care-team API (default: the local stack's when `make run` runs"
        f" it, else {DEFAULT_URL}).",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="PGHD_CARE_TOKEN",
        help="Your care-team bearer token (default, for the local stack's API only: its"
        " admin's, in .local/run/care-token).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON as is.")]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``2h``, ``1.5d`` -> a timedelta; ``typer.BadParameter`` otherwise."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise typer.BadParameter(f"{text!r} is not a duration like 30m, 2h or 1d")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def local_care_api(root: Path | None = None) -> tuple[str, Path] | None:
    """The care-team API of the local stack (``pghd run``) when it runs: its base URL and
    the file holding its admin's token; None when there is no such stack or service."""
    from deploy.local import stack

    try:
        paths = stack.StackPaths.for_root(root)
        record = stack.load_state(paths).processes.get(LOCAL_CARE_API)
    except (OSError, ValueError, TypeError, AttributeError):  # no repository, or a bad state file
        return None
    if record is None or "http" not in record.ports or not record.alive():
        return None
    return f"http://127.0.0.1:{record.ports['http']}", paths.run / LOCAL_CARE_TOKEN


def care_api_target(
    url: str | None, token: str | None, *, root: Path | None = None
) -> tuple[str, str]:
    """The URL and token to use: those given, else the local stack's (its token only for its
    own URL), else :data:`DEFAULT_URL`; exit 2 with :data:`NO_TOKEN` when there is no token."""
    local = None if url else local_care_api(root)
    if local is not None:
        url = local[0]
        if not token:
            try:
                token = local[1].read_text().strip()
            except OSError:
                token = None
    if not token:
        typer.echo(NO_TOKEN, err=True)
        raise typer.Exit(2)
    return url or DEFAULT_URL, token


def _call(
    method: str,
    path: str,
    *,
    url: str | None,
    token: str | None,
    body: dict[str, Any] | None = None,
) -> Any:
    """One request to the API; the decoded JSON body, or exit 1 with the problem's detail.
    ``url`` and ``token`` as given (None: :func:`care_api_target` finds them)."""
    url, token = care_api_target(url, token)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=15.0) as client:
            response = client.request(method, path, json=body)
    except httpx.TransportError as exc:
        typer.echo(f"cannot reach the care-team API at {url}: {exc}", err=True)
        raise typer.Exit(1) from exc
    try:
        payload: Any = response.json()
    except ValueError:
        payload = None
    if response.status_code >= 400:
        detail = payload.get("detail") if isinstance(payload, dict) else None
        retry = response.headers.get("Retry-After")
        hint = f" (retry after {retry} s)" if retry else ""
        typer.echo(f"HTTP {response.status_code}: {detail or response.text}{hint}", err=True)
        errors = payload.get("errors") if isinstance(payload, dict) else None
        for error in errors or []:
            typer.echo(
                f"  {error.get('field') or error.get('pointer')}: {error.get('detail')}", err=True
            )
        raise typer.Exit(1)
    return payload


def _short(value: object, width: int = 60) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


@app.command("list")
def list_alerts(
    url: UrlOption = None,
    token: TokenOption = None,
    state: Annotated[str | None, typer.Option(help="open, acknowledged or resolved")] = None,
    patient: Annotated[str | None, typer.Option(help="Only this patient id.")] = None,
    severity: Annotated[str | None, typer.Option(help="info, warning or critical")] = None,
    team: Annotated[str | None, typer.Option(help="Only patients of this care team.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: JsonOption = False,
) -> None:
    """List alerts, most recently updated first."""
    params = {"state": state, "patient_id": patient, "severity": severity, "team": team}
    query = httpx.QueryParams({k: v for k, v in params.items() if v} | {"limit": str(limit)})
    result = _call("GET", f"/v1/alerts?{query}", url=url, token=token)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    rows = [
        [
            a["alert_id"],
            a["patient_id"],
            a["problem"],
            a["severity"],
            a["status"],
            a["updated_at"],
            _short(a.get("summary")),
        ]
        for a in result["items"]
    ]
    headers = ["alert", "patient", "problem", "severity", "status", "updated", "summary"]
    typer.echo(format_table(headers, rows))
    if not result.get("ready", True):
        typer.echo("(the API is still reading the alerts topic: the list may be incomplete)")


@app.command()
def show(
    alert_id: Annotated[str, typer.Argument(help="Alert id (or fingerprint).")],
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """One alert: summary, anomalies and notification history."""
    alert = _call("GET", f"/v1/alerts/{alert_id}", url=url, token=token)
    if as_json:
        typer.echo(json.dumps(alert, indent=2))
        return
    for key in ("alert_id", "patient_id", "problem", "team", "severity", "status", "summary"):
        typer.echo(f"{key:>16}: {alert.get(key) or '-'}")
    for key in ("opened_at", "updated_at", "acknowledged_by", "resolved_by", "resolved_reason"):
        if alert.get(key):
            typer.echo(f"{key:>16}: {alert[key]}")
    typer.echo(f"{'anomalies':>16}: {alert['anomaly_count']} ({', '.join(alert['anomaly_ids'])})")
    rows = [
        [n["at"], n["channel"], n["route"], n["attempt"], n["outcome"], _short(n.get("detail"))]
        for n in alert["notifications"]
    ]
    if rows:
        typer.echo(format_table(["at", "channel", "route", "attempt", "outcome", "detail"], rows))


def _accepted(result: dict[str, Any]) -> None:
    target = result.get("alert_id") or result.get("silence_id")
    typer.echo(f"{result['kind']} {target}: accepted (command {result['command_id']})")


@app.command()
def ack(
    alert_id: Annotated[str, typer.Argument(help="Alert id (or fingerprint).")],
    url: UrlOption = None,
    token: TokenOption = None,
    comment: Annotated[str, typer.Option(help="Optional note.")] = "",
) -> None:
    """Acknowledge an alert (stops its escalation)."""
    body = {"comment": comment} if comment else None
    _accepted(_call("POST", f"/v1/alerts/{alert_id}/acknowledge", url=url, token=token, body=body))


@app.command()
def resolve(
    alert_id: Annotated[str, typer.Argument(help="Alert id (or fingerprint).")],
    reason: Annotated[str, typer.Option(help="Why it is resolved.")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Resolve an alert."""
    body = {"reason": reason}
    _accepted(_call("POST", f"/v1/alerts/{alert_id}/resolve", url=url, token=token, body=body))


@app.command()
def silence(
    patient_id: Annotated[str, typer.Argument(help="The patient whose alerts to mute.")],
    duration: Annotated[
        str, typer.Option("--for", help="How long: 30m, 2h, 1d.", show_default=True)
    ] = "2h",
    comment: Annotated[str, typer.Option(help="Why (shown to colleagues).")] = "",
    problem: Annotated[str | None, typer.Option(help="Only this problem, e.g. heart_rate.")] = None,
    severity: Annotated[str | None, typer.Option(help="Only this severity.")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Silence a patient's alerts for a while."""
    ends_at = datetime.now(UTC) + parse_duration(duration)
    matchers = {k: v for k, v in {"problem": problem, "severity": severity}.items() if v}
    body: dict[str, Any] = {"patient_id": patient_id, "ends_at": ends_at.isoformat()}
    body |= {"comment": comment} | ({"matchers": matchers} if matchers else {})
    _accepted(_call("POST", "/v1/silences", url=url, token=token, body=body))


@app.command()
def unsilence(
    silence_id: Annotated[str, typer.Argument(help="The silence to expire now.")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Expire a silence now."""
    _accepted(_call("DELETE", f"/v1/silences/{silence_id}", url=url, token=token))


@app.command()
def silences(
    url: UrlOption = None,
    token: TokenOption = None,
    state: Annotated[str | None, typer.Option(help="pending, active or expired")] = None,
) -> None:
    """List silences."""
    query = f"?state={state}" if state else ""
    result = _call("GET", f"/v1/silences{query}", url=url, token=token)
    rows = [
        [s["silence_id"], s["state"], json.dumps(s["matchers"]), s["ends_at"], s["created_by"]]
        for s in result["items"]
    ]
    typer.echo(format_table(["silence", "state", "matchers", "ends", "by"], rows))
