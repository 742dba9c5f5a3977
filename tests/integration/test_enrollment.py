"""Enrollment and consent on real Kafka and InfluxDB, through real ingest processes.

A reading is stored only for an enrolled patient who consented to its metric; anything
else is refused item by item (422 problem+json when no item of the request is acceptable,
or a rejected item inside a 202 batch) and never reaches Kafka or InfluxDB. Enrollments
live on the compacted ``pghd.enrollments.v1`` topic, so every ingest instance, and any new
one, sees them; a revocation takes effect everywhere within seconds.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from deploy.local.harness import (
    ADMIN_TOKEN,
    API_KEY,
    SOURCE,
    Pipeline,
    new_patient,
    reading,
    running_pipeline,
    wait_for,
)
from deploy.local.influxdb import InfluxServer
from pghd.cli import app as cli
from pghd.simulation import generate_cohort
from tests.clock import ANCHOR, day_anchor

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def first(
    stack_env: dict[str, str], influx: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    """Ingest and processors: what is accepted lands in InfluxDB."""
    workdir: Path = tmp_path_factory.mktemp("enrollment-a")
    with running_pipeline(
        stack_env=stack_env, influx=influx, workdir=workdir, services=("ingest", "processors")
    ) as pipeline:
        yield pipeline


@pytest.fixture(scope="module")
def second(
    stack_env: dict[str, str], influx: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    """Another ingest instance on the same Kafka."""
    workdir: Path = tmp_path_factory.mktemp("enrollment-b")
    with running_pipeline(
        stack_env=stack_env, influx=influx, workdir=workdir, services=("ingest",)
    ) as pipeline:
        yield pipeline


def _enroll(via: Pipeline, patient: str, *metrics: str, source: str = SOURCE) -> None:
    link = {"source": source, "account": f"app-{patient}"}
    body = {"patient_id": patient, "consents": list(metrics), "links": [link]}
    response = via.admin("POST", "/v1/patients", body)
    assert response.status_code == 201, response.text


_SECONDS = itertools.count()


def _when() -> datetime:
    """A time after the anchor that no earlier call gave (readings never share a point)."""
    return ANCHOR + timedelta(seconds=next(_SECONDS))


def _hr(patient: str, value: float, **extra: object) -> dict[str, object]:
    return reading(patient, value, _when(), **extra)


def _stored_up_to(
    via: Pipeline, patient: str, marker: dict[str, object]
) -> list[dict[str, object]]:
    """The patient's vitals once ``marker`` (posted last, accepted) is stored: everything of
    the patient accepted before it is stored by then (same partition, in order)."""
    when = datetime.fromisoformat(str(marker["effective_time"]))

    def stored() -> list[dict[str, object]] | None:
        rows = via.vitals(patient)
        return rows if any(r["_time"] == when for r in rows) else None

    return wait_for(stored, timeout=60, what=f"the marker of {patient} in InfluxDB")


def _refused(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    return str(response.json()["errors"][0]["detail"])


def test_only_enrolled_and_consented_readings_are_stored(first: Pipeline) -> None:
    patient, stranger = new_patient("consent"), new_patient("stranger")
    _enroll(first, patient, "heart_rate")
    start = ANCHOR - timedelta(hours=1)

    accepted = first.post(reading(patient, 71, start), enroll=False)
    assert accepted.status_code == 202, accepted.text
    spo2 = reading(patient, 97, start + timedelta(minutes=1), metric="spo2", unit="%")
    assert (
        _refused(first.post(spo2, enroll=False)) == f"patient {patient} has not consented to spo2"
    )
    unknown = first.post(reading(stranger, 70, start), enroll=False)
    assert _refused(unknown) == f"patient {stranger} is not enrolled with source {SOURCE}"

    batch = [reading(patient, 72, start + timedelta(minutes=2)), {**spo2, "value": 96}]
    mixed = first.post(batch, enroll=False)
    assert mixed.status_code == 202, mixed.text
    items = mixed.json()["items"]
    assert [i["status"] for i in items] == ["accepted", "rejected"]
    assert items[1]["errors"][0]["detail"] == f"patient {patient} has not consented to spo2"

    # A later accepted reading of the same patient (same partition) is the sync point.
    marker = reading(patient, 73, start + timedelta(minutes=3))
    assert first.post(marker, enroll=False).status_code == 202
    rows = _stored_up_to(first, patient, marker)
    assert sorted((r["metric"], r["value"]) for r in rows) == [
        ("heart_rate", v) for v in (71, 72, 73)
    ]
    # The stranger's too: enrolled now, a marker of theirs is stored after the refused one.
    _enroll(first, stranger, "heart_rate")
    stranger_marker = reading(stranger, 74, start + timedelta(minutes=4))
    assert first.post(stranger_marker, enroll=False).status_code == 202
    assert [r["value"] for r in _stored_up_to(first, stranger, stranger_marker)] == [74]


def test_a_source_key_cannot_write_for_a_patient_linked_only_to_another_source(
    first: Pipeline,
) -> None:
    """The harness's key belongs to source ``acme``; the patient's only device is another
    vendor's. Refused item by item, never stored, until ``acme`` is linked too."""
    patient, neighbour = new_patient("other-vendor"), new_patient("acme-linked")
    _enroll(first, patient, "heart_rate", source="withings")
    _enroll(first, neighbour, "heart_rate")
    start = ANCHOR - timedelta(hours=1)
    refused = first.post(reading(patient, 71, start), enroll=False)
    assert _refused(refused) == f"patient {patient} is not enrolled with source {SOURCE}"
    batch = [reading(patient, 72, start), reading(neighbour, 72, start)]
    items = first.post(batch, enroll=False).json()["items"]
    assert [i["status"] for i in items] == ["rejected", "accepted"]

    link = {"source": SOURCE, "account": "watch-3"}
    assert first.admin("POST", f"/v1/patients/{patient}/links", link).status_code == 200
    marker = reading(patient, 73, start + timedelta(minutes=1))
    assert first.post(marker, enroll=False).status_code == 202
    assert [r["value"] for r in _stored_up_to(first, patient, marker)] == [73]


