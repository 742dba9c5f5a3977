"""Prometheus metrics of the care-team API, and the middleware that counts requests.

Each app owns its own :class:`~prometheus_client.CollectorRegistry`, so several apps (tests)
can live in one process.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alerts.api.read_model import ReadModel

__all__ = ["CareApiMetrics", "RequestCounter"]


class CareApiMetrics:
    """The counters and gauges of one care-team API app."""

    def __init__(self, model: ReadModel, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
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
        alerts = Gauge("alerts_known", "Alerts in the read model", registry=self.registry)
        alerts.set_function(lambda: float(len(model.alerts)))
        ready = Gauge(
            "read_model_ready",
            "1 once the read model caught up with the topics at startup",
            registry=self.registry,
        )
        ready.set_function(lambda: 1.0 if model.ready else 0.0)


class RequestCounter:
    """Pure ASGI middleware counting answered requests by route and status."""

    def __init__(self, app: ASGIApp, *, metrics: CareApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            path = getattr(route, "path", None)
            self.metrics.requests.labels(
                method=scope["method"],
                route=path if isinstance(path, str) else "unmatched",
                status=str(status),
            ).inc()
