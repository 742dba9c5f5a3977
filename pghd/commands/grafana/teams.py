"""``pghd grafana teams``: one Grafana folder and team per care team, seen by that team only.

Grafana's file provisioning cannot set folder permissions, so this goes through Grafana's
HTTP API (grafana-client, like ``pghd grafana provision``). For each care team, from a teams
file or from the enrollments (ingest's ``GET /v1/patients``, the ``teams`` of each
enrollment):

1. the Grafana team of the same name (``GET /api/teams/search?name=``, else
   ``POST /api/teams``);
2. its folder ``pghd-team-<hash of the name>`` titled "Care team <name>" (``GET/POST
   /api/folders``, ``PUT`` when the title changed);
3. the folder's permissions set to View for that team and nothing else (``POST
   /api/folders/{uid}/permissions`` replaces them all, so the default Viewer and Editor role
   permissions go; Grafana admins keep access, as they always do), before any dashboard is in
   it;
4. the team's copies of Cohort overview and Patient detail in it (``POST
   /api/dashboards/db``), every query limited to the team's patients
   (:mod:`deploy.grafana.dashboards.scope`).

Then the shared folder (``pghd``, every patient) is left to admins: its permissions are
emptied. Rerun it after assignments change: it updates in place. It neither adds people to
the teams (do that in Grafana, or by team sync from the identity provider) nor removes the
folders of teams that are gone. What this isolates and what it does not:
docs/security.md, "Grafana".
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from pghd.contracts import ID_PATTERN

__all__ = [
    "TeamReport",
    "folder_uid",
    "load_teams_file",
    "push_team",
    "restrict_to_admins",
    "teams",
    "teams_from_ingest",
]

#: Grafana's folder permission levels (Folder Permissions HTTP API).
VIEW = 1
_ID = re.compile(ID_PATTERN)


def folder_uid(team: str) -> str:
    """The folder uid of a care team (uids: at most 40 of [A-Za-z0-9_-]; names may hold more)."""
    from deploy.grafana.dashboards.scope import Scope

    return f"pghd-team-{Scope(team=team).key}"


def _checked(mapping: dict[str, Iterable[str]], where: str) -> dict[str, tuple[str, ...]]:
    result = {}
    for team, patients in mapping.items():
        ids = tuple(sorted(set(patients)))
        bad = [x for x in (team, *ids) if not isinstance(x, str) or not _ID.match(x)]
        if bad:
            raise ValueError(f"{where}: not a team or patient id: {bad[0]!r}")
        result[team] = ids
    return result


def load_teams_file(path: Path) -> dict[str, tuple[str, ...]]:
    """``{"schema_version": 1, "teams": {"ward-a": ["p-1", "p-2"], ...}}`` -> team -> ids."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("schema_version") != 1:
        raise ValueError(f"{path}: expected schema_version 1")
    mapping = data.get("teams")
    if not isinstance(mapping, dict) or not all(isinstance(v, list) for v in mapping.values()):
        raise ValueError(f'{path}: "teams" maps each team to a list of patient ids')
    return _checked(mapping, str(path))


def teams_from_ingest(client: httpx.Client, *, page: int = 1000) -> dict[str, tuple[str, ...]]:
    """Team -> patients of every enrollment (withdrawn ones too: the team keeps seeing their
    history), read page by page from ingest's ``GET /v1/patients`` (admin token)."""
    members: dict[str, set[str]] = defaultdict(set)
    offset = 0
    while True:
        response = client.get("/v1/patients", params={"limit": page, "offset": offset})
        response.raise_for_status()
        body = response.json()
        for enrollment in body["items"]:
            for team in enrollment.get("teams") or []:
                members[team].add(enrollment["patient_id"])
        offset += len(body["items"])
        if not body["items"] or offset >= int(body["total"]):
            return _checked(dict(members), "ingest")


@dataclass
class TeamReport:
    """What one team's run did: ``"created"`` or ``"updated"`` per object."""

    team: str
    team_id: int = 0
    grafana_team: str = ""
    folder: str = ""
    dashboards: dict[str, str] = field(default_factory=dict)


def _error_status(exc: Exception) -> int | None:
    status = getattr(exc, "status_code", None)
    return int(status) if status is not None else None


def _ensure_folder(api: Any, uid: str, title: str) -> str:
    from grafana_client.client import GrafanaClientError

    try:
        existing = api.folder.get_folder(uid)
    except GrafanaClientError as exc:
        if _error_status(exc) != 404:
            raise
        api.folder.create_folder(title, uid=uid)
        return "created"
    if existing.get("title") != title:
        api.folder.update_folder(uid, title=title, overwrite=True)
    return "updated"


