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
- ``dead_letters_total{reason}``: messages sent to ``pghd.dlq.v1``, by :func:`dead_letter_kind`:
  every record of the processors' inputs that fails its contract (a reading that is not a
  valid measurement or is out of range, a care plan that is not one, a points record the
  store stage cannot read, a malformed erasure marker, a key that is not the patient's) is
  dropped, dead-lettered with its reason and counted here, and the stream goes on;
- ``influx_write_seconds`` (histogram): from a batch's write to InfluxDB accepting all of
  its points, retries included; ``influx_write_failures_total``: failed attempts (each is
  retried until InfluxDB accepts);
- ``store_points_written_total``, ``store_points_refused_total`` (sent to the DLQ because
  InfluxDB refused them for good), ``store_write_failures_total{outcome}`` (failed write
  attempts of the store stage, ``transient`` / ``configuration``; each is retried) — the
  store stage (:mod:`processors.store`) writes the points, so ``influx_write_seconds`` and
  ``influx_write_failures_total`` count its batches and failed attempts too;
- ``kafka_consumer_lag{group,topic,partition}``: end offset minus the group's committed
  offset, read from the brokers every ``metrics_lag_interval_s`` by :class:`LagProbe`.
  Every worker of the group reports every partition of the input topic, so take ``max``
  over the workers (``max by (group, topic, partition)``) before summing.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

from pghd import wire
from pghd.contracts import Anomaly, DeadLetter, Measurement
from pghd.service_metrics import LagProbe, reread_counter, serve_metrics
from processors.dedup import reading_identity

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
    "store_refused",
    "invalid_care_plan",
    "invalid_points",
    "invalid_marker",
    "other",
)


def dead_letter_kind(reason: str) -> str:
    """The ``reason`` label of a processors dead letter (its text comes from
    :mod:`processors.codec`, :mod:`processors.agents`, :mod:`processors.care_plans` and
    :mod:`processors.store.stage`; tests pin the mapping)."""
    if reason.startswith("message has no value") or reason == "unexpected NoneType":
        return "tombstone"  # Faust hands a null value to the agent without the codec
    if reason.startswith("not a valid Measurement"):
        return "undecodable" if "Invalid JSON" in reason else "invalid"
    if reason.startswith("cannot decode"):
        return "undecodable"
    if reason.startswith("not a valid care plan"):
        return "invalid_care_plan"
    if reason.startswith("not a points record"):
        return "invalid_points"
    if reason.startswith("not a valid erasure marker"):
        return "invalid_marker"
    if reason.startswith("a care plan needs its patient id"):
        return "key_mismatch"
    if "outside the possible range" in reason or "must be a finite number" in reason:
        return "out_of_range"
    if reason.startswith("message key must be"):
        return "key_mismatch"
    if reason.startswith("unexpected "):
        return "unexpected_type"
    if reason.startswith("judging failed"):
        return "judging_failed"
    return "other"


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
        self.partitions_reread = reread_counter(self.registry)
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
        self.store_points_written = Counter(
            "store_points_written",
            "Points the store stage wrote to InfluxDB",
            registry=self.registry,
        )
        self.store_points_refused = Counter(
            "store_points_refused",
            "Points InfluxDB refused for good (retention, type conflict, malformed): to the DLQ",
            registry=self.registry,
        )
        self.store_write_failures = Counter(
            "store_write_failures",
            "Failed InfluxDB write attempts of the store stage (each is retried), by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "kafka_consumer_lag",
            "Messages not yet committed by the consumer group (end offset - committed offset)",
            ["group", "topic", "partition"],
            registry=self.registry,
        )

    def observe_batch(
        self,
        *,
        events: int,
        readings: Sequence[Measurement],
        repeats: Sequence[str],
        letters: Sequence[tuple[bytes, bytes]],
    ) -> None:
        """Count one batch of ``events``: the ``readings`` judged (``repeats``: identities,
        :func:`~processors.dedup.reading_identity`, repeated within the batch, once per extra
        copy) and the dead ``letters`` sent; the rest were readings already seen."""
        metric_of = {reading_identity(r): r.metric.value for r in readings}
        judged = collections.Counter(reading.metric.value for reading in readings)
        judged.subtract(metric_of[key] for key in repeats if key in metric_of)
        for metric, count in judged.items():
            if count > 0:
                self.readings_judged.labels(metric=metric).inc(count)
        seen = events - len(readings) - len(letters)
        if seen > 0:
            self.duplicates_dropped.labels(where="seen").inc(seen)
        if repeats:
            self.duplicates_dropped.labels(where="batch").inc(len(repeats))
        self.dead_lettered(letters)

    def dead_lettered(self, letters: Sequence[tuple[bytes, bytes]]) -> None:
        """Count dead ``letters`` (``(key, DeadLetter JSON)``) sent to ``pghd.dlq.v1``, by the
        kind of their reason."""
        for _key, value in letters:
            try:
                reason = wire.decode(DeadLetter, value).reason
            except ValueError:
                reason = ""
            self.dead_letters.labels(reason=dead_letter_kind(reason)).inc()

    def store_written(self, *, lines: int, seconds: float) -> None:
        """The store stage wrote a batch of ``lines`` points in ``seconds`` (retries included)."""
        if lines > 0:
            self.store_points_written.inc(lines)
            self.influx_write_seconds.observe(seconds)

    def store_failed(self, *, outcome: str) -> None:
        """A store write attempt failed with ``outcome`` (it is retried)."""
        self.store_write_failures.labels(outcome=outcome).inc()
        self.influx_write_failures.inc()

    def store_refused(self, *, lines: int) -> None:
        """InfluxDB refused ``lines`` points for good; they went to the DLQ."""
        self.store_points_refused.inc(lines)
        self.dead_letters.labels(reason="store_refused").inc(lines)

    def anomalies_sent(self, anomalies: Sequence[Anomaly]) -> None:
        """Count anomalies Kafka acknowledged on the anomalies topic."""
        for anomaly in anomalies:
            self.anomalies_emitted.labels(
                detector=anomaly.detector, severity=anomaly.severity.value
            ).inc()


def install_metrics(
    app: Any,
    *,
    bootstrap: str,
    group: str,
    topics: Sequence[str],
    lag_interval_s: float,
    more_groups: Sequence[tuple[str, Sequence[str]]] = (),
) -> ProcessorMetrics:
    """New metrics for the Faust ``app``: ``GET /metrics`` on its web server, and a timer that
    refreshes the consumer lag of ``group`` on ``topics`` (and of each ``(group, topics)`` of
    ``more_groups``) every ``lag_interval_s``."""
    metrics = ProcessorMetrics()
    gauge = metrics.consumer_lag
    probe = LagProbe(bootstrap=bootstrap, group=group, topics=topics, gauge=gauge)
    more = [
        LagProbe(bootstrap=bootstrap, group=name, topics=list(read), gauge=gauge)
        for name, read in more_groups
    ]
    serve_metrics(app, metrics.registry, lag=probe, lag_interval_s=lag_interval_s, more_lag=more)
    return metrics
