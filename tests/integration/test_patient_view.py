"""A patient's own view on real servers: ``/v1/me`` with a patient token.

The reader's Flux runs on InfluxDB 1.8 and 2.7 over points written as the store writes
them. End to end: two patients are enrolled through ingest and one is given a token; both
patients' devices post (a watch's heart rate with a spike, a cuff's blood pressure and a
pulse oximeter's SpO2 in a FHIR Bundle) through ingest, Kafka and the processors into
InfluxDB, and the alerts worker opens and delivers each spike's alert. The care-team API
(its own process) then shows the patient their readings against their own usual range and
their finding in plain words; with their token, everything about the other patient is 403
and nothing of theirs appears; a revoked token gets 401.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS

from deploy.local.harness import (
    API_KEY,
    Pipeline,
    heart_rate_series,
    new_patient,
    running_care_api,
    running_pipeline,
    wait_for,
)
from deploy.local.influxdb import InfluxServer
from deploy.local.influxdb2 import Influx2Server
from deploy.local.process import log_tail
from pghd.catalogue import Metric
from pghd.patient_view.chart import Resolution, plan
from pghd.patient_view.influx import InfluxPatientView
from tests.clock import ANCHOR
from tests.integration.sync import alert_states, settled_vitals
from tests.unit.ingest.fhir_documents import blood_pressure, bundle, sat_o2

WARMUP = 10
METRICS = ["heart_rate", "blood_pressure", "spo2", "resting_heart_rate"]
MINE = [70, 72, 69, 71, 73, 70, 68, 71, 72, 70, 69, 71, 165, 166, 71]
THEIRS = [88, 90, 89, 91, 93, 90, 88, 91, 92, 90, 89, 91, 185, 186, 91]


# --- the reader on both InfluxDB versions --------------------------------------------------


def _ns(when: datetime) -> int:
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000


@pytest.mark.parametrize("server_name", ["influx", "influx2"])
def test_the_reader_reads_one_patient_on_both_influxdb_versions(
    server_name: str, request: pytest.FixtureRequest
) -> None:
    server: InfluxServer | Influx2Server = request.getfixturevalue(server_name)
    bucket = server.create_database(f"me_{uuid.uuid4().hex[:8]}")
    now = ANCHOR + timedelta(hours=10)
    me, other = 'p-"me"', "p-other"  # a quote in an id: escaped in Flux, not injected
    tag = me  # line protocol takes quotes in tag values as they are
    lines = []
    for hours in range(48):
        at = now - timedelta(hours=hours, minutes=30)
        for pid, value in ((tag, 60 + hours % 5), (other, 99)):
            lines.append(
                f"vitals,channel=heart_rate,device=w1,metric=heart_rate,patient_id={pid},"
                f'source=acme,unit=/min value={value},event_id="e{hours}" {_ns(at)}'
            )
        lines.append(
            f"baselines,channel=heart_rate,context=awake,patient_id={tag}"
            f" high=74,low=50,mean=62,n={20 + hours}i,spread=3 {_ns(at)}"
        )
    for channel, value in (("systolic", 128), ("diastolic", 84)):
        lines.append(
            f"vitals,channel=blood_pressure.{channel},device=cuff,metric=blood_pressure,"
            f'patient_id={tag},source=acme,unit=mm[Hg] value={value},event_id="bp" '
            f"{_ns(now - timedelta(hours=3))}"
        )
    lines.append(
        f"resting_heart_rate,kind=nightly,patient_id={tag},unit=/min value=57.5,samples=30i"
        f" {_ns(now - timedelta(hours=4))}"
    )
    lines.append(
        f"anomalies,channel=heart_rate,detector=deviation,metric=heart_rate,patient_id={tag},"
        f'phase=onset,severity=warning score=5,value=95,explanation="far",anomaly_id="an-1"'
        f" {_ns(now - timedelta(hours=2))}"
    )
    with InfluxDBClient(url=server.url, token=server.token, org=server.org) as client:
        client.write_api(write_options=SYNCHRONOUS).write(bucket=bucket, record=lines)

    async def read() -> tuple[Any, ...]:
        reader = InfluxPatientView(
            url=server.url, token=server.token, org=server.org, bucket=bucket, timeout_s=20
        )
        try:
            inputs = await reader.summary_inputs(me, now=now, findings=True)
            hourly = plan(Metric.HEART_RATE, now=now, start=now - timedelta(days=1))
            raw = plan(
                Metric.HEART_RATE,
                now=now,
                start=now - timedelta(hours=5),
                resolution=Resolution.RAW,
            )
            daily = plan(
                Metric.HEART_RATE,
                now=now,
                start=now - timedelta(days=3),
                resolution=Resolution.D1,
            )
            charts = [await reader.chart_inputs(me, p) for p in (hourly, raw, daily)]
            return (
                inputs,
                charts,
                await reader.summary_inputs("p-nobody", now=now, findings=False),
            )
        finally:
            await reader.close()

    inputs, (hourly, raw, daily), nobody = asyncio.run(read())
    latest = {p.channel: p for p in inputs.latest}
    assert set(latest) == {"heart_rate", "blood_pressure.systolic", "blood_pressure.diastolic"}
    assert (latest["heart_rate"].value, latest["heart_rate"].at) == (
        60,
        now - timedelta(minutes=30),
    )
    assert latest["blood_pressure.systolic"].unit == "mm[Hg]"
    (baseline,) = inputs.baselines
    assert (baseline.low, baseline.high, baseline.n) == (50, 74, 20)
    assert sum(d.count for d in inputs.daily if d.channel == "heart_rate") == 48
    assert [(n.value, n.at) for n in inputs.nights] == [(57.5, now - timedelta(hours=4))]
    assert [(f.anomaly_id, f.value, f.phase) for f in inputs.findings] == [("an-1", 95, "onset")]
    # a chart: one patient's points only, windowed or raw, with the baseline at its end
    series, baselines = hourly
    assert len(series["heart_rate"]) == 24 and all(v != 99 for _, v in series["heart_rate"])
    assert [b.channel for b in baselines] == ["heart_rate"]
    assert [v for _, v in sorted(raw[0]["heart_rate"])] == [64, 63, 62, 61, 60]
    days = sorted(daily[0]["heart_rate"])
    assert len(days) <= 4 and all(at.hour == 0 for at, _ in days[1:])
    assert nobody.latest == [] and nobody.baselines == [] and nobody.daily == []


# --- end to end ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline(
    stack_env: dict[str, str], influx: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    workdir = tmp_path_factory.mktemp("patient-view")
    with running_pipeline(
        stack_env=stack_env, influx=influx, workdir=workdir, warmup=WARMUP
    ) as running:
        yield running


def _devices_post(
    pipeline: Pipeline, patient: str, watch: list[int], cuff: tuple[int, int]
) -> None:
    """A watch's heart rate at rest (the spike is the processors' finding), then a cuff's
    blood pressure and an oximeter's SpO2 in a FHIR Bundle, as the vendors send them."""
    series = heart_rate_series(patient, watch, start=ANCHOR + timedelta(minutes=10))
    response = pipeline.post(series, enroll=False)
    assert response.status_code == 202, response.text
    at = (ANCHOR - timedelta(hours=1)).isoformat()
    document = bundle(
        "batch",
        blood_pressure(*cuff, patient=patient, when=at),
        sat_o2(97, patient=patient, when=at),
    )
    posted = httpx.post(
        f"{pipeline.ingest_url}/v1/fhir",
        content=orjson.dumps(document),
        headers={"X-API-Key": API_KEY, "Content-Type": "application/fhir+json"},
        timeout=30,
    )
    assert posted.status_code == 200, posted.text


