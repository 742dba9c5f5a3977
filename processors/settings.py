"""Settings of the processors service, read from the environment.

Every field is read from ``PGHD_PROCESSORS_<FIELD>``; the connection settings shared by
all services also fall back to the stack-wide ``PGHD_KAFKA_BOOTSTRAP`` / ``PGHD_INFLUX_*``
variables. The InfluxDB token has no default: it is a secret.
"""

from __future__ import annotations

import logging

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from processors.baseline import BaselineParams
from processors.judge import JudgeParams

__all__ = ["ENV_PREFIX", "ProcessorSettings"]

logger = logging.getLogger(__name__)

ENV_PREFIX = "PGHD_PROCESSORS_"


def _env(field: str, shared: str) -> AliasChoices:
    """Read ``PGHD_PROCESSORS_<FIELD>`` first, then the stack-wide ``shared`` variable."""
    return AliasChoices(field, f"{ENV_PREFIX}{field.upper()}", shared)


class ProcessorSettings(BaseSettings):
    """Configuration of one processors worker."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", validate_by_name=True, frozen=True
    )

    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092",
        validation_alias=_env("kafka_bootstrap", "PGHD_KAFKA_BOOTSTRAP"),
        description="Kafka bootstrap servers, host:port[,host:port]",
    )
    influx_url: str = Field(
        default="http://127.0.0.1:8086", validation_alias=_env("influx_url", "PGHD_INFLUX_URL")
    )
    influx_token: SecretStr = Field(
        validation_alias=_env("influx_token", "PGHD_INFLUX_TOKEN"),
        description="InfluxDB token (1.8: user:password)",
    )
    influx_org: str = Field(default="-", validation_alias=_env("influx_org", "PGHD_INFLUX_ORG"))
    influx_bucket: str = Field(
        default="pghd/autogen", validation_alias=_env("influx_bucket", "PGHD_INFLUX_BUCKET")
    )

    app_id: str = Field(default="pghd-processors", description="Faust app id = consumer group id")
    store: str = Field(default="memory://", description='table store; "rocksdb://" in production')
    data_dir: str = ".local/data/processors"
    topic_partitions: int = Field(
        default=8,
        ge=1,
        description="partitions of pghd.measurements.v1 (deploy/topics.json) and of the"
        " table changelogs",
    )
    replication_factor: int = Field(default=1, ge=1, description="of the table changelog topics")

    warmup: int = Field(default=20, ge=2, description="readings per channel before any judgement")
    alpha: float = Field(default=0.05, gt=0, lt=1, description="EWMA weight of a new reading")
    clip: float = Field(default=3.0, gt=0, description="baseline update clipped at +-clip spreads")
    z_warning: float = Field(default=4.0, gt=0)
    z_critical: float = Field(default=6.0, gt=0)

    batch_size: int = Field(default=500, ge=1)
    batch_within_s: float = Field(default=0.5, gt=0)
    commit_interval_s: float = Field(default=2.0, gt=0)
    influx_timeout_s: float = Field(default=10.0, gt=0)
    influx_max_backoff_s: float = Field(default=30.0, gt=0)

    web_port: int = Field(default=6066, ge=1, le=65535)
    web_host: str = "127.0.0.1"
    log_level: str = "info"

    def judge_params(self) -> JudgeParams:
        """The detector and baseline parameters these settings select."""
        baseline = BaselineParams(warmup=self.warmup, alpha=self.alpha, clip=self.clip)
        return JudgeParams(baseline=baseline, z_warning=self.z_warning, z_critical=self.z_critical)
