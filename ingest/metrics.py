"""Prometheus metrics of the ingest service, and the middleware that counts requests.

Each app owns its own :class:`~prometheus_client.CollectorRegistry`, so several apps (tests)
can live in one process. The middleware also gives every request an id (``X-Request-ID``,
taken from the client when it is a sane token) that routes log.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["REQUEST_ID_HEADER", "IngestMetrics", "ObservabilityMiddleware"]

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
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
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.produce_seconds = Histogram(
            "kafka_produce_seconds",
            "Time from producing a request's readings to Kafka acknowledging all of them",
            ["outcome"],
            buckets=_PRODUCE_BUCKETS,
            registry=self.registry,
        )


class ObservabilityMiddleware:
    """Pure ASGI middleware: request id in and out, requests counted by status."""

    def __init__(self, app: ASGIApp, *, metrics: IngestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.requests.labels(
                method=scope["method"], route=_route_of(scope), status=str(status)
            ).inc()


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _REQUEST_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex


def _route_of(scope: Scope) -> str:
    route: Any = scope.get("route")
    path: object = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