def _alert_of(pipeline: Pipeline, patient: str) -> str:
    """The id of the patient's alert, once the alerts worker delivered its notification."""

    def delivered() -> str | None:
        for alert in reversed(alert_states(pipeline.kafka_bootstrap)):
            if alert.patient_id == patient and any(
                n.outcome == "delivered" for n in alert.notifications
            ):
                return alert.alert_id
        return None

    return wait_for(
        delivered, timeout=90, what=f"{patient}'s delivered alert", diagnostics=pipeline.diagnostics
    )


def test_a_patient_sees_their_own_readings_against_their_usual_and_nothing_else(
    pipeline: Pipeline, influx: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    me, other = new_patient("me"), new_patient("other")
    for patient in (me, other):
        pipeline.enroll(patient, METRICS)
    issued = pipeline.admin("POST", f"/v1/patients/{me}/token")
    assert issued.status_code == 201, issued.text
    assert issued.headers["Cache-Control"] == "no-store"
    token = issued.json()["token"]
    _devices_post(pipeline, me, MINE, (128, 84))
    _devices_post(pipeline, other, THEIRS, (151, 97))
    for patient in (me, other):
        settled_vitals(pipeline, patient)
    mine_alert, their_alert = _alert_of(pipeline, me), _alert_of(pipeline, other)

    log = tmp_path_factory.mktemp("patient-view-care-api") / "care-api.log"
    with running_care_api(
        kafka_bootstrap=pipeline.kafka_bootstrap, log=log, env=influx.env()
    ) as url:

        def get(path: str, who: str = token, **params: Any) -> httpx.Response:
            headers = {"Authorization": f"Bearer {who}"}
            return httpx.get(url + path, params=params, headers=headers, timeout=30)

        def summary_with_finding() -> dict[str, Any] | None:
            response = get("/v1/me/summary")
            assert response.status_code == 200, response.text + log_tail(log)
            found = response.json()
            return found if any(f["care_team_told"] for f in found["findings"]) else None

        summary = wait_for(summary_with_finding, timeout=60, what="the summary's finding")
        assert summary["patient_id"] == me
        latest = {r["channel"]: r for r in summary["latest"]}
        hr = latest["heart_rate"]
        assert hr["value"] == 71 and hr["compared"] == "within" and hr["change"] == "within"
        assert hr["usual"]["low"] < 71 < hr["usual"]["high"]
        assert hr["usual"]["centre"] == pytest.approx(70.5, abs=2)
        assert hr["usual"]["readings"] >= WARMUP
        assert (
            latest["blood_pressure.systolic"]["value"],
            latest["blood_pressure.diastolic"]["value"],
        ) == (128, 84)
        assert latest["spo2"]["value"] == 97
        trend = {t["channel"]: t for t in summary["trends"]}["heart_rate"]
        assert trend["last_7_days"] == pytest.approx(sum(MINE) / len(MINE))
        (finding,) = summary["findings"]
        assert finding["alert_id"] == mine_alert and finding["metric"] == "heart_rate"
        assert finding["message"].startswith("Your heart rate has been ")
        assert "beats per minute above your usual" in finding["message"]
        assert "your care team has been told" in finding["message"]

        chart = get(
            "/v1/me/readings",
            metric="heart_rate",
            start=(ANCHOR).isoformat(),
            end=(ANCHOR + timedelta(hours=3)).isoformat(),
            resolution="raw",
        )
        assert chart.status_code == 200, chart.text
        (channel,) = chart.json()["channels"]
        assert [p["value"] for p in channel["points"]] == MINE
        assert channel["usual"]["high"] == hr["usual"]["high"]
        hourly = get(
            "/v1/me/readings",
            metric="heart_rate",
            start=ANCHOR.isoformat(),
            end=(ANCHOR + timedelta(hours=3)).isoformat(),
            resolution="1h",
        )
        assert [round(p["value"], 3) for p in hourly.json()["channels"][0]["points"]] == [
            round(sum(MINE[:10]) / 10, 3),
            round(sum(MINE[10:]) / 5, 3),
        ]

        # with this token, nothing of the other patient
        mine_only = [
            f"/v1/alerts?patient_id={other}",
            f"/v1/alerts/{their_alert}",
            f"/v1/alerts/{mine_alert}",  # a care-team route, even about their own alert
            f"/v1/patients/{other}/care-plan",
            "/v1/silences",
            "/v1/audit",
        ]
        for path in mine_only:
            response = get(path)
            assert response.status_code == 403, (path, response.text)
            assert other not in response.text
        acknowledged = httpx.post(
            f"{url}/v1/alerts/{their_alert}/acknowledge",
            json={},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert acknowledged.status_code == 403
        every_answer = get("/v1/me/summary").text + chart.text + hourly.text
        assert other not in every_answer and their_alert not in every_answer

        revoked = pipeline.admin("DELETE", f"/v1/patients/{me}/token")
        assert revoked.status_code == 200, revoked.text
        deadline = time.monotonic() + 20
        while (status := get("/v1/me/summary").status_code) != 401:
            assert status == 200 and time.monotonic() < deadline, "the revoked token still works"
            time.sleep(0.2)
