"""Settings of the processors service, read from the environment.

Every field is read from ``PGHD_PROCESSORS_<FIELD>``; the connection settings shared by
all services also fall back to the stack-wide ``PGHD_KAFKA_BOOTSTRAP`` / ``PGHD_INFLUX_*``
variables. The InfluxDB token has no default: it is a secret.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from processors.baseline import BaselineParams
from processors.episodes import EpisodePolicy
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
    tau_days: float = Field(default=7.0, gt=0, description="baselines forget over this long")
    max_step_hours: float = Field(
        default=6.0, gt=0, description="time between readings counted up to this in forgetting"
    )
    persist_needed: int = Field(default=2, ge=1, description="deviation warning: readings beyond")
    persist_window: int = Field(default=3, ge=1, description="... z_warning among the last n")
    cusum_k: float = Field(default=1.0, ge=0, description="CUSUM allowance (spreads)")
    cusum_h: float = Field(default=8.0, gt=0, description="CUSUM decision limit")
    overnight_z: float = Field(default=2.0, gt=0, description="raised night: spreads above")
    overnight_min_delta: float = Field(default=5.0, gt=0, description="... and at least /min")
    overnight_nights: int = Field(default=2, ge=1, description="raised nights in a row to warn")
    news2_persist: int = Field(
        default=3, ge=1, description="NEWS2 score-2 readings in a row that confirm it (no baseline)"
    )
    gap_hours: float = Field(default=48.0, gt=0, description="silence that is a data gap")
    gap_widen: float = Field(default=1.5, ge=1, description="spread factor after a data gap")
    daily_warmup: int = Field(default=7, ge=2, description="warm-up of once-a-day channels")
    news2_window_hours: float = Field(
        default=1.0, gt=0, description="partial NEWS2: vitals at most this old count"
    )
    episode_resolve_after_s: float = Field(
        default=1800.0,
        gt=0,
        description="an episode resolves once every channel in it is back within normal this long",
    )
    episode_resolve_readings: int = Field(
        default=2, ge=1, description="... and for at least this many readings"
    )
    episode_cadence_s: float = Field(
        default=3 * 86400.0,
        gt=0,
        description=(
            "an open episode's first reminder (update) while it goes on; each later one"
            " waits twice as long"
        ),
    )

    batch_size: int = Field(
        default=2000, ge=1, description="most readings the agent judges as one batch"
    )
    batch_within_s: float = Field(
        default=0.02,
        gt=0,
        description="longest wait for a batch to fill; what is there by then is judged",
    )
    commit_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="how often the offsets of readings whose output is durable are committed",
    )
    state_cache_patients: int = Field(
        default=50_000,
        ge=1,
        description="patient state records kept decoded in memory (least recently used out)",
    )
    intent_check_s: float = Field(
        default=2.0,
        gt=0,
        description="after partitions are assigned, how soon records that still list unsent"
        " anomalies (a crash between the two writes) are settled",
    )
    influx_timeout_s: float = Field(
        default=10.0, gt=0, description="one InfluxDB write request; a hung server fails it"
    )
    influx_erase_buckets: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="buckets an erasure also deletes a patient's points from, besides the one"
        " written and its downsampled bucket (comma-separated)",
    )
    influx_max_backoff_s: float = Field(
        default=30.0, gt=0, description="cap of the store stage's backoff between write attempts"
    )
    store_in_worker: bool = Field(
        default=True,
        description="run the store stage (pghd.points.v1 -> InfluxDB) inside this worker;"
        " false when it runs on its own (python -m processors.store.main)",
    )
    store_group: str = Field(
        default="",
        description="consumer group of the store stage on pghd.points.v1; empty: the app id"
        ' followed by "-store"',
    )
    store_max_records: int = Field(
        default=500,
        ge=1,
        description="points records per store write (each holds a batch of one patient's points)",
    )
    dedup_window_s: float = Field(
        default=3 * 86400.0,
        gt=0,
        description="a reading's (patient, source, device, event_id) is remembered this long"
        " after it was judged; a repeat within it is dropped",
    )
    stall_reseek_after_s: float = Field(
        default=30.0,
        gt=0,
        description="an input partition fetched ahead of what was processed, with no progress"
        " for this long, is read again from its committed offset (pghd.stall_watchdog)",
    )
    dedup_sweep_s: float = Field(
        default=300.0, gt=0, description="how often expired dedup buckets are deleted"
    )
    session_timeout_s: float = Field(
        default=60.0,
        ge=6,
        le=90,
        description="Kafka consumer group session timeout: how long after a worker died"
        " without leaving (SIGKILL, lost host) its partitions stay unassigned; the broker's"
        " group.min.session.timeout.ms (6 s) is the floor, the request timeout (90 s) the cap",
    )
    heartbeat_interval_s: float = Field(
        default=3.0, gt=0, description="consumer heartbeats; well below the session timeout"
    )
    verify_lookback_s: float = Field(
        default=300.0,
        gt=0,
        description="after a crash, how far before an unconfirmed anomaly's intent the"
        " anomalies topic is searched for it (covers clock skew between workers)",
    )

    web_port: int = Field(
        default=6066, ge=1, le=65535, description="Faust web server: / (health), /metrics"
    )
    web_host: str = "127.0.0.1"
    metrics_lag_interval_s: float = Field(
        default=15.0, gt=0, description="how often kafka_consumer_lag is read from the brokers"
    )
    log_level: str = "info"

    @field_validator("influx_erase_buckets", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @property
    def store_group_id(self) -> str:
        """The store stage's consumer group: ``store_group``, or ``<app_id>-store``."""
        return self.store_group or f"{self.app_id}-store"

    def episode_policy(self) -> EpisodePolicy:
        """When episodes remind and resolve (:mod:`processors.episodes`)."""
        return EpisodePolicy(
            cadence=timedelta(seconds=self.episode_cadence_s),
            resolve_after=timedelta(seconds=self.episode_resolve_after_s),
            resolve_readings=self.episode_resolve_readings,
        )

    def judge_params(self) -> JudgeParams:
        """The detector and baseline parameters these settings select."""
        baseline = BaselineParams(
            warmup=self.warmup,
            alpha=self.alpha,
            clip=self.clip,
            tau_days=self.tau_days,
            max_step_hours=self.max_step_hours,
        )
        return JudgeParams(
            baseline=baseline,
            z_warning=self.z_warning,
            z_critical=self.z_critical,
            persist_needed=self.persist_needed,
            persist_window=self.persist_window,
            cusum_k=self.cusum_k,
            cusum_h=self.cusum_h,
            overnight_z=self.overnight_z,
            overnight_min_delta=self.overnight_min_delta,
            overnight_nights=self.overnight_nights,
            news2_persist=self.news2_persist,
            gap_hours=self.gap_hours,
            gap_widen=self.gap_widen,
            daily_warmup=self.daily_warmup,
            news2_window_hours=self.news2_window_hours,
        )
