"""``pghd run``: the main job. Stack up, services up, a simulated cohort through the webhook.

Starts Kafka and InfluxDB (``pghd dev up``), the four services (ingest, processors, alerts and
the care-team API) and a local notification inbox, posts a simulated cohort to
``POST /v1/measurements``, waits until the processors have caught up, then prints what was
stored and raised and where to look. Everything keeps running until ``pghd dev down``
(``make stop``).

The care-team API gets a users file made once in ``.local/run/care-users.json`` with one user,
``local-admin``, of role **admin**: the simulated cohort is enrolled in no care team, and a
patient in no team is seen by admins only (:mod:`pghd.access`). Its bearer token is made once
in ``.local/run/care-token``; ``pghd alerts``, ``pghd care-plan`` and ``pghd audit`` use that
URL and token when given none (:func:`pghd.commands.alerts.local_care_api`).

One simulated patient (the first with an injected episode) gets their own patient token,
issued through ingest's patients API on every run (issuing again rotates it) and kept in
``.local/run/patient-token``: it reads that patient's ``/v1/me/summary`` and ``/v1/me/readings``
on the care-team API and nothing else. The run prints it with the calls to make.

Ports: the usual ones (8000, 8001, 6066, 6067, 8025; Kafka 9092, InfluxDB 8086), a taken one
replaced by a free one and said so; ``--free-ports`` takes free ports for everything (a second
stack beside the usual one, as ``tests/integration/test_make_run.py`` runs it). The state
file (``.local/run/stack.json``) records which.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pghd.access import Role, UserEntry, UsersFile, hash_token
from pghd.commands.alerts import LOCAL_CARE_API, LOCAL_CARE_TOKEN
from pghd.commands.dev import RootOption
from pghd.kafka_security import KafkaSecurity

if TYPE_CHECKING:
    from deploy.local.stack import StackPaths

__all__ = ["care_users_file", "run"]

INGEST_PORT = 8000
CARE_API_PORT = 8001
INBOX_PORT = 8025
PROCESSORS_WEB_PORT = 6066
ALERTS_WEB_PORT = 6067
CARE_USER = "local-admin"
CARE_USERS_FILE = "care-users.json"
PATIENT_TOKEN = "patient-token"


def _api_key(run_dir: Path, name: str = "demo-api-key") -> str:
    """A local secret (the demo source's API key, the admin token): made once, kept in
    ``.local/run/<name>``."""
    path = run_dir / name
    if not path.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24))
    return path.read_text().strip()


def _write_secret(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``, readable by its owner only from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


def demo_patient(labels: dict[str, object]) -> str | None:
    """The simulated patient whose own view ``pghd run`` shows: the first one an episode was
    injected into (so their summary has a finding to word), else the first of the cohort."""
    episodes = labels.get("episodes")
    if isinstance(episodes, list) and episodes and isinstance(episodes[0], dict):
        patient = episodes[0].get("patient_id")
        if isinstance(patient, str):
            return patient
    patients = labels.get("patients")
    if isinstance(patients, list) and patients and isinstance(patients[0], str):
        return patients[0]
    return None


def _issue_patient_token(ingest: str, admin_token: str, patient_id: str, run_dir: Path) -> bool:
    """Issue (rotate) ``patient_id``'s own token through ingest; keep it in
    ``.local/run/patient-token``. False, said aloud, when ingest refused."""
    import httpx

    try:
        answer = httpx.post(
            f"{ingest}/v1/patients/{patient_id}/token",
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        typer.echo(f"    could not issue {patient_id}'s patient token: {exc}", err=True)
        return False
    if answer.status_code != 201:
        typer.echo(
            f"    could not issue {patient_id}'s patient token: HTTP {answer.status_code}"
            f" {answer.text[:300]}",
            err=True,
        )
        return False
    _write_secret(run_dir / PATIENT_TOKEN, str(answer.json()["token"]))
    return True


def care_users_file(run_dir: Path, token: str) -> Path:
    """The local care-team API's users file (``.local/run/care-users.json``), made once: the
    admin ``local-admin`` holding the digest of ``token``. A file that holds no user with
    that digest (the token file was deleted) gets ``local-admin`` back; its other users are
    kept. ``ValueError`` when the file is not a users file."""
    path = run_dir / CARE_USERS_FILE
    digest = hash_token(token)
    users: dict[str, UserEntry] = {}
    if path.exists():
        try:
            current = UsersFile.model_validate_json(path.read_text())
        except ValueError as exc:
            raise ValueError(f"{path} is not a users file; fix or delete it: {exc}") from exc
        if any(digest in entry.token_sha256 for entry in current.users.values()):
            return path
        users = dict(current.users)
    users[CARE_USER] = UserEntry(role=Role.ADMIN, token_sha256=[digest])
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(UsersFile(users=users).model_dump_json(indent=2) + "\n")
    tmp.chmod(0o600)
    os.replace(tmp, path)
    return path


def _port(name: str, default: int, *, free: bool, taken: list[int]) -> int:
    """``default`` if free (any free port with ``free``), else a free one, said aloud."""
    from deploy.local.process import pick_port

    wanted = 0 if free else default
    port = pick_port(wanted, avoid=taken)
    if wanted and port != wanted:
        typer.echo(f"    {name}: port {wanted} is taken, using {port}")
    taken.append(port)
    return port


def _consumer_lag(bootstrap: str, group: str, topic: str, security: KafkaSecurity) -> int | None:
    """Messages of ``topic`` the consumer ``group`` has not committed yet (None: unknown)."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    auth = security.kafka_python()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="pghd-run", **auth)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="pghd-run", **auth)
    try:
        committed = admin.list_group_offsets(group).get(group, {})
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        ends = consumer.end_offsets(parts)
        if not committed and any(ends.values()):
            return None
        return sum(
            int(end) - (int(committed[tp].offset) if tp in committed else 0)
            for tp, end in ends.items()
        )
    finally:
        admin.close()
        consumer.close()


def _wait_caught_up(
    bootstrap: str, group: str, topic: str, timeout: float, security: KafkaSecurity
) -> int | None:
    deadline = time.monotonic() + timeout
    lag: int | None = None
    while time.monotonic() < deadline:
        lag = _consumer_lag(bootstrap, group, topic, security)
        if lag == 0:
            return 0
        typer.echo(f"    processors still have {lag if lag is not None else '?'} readings to go")
        time.sleep(3)
    return lag


def run(
    patients: Annotated[int, typer.Option(min=1, help="patients in the simulated cohort")] = 20,
    days: Annotated[float, typer.Option(min=0.1, help="days of data per patient")] = 3.0,
    speed: Annotated[float, typer.Option(min=0.0, help="simulated s per real s; 0 = flat out")] = 0,
    seed: Annotated[int, typer.Option(help="random seed of the cohort")] = 1,
    root: RootOption = None,
    free_ports: Annotated[
        bool,
        typer.Option(
            "--free-ports",
            help="Free ports for Kafka, InfluxDB and every service instead of the usual ones"
            " (a second stack beside the usual one).",
        ),
    ] = False,
) -> None:
    """Bring the local platform up and run a simulated cohort through it; print a summary.

    The care-team API runs too, as a local admin: `pghd alerts list` needs no --url, --token.
    """
    from deploy.local import stack
    from pghd import topics
    from pghd.commands.summary import summary

    paths = stack.StackPaths.for_root(root)
    any_port = 0 if free_ports else None
    state = stack.up(
        root=paths.root,
        kafka_port=any_port,
        controller_port=any_port,
        influx_port=any_port,
        progress=typer.echo,
    )
    env = dict(state.env)
    key = _api_key(paths.run)
    admin_token = _api_key(paths.run, "admin-token")
    care_token = _api_key(paths.run, LOCAL_CARE_TOKEN)
    try:
        users_file = care_users_file(paths.run, care_token)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    python = sys.executable
    taken: list[int] = []

    def port_of(name: str, default: int) -> int:
        """The port of a service already running, else one to start it on."""
        rec = state.processes.get(name)
        if rec is not None and rec.alive() and "http" in rec.ports:
            taken.append(rec.ports["http"])
            return rec.ports["http"]
        return _port(name, default, free=free_ports, taken=taken)

    inbox_file = paths.logs / "notifications.jsonl"
    inbox_port = port_of("inbox", INBOX_PORT)
    inbox = stack.start_service(
        "inbox",
        [python, "-m", "deploy.local.inbox", str(inbox_port), str(inbox_file)],
        root=paths.root,
        ports={"http": inbox_port},
        health=f"http://127.0.0.1:{inbox_port}/",
        ready_timeout=20,
    )
    ports = {
        "ingest": port_of("ingest", INGEST_PORT),
        "processors": port_of("processors", PROCESSORS_WEB_PORT),
        "alerts": port_of("alerts", ALERTS_WEB_PORT),
        LOCAL_CARE_API: port_of(LOCAL_CARE_API, CARE_API_PORT),
    }
    service_env = {
        "PGHD_INGEST_API_KEYS": json.dumps({"demo": hashlib.sha256(key.encode()).hexdigest()}),
        "PGHD_INGEST_ADMIN_TOKENS": json.dumps(
            {"local-admin": hashlib.sha256(admin_token.encode()).hexdigest()}
        ),
        "PGHD_INGEST_PORT": str(ports["ingest"]),
        "PGHD_PROCESSORS_WEB_PORT": str(ports["processors"]),
        "PGHD_PROCESSORS_DATA_DIR": str(paths.data / "processors"),
        "PGHD_ALERTS_WEB_PORT": str(ports["alerts"]),
        "PGHD_ALERTS_DATA_DIR": str(paths.data / "alerts"),
        "PGHD_ALERTS_NOTIFY_URLS": json.dumps([f"json://127.0.0.1:{inbox.ports['http']}/pghd"]),
        # the local inbox is this machine's, on loopback: cleared to show who and what
        "PGHD_ALERTS_NOTIFY_CLEARED": "true",
        # a patient app on this machine (pghd simulate --patient-app) is plain http on loopback
        "PGHD_FEEDBACK_ALLOW_LOOPBACK_HTTP": "true",
    }
    # The care-team API's users file is its own: ingest would take its admin as a patients
    # API admin too (PGHD_INGEST_USERS_FILE defaults to PGHD_CARE_API_USERS_FILE).
    care_env = {
        "PGHD_FEEDBACK_ALLOW_LOOPBACK_HTTP": "true",
        "PGHD_CARE_API_PORT": str(ports[LOCAL_CARE_API]),
        "PGHD_CARE_API_USERS_FILE": str(users_file),
    }
    typer.echo("==> starting ingest, processors, alerts and the care-team API")
    for name, module, health in (
        ("ingest", "ingest.main", "/readyz"),
        ("processors", "processors.main", "/"),
        ("alerts", "alerts.main", "/"),
        (LOCAL_CARE_API, "alerts.api.main", "/readyz"),
    ):
        stack.start_service(
            name,
            [python, "-m", module],
            root=paths.root,
            env=care_env if name == LOCAL_CARE_API else service_env,
            ports={"http": ports[name]},
            health=f"http://127.0.0.1:{ports[name]}{health}",
            ready_timeout=90,
        )
    labels = paths.run / "episodes.json"
    typer.echo(f"==> enrolling and posting a simulated cohort: {patients} patients x {days:g} d")
    subprocess.run(
        [
            python, "-m", "pghd.cli", "simulate", "--patients", str(patients),
            "--days", str(days), "--speed", str(speed), "--seed", str(seed),
            "--url", f"http://127.0.0.1:{ports['ingest']}", "--labels-out", str(labels),
        ],
        env={**os.environ, "PGHD_API_KEY": key, "PGHD_ADMIN_TOKEN": admin_token},
        check=True,
    )  # fmt: skip
    cohort = json.loads(labels.read_text()) if labels.exists() else {}
    patient = demo_patient(cohort)
    if patient is not None:
        typer.echo(f"==> issuing {patient}'s own patient token (their app's view)")
        if not _issue_patient_token(
            f"http://127.0.0.1:{ports['ingest']}", admin_token, patient, paths.run
        ):
            patient = None
    typer.echo("==> waiting for the processors to catch up")
    lag = _wait_caught_up(
        env["PGHD_KAFKA_BOOTSTRAP"],
        "pghd-processors",
        topics.MEASUREMENTS,
        600,
        KafkaSecurity.from_env(env),  # the local stack's: plaintext on loopback
    )
    if lag != 0:
        typer.echo(f"    still {lag} readings behind after 10 minutes; the summary is partial")
    time.sleep(3)  # the alerts service notifies the last anomalies
    typer.echo("")
    typer.echo(
        "(counts cover everything stored in this stack, earlier runs included; readings a run"
        " repeats are dropped as duplicates; `make clean` starts afresh)"
    )
    summary(
        influx_url=env["PGHD_INFLUX_URL"],
        influx_token=env["PGHD_INFLUX_TOKEN"],
        influx_org=env["PGHD_INFLUX_ORG"],
        influx_bucket=env["PGHD_INFLUX_BUCKET"],
        since="-400d",
    )
    notified = len(inbox_file.read_text().splitlines()) if inbox_file.exists() else 0
    typer.echo(f"notifications delivered to the local inbox: {notified} ({inbox_file})")
    _episodes_seen(env, list(cohort.get("episodes", [])), labels)
    _where_to_look(env, ports, paths, patient)


def _episodes_seen(env: dict[str, str], episodes: list[dict[str, str]], labels: Path) -> None:
    """For each injected episode: did its patient get an anomaly during it (or 12 h after)?"""
    from influxdb_client.client.influxdb_client import InfluxDBClient

    typer.echo(f"episodes injected by the simulator: {len(episodes)} ({_shown(labels)})")
    bucket = env["PGHD_INFLUX_BUCKET"]
    with InfluxDBClient(
        url=env["PGHD_INFLUX_URL"], token=env["PGHD_INFLUX_TOKEN"], org=env["PGHD_INFLUX_ORG"]
    ) as client:
        for episode in episodes:
            flux = (
                f'from(bucket: "{bucket}")'
                f" |> range(start: {episode['start']}, stop: {episode['end']})"
                f' |> filter(fn: (r) => r._measurement == "anomalies" and r._field == "score"'
                f' and r.patient_id == "{episode["patient_id"]}") |> group() |> count()'
            )
            tables = client.query_api().query(flux, org=env["PGHD_INFLUX_ORG"])
            hits = sum(int(r.values.get("_value", 0)) for t in tables for r in t.records)
            seen = f"{hits} anomalies during it" if hits else "NOT flagged"
            typer.echo(f"  {episode['kind']:<14} {episode['patient_id']:<10} {seen}")


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (``.local/run/...``)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _where_to_look(
    env: dict[str, str], ports: dict[str, int], paths: StackPaths, patient: str | None
) -> None:
    run_dir = paths.run
    bucket = env["PGHD_INFLUX_BUCKET"]
    ingest = f"http://127.0.0.1:{ports['ingest']}"
    care_api = f"http://127.0.0.1:{ports[LOCAL_CARE_API]}"
    typer.echo("")
    typer.echo("Where to look:")
    typer.echo(f"  ingest API        {ingest}/docs  (metrics: /metrics)")
    typer.echo(f"  processors        http://127.0.0.1:{ports['processors']}/  (Faust web)")
    typer.echo(f"  alerts            http://127.0.0.1:{ports['alerts']}/")
    typer.echo(
        f"  care-team API     {care_api}/docs  (metrics: /metrics) as {CARE_USER}, an admin;"
        f" token in {_shown(run_dir / LOCAL_CARE_TOKEN)}"
    )
    typer.echo(
        "    alerts          pghd alerts list, pghd alerts ack ID, pghd care-plan show PATIENT"
        " (the local stack's URL and token by default)"
    )
    typer.echo(
        f"  Kafka             {env['PGHD_KAFKA_BOOTSTRAP']}  (plaintext, loopback only)"
        "  topics: pghd topics list"
    )
    typer.echo(f"  InfluxDB          {env['PGHD_INFLUX_URL']}  bucket {bucket}, e.g.:")
    typer.echo(
        f'    curl -s {env["PGHD_INFLUX_URL"]}/api/v2/query -H "Content-Type: application/vnd.flux"'
        f' --data \'from(bucket:"{bucket}") |> range(start:-30d)'
        ' |> filter(fn:(r) => r._measurement == "anomalies" and r._field == "score")'
        ' |> group(columns:["detector"]) |> count()\''
    )
    token_file = run_dir / PATIENT_TOKEN
    if patient is not None and token_file.exists():
        care_file = _shown(run_dir / LOCAL_CARE_TOKEN)
        typer.echo(
            f"  patient's view    {patient}'s own token: {token_file.read_text().strip()}"
            f"  (in {_shown(token_file)}; it reads only {patient}'s data)"
        )
        typer.echo(
            f'    summary         curl -s -H "Authorization: Bearer $(cat {_shown(token_file)})"'
            f" {care_api}/v1/me/summary"
        )
        typer.echo(
            f'    chart data      curl -s -H "Authorization: Bearer $(cat {_shown(token_file)})"'
            f' "{care_api}/v1/me/readings?metric=heart_rate"'
        )
        typer.echo(
            "    their app       pghd simulate --patient-app PORT --patient-token TOKEN: feedback"
            " to an app on this machine (docs/patients.md, Feedback)"
        )
        typer.echo(
            f'  FHIR (an EHR)     curl -s -H "Authorization: Bearer $(cat {care_file})"'
            f' "{care_api}/fhir/Observation?patient={patient}&code=8867-4&_count=20"'
        )
    url = "" if ports["ingest"] == INGEST_PORT else f" --url {ingest}"
    typer.echo(
        f"  patients          PGHD_ADMIN_TOKEN=$(cat {_shown(run_dir / 'admin-token')})"
        f" pghd patients list{url}"
    )
    typer.echo(
        f"  logs              {_shown(paths.logs)}/  (ingest.log, processors.log, alerts.log,"
        " care-api.log, ...)"
    )
    this_repository = paths.root == Path(__file__).resolve().parents[2]
    stop = "make stop" if this_repository else f"pghd dev down --root {paths.root}"
    typer.echo(f"  stop everything   {stop}")
