"""Prometheus metrics of the ingest service.

Each app owns its own :class:`~prometheus_client.CollectorRegistry`, so several apps (tests)
can live in one process. Requests are counted (and given ids) by
:class:`pghd.service.http_metrics.RequestObserver`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from pghd.service.http_metrics import requests_counter
from pghd.service.oidc import jwks_fetches_counter

__all__ = ["IngestMetrics"]

_PRODUCE_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class IngestMetrics:
    """The counters and histograms of one ingest app."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.readings_accepted = Counter(
            "readings_accepted",
            "Readings acknowledged by Kafka, by metric",
            ["metric"],
            registry=self.registry,
        )
        self.readings_rejected = Counter(
            "readings_rejected",
            "Readings refused, by reason (invalid, unit, range, time, consent, ...)",
            ["reason"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "rate_limited",
            "Requests refused with 429 because their source was over its rate limit, by source",
            ["source"],
            registry=self.registry,
        )
        self.requests = requests_counter(self.registry)
        self.jwks_fetches = jwks_fetches_counter(self.registry)
        self.produce_seconds = Histogram(
            "kafka_produce_seconds",
            "Time from producing a request's readings to Kafka acknowledging all of them",
            ["outcome"],
            buckets=_PRODUCE_BUCKETS,
            registry=self.registry,
        )
