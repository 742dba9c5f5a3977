"""Configuration of the ingest service, read from ``PGHD_INGEST_*`` environment variables.

``api_keys`` maps each source (vendor) name to the SHA-256 hex digest of its API key, given
as JSON, e.g. ``PGHD_INGEST_API_KEYS='{"acme": "5e88...42"}'``; ``api_keys_file`` names a
keys file read again when it changes (:mod:`ingest.auth`). There is no default key: with
neither, every request is refused. ``admin_tokens`` has the same shape for the admin
bearer tokens of the patients API (enrollment and consent), whose admins may also be the
``admin`` users of the users file (``PGHD_INGEST_USERS_FILE``, else the care-team API's
``PGHD_CARE_API_USERS_FILE``), or admins signed in at an identity provider (``oidc``,
``PGHD_INGEST_OIDC_*`` each falling back to ``PGHD_OIDC_*``; :mod:`pghd.service.oidc`);
``consent=off`` stores readings of anyone (local trials only). The Kafka bootstrap servers
fall back to the platform-wide ``PGHD_KAFKA_BOOTSTRAP``, and the InfluxDB settings of the
export route (``PGHD_INGEST_INFLUX_*``) to the stack-wide ``PGHD_INFLUX_*``. ``webhooks``
configures the signed webhook sources (``PGHD_INGEST_WEBHOOKS``, JSON; see
:mod:`ingest.webhooks.config`), again with no default secret.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.ratelimit import parse_limit
from ingest.webhooks.config import WebhookSource
from pghd.access import checked_digests
from pghd.contracts import ID_PATTERN
from pghd.readings import parse_retention
from pghd.service.oidc import OidcSettings

__all__ = ["IngestSettings"]

_SOURCE_NAME = re.compile(ID_PATTERN)


class IngestSettings(BaseSettings):
    """Settings of one ingest process."""

    model_config = SettingsConfigDict(
        env_prefix="PGHD_INGEST_", extra="ignore", validate_by_name=True, frozen=True
    )

    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("PGHD_INGEST_KAFKA_BOOTSTRAP", "PGHD_KAFKA_BOOTSTRAP"),
        description="Kafka bootstrap servers, comma separated host:port",
    )
    api_keys: dict[str, str] = Field(
        default_factory=dict,
        description="source (vendor) name -> SHA-256 hex digest of its API key",
    )
    admin_tokens: dict[str, str] = Field(
        default_factory=dict,
        description="admin name -> SHA-256 hex digest of its bearer token (patients API)",
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="a keys file of the sources (ingest.auth.SourceKeysFile), read again when"
        " it changes: keys rotated and revoked without a restart",
    )
    users_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "users_file", "PGHD_INGEST_USERS_FILE", "PGHD_CARE_API_USERS_FILE"
        ),
        description="the care-team users file (pghd.access); its admins may use the patients API",
    )
    oidc: OidcSettings = Field(
        default_factory=lambda: OidcSettings.from_env("PGHD_INGEST_"),
        description="the identity provider whose bearer JWTs (of admins) are accepted",
    )
    credentials_recheck_s: Annotated[float, Field(gt=0)] = Field(
        default=1.0, description="how often the keys and users files are checked for changes"
    )
    consent: Literal["enforce", "off"] = Field(
        default="enforce",
        description="enforce enrollment and consent; off accepts anyone (local trials only)",
    )
    max_batch: Annotated[int, Field(ge=1)] = 1000
    max_body_bytes: Annotated[int, Field(ge=1024)] = 5 * 1024 * 1024
    max_import_bytes: Annotated[int, Field(ge=1024)] = Field(
        default=4 * 1024**3, description="largest upload to POST /v1/imports/apple-health"
    )
    produce_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    connect_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    retry_after_s: Annotated[int, Field(ge=1)] = 5
    erase_settle_s: Annotated[float, Field(ge=0)] = Field(
        default=7.0,
        description="an erasure waits this long between tombstoning the enrollment and"
        " writing its marker: longer than any ingest instance's produce timeout (a reading"
        " accepted before the tombstone is on the topic or abandoned by then) plus its"
        " enrollment follower's lag",
    )
    erase_max_wait_s: Annotated[float, Field(ge=0)] = Field(
        default=120.0, description="longest an erase request waits for the stages' reports"
    )
    kafka_linger_ms: Annotated[int, Field(ge=0)] = 5
    kafka_compression: Literal["gzip", "none"] = "gzip"
    envelope: Literal["v1", "v2"] = Field(
        default="v2",
        description="v2: one record per patient per request holding its readings; v1: one"
        " record per reading (for consumers that read only those; pghd/envelope.py)",
    )
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    log_level: str = "info"
    rate_limit: str = Field(
        default="1200/minute",
        description="requests per source per instance, e.g. '1200/minute', "
        "'20/second;1200/minute' or 'off' (see ingest/ratelimit.py for N replicas)",
    )
    rate_limits: dict[str, str] = Field(
        default_factory=dict, description="per-source overrides of rate_limit, as JSON"
    )
    webhooks: dict[str, WebhookSource] = Field(
        default_factory=dict,
        description="signed webhook sources by name, as JSON (see ingest/webhooks/config.py)",
    )
    webhook_tolerance_s: Annotated[int, Field(ge=1)] = 300
    raw_retention: str = Field(
        default="90d",
        validation_alias=AliasChoices(
            "raw_retention", "PGHD_INGEST_RAW_RETENTION", "PGHD_RAW_RETENTION"
        ),
        description="how long InfluxDB keeps raw readings (90d, 2160h, off); a reading older"
        " than that is refused item by item, since the store would refuse it; keep it equal"
        " to the raw bucket's retention",
    )

    @field_validator("raw_retention")
    @classmethod
    def _retention_parses(cls, value: str) -> str:
        parse_retention(value)
        return value

    @property
    def max_reading_age(self) -> timedelta | None:
        """:attr:`raw_retention` as a span (``None``: readings of any age are kept)."""
        return parse_retention(self.raw_retention)

    webhook_replay_capacity: Annotated[int, Field(ge=1)] = 100_000

    # InfluxDB, read by the export route only (GET /v1/patients/{id}/export).
    influx_url: str = Field(
        default="http://127.0.0.1:8086",
        validation_alias=AliasChoices("influx_url", "PGHD_INGEST_INFLUX_URL", "PGHD_INFLUX_URL"),
        description="InfluxDB URL, for patient exports",
    )
    influx_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "influx_token", "PGHD_INGEST_INFLUX_TOKEN", "PGHD_INFLUX_TOKEN"
        ),
        description="InfluxDB token (1.8: user:password), read access suffices; unset: the"
        " export route answers 503",
    )
    influx_org: str = Field(
        default="-",
        validation_alias=AliasChoices("influx_org", "PGHD_INGEST_INFLUX_ORG", "PGHD_INFLUX_ORG"),
    )
    influx_bucket: str = Field(
        default="pghd/autogen",
        validation_alias=AliasChoices(
            "influx_bucket", "PGHD_INGEST_INFLUX_BUCKET", "PGHD_INFLUX_BUCKET"
        ),
        description="the bucket the store writes readings to (1.8: database/retention policy)",
    )
    influx_timeout_s: Annotated[float, Field(gt=0)] = Field(
        default=30.0, description="one InfluxDB query of an export (one window of its history)"
    )

    @model_validator(mode="after")
    def _check_erase_settle(self) -> IngestSettings:
        if 0 < self.erase_settle_s <= self.produce_timeout_s:
            raise ValueError(
                f"erase_settle_s ({self.erase_settle_s:g}) must exceed produce_timeout_s"
                f" ({self.produce_timeout_s:g}): a reading accepted just before an erasure"
                " could otherwise land behind its marker"
            )
        return self

    @field_validator("rate_limit")
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        parse_limit(value)
        return value

    @field_validator("webhooks")
    @classmethod
    def _check_webhook_names(cls, value: dict[str, WebhookSource]) -> dict[str, WebhookSource]:
        for source in value:
            if not _SOURCE_NAME.match(source):
                raise ValueError(f"webhook source name {source!r} must match {ID_PATTERN}")
        return value

    @field_validator("rate_limits")
    @classmethod
    def _check_rate_limits(cls, value: dict[str, str]) -> dict[str, str]:
        for source, text in value.items():
            if not _SOURCE_NAME.match(source):
                raise ValueError(f"source name {source!r} must match {ID_PATTERN}")
            parse_limit(text)
        return value

    @field_validator("api_keys", "admin_tokens")
    @classmethod
    def _check_api_keys(cls, value: dict[str, str]) -> dict[str, str]:
        return checked_digests(value, holder="source", secret="key", secret_name="API key")
