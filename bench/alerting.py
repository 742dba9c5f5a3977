"""Alert figures: anomalies/s turned into alerts, and anomaly on topic → webhook received."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from alerts.settings import default_routing
from alerts.state import PatientState, on_anomaly
from deploy.local.harness import Pipeline
from pghd import topics, wire
from pghd.alerting import Alert, GroupingPolicy
from pghd.catalogue import Metric
from pghd.contracts import Anomaly, Severity

__all__ = ["anomaly_records", "bare_lifecycle_rate", "notification_latencies"]

BARE_ALERTS = "pghd.bench.alerts.v1"
BARE_STATES = "pghd.bench.alert-states.v1"


def _anomaly(patient: str, n: int, *, now: datetime) -> Anomaly:
    return Anomaly(
        anomaly_id=f"bench-{uuid.uuid4().hex}",
        patient_id=patient,
        metric=Metric.HEART_RATE,
        channel="heart_rate",
        detector="deviation",
        severity=Severity.WARNING if n % 10 else Severity.CRITICAL,
        score=5.0,
        value=150.0,
        unit="/min",
        observed_at=now - timedelta(seconds=n),
        detected_at=now,
        explanation="Heart rate 150 /min is far above this patient's usual 70 /min.",
        event_ids=[f"bench-ev-{patient}-{n}"],
    )


def anomaly_records(*, patients: int, per_patient: int) -> list[tuple[bytes, bytes]]:
    """(key, value) anomaly messages: bursts per patient, as the processors emit them."""
    now = datetime.now(UTC)
    return [
        (f"alert-bench-{p}".encode(), wire.encode(_anomaly(f"alert-bench-{p}", n, now=now)))
        for n in range(per_patient)
        for p in range(patients)
    ]


async def bare_lifecycle_rate(bootstrap: str, *, count: int) -> float:
    """Consume ``count`` anomalies, decode them and run the alerts service's own pure
    transition (:func:`alerts.state.on_anomaly`: grouping, routing to a one-channel config,
    notifications planned) on a plain dict of patient states, then per batch of 500 produce
    every changed alert and every changed state (acks=all) and wait for them; no table, no
    notifications sent. Return anomalies/s."""
    consumer = AIOKafkaConsumer(
        topics.ANOMALIES,
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        config = default_routing(["json://127.0.0.1:9/hook"], grouping=GroupingPolicy())
        policy = GroupingPolicy() if config is None else config.grouping
        states: dict[str, PatientState] = {}
        seen = 0
        began = time.perf_counter()
        while seen < count:
            now = datetime.now(UTC)
            changed: dict[str, PatientState] = {}
            alerts: list[Alert] = []
            for tp, messages in (await consumer.getmany(timeout_ms=1000, max_records=500)).items():
                for message in messages:
                    if message.value is None:
                        continue
                    anomaly = wire.decode(Anomaly, message.value)
                    state = states.get(anomaly.patient_id) or PatientState(
                        patient_id=anomaly.patient_id, partition=tp.partition
                    )
                    step = on_anomaly(state, anomaly, config=config, policy=policy, now=now)
                    states[anomaly.patient_id] = changed[anomaly.patient_id] = step.state
                    alerts += step.changed
                    seen += 1
            futures = [
                await producer.send(BARE_ALERTS, key=a.fingerprint.encode(), value=wire.encode(a))
                for a in alerts
            ]
            futures += [
                await producer.send(
                    BARE_STATES, key=pid.encode(), value=orjson.dumps(s.model_dump(mode="json"))
                )
                for pid, s in changed.items()
            ]
            await asyncio.gather(*futures)
        return seen / (time.perf_counter() - began)
    finally:
        await producer.stop()
        await consumer.stop()


async def notification_latencies(pipeline: Pipeline, *, samples: int) -> list[float]:
    """Seconds from producing an anomaly (acks=all) to its notification at the webhook."""
    producer = AIOKafkaProducer(
        bootstrap_servers=pipeline.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        out = []
        for i in range(samples):
            patient = f"latency-{uuid.uuid4().hex[:8]}"
            anomaly = _anomaly(patient, i, now=datetime.now(UTC))
            began = time.perf_counter()
            await producer.send_and_wait(
                topics.ANOMALIES, key=patient.encode(), value=wire.encode(anomaly)
            )
            deadline = began + 30
            while not pipeline.sink.messages_about(anomaly.anomaly_id):
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"no notification for {anomaly.anomaly_id} in 30 s")
                await asyncio.sleep(0.002)
            out.append(time.perf_counter() - began)
        return out
    finally:
        await producer.stop()