def push_team(api: Any, team: str, patients: tuple[str, ...]) -> TeamReport:
    """Team, folder, permissions, dashboards of one care team (in that order)."""
    from deploy.grafana.dashboards import team_dashboards

    report = TeamReport(team=team)
    found = [t for t in api.teams.get_team_by_name(team) if t.get("name") == team]
    if found:
        report.team_id, report.grafana_team = int(found[0]["id"]), "updated"
    else:
        report.team_id = int(api.teams.add_team({"name": team})["teamId"])
        report.grafana_team = "created"
    uid = folder_uid(team)
    report.folder = _ensure_folder(api, uid, f"Care team {team}")
    # Before any dashboard lands in it: only the team may view the folder.
    api.folder.update_folder_permissions(uid, [{"teamId": report.team_id, "permission": VIEW}])
    for name, board in team_dashboards(team, patients).items():
        answer = api.dashboard.update_dashboard(
            {
                "dashboard": {**board, "id": None},
                "folderUid": uid,
                "overwrite": True,
                "message": "pghd grafana teams",
            }
        )
        report.dashboards[name] = "updated" if int(answer.get("version", 1)) > 1 else "created"
    return report


def restrict_to_admins(api: Any, uid: str) -> bool:
    """Empty a folder's permissions (admins only); False if there is no such folder."""
    from grafana_client.client import GrafanaClientError

    try:
        api.folder.get_folder(uid)
    except GrafanaClientError as exc:
        if _error_status(exc) != 404:
            raise
        return False
    api.folder.update_folder_permissions(uid, [])
    return True


def teams(
    url: Annotated[str, typer.Option(help="Grafana base URL, e.g. https://grafana.example.org")],
    token: Annotated[
        str,
        typer.Option(envvar="GRAFANA_TOKEN", help="Service account token (Admin role)."),
    ],
    teams_file: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help='JSON {"schema_version": 1, "teams": {"<team>": ["<patient>", ...]}}.',
        ),
    ] = None,
    ingest_url: Annotated[
        str | None,
        typer.Option(help="Read the teams from the enrollments (ingest's patients API) instead."),
    ] = None,
    admin_token: Annotated[
        str, typer.Option(envvar="PGHD_ADMIN_TOKEN", help="Admin token of the patients API.")
    ] = "",
    shared_folder_uid: Annotated[
        str,
        typer.Option(help='Folder of the whole-cohort boards, left to admins ("" to skip).'),
    ] = "pghd",
    timeout: Annotated[float, typer.Option(help="Seconds per HTTP request.")] = 10.0,
) -> None:
    """One folder and one Grafana team per care team; only the team views its folder."""
    from grafana_client.api import GrafanaApi
    from grafana_client.client import GrafanaException

    if (teams_file is None) == (ingest_url is None):
        typer.echo("pass exactly one of --teams-file and --ingest-url", err=True)
        raise typer.Exit(2)
    try:
        if teams_file is not None:
            mapping = load_teams_file(teams_file)
        else:
            headers = {"Authorization": f"Bearer {admin_token}"}
            with httpx.Client(base_url=str(ingest_url), headers=headers, timeout=20.0) as c:
                mapping = teams_from_ingest(c)
    except (ValueError, httpx.HTTPError) as exc:
        typer.echo(f"cannot read the care teams: {exc}", err=True)
        raise typer.Exit(1) from None
    api = GrafanaApi.from_url(url, credential=token, timeout=timeout)
    try:
        for team, patients in sorted(mapping.items()):
            report = push_team(api, team, patients)
            boards = ", ".join(f"{n} {w}" for n, w in report.dashboards.items())
            typer.echo(
                f"care team {team}: {len(patients)} patients; Grafana team {report.team_id}"
                f" {report.grafana_team}; folder {folder_uid(team)} {report.folder}, view only"
                f" for the team; {boards}"
            )
        if shared_folder_uid:
            done = restrict_to_admins(api, shared_folder_uid)
            typer.echo(
                f"folder {shared_folder_uid}: admins only"
                if done
                else f"folder {shared_folder_uid}: not found, left alone"
            )
    except GrafanaException as exc:
        typer.echo(f"Grafana answered {exc.status_code}: {exc.message}", err=True)
        raise typer.Exit(1) from None