def test_revocation_takes_effect_within_seconds_on_every_instance(
    first: Pipeline, second: Pipeline
) -> None:
    patient = new_patient("revoke")
    _enroll(first, patient, "heart_rate")
    accepted: set[str] = set()  # event ids of the readings an instance accepted
    posts = itertools.count()

    def post(via: Pipeline, value: float) -> int:
        item = _hr(patient, value, event_id=f"{patient}-{next(posts)}")
        status = via.post(item, enroll=False).status_code
        if status == 202:
            accepted.add(str(item["event_id"]))
        return status

    began = time.monotonic()
    wait_for(
        lambda: True if post(second, 70) == 202 else None,
        timeout=10,
        what="the other instance to accept the enrolled patient",
        every=0.05,
    )
    enrolled_everywhere = time.monotonic() - began

    revoked = first.admin("DELETE", f"/v1/patients/{patient}/consents/heart_rate")
    assert revoked.status_code == 200, revoked.text
    returned = time.monotonic()
    # Read-your-writes: the instance that revoked refuses at once.
    detail = _refused(first.post(_hr(patient, 71), enroll=False))
    assert detail.startswith(f"patient {patient} revoked consent to heart_rate at ")
    attempts: list[int] = []

    def refused_by_second() -> bool | None:
        status = post(second, 72)
        attempts.append(status)
        return True if status == 422 else None

    wait_for(refused_by_second, timeout=10, what="the other instance to refuse", every=0.02)
    elapsed = time.monotonic() - returned
    print(
        f"\nenrollment visible on the other instance after {enrolled_everywhere * 1000:.0f} ms;"
        f" revocation refused there {elapsed * 1000:.0f} ms after DELETE returned"
        f" ({len(attempts)} posts, {attempts.count(202)} accepted meanwhile)"
    )
    assert elapsed < 5.0
    # Readings the other instance accepted before it saw the revocation were posted while
    # consent still held there: they are stored; every refused one is not.

    # Consent again, post a marker; once it is stored, so is everything accepted before it.
    assert first.admin("PUT", f"/v1/patients/{patient}/consents/heart_rate").status_code == 200
    marker = _hr(patient, 80, event_id=f"{patient}-marker")
    assert first.post(marker, enroll=False).status_code == 202
    rows = _stored_up_to(first, patient, marker)
    assert {str(x["event_id"]) for x in rows} == accepted | {f"{patient}-marker"}, (
        "exactly the accepted readings are stored, refused ones never"
    )


