"""*Pipeline health*: the ingest service's Prometheus metrics.

Readings accepted (by metric) and rejected (by reason), HTTP requests (by route and
status) with the 5xx ratio, and the Kafka produce latency quantiles from the
``kafka_produce_seconds`` histogram. The Prometheus data source is referenced by UID
:data:`~.common.PROMETHEUS_UID`.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import timeseries

from deploy.grafana.dashboards.common import PROMETHEUS, builtin_annotations, promql

__all__ = ["UID", "pipeline_health"]

UID = "pghd-pipeline"


def _panel(title: str, *, unit: str, description: str) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit(unit)
        .span(12)
        .height(8)
    )


def pipeline_health() -> dash.Dashboard:
    """The *Pipeline health* dashboard builder."""
    return (
        dash.Dashboard("Pipeline health")
        .uid(UID)
        .description("Ingest throughput, rejections, HTTP errors and Kafka produce latency.")
        .tags(["pghd", "operations"])
        .editable()
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("browser")
        .annotation(builtin_annotations())
        .with_panel(
            _panel(
                "Readings accepted", unit="reqps", description="Per second, by metric."
            ).with_target(promql("readings_accepted_rate", legend="{{metric}}"))
        )
        .with_panel(
            _panel(
                "Readings rejected", unit="reqps", description="Per second, by reason."
            ).with_target(promql("readings_rejected_rate", legend="{{reason}}"))
        )
        .with_panel(
            _panel(
                "HTTP requests", unit="reqps", description="Per second, by route and status."
            ).with_target(promql("http_requests_rate", legend="{{route}} {{status}}"))
        )
        .with_panel(
            _panel(
                "HTTP 5xx ratio", unit="percentunit", description="Share of 5xx answers."
            ).with_target(promql("http_error_ratio", legend="5xx"))
        )
        .with_panel(
            _panel(
                "Kafka produce latency",
                unit="s",
                description="Time from producing a request's readings to Kafka's acknowledgement.",
            )
            .with_target(promql("kafka_produce_p50", ref_id="A", legend="p50"))
            .with_target(promql("kafka_produce_p95", ref_id="B", legend="p95"))
            .with_target(promql("kafka_produce_p99", ref_id="C", legend="p99"))
        )
        .with_panel(
            _panel(
                "Kafka produce outcomes", unit="reqps", description="Per second, by outcome."
            ).with_target(promql("kafka_produce_by_outcome", legend="{{outcome}}"))
        )
    )
