"""Settings of the alerts service, read from the environment.

Every field is read from ``PGHD_ALERTS_<FIELD>``; ``kafka_bootstrap`` also falls back to the
stack-wide ``PGHD_KAFKA_BOOTSTRAP``.

Routing: ``PGHD_ALERTS_ROUTING_FILE`` names a routing config JSON file
(:class:`~pghd.alerting.RoutingConfig`, see ``deploy/alerts/routing.example.json``).
Without it, ``PGHD_ALERTS_NOTIFY_URLS`` (a JSON list of Apprise URLs, e.g.
``'["json://127.0.0.1:9999/hook"]'``) becomes one route that notifies every URL once when
an alert opens or its severity rises (:func:`default_routing`). URLs may hold tokens, so
they are never logged. ``PGHD_ALERTS_GROUPING`` (JSON :class:`~pghd.alerting.GroupingPolicy`)
overrides the grouping of either.

Notifications are retried with a capped exponential backoff (``PGHD_ALERTS_NOTIFY_BACKOFF_S``
1 s, doubling up to ``_NOTIFY_MAX_BACKOFF_S`` 300 s, with jitter) until
``_NOTIFY_RETRY_HORIZON_S`` (6 h) after they were queued; see :mod:`alerts.delivery`.
``_NOTIFY_MAX_AGE_S`` (24 h) is the age beyond which an anomaly's alert is marked late;
``_PAGE_LATE`` (true) says whether late warning and critical alerts page.

Feedback to patients' apps (:mod:`alerts.feedback`): ``_FEEDBACK_RATE_PER_HOUR`` (6) and
``_FEEDBACK_BURST`` (3) per patient, ``_FEEDBACK_ATTEMPTS`` (8) tries with a backoff from
``_FEEDBACK_BACKOFF_S`` (2 s) doubling to ``_FEEDBACK_MAX_BACKOFF_S`` (600 s), each POST
within ``_FEEDBACK_TIMEOUT_S`` (5 s); an event older than ``_FEEDBACK_MAX_AGE_S`` (24 h) is
not sent. A source whose readings have not arrived for ``_FEEDBACK_SILENT_AFTER_S`` (24 h)
is told as ``device_silent``. ``_FEEDBACK_ALLOW_LOOPBACK_HTTP`` (or the stack-wide
``PGHD_FEEDBACK_ALLOW_LOOPBACK_HTTP``) lets apps on the loopback take events (local stacks).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from alerts.backoff import RetryPolicy
from alerts.feedback.outbox import FeedbackPolicy
from alerts.feedback.ratelimit import RateLimit
from alerts.feedback.weekly import WEEK_ANCHOR, WEEK_S
from alerts.routing import load_routing_config
from pghd.alerting import EscalationStep, GroupingPolicy, Route, RoutingConfig
from pghd.contracts import UtcDatetime

__all__ = ["DEFAULT_ROUTE", "ENV_PREFIX", "AlertsSettings", "default_routing"]

logger = logging.getLogger(__name__)

ENV_PREFIX = "PGHD_ALERTS_"
DEFAULT_ROUTE = "default"


def default_routing(
    urls: Sequence[str], *, grouping: GroupingPolicy, cleared: bool = False
) -> RoutingConfig | None:
    """One route, any team and severity, to channels ``notify-1..n``; no escalation, no
    repeat; with ``cleared``, the channels may carry patient data. None without URLs
    (alerts are then tracked and published, nobody notified)."""
    if not urls:
        return None
    channels = {f"notify-{n}": url for n, url in enumerate(urls, start=1)}
    route = Route(
        name=DEFAULT_ROUTE,
        escalation=[EscalationStep(after_s=0, channels=list(channels))],
        repeat_interval_s=None,
    )
    return RoutingConfig(
        channels=channels,
        cleared_channels=list(channels) if cleared else [],
        routes=[route],
        grouping=grouping,
    )


class AlertsSettings(BaseSettings):
    """Configuration of one alerts worker."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", validate_by_name=True, frozen=True
    )

    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices(
            "kafka_bootstrap", f"{ENV_PREFIX}KAFKA_BOOTSTRAP", "PGHD_KAFKA_BOOTSTRAP"
        ),
        description="Kafka bootstrap servers, host:port[,host:port]",
    )
    routing_file: Path | None = Field(
        default=None, description="routing config JSON (channels, teams, routes, escalation)"
    )
    notify_urls: list[str] = Field(
        default_factory=list,
        description="without a routing file: Apprise URLs every alert is sent to (JSON list)",
    )
    notify_cleared: bool = Field(
        default=False,
        description="the notify_urls channels may carry patient data (else: severity and a"
        " link only)",
    )
    grouping: GroupingPolicy | None = Field(
        default=None, description="grouping policy (JSON); overrides the routing file's"
    )
    notify_attempts: int = Field(
        default=3,
        ge=1,
        description="tries per channel of a daily digest (alert notifications are retried"
        " until notify_retry_horizon_s)",
    )
    notify_backoff_s: float = Field(
        default=1.0, ge=0, description="wait before the 2nd try; doubles for each further try"
    )
    notify_max_backoff_s: float = Field(
        default=300.0, ge=0, description="longest wait between two tries (before jitter)"
    )
    notify_retry_horizon_s: float = Field(
        default=6 * 3600.0,
        gt=0,
        description="a notification not delivered this long after it was queued is given up",
    )
    notify_max_age_s: float | None = Field(
        default=24 * 3600.0,
        gt=0,
        description="an alert whose latest anomaly was detected longer ago than this is"
        " marked late (and says so in its notifications); null = nothing is late",
    )
    page_late: bool = Field(
        default=True,
        description="late warning and critical alerts page (false: tracked, nobody paged;"
        " for a planned replay of the anomalies topic)",
    )
    stall_reseek_after_s: float = Field(
        default=30.0,
        gt=0,
        description="an input partition fetched ahead of what was processed, with no progress"
        " for this long, is read again from its committed offset (pghd.stall_watchdog)",
    )
    batch_size: int = Field(
        default=1000, ge=1, description="most input messages handled as one batch"
    )
    batch_within_s: float = Field(
        default=0.02, gt=0, description="longest wait for a batch to fill"
    )
    tick_s: float = Field(
        default=5.0, gt=0, description="how often escalations and auto-resolve are checked"
    )
    digest_check_s: float = Field(
        default=60.0, gt=0, description="how often the leader checks whether a digest is due"
    )

    grafana_url: str | None = Field(default=None, description="annotate Grafana when set")
    grafana_token: SecretStr | None = Field(default=None, description="service account token")
    grafana_dashboard_uid: str | None = None
    grafana_panel_id: int | None = None
    grafana_attempts: int = Field(default=5, ge=1)
    grafana_backoff_s: float = Field(default=1.0, ge=0)
    grafana_timeout_s: float = Field(default=5.0, gt=0)

    feedback_rate_per_hour: float = Field(
        default=6.0, gt=0, description="feedback events a patient's app is sent an hour, on average"
    )
    feedback_burst: int = Field(default=3, ge=1, description="and at most this many at once")
    feedback_attempts: int = Field(default=8, ge=1, description="tries of one feedback event")
    feedback_backoff_s: float = Field(default=2.0, ge=0, description="wait after its 1st failure")
    feedback_max_backoff_s: float = Field(default=600.0, ge=0, description="longest wait")
    feedback_timeout_s: float = Field(default=5.0, gt=0, description="one POST to an app")
    feedback_max_age_s: float = Field(
        default=24 * 3600.0, gt=0, description="an event older than this is not sent"
    )
    feedback_tick_s: float = Field(
        default=1.0, gt=0, description="how often feedback retries and silences are checked"
    )
    feedback_silent_after_s: float = Field(
        default=24 * 3600.0,
        gt=0,
        description="a source whose readings have not arrived for this long is told silent",
    )
    feedback_seen_granularity_s: float = Field(
        default=300.0,
        ge=0,
        description="a source's last arrival is written at most once per this span",
    )
    feedback_week_anchor: UtcDatetime = Field(
        default=WEEK_ANCHOR,
        description="weekly summaries: weeks start at this instant plus whole weeks"
        " (a Monday, 08:00 UTC)",
    )
    feedback_week_s: float = Field(
        default=WEEK_S, gt=0, description="weekly summaries: the length of a week"
    )
    feedback_allow_loopback_http: bool = Field(
        default=False,
        validation_alias=AliasChoices(
            "feedback_allow_loopback_http",
            f"{ENV_PREFIX}FEEDBACK_ALLOW_LOOPBACK_HTTP",
            "PGHD_FEEDBACK_ALLOW_LOOPBACK_HTTP",
        ),
        description="patients' apps on the loopback (plain http included) take feedback:"
        " local and development stacks only",
    )

    app_id: str = Field(default="pghd-alerts", description="Faust app id = consumer group id")
    session_timeout_s: float = Field(
        default=60.0,
        ge=6,
        le=90,
        description="Kafka consumer group session timeout: how long after a worker died"
        " without leaving (SIGKILL, lost host) its anomaly partitions wait for a survivor;"
        " the broker's group.min.session.timeout.ms (6 s) is the floor",
    )
    heartbeat_interval_s: float = Field(
        default=3.0, gt=0, description="consumer heartbeats; well below the session timeout"
    )
    store: str = "memory://"
    data_dir: str = ".local/data/alerts"
    topic_partitions: int = Field(default=8, ge=1, description="partitions of the input topics")
    replication_factor: int = Field(default=1, ge=1, description="of Faust's own topics")
    web_port: int = Field(
        default=6067, ge=1, le=65535, description="Faust web server: / (health), /metrics"
    )
    web_host: str = "127.0.0.1"
    metrics_lag_interval_s: float = Field(
        default=15.0, gt=0, description="how often kafka_consumer_lag is read from the brokers"
    )
    log_level: str = "info"

    def routing_config(self) -> RoutingConfig | None:
        """The routing file's config, else :func:`default_routing` of ``notify_urls``."""
        if self.routing_file is not None:
            config = load_routing_config(self.routing_file)
            if self.grouping is not None:
                config = config.model_copy(update={"grouping": self.grouping})
            return config
        return default_routing(
            self.notify_urls,
            grouping=self.grouping or GroupingPolicy(),
            cleared=self.notify_cleared,
        )

    def retry_policy(self) -> RetryPolicy:
        """How alert notifications are retried (:mod:`alerts.backoff`)."""
        return RetryPolicy(
            backoff_s=self.notify_backoff_s,
            max_backoff_s=self.notify_max_backoff_s,
            horizon_s=self.notify_retry_horizon_s,
        )

    def feedback_policy(self) -> FeedbackPolicy:
        """How feedback to patients' apps is let through and retried (:mod:`alerts.feedback`)."""
        return FeedbackPolicy(
            limit=RateLimit(per_hour=self.feedback_rate_per_hour, burst=self.feedback_burst),
            retry=RetryPolicy(
                backoff_s=self.feedback_backoff_s,
                max_backoff_s=self.feedback_max_backoff_s,
                horizon_s=self.feedback_max_age_s,
            ),
            attempts=self.feedback_attempts,
            max_age_s=self.feedback_max_age_s,
        )

    def grouping_policy(self, config: RoutingConfig | None) -> GroupingPolicy:
        if self.grouping is not None:
            return self.grouping
        return config.grouping if config is not None else GroupingPolicy()
