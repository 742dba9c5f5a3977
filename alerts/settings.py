"""Settings of the alerts service, read from the environment.

Every field is read from ``PGHD_ALERTS_<FIELD>``; ``kafka_bootstrap`` also falls back to the
stack-wide ``PGHD_KAFKA_BOOTSTRAP``. ``notify_urls`` is a JSON list of Apprise URLs, e.g.
``PGHD_ALERTS_NOTIFY_URLS='["json://127.0.0.1:9999/hook"]'``; they may hold tokens, so
they are never logged.
"""

from __future__ import annotations

import logging

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ENV_PREFIX", "AlertsSettings"]

logger = logging.getLogger(__name__)

ENV_PREFIX = "PGHD_ALERTS_"


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
    notify_urls: list[str] = Field(
        default_factory=list, description="Apprise URLs every anomaly is sent to (JSON list)"
    )
    notify_attempts: int = Field(default=3, ge=1, description="tries per channel and anomaly")
    notify_backoff_s: float = Field(
        default=1.0, ge=0, description="wait before the 2nd try; doubles for each further try"
    )
    notify_max_age_s: float | None = Field(
        default=24 * 3600.0,
        gt=0,
        description="anomalies detected longer ago than this are acked without notifying"
        " (a replayed backlog does not page anyone); null = no limit",
    )
    dedup_size: int = Field(default=10_000, ge=1, description="anomaly ids remembered per run")

    app_id: str = Field(default="pghd-alerts", description="Faust app id = consumer group id")
    store: str = "memory://"
    data_dir: str = ".local/data/alerts"
    topic_partitions: int = Field(default=8, ge=1, description="partitions of pghd.anomalies.v1")
    replication_factor: int = Field(default=1, ge=1, description="of Faust's own topics")
    web_port: int = Field(default=6067, ge=1, le=65535)
    web_host: str = "127.0.0.1"
    log_level: str = "info"
