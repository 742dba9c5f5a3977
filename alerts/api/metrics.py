"""Prometheus metrics of the care-team API.

Each app owns its own :class:`~prometheus_client.CollectorRegistry`, so several apps (tests)
can live in one process. Requests are counted by
:class:`pghd.service.http_metrics.RequestObserver`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from alerts.api.read_model import ReadModel
from pghd.service.http_metrics import requests_counter
from pghd.service.oidc import jwks_fetches_counter

__all__ = ["CareApiMetrics"]


class CareApiMetrics:
    """The counters and gauges of one care-team API app."""

    def __init__(self, model: ReadModel, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = requests_counter(self.registry)
        self.commands = Counter(
            "alert_commands",
            "Care-team commands, by kind and outcome (accepted = acknowledged by Kafka)",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.records = Counter(
            "read_model_records",
            "Kafka records read into the read model, by topic and outcome",
            ["topic", "outcome"],
            registry=self.registry,
        )
        self.users_reloads = Counter(
            "users_file_reloads",
            "Reloads of the users file, by outcome (reloaded, refused: kept the previous)",
            ["outcome"],
            registry=self.registry,
        )
        self.jwks_fetches = jwks_fetches_counter(self.registry)
        alerts = Gauge("alerts_known", "Alerts in the read model", registry=self.registry)
        alerts.set_function(lambda: float(len(model.alerts)))
        ready = Gauge(
            "read_model_ready",
            "1 once the read model caught up with the topics at startup",
            registry=self.registry,
        )
        ready.set_function(lambda: 1.0 if model.ready else 0.0)
