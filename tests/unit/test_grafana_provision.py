"""``pghd grafana provision`` against a small stand-in for Grafana's HTTP API.

Grafana cannot run here, so :class:`FakeGrafana` (``http.server`` on a free loopback port)
implements the documented request and response shapes of the calls the command makes:
``GET/POST /api/folders[/{uid}]``, ``PUT /api/folders/{uid}``,
``GET/PUT /api/datasources/uid/{uid}`` (404 ``{"message": "Data source not found"}`` when
missing), ``POST /api/datasources`` (``{"datasource": {...}, "id", "message":
"Datasource added", "name"}``) and ``POST /api/dashboards/db`` (``{"id", "uid", "url",
"status": "success", "version", "slug"}``); it refuses a request without the bearer token
with 401. Every request is recorded with its method, path, Authorization header and body.

For ``pghd grafana teams`` it also has the team and folder-permission calls, shaped after
Grafana's Team and Folder Permissions HTTP API docs: ``GET /api/teams/search?name=`` (exact
name; ``{"totalCount", "teams": [{"id", "orgId", "name", "email", "memberCount"}], "page",
"perPage"}``), ``POST /api/teams`` (``{"message": "Team created", "teamId"}``; 409 for a
taken name), ``GET /api/folders/{uid}/permissions`` (a list of ``{"role" | "teamId" |
"userId", "permission"}``) and ``POST /api/folders/{uid}/permissions`` with ``{"items":
[...]}``, which *replaces* every permission (``{"message": "Folder permissions updated"}``).
A new folder starts with Grafana's defaults: Viewer may View (1), Editor may Edit (2).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
from typer.testing import CliRunner

from deploy.grafana.dashboards import DASHBOARDS
from deploy.grafana.dashboards.common import INFLUX_UID, PROMETHEUS_UID
from pghd.cli import app

TOKEN = "glsa_test-token"
INFLUX_TOKEN = "influx-secret-token"


@dataclass
class Request:
    method: str
    path: str
    auth: str | None
    body: Any


@dataclass
class FakeGrafana:
    """State and request log of the stand-in Grafana."""

    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    teams: dict[int, dict[str, Any]] = field(default_factory=dict)
    permissions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    next_id: int = 1
    url: str = ""

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        path, _, query = path.partition("?")
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "teams"]:
            return self._teams(method, parts[2:], parse_qs(query), body)
        if parts[:2] == ["api", "folders"] and parts[3:] == ["permissions"]:
            return self._permissions(method, parts[2], body)
        if parts[:2] == ["api", "folders"]:
            return self._folders(method, parts[2:], body)
        if parts[:2] == ["api", "datasources"]:
            return self._datasources(method, parts[2:], body)
        if parts == ["api", "dashboards", "db"] and method == "POST":
            return self._dashboard(body)
        return 404, {"message": "Not found"}

    def _folders(self, method: str, rest: list[str], body: Any) -> tuple[int, Any]:
        if method == "POST" and not rest:
            uid = body.get("uid") or f"f{self.next_id}"
            if uid in self.folders:
                return 409, {"message": "a folder with the same uid already exists"}
            folder = {"id": self.new_id(), "uid": uid, "title": body["title"], "version": 1}
            self.folders[uid] = {**folder, "url": f"/dashboards/f/{uid}/"}
            self.permissions[uid] = [
                {"role": "Viewer", "permission": 1},
                {"role": "Editor", "permission": 2},
            ]
            return 200, self.folders[uid]
        if len(rest) == 1 and rest[0] not in self.folders:
            return 404, {"message": "folder not found", "status": "not-found"}
        if method == "GET" and len(rest) == 1:
            return 200, self.folders[rest[0]]
        if method == "PUT" and len(rest) == 1:
            folder = self.folders[rest[0]]
            folder.update(title=body["title"], version=folder["version"] + 1)
            return 200, folder
        return 405, {"message": "method not allowed"}

    def _teams(
        self, method: str, rest: list[str], query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        if method == "GET" and rest == ["search"]:
            name = query.get("name", [None])[0]
            found = [t for t in self.teams.values() if name is None or t["name"] == name]
            return 200, {"totalCount": len(found), "teams": found, "page": 1, "perPage": 1000}
        if method == "POST" and not rest:
            if any(t["name"] == body["name"] for t in self.teams.values()):
                return 409, {"message": "Team name taken"}
            ident = self.new_id()
            self.teams[ident] = {
                "id": ident,
                "orgId": 1,
                "name": body["name"],
                "email": body.get("email", ""),
                "memberCount": 0,
            }
            return 200, {"message": "Team created", "teamId": ident}
        return 405, {"message": "method not allowed"}

    def _permissions(self, method: str, uid: str, body: Any) -> tuple[int, Any]:
        if uid not in self.folders:
            return 404, {"message": "folder not found", "status": "not-found"}
        if method == "GET":
            return 200, self.permissions[uid]
        if method == "POST":
            items = body["items"]
            for item in items:
                if item.get("permission") not in (1, 2, 4):
                    return 400, {"message": "invalid permission"}
                if "teamId" in item and item["teamId"] not in self.teams:
                    return 400, {"message": "team not found"}
            self.permissions[uid] = [dict(i) for i in items]
            return 200, {"message": "Folder permissions updated"}
        return 405, {"message": "method not allowed"}

    def _datasources(self, method: str, rest: list[str], body: Any) -> tuple[int, Any]:
        if method == "POST" and not rest:
            if any(d["name"] == body["name"] for d in self.datasources.values()):
                return 409, {"message": "data source with the same name already exists"}
            source = {**body, "id": self.new_id(), "version": 1}
            source.pop("secureJsonData", None)
            self.datasources[body["uid"]] = source
            return 200, {
                "datasource": source,
                "id": source["id"],
                "message": "Datasource added",
                "name": source["name"],
            }
        if len(rest) == 2 and rest[0] == "uid":
            uid = rest[1]
            if uid not in self.datasources:
                return 404, {"message": "Data source not found"}
            if method == "GET":
                return 200, self.datasources[uid]
            if method == "PUT":
                old = self.datasources[uid]
                source = {**body, "id": old["id"], "version": old["version"] + 1}
                source.pop("secureJsonData", None)
                self.datasources[uid] = source
                return 200, {
                    "datasource": source,
                    "id": source["id"],
                    "message": "Datasource updated",
                    "name": source["name"],
                }
        return 405, {"message": "method not allowed"}

    def _dashboard(self, body: Any) -> tuple[int, Any]:
        board = body["dashboard"]
        uid = board["uid"]
        if uid in self.dashboards and not body.get("overwrite"):
            return 412, {"message": "The dashboard has been changed by someone else"}
        if body.get("folderUid") not in self.folders:
            return 400, {"message": "folder not found"}
        old = self.dashboards.get(uid)
        version = old["version"] + 1 if old else 1
        ident = old["id"] if old else self.new_id()
        slug = board["title"].lower().replace(" ", "-")
        self.dashboards[uid] = {
            "id": ident,
            "version": version,
            "folderUid": body["folderUid"],
            "dashboard": board,
        }
        return 200, {
            "id": ident,
            "uid": uid,
            "url": f"/d/{uid}/{slug}",
            "status": "success",
            "version": version,
            "slug": slug,
        }


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    fake = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            auth = self.headers.get("Authorization")
            fake.requests.append(Request(self.command, self.path, auth, body))
            if auth != f"Bearer {TOKEN}":
                status, answer = 401, {"message": "Unauthorized"}
            else:
                status, answer = fake.handle(self.command, self.path, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _provision(grafana: FakeGrafana, *extra: str, token: str = TOKEN) -> Any:
    return CliRunner().invoke(
        app,
        [
            *("grafana", "provision", "--url", grafana.url, "--token", token),
            *("--influx-token", INFLUX_TOKEN, "--influx-url", "http://influx.internal:8086"),
            *extra,
        ],
    )


def _calls(grafana: FakeGrafana) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in grafana.requests]


def test_first_run_creates_folder_datasources_and_dashboards(grafana: FakeGrafana) -> None:
    result = _provision(grafana)
    assert result.exit_code == 0, result.output
    boards = {make().build().uid for make in DASHBOARDS.values()}
    assert _calls(grafana) == [
        ("GET", "/api/folders/pghd"),
        ("POST", "/api/folders"),
        ("GET", f"/api/datasources/uid/{INFLUX_UID}"),
        ("POST", "/api/datasources"),
        ("GET", f"/api/datasources/uid/{PROMETHEUS_UID}"),
        ("POST", "/api/datasources"),
        *[("POST", "/api/dashboards/db")] * len(boards),
    ]
    assert {r.auth for r in grafana.requests} == {f"Bearer {TOKEN}"}
    folder_post = grafana.requests[1].body
    assert folder_post == {"title": "pghd", "uid": "pghd"}
    influx = grafana.requests[3].body
    assert influx["uid"] == INFLUX_UID and influx["type"] == "influxdb"
    assert influx["url"] == "http://influx.internal:8086"
    assert influx["jsonData"]["version"] == "Flux"
    assert influx["secureJsonData"] == {"token": INFLUX_TOKEN}
    prometheus = grafana.requests[5].body
    assert prometheus["uid"] == PROMETHEUS_UID and prometheus["type"] == "prometheus"
    posted = [r.body for r in grafana.requests[6:]]
    assert {p["dashboard"]["uid"] for p in posted} == boards
    for body in posted:
        assert body["folderUid"] == "pghd" and body["overwrite"] is True
        assert body["dashboard"]["id"] is None and body["dashboard"]["panels"]
    assert set(grafana.folders) == {"pghd"}
    assert set(grafana.datasources) == {INFLUX_UID, PROMETHEUS_UID}
    assert set(grafana.dashboards) == boards
    assert "folder pghd: created" in result.output
    assert f"data source {INFLUX_UID}: created" in result.output


def test_a_second_run_updates_instead_of_duplicating(grafana: FakeGrafana) -> None:
    assert _provision(grafana).exit_code == 0
    ids = {uid: d["id"] for uid, d in grafana.datasources.items()}
    grafana.requests.clear()
    result = _provision(grafana)
    assert result.exit_code == 0, result.output
    calls = _calls(grafana)
    assert ("POST", "/api/folders") not in calls
    assert ("POST", "/api/datasources") not in calls
    assert calls.count(("PUT", f"/api/datasources/uid/{INFLUX_UID}")) == 1
    assert calls.count(("PUT", f"/api/datasources/uid/{PROMETHEUS_UID}")) == 1
    put = next(r.body for r in grafana.requests if r.path.endswith(INFLUX_UID) and r.body)
    assert put["id"] == ids[INFLUX_UID] and put["secureJsonData"] == {"token": INFLUX_TOKEN}
    assert len(grafana.folders) == 1 and len(grafana.datasources) == 2
    assert len(grafana.dashboards) == len(DASHBOARDS)
    assert {d["version"] for d in grafana.dashboards.values()} == {2}
    assert "folder pghd: updated" in result.output
    assert "dashboard cohort-overview: updated" in result.output


def test_a_renamed_folder_is_updated(grafana: FakeGrafana) -> None:
    assert _provision(grafana).exit_code == 0
    result = _provision(grafana, "--folder-title", "Care teams")
    assert result.exit_code == 0, result.output
    assert grafana.folders["pghd"]["title"] == "Care teams"
    (put,) = [r for r in grafana.requests if r.method == "PUT" and r.path == "/api/folders/pghd"]
    assert put.body == {"title": "Care teams", "overwrite": True}


def test_a_wrong_token_fails_with_grafanas_answer(grafana: FakeGrafana) -> None:
    result = _provision(grafana, token="wrong")
    assert result.exit_code == 1
    assert "401" in result.output
    assert not grafana.folders and not grafana.datasources


def test_render_interpolates_every_dashboard_query() -> None:
    from datetime import UTC, datetime

    from deploy.grafana.dashboards import FLUX
    from pghd.commands.grafana import interpolate

    start, stop = datetime(2026, 11, 22, tzinfo=UTC), datetime(2026, 11, 25, 12, tzinfo=UTC)
    for name, text in FLUX.items():
        done = interpolate(
            text,
            bucket="pghd/autogen",
            start=start,
            stop=stop,
            window="1h",
            patient="p-1",
            channel="heart_rate",
        )
        assert "${" not in done and "v.timeRange" not in done and "v.window" not in done, name
        if "v.timeRangeStart" in text:
            assert "range(start: 2026-11-22T00:00:00Z, stop: 2026-11-25T12:00:00Z)" in done


def test_the_token_file_of_the_provisioning_file_is_read_as_grafana_does(tmp_path: Any) -> None:
    from pghd.commands.grafana import datasource_bodies

    token = tmp_path / "influxdb-token"
    token.write_text("read-only-token\n")
    (tmp_path / "influx.yaml").write_text(
        "datasources:\n  - name: s\n    uid: s\n    type: influxdb\n"
        f"    secureJsonData:\n      token: $__file{{{token}}}\n      other: pre-$NAME\n"
    )
    (body,) = datasource_bodies(tmp_path, env={"NAME": "x"})
    assert body["secureJsonData"] == {"token": "read-only-token", "other": "pre-x"}
    token.unlink()
    (body,) = datasource_bodies(tmp_path, env={})
    assert body["secureJsonData"]["token"] == ""


def test_no_influxdb_token_means_nothing_is_pushed(grafana: FakeGrafana) -> None:
    """The shipped file reads a token file that exists only in the compose Grafana: without
    --influx-token the command stops before Grafana gets a data source without a token."""
    result = CliRunner().invoke(
        app,
        ["grafana", "provision", "--url", grafana.url, "--token", TOKEN],
        env={"GRAFANA_INFLUXDB_TOKEN": None},
    )
    assert result.exit_code == 1
    assert "pghd influx grafana-token" in result.output
    assert grafana.requests == []


# -- pghd grafana teams --------------------------------------------------------------------


def _teams(grafana: FakeGrafana, teams_file: Any, *extra: str) -> Any:
    return CliRunner().invoke(
        app,
        [
            *("grafana", "teams", "--url", grafana.url, "--token", TOKEN),
            *("--teams-file", str(teams_file), *extra),
        ],
    )


def _teams_file(tmp_path: Any, teams: dict[str, list[str]]) -> Any:
    path = tmp_path / "teams.json"
    path.write_text(json.dumps({"schema_version": 1, "teams": teams}))
    return path


def test_teams_gives_each_care_team_a_folder_only_it_views(
    grafana: FakeGrafana, tmp_path: Any
) -> None:
    from deploy.grafana.dashboards.scope import team_filter
    from pghd.commands.grafana.teams import folder_uid

    assert _provision(grafana).exit_code == 0  # the shared folder "pghd", Grafana's defaults
    assert grafana.permissions["pghd"] == [
        {"role": "Viewer", "permission": 1},
        {"role": "Editor", "permission": 2},
    ]
    grafana.requests.clear()
    teams = {"ward-a": ["p-2", "p.1"], "renal@site:2": ["p-3"]}
    result = _teams(grafana, _teams_file(tmp_path, teams))
    assert result.exit_code == 0, result.output
    ids = {t["name"]: t["id"] for t in grafana.teams.values()}
    assert set(ids) == set(teams)
    for team, patients in teams.items():
        uid = folder_uid(team)
        assert grafana.folders[uid]["title"] == f"Care team {team}"
        # Only that team, and only View: the Viewer/Editor role defaults are gone.
        assert grafana.permissions[uid] == [{"teamId": ids[team], "permission": 1}]
        boards = [d for d in grafana.dashboards.values() if d["folderUid"] == uid]
        assert len(boards) == 2
        predicate = team_filter(tuple(patients))
        for board in boards:
            text = json.dumps(board["dashboard"])
            assert predicate.replace("\\", "\\\\") in text  # every query names the team
            assert board["dashboard"]["uid"].endswith(uid.removeprefix("pghd-team-"))
    assert grafana.permissions["pghd"] == []  # the whole cohort: admins only
    # Each folder's permissions are set before a dashboard enters it.
    for team in teams:
        uid = folder_uid(team)
        steps = [
            "grant" if r.path == f"/api/folders/{uid}/permissions" else "board"
            for r in grafana.requests
            if r.path == f"/api/folders/{uid}/permissions"
            or (r.path == "/api/dashboards/db" and r.body["folderUid"] == uid)
        ]
        assert steps == ["grant", "board", "board"], team
    posted = [r.body for r in grafana.requests if r.path.endswith("/permissions")]
    assert {"items": []} in posted
    assert "care team ward-a: 2 patients" in result.output
    assert "folder pghd: admins only" in result.output


def test_teams_reruns_update_in_place(grafana: FakeGrafana, tmp_path: Any) -> None:
    path = _teams_file(tmp_path, {"ward-a": ["p-1"]})
    assert _teams(grafana, path).exit_code == 0
    teams, folders, boards = dict(grafana.teams), set(grafana.folders), set(grafana.dashboards)
    grafana.requests.clear()
    path = _teams_file(tmp_path, {"ward-a": ["p-1", "p-9"]})
    result = _teams(grafana, path)
    assert result.exit_code == 0, result.output
    assert grafana.teams == teams and set(grafana.folders) == folders
    assert set(grafana.dashboards) == boards  # same uids, new versions
    assert ("POST", "/api/teams") not in _calls(grafana)
    assert ("POST", "/api/folders") not in _calls(grafana)
    assert "p-9" in json.dumps(list(grafana.dashboards.values()))
    assert "folder pghd: not found, left alone" in result.output


@pytest.mark.parametrize(
    "content",
    [
        {"schema_version": 2, "teams": {}},
        {"schema_version": 1, "teams": {"ward a": ["p-1"]}},  # not an id
        {"schema_version": 1, "teams": {"ward-a": ['p" or true or "']}},
        {"schema_version": 1, "teams": {"ward-a": "p-1"}},
    ],
)
def test_a_bad_teams_file_changes_nothing(
    grafana: FakeGrafana, tmp_path: Any, content: dict[str, Any]
) -> None:
    path = tmp_path / "teams.json"
    path.write_text(json.dumps(content))
    result = _teams(grafana, path)
    assert result.exit_code == 1
    assert "cannot read the care teams" in result.output
    assert grafana.requests == []


def test_the_care_teams_come_from_the_enrollments_page_by_page() -> None:
    """``--ingest-url``: every enrollment's teams (withdrawn patients too), through ingest's
    ``GET /v1/patients?limit&offset`` with the admin token (httpx MockTransport)."""
    import httpx

    from pghd.commands.grafana.teams import teams_from_ingest

    enrollments = [
        {"patient_id": "p-1", "status": "enrolled", "teams": ["ward-a"]},
        {"patient_id": "p-2", "status": "withdrawn", "teams": ["ward-a", "renal"]},
        {"patient_id": "p-3", "status": "enrolled", "teams": []},
        {"patient_id": "p-4", "status": "enrolled", "teams": ["renal"]},
    ]
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers.get("Authorization") != "Bearer admin-token":
            return httpx.Response(401, json={"detail": "unknown token"})
        limit, offset = int(request.url.params["limit"]), int(request.url.params["offset"])
        page = enrollments[offset : offset + limit]
        return httpx.Response(200, json={"items": page, "total": len(enrollments)})

    transport = httpx.MockTransport(answer)
    headers = {"Authorization": "Bearer admin-token"}
    with httpx.Client(base_url="http://ingest", headers=headers, transport=transport) as client:
        assert teams_from_ingest(client, page=3) == {
            "renal": ("p-2", "p-4"),
            "ward-a": ("p-1", "p-2"),
        }
    assert [(r.url.path, r.url.params["offset"]) for r in seen] == [
        ("/v1/patients", "0"),
        ("/v1/patients", "3"),
    ]
    with (
        httpx.Client(base_url="http://ingest", transport=transport) as client,
        pytest.raises(httpx.HTTPStatusError),
    ):
        teams_from_ingest(client)


def test_teams_wants_exactly_one_source(grafana: FakeGrafana) -> None:
    result = CliRunner().invoke(app, ["grafana", "teams", "--url", grafana.url, "--token", TOKEN])
    assert result.exit_code == 2 and "exactly one of" in result.output
    assert grafana.requests == []
