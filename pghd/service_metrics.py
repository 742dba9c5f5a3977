"""Plumbing both Faust workers need for their Prometheus metrics: consumer lag and ``/metrics``.

The services may import ``pghd`` and nothing of each other, so the little I/O they share
lives here rather than twice in ``processors/metrics.py`` and ``alerts/metrics.py`` (an
exception to ``pghd`` holding only models and pure logic, as the CLI in ``pghd.commands``
is; it reads no environment of its own: the clients' security is :mod:`pghd.kafka_security`'s).

- :class:`LagProbe` reads a consumer group's lag (end offset minus committed offset) per
  partition of its input topics from the brokers, with kafka-python;
- :func:`serve_metrics` adds ``GET /metrics`` to a Faust app's web server (the one the worker
  already runs for its health probe) and a timer that refreshes the lag.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from pghd import kafka_security
from pghd.kafka_security import KafkaSecurity

__all__ = ["LagProbe", "reread_counter", "serve_metrics"]

logger = logging.getLogger(__name__)


class LagProbe:
    """The consumer group's lag on its input topics, read from the brokers (kafka-python).

    :meth:`refresh` is blocking (run it in a thread). A partition the group never committed
    counts from its log start, which is where ``auto_offset_reset=earliest`` begins.
    """

    def __init__(
        self,
        *,
        bootstrap: str,
        group: str,
        topics: Sequence[str],
        gauge: Gauge,
        security: KafkaSecurity | None = None,
    ) -> None:
        self.bootstrap = bootstrap.split(",")
        self.security = security  # None: pghd.kafka_security.current(), when first used
        self.group = group
        self.topics = list(topics)
        self.gauge = gauge
        self._admin: Any = None
        self._consumer: Any = None

    def refresh(self) -> dict[tuple[str, int], int]:
        """Read end and committed offsets, set the gauge; return lag per (topic, partition)."""
        from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

        if self._admin is None:
            client_id = f"{self.group}-lag"
            auth = (self.security or kafka_security.current()).kafka_python()
            self._admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap, client_id=client_id, **auth
            )
            self._consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap, client_id=client_id, **auth
            )
        parts = [
            TopicPartition(topic, number)
            for topic in self.topics
            for number in sorted(self._consumer.partitions_for_topic(topic) or ())
        ]
        committed = self._admin.list_group_offsets(self.group).get(self.group, {})
        ends = self._consumer.end_offsets(parts)
        starts = self._consumer.beginning_offsets(parts)
        lags: dict[tuple[str, int], int] = {}
        for tp in parts:
            mark = committed.get(tp)
            base = mark.offset if mark is not None and mark.offset >= 0 else starts[tp]
            lags[(tp.topic, tp.partition)] = max(0, int(ends[tp]) - int(base))
        for (topic, partition), lag in lags.items():
            self.gauge.labels(group=self.group, topic=topic, partition=str(partition)).set(lag)
        return lags

    def close(self) -> None:
        """Close the Kafka clients, if opened."""
        for client in (self._admin, self._consumer):
            if client is not None:
                client.close()
        self._admin = self._consumer = None


def reread_counter(registry: CollectorRegistry) -> Counter:
    """``stream_partitions_reread_total{topic}`` of a Faust worker (pghd.stall_watchdog)."""
    return Counter(
        "stream_partitions_reread",
        "Input partitions read again from their committed offset because their stream"
        " stopped short of what was fetched (pghd.stall_watchdog), by topic",
        ["topic"],
        registry=registry,
    )


def serve_metrics(
    app: Any,
    registry: CollectorRegistry,
    *,
    lag: LagProbe,
    lag_interval_s: float,
    more_lag: Sequence[LagProbe] = (),
) -> Callable[[], Awaitable[None]]:
    """Add ``GET /metrics`` to the Faust ``app``'s web server and a timer refreshing ``lag``;
    return the timer's coroutine function (to refresh at once, outside the timer).
    ``more_lag``: probes of further consumer groups the worker runs, refreshed alike."""

    @app.page("/metrics")  # type: ignore[untyped-decorator]
    async def metrics_page(self: Any, request: Any) -> Any:
        return self.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def refresh_lag() -> None:
        for probe in (lag, *more_lag):
            try:
                await asyncio.to_thread(probe.refresh)
            except Exception as exc:  # a broker hiccup must not stop the worker's timer
                logger.warning("consumer lag of %s not read: %r", probe.group, exc)

    app.timer(interval=lag_interval_s)(refresh_lag)
    return refresh_lag
