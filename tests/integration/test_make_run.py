"""``make run`` for real, then the care-team CLI with nothing exported.

``pghd run`` (what ``make run`` runs) starts Kafka, InfluxDB, the four services and the local
inbox in a scratch copy of the repository (``PGHD_ROOT``: its own ``.local``, sharing only the
installed Kafka jars and ``influxd``) on free ports (``--free-ports``), so a developer's stack
is neither clobbered nor collided with. Then, exactly as a developer would after ``make
run``, with no ``--url``/``--token`` and no ``PGHD_CARE_*`` variable: ``pghd alerts list``
lists the alerts the simulated cohort raised, ``pghd alerts ack ID`` acknowledges one and
``pghd alerts show ID`` comes to say so (the command goes through Kafka to the alerts worker
and back on ``pghd.alerts.v1``). The simulated patient whose token the run printed reads
their own summary (their readings against their usual range) and nothing of anyone else, and
a clinical system's ``GET /fhir/Observation?patient=…&code=8867-4`` answers a Bundle that
fhir.resources validates. ``pghd dev down`` runs whatever happens, and nothing of the stack
may be left running.

The cohort: 3 patients x 1 day, seed 1, which raises two alerts, one of them still open
(measured; the whole test takes about a minute).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle

from deploy.local import stack
from deploy.local.process import find_processes, pid_alive
from pghd.access import Role, UsersFile, hash_token

CODE = Path(__file__).resolve().parents[2]  # the repository whose code is under test
DEFAULT_PORTS = {"ingest": 8000, "processors": 6066, "alerts": 6067, "care-api": 8001}


@pytest.fixture
def scratch_root(tmp_path: Path, _installs: dict[str, Future[Path]]) -> Iterator[Path]:
    """A repository root of its own sharing the installed Kafka jars and influxd (only those:
    its data, logs, state file and secrets are its own); the stack is brought down after."""
    for install in ("kafka", "influxd"):
        _installs[install].result()
    root = tmp_path / "repo"
    (root / ".local").mkdir(parents=True)
    (root / "pyproject.toml").write_text((CODE / "pyproject.toml").read_text())
    installed = stack.StackPaths.for_root(CODE).local
    for cached in ("kafka", "influxdb"):
        (root / ".local" / cached).symlink_to(installed / cached)
    yield root
    _pghd(root, "dev", "down", timeout=120)  # whatever happened, and again is harmless


def _pghd(root: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``pghd ARGS`` as a developer runs it in that copy: no ``PGHD_*`` variable from this
    shell but the copy's root, the code under test first on the path."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PGHD_")}
    env[stack.ROOT_ENV] = str(root)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(CODE), env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "pghd.cli", *args],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"{' '.join(map(str, result.args[3:]))} exited {result.returncode}\n"
        f"stdout: {result.stdout[-4000:]}\nstderr: {result.stderr[-4000:]}"
    )
    return result.stdout


def _poll(what: str, probe: Any, timeout: float) -> Any:
    """``probe()``'s first truthy answer, else fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(1)


