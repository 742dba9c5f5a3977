"""Configuration of the ingest service, read from ``PGHD_INGEST_*`` environment variables.

``api_keys`` maps each source (vendor) name to the SHA-256 hex digest of its API key, given
as JSON, e.g. ``PGHD_INGEST_API_KEYS='{"acme": "5e88...42"}'``. There is no default key: with
an empty mapping every request is refused. The Kafka bootstrap servers fall back to the
platform-wide ``PGHD_KAFKA_BOOTSTRAP``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pghd.contracts import ID_PATTERN

__all__ = ["IngestSettings"]

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
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
    max_batch: Annotated[int, Field(ge=1)] = 1000
    max_body_bytes: Annotated[int, Field(ge=1024)] = 5 * 1024 * 1024
    produce_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    connect_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    retry_after_s: Annotated[int, Field(ge=1)] = 5
    kafka_linger_ms: Annotated[int, Field(ge=0)] = 5
    kafka_compression: Literal["gzip", "none"] = "gzip"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    log_level: str = "info"

    @field_validator("api_keys")
    @classmethod
    def _check_api_keys(cls, value: dict[str, str]) -> dict[str, str]:
        checked: dict[str, str] = {}
        for source, digest in value.items():
            if not _SOURCE_NAME.match(source):
                raise ValueError(f"source name {source!r} must match {ID_PATTERN}")
            normalised = digest.strip().lower()
            if not _SHA256_HEX.match(normalised):
                raise ValueError(
                    f"the key of {source!r} must be the SHA-256 hex digest of the API key "
                    "(64 hex characters), not the key itself"
                )
            checked[source] = normalised
        return checked
