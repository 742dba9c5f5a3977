"""Care-team access on real Kafka: teams from enrollment, roles from the users file.

Patients are enrolled into care teams through ingest's patients API (a real ingest process);
the care-team API (its own process) follows the enrollments topic and a users file. Alerts,
silences and care plans of two teams' patients are put where the platform keeps them, and
every route of the API's own OpenAPI document is called as a clinician of the other team.
The API also accepts the JWTs of an identity provider (a loopback stand-in,
:mod:`tests.oidc_idp`), configured through the environment as an operator would.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from deploy.local.harness import Pipeline, running_care_api, running_pipeline
from deploy.local.influxdb import InfluxServer
from deploy.local.process import log_tail
from pghd.access import hash_token
from pghd.cli import app as cli
from tests.integration.test_care_api import make_alert, publish
from tests.oidc_idp import AUDIENCE, LoopbackIdp, serving_idp

RUN = uuid.uuid4().hex[:8]
OURS, THEIRS = f"access-{RUN}-a", f"access-{RUN}-b"
USERS = {
    "viewer-a": ("viewer", ["ward-a"]),
    "nurse-a": ("clinician", ["ward-a"]),
    "nurse-b": ("clinician", ["ward-b"]),
    "auditor": ("admin", []),
}
ALERTS = {p: make_alert(p) for p in (OURS, THEIRS)}


def write_users(path: Path, users: dict[str, tuple[str, list[str]]]) -> None:
    doc = {
        "schema_version": 1,
        "users": {
            name: {"role": role, "teams": teams, "token_sha256": [hash_token(f"{name}-{RUN}")]}
            for name, (role, teams) in users.items()
        },
    }
    path.write_text(json.dumps(doc))
    st = path.stat()  # a later write in the same clock tick still reads as a change
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


@dataclass
class Access:
    url: str
    log: Path
    users: Path

    def call(
        self, user: str, method: str, path: str, body: Any = None, **params: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {user}-{RUN}"}
        return httpx.request(
            method, self.url + path, json=body, params=params or None, headers=headers, timeout=10
        )


@pytest.fixture(scope="module")
def ingest(
    stack_env: dict[str, str], influx: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    workdir = tmp_path_factory.mktemp("care-access-ingest")
    with running_pipeline(
        stack_env=stack_env, influx=influx, workdir=workdir, services=("ingest",)
    ) as pipeline:
        yield pipeline


@pytest.fixture(scope="module")
def idp() -> Iterator[LoopbackIdp]:
    with serving_idp() as idp:
        yield idp


@pytest.fixture(scope="module")
def care(
    kafka_bootstrap: str,
    ingest: Pipeline,
    idp: LoopbackIdp,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Access]:
    for patient, team in ((OURS, "ward-a"), (THEIRS, "ward-b")):
        body = {"patient_id": patient, "teams": [team]}
        response = ingest.admin("POST", "/v1/patients", body)
        assert response.status_code == 201, response.text
    publish(kafka_bootstrap, *((a.fingerprint, a) for a in ALERTS.values()))
    workdir = tmp_path_factory.mktemp("care-access")
    users = workdir / "users.json"
    write_users(users, USERS)
    log = workdir / "care-api.log"
    env = {
        "PGHD_CARE_API_USERS_FILE": str(users),
        "PGHD_CARE_API_USERS_RECHECK_S": "0.1",
        "PGHD_OIDC_ISSUER": idp.issuer,  # keys found through discovery
        "PGHD_CARE_API_OIDC_AUDIENCE": AUDIENCE,
    }
    with running_care_api(kafka_bootstrap=kafka_bootstrap, log=log, env=env) as url:
        api = Access(url=url, log=log, users=users)
        # a silence and a care plan of each patient, set by their own team's clinician
        for patient, nurse in ((OURS, "nurse-a"), (THEIRS, "nurse-b")):
            ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
            silence = api.call(
                nurse, "POST", "/v1/silences", {"patient_id": patient, "ends_at": ends}
            )
            assert silence.status_code == 202, silence.text + log_tail(api.log)
            plan = api.call(nurse, "PUT", f"/v1/patients/{patient}/care-plan", {"spo2_scale": 2})
            assert plan.status_code == 202, plan.text
        yield api


def _silence_of(api: Access, user: str, patient: str) -> str:
    items = api.call(user, "GET", "/v1/silences", patient_id=patient).json()["items"]
    assert items, f"no silence of {patient} for {user}"
    return str(items[0]["silence_id"])


def _routes(api: Access, patient: str, owner: str) -> list[tuple[str, str, Any]]:
    """Every route of the API's OpenAPI document that takes a token, about ``patient`` (in
    its path, or in its query for a search that names the patient there)."""
    spec = httpx.get(f"{api.url}/openapi.json", timeout=10).json()
    values = {
        "{alert_id}": ALERTS[patient].alert_id,
        "{patient_id}": patient,
        "{silence_id}": _silence_of(api, owner, patient),
    }
    found: list[tuple[str, str, Any]] = []
    for template, operations in spec["paths"].items():
        for method, operation in operations.items():
            if "401" not in operation.get("responses", {}):
                continue
            path = template
            for name, value in values.items():
                path = path.replace(name, value)
            assert "{" not in path, f"a path parameter this test does not know: {template}"
            queried = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
            if "patient" in queried:  # a search naming its patient in the query (/fhir)
                path += f"?patient={patient}"
            body: Any = None
            if template.endswith("/resolve"):
                body = {"reason": "seen on the ward"}
            elif template == "/v1/silences" and method == "post":
                ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
                body = {"patient_id": patient, "ends_at": ends}
            elif template.endswith("/care-plan") and method == "put":
                body = {"spo2_scale": 2}
            found.append((method.upper(), path, body))
    return found


def test_another_teams_clinician_gets_403_on_every_route(care: Access) -> None:
    routes = _routes(care, THEIRS, owner="nurse-b")
    assert len(routes) >= 11, routes
    assert ("GET", f"/fhir/Observation?patient={THEIRS}", None) in routes
    for method, path, body in routes:
        response = care.call("nurse-a", method, path, body)
        if method == "GET" and path in ("/v1/alerts", "/v1/silences"):
            listed = {
                i.get("patient_id") or i["matchers"]["patient_id"] for i in response.json()["items"]
            }
            assert THEIRS not in listed and response.status_code == 200, (path, listed)
            continue
        assert response.status_code == 403, (method, path, response.text)


def test_a_viewer_cannot_acknowledge(care: Access) -> None:
    alert = ALERTS[OURS].alert_id
    assert care.call("viewer-a", "GET", f"/v1/alerts/{alert}").status_code == 200
    refused = care.call("viewer-a", "POST", f"/v1/alerts/{alert}/acknowledge", {})
    assert refused.status_code == 403
    assert refused.json()["type"] == "urn:pghd:problem:forbidden-role"
    accepted = care.call("nurse-a", "POST", f"/v1/alerts/{alert}/acknowledge", {})
    assert accepted.status_code == 202, accepted.text


def test_a_silence_beyond_the_maximum_is_refused(care: Access) -> None:
    now = datetime.now(UTC)
    body = {"patient_id": OURS, "starts_at": now.isoformat()}
    eight_days = {**body, "ends_at": (now + timedelta(days=8)).isoformat()}
    refused = care.call("nurse-a", "POST", "/v1/silences", eight_days)
    assert refused.status_code == 422 and "at most 7 d" in refused.json()["detail"]


def test_every_read_appears_in_the_audit_trail(care: Access) -> None:
    reads = [
        ("viewer-a", f"/v1/alerts/{ALERTS[OURS].alert_id}"),
        ("nurse-a", f"/v1/patients/{OURS}/care-plan"),
        ("nurse-a", "/v1/alerts"),
        ("nurse-b", f"/v1/alerts/{ALERTS[OURS].alert_id}"),  # refused: recorded too
    ]
    ids = []
    for user, path in reads:
        request_id = uuid.uuid4().hex
        response = httpx.get(
            care.url + path,
            headers={"Authorization": f"Bearer {user}-{RUN}", "X-Request-ID": request_id},
            timeout=10,
        )
        assert response.status_code in (200, 403), response.text
        ids.append(request_id)
    trail = care.call("auditor", "GET", "/v1/audit", patient_id=OURS, limit=10_000)
    assert trail.status_code == 200, trail.text
    by_request = {e["request_id"]: e for e in trail.json()}
    for (user, path), request_id in zip(reads, ids, strict=True):
        event = by_request.get(request_id)
        assert event is not None, f"no audit event of {user} reading {path}"
        assert (event["agent"]["name"], event["resource"]) == (user, path)
        assert OURS in event["patients"]
    assert by_request[ids[-1]]["outcome"] == "denied"
    assert care.call("nurse-a", "GET", "/v1/audit", patient_id=OURS).status_code == 403
    fhir = care.call("auditor", "GET", "/v1/audit", patient_id=OURS, format="fhir").json()
    assert fhir["resourceType"] == "Bundle" and fhir["total"] >= len(reads)
    printed = CliRunner().invoke(
        cli, ["audit", "--patient", OURS, "--url", care.url, "--token", f"auditor-{RUN}"]
    )
    assert printed.exit_code == 0, printed.output
    assert all(request_id in printed.output for request_id in ids)
    assert "viewer-a (viewer)" in printed.output


def test_an_identity_providers_clinician_sees_their_team_only(
    care: Access, idp: LoopbackIdp
) -> None:
    """A JWT of ward-a's clinician, beside the users file's tokens: the same team checks,
    and the audit trail names the IdP user as such."""
    nurse = {"Authorization": f"Bearer {idp.token(preferred_username=f'nurse-{RUN}')}"}
    own_id, foreign_id = uuid.uuid4().hex, uuid.uuid4().hex
    own = httpx.get(
        f"{care.url}/v1/alerts/{ALERTS[OURS].alert_id}",
        headers=nurse | {"X-Request-ID": own_id},
        timeout=10,
    )
    assert own.status_code == 200, own.text + log_tail(care.log)
    foreign = httpx.get(
        f"{care.url}/v1/alerts/{ALERTS[THEIRS].alert_id}",
        headers=nurse | {"X-Request-ID": foreign_id},
        timeout=10,
    )
    assert foreign.status_code == 403, foreign.text
    plan = httpx.get(f"{care.url}/v1/patients/{THEIRS}/care-plan", headers=nurse, timeout=10)
    assert plan.status_code == 403, plan.text
    assert care.call("nurse-b", "GET", f"/v1/alerts/{ALERTS[THEIRS].alert_id}").status_code == 200
    forged = idp.token(preferred_username=f"nurse-{RUN}", aud="another-api")
    refused = httpx.get(
        f"{care.url}/v1/alerts", headers={"Authorization": f"Bearer {forged}"}, timeout=10
    )
    assert refused.status_code == 401, refused.text

    events: dict[str, Any] = {}
    for patient in (OURS, THEIRS):
        trail = care.call("auditor", "GET", "/v1/audit", patient_id=patient, limit=10_000)
        assert trail.status_code == 200, trail.text
        events |= {e["request_id"]: e for e in trail.json()}
    for request_id, outcome in ((own_id, "success"), (foreign_id, "denied")):
        event = events.get(request_id)
        assert event is not None, f"no audit event of request {request_id}"
        assert event["agent"] == {
            "name": f"oidc:nurse-{RUN}",
            "role": "clinician",
            "teams": ["ward-a"],
        }
        assert event["outcome"] == outcome


def test_a_new_team_assignment_and_a_revoked_token_apply_without_a_restart(
    care: Access, ingest: Pipeline
) -> None:
    path = f"/v1/alerts/{ALERTS[THEIRS].alert_id}"
    assert care.call("nurse-a", "GET", path).status_code == 403
    assigned = ingest.admin("PUT", f"/v1/patients/{THEIRS}/teams/ward-a")
    assert assigned.status_code == 200, assigned.text
    deadline = time.monotonic() + 20
    while care.call("nurse-a", "GET", path).status_code != 200:
        assert time.monotonic() < deadline, "the team assignment never reached the API"
        time.sleep(0.2)
    write_users(care.users, {k: v for k, v in USERS.items() if k != "nurse-a"})
    deadline = time.monotonic() + 10
    while care.call("nurse-a", "GET", path).status_code != 401:
        assert time.monotonic() < deadline, "the removed user was still let in"
        time.sleep(0.1)