def test_make_run_then_list_and_acknowledge_with_nothing_exported(scratch_root: Path) -> None:
    root = scratch_root
    paths = stack.StackPaths.for_root(root)
    started = time.monotonic()
    out = _ok(
        _pghd(
            root, "run", "--patients", "3", "--days", "1", "--seed", "1", "--free-ports",
            timeout=420,
        )
    )  # fmt: skip
    took_run = time.monotonic() - started

    # Four services and the inbox run, each on a free port (never the developer's defaults).
    state = stack.load_state(paths)
    services = {n: r for n, r in state.processes.items() if r.kind == "service"}
    assert set(services) == {"inbox", "ingest", "processors", "alerts", "care-api"}
    for name, default in DEFAULT_PORTS.items():
        assert services[name].ports["http"] != default, name
    care = services["care-api"]
    assert care.healthy() and care.health == f"http://127.0.0.1:{care.ports['http']}/readyz"
    # Its metrics are open to Prometheus, as compose and k8s scrape them.
    metrics = httpx.get(f"http://127.0.0.1:{care.ports['http']}/metrics", timeout=10)
    assert metrics.status_code == 200 and "# TYPE" in metrics.text
    # "Where to look" names the API, the token and the command.
    assert f"care-team API     http://127.0.0.1:{care.ports['http']}/docs" in out
    assert "care-token" in out and "pghd alerts list" in out
    # The token is made once, readable by its owner only; the users file holds its admin.
    token_file = paths.run / "care-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    users = UsersFile.model_validate_json((paths.run / "care-users.json").read_text()).users
    assert users["local-admin"].role is Role.ADMIN
    assert users["local-admin"].token_sha256 == [hash_token(token_file.read_text().strip())]

    # A finding appears: `pghd alerts list`, nothing given.
    def open_alerts() -> list[dict[str, Any]]:
        listed = json.loads(_ok(_pghd(root, "alerts", "list", "--state", "open", "--json")))
        return [a for a in listed["items"] if a["status"] == "open"]

    alert = _poll("an open alert listed", open_alerts, timeout=60)[0]
    table = _ok(_pghd(root, "alerts", "list"))
    assert alert["alert_id"] in table and alert["patient_id"] in table

    # A clinician acknowledges it; the worker applies it and the API comes to show it.
    acked = _ok(_pghd(root, "alerts", "ack", alert["alert_id"]))
    assert f"acknowledge {alert['alert_id']}: accepted" in acked

    def acknowledged() -> dict[str, Any] | None:
        shown = json.loads(_ok(_pghd(root, "alerts", "show", alert["alert_id"], "--json")))
        return shown if shown["status"] == "acknowledged" else None

    shown = _poll("the alert acknowledged", acknowledged, timeout=60)
    assert shown["acknowledged_by"] == "local-admin"
    assert "acknowledged_by: local-admin" in _ok(_pghd(root, "alerts", "show", alert["alert_id"]))
    print(f"\npghd run: {took_run:.0f} s; list, ack, show: {time.monotonic() - started:.0f} s")

    # The patient's view: the token `pghd run` printed reads that patient's own summary.
    care_api = f"http://127.0.0.1:{care.ports['http']}"
    patient_token = (paths.run / "patient-token").read_text().strip()
    assert stat.S_IMODE((paths.run / "patient-token").stat().st_mode) == 0o600
    assert f"own token: {patient_token}" in out
    labels = json.loads((paths.run / "episodes.json").read_text())
    patient = labels["episodes"][0]["patient_id"]
    assert f"{patient}'s own token" in out
    as_patient = {"Authorization": f"Bearer {patient_token}"}
    summary = httpx.get(f"{care_api}/v1/me/summary", headers=as_patient, timeout=30)
    assert summary.status_code == 200, summary.text
    mine = summary.json()
    assert mine["patient_id"] == patient
    judged = [r for r in mine["latest"] if r["usual"] is not None and r["change"]]
    assert judged, mine["latest"]  # readings against the patient's own usual range
    for reading in judged:
        usual = reading["usual"]
        assert usual["low"] <= usual["centre"] <= usual["high"]
    others = [p for p in labels["patients"] if p != patient]
    assert not any(other in summary.text for other in others)
    refused = httpx.get(
        f"{care_api}/v1/alerts", params={"patient_id": others[0]}, headers=as_patient, timeout=30
    )
    assert refused.status_code == 403, refused.text
    chart = httpx.get(
        f"{care_api}/v1/me/readings", params={"metric": "heart_rate"}, headers=as_patient,
        timeout=30,
    )  # fmt: skip
    assert chart.status_code == 200, chart.text

    # A clinical system reads the patient's heart rates as FHIR, with the care-team token.
    as_care = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
    searched = httpx.get(
        f"{care_api}/fhir/Observation",
        params={"patient": patient, "code": "8867-4", "_count": "20"},
        headers=as_care,
        timeout=30,
    )
    assert searched.status_code == 200, searched.text
    assert searched.headers["content-type"].startswith("application/fhir+json")
    bundle = Bundle.model_validate(searched.json())
    assert bundle.type == "searchset" and bundle.entry
    for entry in bundle.entry:
        observation = entry.resource
        assert observation.subject.reference == f"Patient/{patient}"
        assert observation.code.coding[0].code == "8867-4"

    # make stop: everything goes, nothing is left behind.
    pids = [rec.pid for rec in state.processes.values()]
    _ok(_pghd(root, "dev", "down", timeout=120))
    assert not any(pid_alive(pid) for pid in pids)
    assert find_processes(env=f"{stack.STACK_MARKER}={paths.run}") == []
    assert find_processes(cmdline=str(root)) == []
    assert not paths.state_file.exists()
    # Without the stack the CLI has no token to use, and says how to give one.
    gone = _pghd(root, "alerts", "list")
    assert gone.returncode == 2 and "no token: pass --token" in gone.stderr
