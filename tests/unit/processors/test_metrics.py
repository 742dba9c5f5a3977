"""processors.metrics: bounded dead-letter reasons, batch counting, timed InfluxDB writes."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from pghd import wire
from pghd.contracts import DeadLetter, Measurement
from processors.codec import Undecodable, decode_measurement
from processors.dedup import reading_identity
from processors.metrics import DEAD_LETTER_KINDS, ProcessorMetrics, dead_letter_kind
from tests.unit.alerts.conftest import make_anomaly
from tests.unit.processors.conftest import MakeReading


def _reason(payload: bytes | None) -> str:
    decoded = decode_measurement(payload)
    assert isinstance(decoded, Undecodable)
    return decoded.reason


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def _letter(reason: str) -> tuple[bytes, bytes]:
    letter = DeadLetter(
        stage="processors",
        reason=reason,
        topic="pghd.measurements.v1",
        partition=0,
        offset=1,
        key="p-1",
        payload="",
        failed_at=datetime.now(UTC),
    )
    return b"p-1", wire.encode(letter)


def test_dead_letter_reasons_of_the_codec_map_to_bounded_kinds(
    make_reading: MakeReading,
) -> None:
    out_of_range = wire.encode(make_reading(999.0))
    assert dead_letter_kind(_reason(None)) == "tombstone"
    assert dead_letter_kind(_reason(b"{not json")) == "undecodable"
    assert dead_letter_kind(_reason(b'{"patient_id": "p-1"}')) == "invalid"
    assert dead_letter_kind(_reason(out_of_range)) == "out_of_range"
    assert dead_letter_kind("unexpected NoneType") == "tombstone"
    assert dead_letter_kind("unexpected dict") == "unexpected_type"
    assert dead_letter_kind("message key must be the reading's patient_id") == "key_mismatch"
    assert dead_letter_kind("judging failed: ValueError('x')") == "judging_failed"
    assert dead_letter_kind("something new") == "other"
    assert set(map(dead_letter_kind, ["", "x"])) <= set(DEAD_LETTER_KINDS)


def test_a_batch_counts_judged_readings_duplicates_and_dead_letters(
    make_reading: MakeReading,
) -> None:
    metrics = ProcessorMetrics()
    first = make_reading(70.0)
    readings = [first, make_reading(71.0), first, make_reading(36.9, metric="body_temperature")]
    letters = [_letter("cannot decode: x"), _letter("message key must be the reading's patient_id")]
    # 9 events: 4 readings (one a repeat within the batch), 2 dead letters, 3 seen before.
    metrics.observe_batch(
        events=9, readings=readings, repeats=[reading_identity(first)], letters=letters
    )
    registry = metrics.registry
    assert _value(registry, "readings_judged_total", metric="heart_rate") == 2
    assert _value(registry, "readings_judged_total", metric="body_temperature") == 1
    assert _value(registry, "duplicates_dropped_total", where="seen") == 3
    assert _value(registry, "duplicates_dropped_total", where="batch") == 1
    assert _value(registry, "dead_letters_total", reason="undecodable") == 1
    assert _value(registry, "dead_letters_total", reason="key_mismatch") == 1


def test_sent_anomalies_are_counted_by_detector_and_severity() -> None:
    metrics = ProcessorMetrics()
    metrics.anomalies_sent([make_anomaly(), make_anomaly(anomaly_id="an-2")])
    metrics.anomalies_sent([make_anomaly(detector="news2", severity="warning")])
    registry = metrics.registry
    assert _value(registry, "anomalies_emitted_total", detector="zscore", severity="critical") == 2
    assert _value(registry, "anomalies_emitted_total", detector="news2", severity="warning") == 1


def test_store_writes_failures_and_refusals_are_counted() -> None:
    metrics = ProcessorMetrics()
    metrics.store_written(lines=5, seconds=0.02)
    metrics.store_written(lines=0, seconds=0.01)  # an empty batch is no write
    metrics.store_failed(outcome="transient")
    metrics.store_failed(outcome="configuration")
    metrics.store_refused(lines=2)
    registry = metrics.registry
    assert _value(registry, "store_points_written_total") == 5
    assert _value(registry, "influx_write_seconds_count") == 1
    assert _value(registry, "store_write_failures_total", outcome="transient") == 1
    assert _value(registry, "influx_write_failures_total") == 2
    assert _value(registry, "store_points_refused_total") == 2
    assert _value(registry, "dead_letters_total", reason="store_refused") == 2


def test_each_worker_has_its_own_registry(make_reading: MakeReading) -> None:
    one, two = ProcessorMetrics(), ProcessorMetrics()
    reading: Measurement = make_reading(70.0)
    one.observe_batch(events=1, readings=[reading], repeats=[], letters=[])
    assert _value(one.registry, "readings_judged_total", metric="heart_rate") == 1
    assert _value(two.registry, "readings_judged_total", metric="heart_rate") == 0
