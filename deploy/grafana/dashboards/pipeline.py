"""*Pipeline health*: the three services' Prometheus metrics.

ingest: readings accepted (by metric) and rejected (by reason), HTTP requests (by route and
status) with the 5xx ratio, Kafka produce latency and outcomes. processors: readings judged
and duplicates dropped, anomalies emitted, InfluxDB write latency and failures, the store
stage's points written and refused. Both workers:
consumer lag per group (``kafka_consumer_lag``) and dead letters by service and reason.
alerts: alerts opened and resolved, notifications by channel and outcome, notifications
undelivered, Grafana annotation failures. The Prometheus data source is referenced by UID
:data:`~.common.PROMETHEUS_UID`; the metric names are those of ``ingest/metrics.py``,
``processors/metrics.py`` and ``alerts/metrics.py``.
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
        .description("Ingest, processors and alerts: throughput, errors, lag, dead letters.")
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
        .with_panel(
            _panel(
                "Consumer lag",
                unit="short",
                description="Messages each consumer group has not committed yet, by topic"
                " (processors: readings; alerts: anomalies and care-team commands).",
            ).with_target(promql("consumer_lag_by_group", legend="{{group}} {{topic}}"))
        )
        .with_panel(
            _panel(
                "Dead letters",
                unit="reqps",
                description="Messages sent to pghd.dlq.v1 per second, by service and reason.",
            ).with_target(promql("dead_letters_rate", legend="{{job}} {{reason}}"))
        )
        .with_panel(
            _panel(
                "Readings judged",
                unit="reqps",
                description="processors: readings judged per second, and duplicates dropped"
                " (seen before, or repeated within a batch).",
            )
            .with_target(promql("readings_judged_rate", ref_id="A", legend="judged"))
            .with_target(
                promql("duplicates_dropped_rate", ref_id="B", legend="duplicate ({{where}})")
            )
        )
        .with_panel(
            _panel(
                "Anomalies emitted", unit="reqps", description="Per second, by severity."
            ).with_target(promql("anomalies_emitted_rate", legend="{{severity}}"))
        )
        .with_panel(
            _panel(
                "InfluxDB writes",
                unit="s",
                description="p95 time until InfluxDB accepted a batch (retries included);"
                " failed attempts per second (each is retried).",
            )
            .with_target(promql("influx_write_p95", ref_id="A", legend="p95 write"))
            .with_target(promql("influx_write_failures_rate", ref_id="B", legend="failures/s"))
        )
        .with_panel(
            _panel(
                "Store stage",
                unit="reqps",
                description="Points written to InfluxDB per second from pghd.points.v1, and"
                " points InfluxDB refused for good (beyond retention, type conflict), sent to"
                " pghd.dlq.v1. Its backlog is the store group's lag on the consumer lag panel.",
            )
            .with_target(promql("store_points_written_rate", ref_id="A", legend="written"))
            .with_target(promql("store_points_refused_rate", ref_id="B", legend="refused"))
        )
        .with_panel(
            _panel("Alerts opened and resolved", unit="short", description="Per hour, by severity.")
            .with_target(promql("alerts_opened_per_hour", ref_id="A", legend="opened {{severity}}"))
            .with_target(
                promql("alerts_resolved_per_hour", ref_id="B", legend="resolved {{severity}}")
            )
        )
        .with_panel(
            _panel(
                "Notifications",
                unit="reqps",
                description="Delivery attempts per second, by channel and outcome"
                " (success, retry, failure).",
            ).with_target(promql("notifications_rate", legend="{{channel}} {{outcome}}"))
        )
        .with_panel(
            _panel(
                "Notifications undelivered",
                unit="short",
                description="Pages still being retried after a failed attempt, and pages"
                " given up (alerts nobody acknowledged): anything above 0 needs a look.",
            ).with_target(promql("alerts_undelivered", legend="{{state}}"))
        )
        .with_panel(
            _panel(
                "Grafana annotation failures",
                unit="reqps",
                description="Annotation writes that failed (retry, failed) or were dropped.",
            ).with_target(promql("grafana_annotation_failures_rate", legend="{{outcome}}"))
        )
    )
