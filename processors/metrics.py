"""Prometheus metrics of the processors service, served at ``/metrics`` by Faust's web server.

The worker already runs Faust's web server (``PGHD_PROCESSORS_WEB_HOST:_WEB_PORT``, 6066;
its ``/`` is the health probe), so the metrics are one more page there rather than a second
listener: one port per worker to expose, probe and scrape. The registry is this module's
own :class:`~prometheus_client.CollectorRegistry`, not the process-wide default.

What is counted (names as Prometheus shows them):

- ``readings_judged_total{metric}``: readings judged (new event ids only);
- ``duplicates_dropped_total{where}``: readings dropped as duplicates, ``seen`` (processed
  in an earlier batch) or ``batch`` (repeated within the batch);
- ``anomalies_emitted_total{detector,severity}``: anomalies sent to ``pghd.anomalies.v1``
  (a replay that holds one back, because it went out before a crash, does not count it);
- ``dead_letters_total{reason}``: messages sent to ``pghd.dlq.v1``, by :func:`dead_letter_kind`;
- ``influx_write_seconds`` (histogram): from a batch's write to InfluxDB accepting all of
  its points, retries included; ``influx_write_failures_total``: failed attempts (each is
  retried until InfluxDB accepts);
- ``kafka_consumer_lag{group,topic,partition}``: end offset minus the group's committed
  offset, read from the brokers every ``metrics_lag_interval_s`` by :class:`LagProbe`.
  Every worker of the group reports every partition of the input topic, so take ``max``
  over the workers (``max by (group, topic, partition)``) before summing.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

from pghd import wire
from pghd.contracts import Anomaly, DeadLetter, Measurement
from pghd.service_metrics import LagProbe, serve_metrics

__all__ = [
    "DEAD_LETTER_KINDS",
    "LagProbe",
    "ProcessorMetrics",
    "dead_letter_kind",
    "install_metrics",
    "serve_metrics",
]

logger = logging.getLogger(__name__)

_WRITE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

#: Label values of ``dead_letters_total``: a bounded set, whatever the reason's text says.
DEAD_LETTER_KINDS = (
    "tombstone",
    "invalid",
    "undecodable",
    "out_of_range",
    "key_mismatch",
    "unexpected_type",
    "judging_failed",
    "other",
)


def dead_letter_kind(reason: str) -> str:
    """The ``reason`` label of a processors dead letter (its text comes from
    :mod:`processors.codec` and :mod:`processors.app`; tests pin the mapping)."""
    if reason.startswith("message has no value") or reason == "unexpected NoneType":
        return "tombstone"  # Faust hands a null value to the agent without the codec
    if reason.startswith("not a valid Measurement"):
        return "undecodable" if "Invalid JSON" in reason else "invalid"
    if reason.startswith("cannot decode"):
        return "undecodable"
    if "outside the possible range" in reason or "must be a finite number" in reason:
        return "out_of_range"
    if reason.startswith("message key must be"):
        return "key_mismatch"
    if reason.startswith("unexpected "):
        return "unexpected_type"
    if reason.startswith("judging failed"):
        return "judging_failed"
    return "other"


class _Writer(Protocol):
    async def write(
        self, points: Sequence[Any], *, sleep: Callable[[float], object] | None = None
    ) -> int: ...


class ProcessorMetrics:
    """The counters, histogram and gauge of one processors worker."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.readings_judged = Counter(
            "readings_judged",
            "Readings judged (new event ids), by metric",
            ["metric"],
            registry=self.registry,
        )
        self.duplicates_dropped = Counter(
            "duplicates_dropped",
            "Readings dropped as duplicates: seen (in an earlier batch) or batch (repeated in it)",
            ["where"],
            registry=self.registry,
        )
        self.anomalies_emitted = Counter(
            "anomalies_emitted",
            "Anomalies sent to pghd.anomalies.v1, by detector and severity",
            ["detector", "severity"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "dead_letters",
            "Messages sent to pghd.dlq.v1, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.influx_write_seconds = Histogram(
            "influx_write_seconds",
            "Time until InfluxDB accepted a batch's points, retries included",
            buckets=_WRITE_BUCKETS,
            registry=self.registry,
        )
        self.influx_write_failures = Counter(
            "influx_write_failures",
            "InfluxDB write attempts that failed (each one is retried)",
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "kafka_consumer_lag",
            "Messages not yet committed by the consumer group (end offset - committed offset)",
            ["group", "topic", "partition"],
            registry=self.registry,
        )

    async def write_points(self, sink: _Writer, points: Sequence[Any]) -> None:
        """``sink.write(points)``, timed; each failed attempt counted as it happens (the sink
        calls its ``sleep`` once after every failed attempt, before retrying)."""
        if not points:
            return

        async def count_then_sleep(delay: float) -> None:
            self.influx_write_failures.inc()
            await asyncio.sleep(delay)

        started = time.perf_counter()
        await sink.write(points, sleep=count_then_sleep)
        self.influx_write_seconds.observe(time.perf_counter() - started)

    def observe_batch(
        self,
        *,
        events: int,
        readings: Sequence[Measurement],
        repeats: Sequence[str],
        letters: Sequence[tuple[bytes, bytes]],
    ) -> None:
        """Count one batch of ``events``: the ``readings`` judged (``repeats``: event ids
        repeated within the batch, once per extra copy) and the dead ``letters`` sent; the
        rest were readings already seen."""
        metric_of = {reading.event_id: reading.metric.value for reading in readings}
        judged = collections.Counter(reading.metric.value for reading in readings)
        judged.subtract(metric_of[event_id] for event_id in repeats if event_id in metric_of)
        for metric, count in judged.items():
            if count > 0:
                self.readings_judged.labels(metric=metric).inc(count)
        seen = events - len(readings) - len(letters)
        if seen > 0:
            self.duplicates_dropped.labels(where="seen").inc(seen)
        if repeats:
            self.duplicates_dropped.labels(where="batch").inc(len(repeats))
        for _key, value in letters:
            try:
                reason = wire.decode(DeadLetter, value).reason
            except ValueError:
                reason = ""
            self.dead_letters.labels(reason=dead_letter_kind(reason)).inc()

    def anomalies_sent(self, anomalies: Sequence[Anomaly]) -> None:
        """Count anomalies Kafka acknowledged on the anomalies topic."""
        for anomaly in anomalies:
            self.anomalies_emitted.labels(
                detector=anomaly.detector, severity=anomaly.severity.value
            ).inc()


def install_metrics(
    app: Any, *, bootstrap: str, group: str, topics: Sequence[str], lag_interval_s: float
) -> ProcessorMetrics:
    """New metrics for the Faust ``app``: ``GET /metrics`` on its web server, and a timer that
    refreshes the consumer lag of ``group`` on ``topics`` every ``lag_interval_s``."""
    metrics = ProcessorMetrics()
    probe = LagProbe(bootstrap=bootstrap, group=group, topics=topics, gauge=metrics.consumer_lag)
    serve_metrics(app, metrics.registry, lag=probe, lag_interval_s=lag_interval_s)
    return metrics