def test_enroll_via_one_instance_post_via_the_other(first: Pipeline, second: Pipeline) -> None:
    patient = new_patient("shared")
    _enroll(second, patient, "heart_rate")
    got = first.admin("GET", f"/v1/patients/{patient}")
    shown = wait_for(
        lambda: (
            r if (r := first.admin("GET", f"/v1/patients/{patient}")).status_code == 200 else None
        ),
        timeout=10,
        what="the enrollment on the first instance",
        every=0.05,
    )
    assert shown.json()["change"]["by"] == "harness", got.text
    posted = wait_for(
        lambda: r if (r := first.post(_hr(patient, 66), enroll=False)).status_code == 202 else None,
        timeout=10,
        what="the first instance to accept",
        every=0.05,
    )
    assert posted.json()["accepted"] == 1
    first.wait_vitals(patient, 1)
    withdrawn = first.admin("POST", f"/v1/patients/{patient}/withdraw")
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
    detail = wait_for(
        lambda: (
            r if (r := second.post(_hr(patient, 67), enroll=False)).status_code == 422 else None
        ),
        timeout=10,
        what="the second instance to refuse the withdrawn patient",
        every=0.05,
    )
    # a withdrawn patient's links are gone: to the source, as if never enrolled
    assert _refused(detail) == f"patient {patient} is not enrolled with source {SOURCE}"


def test_a_new_ingest_instance_reads_enrollments_from_the_topic(
    first: Pipeline,
    stack_env: dict[str, str],
    influx: InfluxServer,
    tmp_path: Path,
) -> None:
    kept, revoked = new_patient("kept"), new_patient("gone")
    _enroll(first, kept, "heart_rate")
    _enroll(first, revoked, "heart_rate")
    assert first.admin("DELETE", f"/v1/patients/{revoked}/consents/heart_rate").status_code == 200
    with running_pipeline(
        stack_env=stack_env, influx=influx, workdir=tmp_path, services=("ingest",)
    ) as fresh:
        # /readyz is 200 only once the registry has caught up: no retry needed here.
        assert fresh.post(_hr(kept, 64), enroll=False).status_code == 202
        assert "revoked consent to heart_rate" in _refused(
            fresh.post(_hr(revoked, 65), enroll=False)
        )
        shown = fresh.admin("GET", f"/v1/patients/{kept}")
        assert shown.status_code == 200 and "heart_rate" in shown.json()["consents"]
        listed = fresh.admin("GET", "/v1/patients?limit=1000").json()
        assert {kept, revoked} <= {e["patient_id"] for e in listed["items"]}


def test_admin_api_refuses_device_keys_and_conflicting_links(first: Pipeline) -> None:
    device = httpx.post(
        f"{first.ingest_url}/v1/patients",
        json={"patient_id": new_patient()},
        headers={"Authorization": "Bearer integration-test-key"},
    )
    assert device.status_code == 401 and device.headers["content-type"] == PROBLEM
    one, two = new_patient("one"), new_patient("two")
    _enroll(first, one)
    _enroll(first, two)
    account = f"watch-{one}"
    assert (
        first.admin(
            "POST", f"/v1/patients/{one}/links", {"source": "acme", "account": account}
        ).status_code
        == 200
    )
    taken = first.admin("POST", f"/v1/patients/{two}/links", {"source": "acme", "account": account})
    assert taken.status_code == 409 and taken.headers["content-type"] == PROBLEM
    assert "already linked to another patient" in taken.json()["detail"]


def test_cli_round_trip(first: Pipeline) -> None:
    runner = CliRunner()
    patient = new_patient("cli")
    env = {"PGHD_INGEST_URL": first.ingest_url, "PGHD_ADMIN_TOKEN": ADMIN_TOKEN}

    def pghd(*args: str) -> str:
        result = runner.invoke(cli, ["patients", *args], env=env)
        assert result.exit_code == 0, result.output
        return result.output

    out = pghd("enroll", patient, "--consent", "heart_rate", "--link", f"acme:band-{patient}")
    assert patient in out and "heart_rate" in out and f"band-{patient}" in out
    assert patient in pghd("list")
    assert first.post(_hr(patient, 70), enroll=False).status_code == 202
    pghd("revoke", patient, "heart_rate")
    assert "revoked consent" in _refused(first.post(_hr(patient, 71), enroll=False))
    assert "revoked" in pghd("show", patient)
    pghd("consent", patient, "heart_rate", "spo2")
    assert first.post(_hr(patient, 72), enroll=False).status_code == 202
    pghd("unlink", patient, "acme", f"band-{patient}")
    assert "no links" in pghd("show", patient)
    pghd("withdraw", patient)
    assert "is not enrolled" in _refused(first.post(_hr(patient, 73), enroll=False))

    again = runner.invoke(cli, ["patients", "withdraw", "nobody-x"], env=env)
    assert again.exit_code == 1 and "HTTP 404: patient nobody-x is not enrolled" in again.output
    conflict = runner.invoke(cli, ["patients", "enroll", patient, "--consent", "nonsense"], env=env)
    assert conflict.exit_code == 1 and "HTTP 422" in conflict.output
    no_token = runner.invoke(
        cli, ["patients", "list"], env={"PGHD_INGEST_URL": first.ingest_url, "PGHD_ADMIN_TOKEN": ""}
    )
    assert no_token.exit_code == 1 and "no admin token" in no_token.output
    wrong = runner.invoke(cli, ["patients", "list", "--token", "wrong"], env=env)
    assert wrong.exit_code == 1 and "HTTP 401" in wrong.output


def test_simulate_enrolls_its_cohort_before_feeding(first: Pipeline) -> None:
    # A fixed period: a Monday 10:48-12:00 UTC in the last week (the cohort's readings
    # depend on the weekday and the time of day, never on when the test runs).
    end = day_anchor(12, weekday=0)
    cohort = generate_cohort(patients=2, days=0.05, end=end, seed=7)
    per_patient = Counter(str(r["patient_id"]) for r in cohort.readings())
    assert sorted(per_patient) == ["sim-0001", "sim-0002"], per_patient  # the premise
    args = [
        "simulate",
        "--patients",
        "2",
        "--days",
        "0.05",
        "--end",
        end.isoformat(),
        "--url",
        first.ingest_url,
    ]
    env = {"PGHD_API_KEY": API_KEY, "PGHD_ADMIN_TOKEN": "", "PGHD_SOURCE": SOURCE}
    refused = CliRunner().invoke(cli, [*args, "--seed", "8"], env=env)
    assert refused.exit_code == 0, refused.output
    assert "accepted  0" in refused.output, "without enrollment nothing is stored"

    fed = CliRunner().invoke(
        cli, [*args, "--seed", "7"], env={**env, "PGHD_ADMIN_TOKEN": ADMIN_TOKEN}
    )
    assert fed.exit_code == 0, fed.output
    assert "enrolled  2 new patients" in fed.output
    total = sum(per_patient.values())
    assert f"posted    {total} readings" in fed.output, fed.output
    assert f"accepted  {total}" in fed.output and "rejected  0" in fed.output, fed.output
